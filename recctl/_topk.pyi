"""Types of the compiled top-K selection (recctl/_topk.c)."""

from typing import Any

def select_f32(
    scores: Any, k: int, items: Any, top: Any, indptr: Any | None = None, indices: Any | None = None, /
) -> None:
    """Write the exact top-k of every float32 row of ``scores`` into ``items`` / ``top``, best first.

    ``indptr`` / ``indices``: CSR rows of items to exclude, written to -inf in ``scores`` first.
    """
