"""Fresh memory on Linux: numpy's transparent-huge-page advice, switched off where it costs.

numpy advises ``MADV_HUGEPAGE`` for every new array of 4 MB or more. Where the kernel's THP
``defrag`` setting is ``madvise`` (a common default), each page fault in such an array may
compact memory first, in the faulting thread: measured on the 2-core development VM, fresh
4-16 MB arrays cost 1-2 us of system time per 4 KB page with the advice and 0.2 us without,
more than the arithmetic done on them (preprocess's ``filter_min_counts`` at 20M events:
4.3 CPU-s with the advice, 0.6 without). Code that makes many large temporaries (preprocess at
20M events, the item-kNN similarity blocks) runs inside :func:`no_hugepage_advice`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

__all__ = ["no_hugepage_advice"]


@contextlib.contextmanager
def no_hugepage_advice() -> Iterator[None]:
    """Stop numpy asking for transparent huge pages for new arrays while the block runs.

    The setting is process-wide and restored afterwards (``NUMPY_MADVISE_HUGEPAGE=0`` does the
    same for a whole process); on a numpy without the switch this does nothing.
    """
    switch = getattr(getattr(np, "_core", None), "multiarray", None)
    toggle = getattr(switch, "_set_madvise_hugepage", None)
    if toggle is None:
        yield
        return
    previous = toggle(False)
    try:
        yield
    finally:
        toggle(previous)
