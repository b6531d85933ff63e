"""Types of recctl's compiled kernels (recctl/_kernels.c): the top-K selection and item-kNN's rows."""

from typing import Any

def select_f32(
    scores: Any, k: int, items: Any, top: Any, indptr: Any | None = None, indices: Any | None = None, /
) -> None:
    """Write the exact top-k of every float32 row of ``scores`` into ``items`` / ``top``, best first.

    ``indptr`` / ``indices``: CSR rows of items to exclude, written to -inf in ``scores`` first.
    """

def knn_rows(
    a_indptr: Any,
    a_indices: Any,
    a_data: Any,
    b_indptr: Any,
    b_indices: Any,
    b_data: Any,
    rows: Any,
    norms: Any | None,
    shrink: float,
    keep: int,
    out_indices: Any,
    out_data: Any,
    out_counts: Any,
    /,
) -> None:
    """Top-``keep`` cosine (``norms`` given) or dot-product neighbours of ``rows`` of ``A @ B``, packed by row.

    ``A``: (n x d) CSR entity vectors, ``B``: its transpose as CSR (int32 indices, float32 values).
    """
