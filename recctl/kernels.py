"""recctl's compiled kernels (``recctl._kernels``, from ``recctl/_kernels.c``) and the switch to their fallbacks.

Each kernel has a numpy (or polars) path in the module that calls it, giving the same results:

* ``select_f32``: top-K selection (:mod:`recctl.ranking`);
* ``knn_rows``: item-kNN's similarity rows (:mod:`recctl.models._similarity`);
* ``lookup_codes``: id hash -> code look-ups (:mod:`recctl.data.idcodes`);
* ``aggregate_runs``: per-(user, item) aggregates of events in (user, time) order
  (:mod:`recctl.data.preprocess`).

The extension is built by ``pip install -e .`` (an optional build: without a C compiler recctl
installs and runs every fallback). ``RECCTL_TOPK_SELECTION=numpy`` sends every kernel to its
fallback (the name predates all but the first kernel; it is kept so existing scripts work).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["KERNELS_ENV", "compiled", "missing_reason", "wanted"]

#: environment variable: ``numpy`` runs every kernel's fallback even when the extension is built
KERNELS_ENV = "RECCTL_TOPK_SELECTION"

_log = logging.getLogger(__name__)


def _load() -> tuple[ModuleType | None, str]:
    try:
        import recctl._kernels as module
    except ImportError as exc:  # an optional build: a failed one lands here, and the fallbacks run
        _log.debug("recctl._kernels is not built (%s): every kernel runs its numpy path (same results, slower)", exc)
        return None, str(exc)
    return module, ""


_MODULE, _MISSING = _load()


def compiled(name: str) -> Callable[..., Any] | None:
    """The compiled kernel ``name`` of ``recctl._kernels``, or None when the extension is not built.

    None too when the built extension predates the kernel (a checkout updated without
    reinstalling): that kernel's fallback runs until ``pip install -e .`` rebuilds it. Callers
    hold it once (at import) and ask :func:`wanted` per call.
    """
    kernel = None if _MODULE is None else getattr(_MODULE, name, None)
    if kernel is None and _MODULE is not None:
        _log.debug("recctl._kernels has no %s (built before it): its fallback runs; reinstall to build it", name)
    return kernel


def missing_reason() -> str:
    """Why the extension is not importable (empty when it is)."""
    return _MISSING


def wanted() -> bool:
    """False when ``RECCTL_TOPK_SELECTION=numpy`` asks every compiled kernel to give way to its fallback.

    Read per call (a dictionary lookup per block), so a benchmark or a debugging session can
    switch paths in one process.
    """
    return os.environ.get(KERNELS_ENV, "").strip().lower() != "numpy"
