"""Types of recctl's compiled kernels (recctl/_kernels.c): top-K selection, similarity rows, preprocess's kernels."""

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

def build_code_table(keys: Any, table: Any, /) -> None:
    """Fill ``table`` (uint64, 2 x S; S a power of two, >= 2 x len(keys)) with the table of distinct ``keys``."""

def lookup_codes(table: Any, query: Any, out: Any, missing: int, /) -> None:
    """Write each ``query`` hash's code in ``table`` into ``out`` (uint32); ``missing`` when absent."""

def aggregate_runs(
    indptr: Any,
    items: Any,
    labels: Any | None,
    weights: Any | None,
    times: Any | None,
    n_items: int,
    select: int,
    how: int,
    out_users: Any,
    out_items: Any,
    out_weights: Any | None,
    out_last: Any | None,
    /,
) -> int:
    """One row per (user, item) of the events of the ``select`` labels, from events grouped by user; the row count."""

def counting_order(keys: Any, n_keys: int, order: Any, indptr: Any, /) -> None:
    """The stable sorting permutation of ``keys`` (uint32 below ``n_keys``) into ``order``, runs into ``indptr``."""
