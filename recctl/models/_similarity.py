"""Shared numerics of the neighbourhood and content models.

Everything here works on scipy sparse matrices and dense numpy blocks, with no Python loop
over users or items: term weighting (TF-IDF, BM25), cosine similarity with shrinkage and
top-N pruning (row by row in the compiled ``recctl._kernels.knn_rows`` when it is built, else
block by block in numpy, memory bounded by ``block_entries`` floats; the same matrix), row
normalisation, and per-user score normalisation for blending.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.lib.stride_tricks import sliding_window_view

from recctl.kernels import compiled, wanted
from recctl.memory import no_hugepage_advice

__all__ = [
    "TermWeights",
    "binarize",
    "fit_term_weights",
    "l2_normalize_rows",
    "normalize_scores",
    "row_norms",
    "sparse_product",
    "sparse_row_topn",
    "topn_similarity",
]

Weighting = Literal["none", "tfidf", "bm25"]

#: multiply-adds (and dense cells) per similarity block: about 80 MB per worker at most
DEFAULT_BLOCK_ENTRIES = 1 << 22
#: a product block with at least this share of its cells stored is selected densely (measured
#: crossover: a dense cell costs about a tenth of a stored entry's selection)
DENSE_MIN_DENSITY = 1 / 10
#: calls of the compiled kernel per worker thread (equal work each: the threads finish together)
_CHUNKS_PER_WORKER = 4
_INT32_MAX = np.iinfo(np.int32).max
#: entries per run of rows where a per-entry temporary is made (8 MB of float64)
_RUN_ENTRIES = 1 << 20


#: the compiled fused kernel (None when recctl._kernels is not built)
_KNN_ROWS: Callable[..., None] | None = compiled("knn_rows")


def _compiled_kernel() -> Callable[..., None] | None:
    """``knn_rows`` unless it is missing or ``RECCTL_TOPK_SELECTION=numpy`` asks for numpy."""
    return _KNN_ROWS if wanted() else None


def threads_field() -> Any:
    """The ``n_jobs`` parameter of models whose fit computes a top-N similarity (item-kNN, RP3beta)."""
    from pydantic import Field

    return Field(
        default=-1,
        ge=-1,
        description="Threads computing the similarity; -1 for all cores (capped by RECCTL_MAX_THREADS).",
    )


def binarize(mat: sp.csr_matrix) -> sp.csr_matrix:
    """Return a copy of ``mat`` with every stored non-zero set to 1 (float32)."""
    out = sp.csr_matrix(mat, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def row_norms(mat: sp.csr_matrix) -> np.ndarray:
    """Euclidean norm of every row of a sparse matrix, as float64.

    Squared and summed by runs of rows of about ``_RUN_ENTRIES`` entries, each a matrix sharing
    ``mat``'s index arrays: the float64 squares never exist all at once (at 15M entries they
    were 120 MB, the fit's high-water mark). Each row's sum is the same sequence of additions.
    """
    mat = sp.csr_matrix(mat)
    sums = np.zeros(mat.shape[0], np.float64)
    for lo, hi in _entry_runs(mat.indptr):
        p0, p1 = int(mat.indptr[lo]), int(mat.indptr[hi])
        sq = sp.csr_matrix(
            (np.square(mat.data[p0:p1], dtype=np.float64), mat.indices[p0:p1], mat.indptr[lo : hi + 1] - p0),
            shape=(hi - lo, mat.shape[1]),
        )
        sums[lo:hi] = np.asarray(sq.sum(axis=1)).ravel()
    return np.sqrt(sums)


def _entry_runs(indptr: np.ndarray, entries: int | None = None) -> list[tuple[int, int]]:
    """Consecutive row ranges ``(lo, hi)`` of a CSR matrix holding about ``entries`` entries each."""
    entries = entries or _RUN_ENTRIES
    n = len(indptr) - 1
    cuts = np.searchsorted(indptr, np.arange(entries, int(indptr[-1]), entries), side="right") - 1
    bounds = np.unique(np.concatenate(([0], np.clip(cuts, 0, n), [n])))
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo] or [(0, n)]


def l2_normalize_rows(mat: sp.csr_matrix) -> sp.csr_matrix:
    """Scale every row to unit length (all-zero rows stay zero)."""
    norms = row_norms(mat)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ mat, dtype=np.float32)


class TermWeights:
    """TF-IDF or BM25 weighting learnt on a (documents x terms) matrix.

    Kept as an object so that a new document (an anonymous user's item list, a new item)
    is weighted with the statistics of the training matrix.

    Parameters
    ----------
    scheme
        ``none``, ``tfidf`` (``sqrt(tf) * idf``) or ``bm25`` (Okapi BM25 with ``k1``, ``b``).
    idf
        Per-term inverse document frequency ``log(N) - log1p(df)``.
    avg_length
        Mean document length (sum of a row), for BM25's length normalisation.
    k1, b
        BM25 parameters.
    """

    def __init__(self, scheme: Weighting, idf: np.ndarray, avg_length: float, k1: float, b: float) -> None:
        self.scheme = scheme
        self.idf = idf
        self.avg_length = avg_length
        self.k1 = k1
        self.b = b

    def transform(self, docs: sp.csr_matrix) -> sp.csr_matrix:
        """Weight a (documents x terms) matrix with the learnt statistics."""
        if self.scheme == "none":
            return sp.csr_matrix(docs, dtype=np.float32)
        coo = sp.coo_matrix(docs, dtype=np.float64)
        tf = coo.data
        idf = self.idf[coo.col]
        if self.scheme == "tfidf":
            data = np.sqrt(tf) * idf
        else:
            lengths = np.asarray(coo.tocsr().sum(axis=1)).ravel()
            avg = self.avg_length if self.avg_length > 0 else 1.0
            length_norm = (1.0 - self.b) + self.b * lengths / avg
            data = tf * (self.k1 + 1.0) / (self.k1 * length_norm[coo.row] + tf) * idf
        out = sp.csr_matrix((data.astype(np.float32), (coo.row, coo.col)), shape=coo.shape)
        out.eliminate_zeros()
        return out


def fit_term_weights(docs: sp.csr_matrix, scheme: Weighting, k1: float = 100.0, b: float = 0.8) -> TermWeights:
    """Learn TF-IDF / BM25 statistics from a (documents x terms) matrix.

    For item-item similarity the documents are items and the terms are users (an item is
    described by who interacted with it), as in the classic BM25 item-kNN recommender.
    """
    n_docs = docs.shape[0]
    df = np.bincount(sp.coo_matrix(docs).col, minlength=docs.shape[1]).astype(np.float64)
    idf = np.log(max(n_docs, 1)) - np.log1p(df)
    lengths = np.asarray(docs.sum(axis=1)).ravel()
    return TermWeights(scheme, idf, float(lengths.mean()) if len(lengths) else 0.0, k1, b)


def topn_similarity(
    vectors: sp.csr_matrix,
    n_neighbors: int,
    *,
    shrink: float = 0.0,
    normalize: bool = True,
    rows: np.ndarray | None = None,
    block_entries: int = DEFAULT_BLOCK_ENTRIES,
    n_jobs: int = -1,
    transposed: sp.csr_matrix | None = None,
) -> sp.csr_matrix:
    """Sparse top-N similarity between the rows of ``vectors``.

    ``sim(a, b) = <a, b> / (|a| |b| + shrink)`` (cosine with shrinkage) when ``normalize``,
    else the plain dot product. Each row keeps its ``n_neighbors`` largest positive
    similarities (ties broken by the lower column); an entity is never its own neighbour.

    With the compiled extension built (``recctl._kernels.knn_rows``, the default) each row of the
    product is accumulated, turned into cosines and cut to its top N in one pass, on ``n_jobs``
    threads, with nothing the size of the product ever stored: memory is the output plus one
    float per entity per thread. Without it (or with ``RECCTL_TOPK_SELECTION=numpy``) the same
    matrix comes from numpy: rows in blocks of about ``block_entries`` multiply-adds (scipy's
    sparse product and the numpy selection release the GIL), each worker reusing one set of
    buffers. Either way numpy's huge-page advice is off meanwhile
    (:func:`recctl.memory.no_hugepage_advice`): on Linux, faulting in fresh memory cost more
    than the arithmetic done on it.

    Parameters
    ----------
    vectors
        (n x d) CSR, one row per entity (item or user).
    n_neighbors
        Neighbours kept per row.
    shrink
        Shrinkage added to the cosine denominator: pairs with little support are pulled
        toward 0, so two items that share one rare user do not look identical.
    normalize
        Cosine (True) or dot product (False).
    rows
        Compute only these rows (the others are left empty); all rows when ``None``.
    block_entries
        Numpy path only: multiply-adds (an upper bound of the products stored) per block;
        memory is about ``20 * block_entries`` bytes per worker.
    n_jobs
        Worker threads (``-1``: all cores).
    transposed
        ``vectors.T`` as CSR (float32) when the caller has it (item-kNN's user x item matrix):
        saves one transposition. Any (d x n) matrix may stand in for it: the rows of
        ``vectors @ transposed`` are then ranked (RP3beta passes its popularity-penalised second
        walk step; with ``normalize`` the norms are still ``vectors``' rows').

    Returns
    -------
    scipy.sparse.csr_matrix
        (n x n) float32 with at most ``n_neighbors`` entries per row.
    """
    from recctl.ranking import resolve_n_jobs

    with no_hugepage_advice():
        vectors = sp.csr_matrix(vectors, dtype=np.float32)
        n = vectors.shape[0]
        rows = np.arange(n) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        norms = row_norms(vectors).astype(np.float32) if normalize else None
        vt = vectors.T.tocsr() if transposed is None else sp.csr_matrix(transposed, dtype=np.float32)
        keep = min(n_neighbors, max(n - 1, 0))
        if not len(rows) or keep <= 0:
            return sp.csr_matrix((n, n), dtype=np.float32)
        kernel = _compiled_kernel()
        if kernel is not None and max(vectors.nnz, vt.nnz, len(rows) * keep, n, vt.shape[0]) < _INT32_MAX:
            return _fused_topn(kernel, vectors, vt, rows, keep, norms, shrink, resolve_n_jobs(n_jobs))
        blocks, flops = _row_blocks(vectors, vt, rows, block_entries)
        idx = np.int32 if max(int(flops.max()), n, vectors.nnz, vt.nnz) < np.iinfo(np.int32).max - n else np.int64
        a = _Csr.of(vectors, idx)
        b = _Csr.of(vt, idx)
        workers = min(resolve_n_jobs(n_jobs), len(blocks))
        spare: queue.SimpleQueue[_Workspace] = queue.SimpleQueue()
        for _ in range(workers):
            spare.put(_Workspace(int(flops.max()), n, idx))

        def one(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            ws = spare.get()
            try:
                local, cols, vals = _block_topn(a, b, r, keep, norms, shrink, ws)
            finally:
                spare.put(ws)
            order = np.argsort(local, kind="stable")  # rows in order (ties were appended last)
            return np.bincount(local, minlength=len(r)), cols[order].astype(idx), vals[order]

        if workers <= 1:
            parts = [one(r) for r in blocks]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(one, blocks))
        # blocks hold disjoint, increasing rows: their entries in turn are the matrix in CSR order
        counts = np.zeros(n, np.int64)
        counts[np.concatenate(blocks)] = np.concatenate([p[0] for p in parts])
        indptr = np.zeros(n + 1, idx)
        indptr[1:] = np.cumsum(counts)
        cols = np.concatenate([p[1] for p in parts])
        data = np.concatenate([p[2] for p in parts])
        out = sp.csr_matrix((data, cols, indptr), shape=(n, n))
        out.sort_indices()
        return out


def _row_blocks(
    vectors: sp.csr_matrix, vt: sp.csr_matrix, rows: np.ndarray, budget: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Split ``rows`` into consecutive blocks of about ``budget`` multiply-adds of ``vectors @ vt``.

    Sized by work rather than by row count: popular items cost far more than the tail, and
    equal-work blocks keep both the memory per block and the threads' shares even. A block
    is also kept under ``budget`` dense cells, the size of its dense selection. Returns the
    blocks and each block's multiply-adds (the size of its product's buffers).
    """
    if not len(rows):
        return [], np.zeros(1, np.int64)
    work = _row_work(vectors, vt)[rows]
    # a new block starts wherever the work done so far crosses a multiple of the budget ...
    ids = ((np.cumsum(work) - work) // max(budget, 1)).astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ids)) + 1, [len(rows)]))
    # ... and every max_rows rows (the dense selection's size)
    max_rows = max(1, budget // max(vt.shape[1], 1))
    cuts = sorted({int(x) for a, b in zip(starts[:-1], starts[1:], strict=True) for x in range(a, b, max_rows)})
    cuts.append(len(rows))
    cum = np.concatenate(([0], np.cumsum(work)))
    flops = cum[cuts[1:]] - cum[cuts[:-1]]
    return [rows[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)], flops


def _row_work(vectors: sp.csr_matrix, vt: sp.csr_matrix) -> np.ndarray:
    """Multiply-adds of each row of ``vectors @ vt``: the summed lengths of the vt rows its entries point at."""
    lengths, vt_lengths = np.diff(vectors.indptr), np.diff(vt.indptr)
    work = np.zeros(len(lengths), np.int64)
    for lo, hi in _entry_runs(vectors.indptr):  # by runs: no entry-sized int64 temporary
        filled = lo + np.flatnonzero(lengths[lo:hi])
        if len(filled):
            p0, p1 = int(vectors.indptr[lo]), int(vectors.indptr[hi])
            per_entry = vt_lengths[vectors.indices[p0:p1]]
            work[filled] = np.add.reduceat(per_entry, vectors.indptr[filled] - p0, dtype=np.int64)
    return work


def _fused_topn(
    kernel: Callable[..., None],
    vectors: sp.csr_matrix,
    vt: sp.csr_matrix,
    rows: np.ndarray,
    keep: int,
    norms: np.ndarray | None,
    shrink: float,
    workers: int,
) -> sp.csr_matrix:
    """:func:`topn_similarity` through the compiled ``knn_rows``: same entries, no product buffers.

    Each call accumulates one row of the product at a time in a dense array of one float per
    entity and keeps that row's top ``keep`` (see ``recctl/_kernels.c``), so memory is the output
    plus one such array per thread. The rows go in ``_CHUNKS_PER_WORKER * workers`` runs of equal
    work over the threads; each run packs its rows' entries from the start of its slice of the
    output, and the runs are then moved together (a few memmoves, no full copy).
    """
    n = vectors.shape[0]
    a, b = _Csr.of(vectors, np.int32), _Csr.of(vt, np.int32)
    rows = np.ascontiguousarray(rows, np.int64)
    cosine = None if norms is None else np.ascontiguousarray(norms, np.float32)
    indices = np.empty(len(rows) * keep, np.int32)
    data = np.empty(len(rows) * keep, np.float32)
    counts = np.zeros(len(rows), np.int32)
    runs = _even_runs(_row_work(vectors, vt)[rows], 1 if workers <= 1 else _CHUNKS_PER_WORKER * workers)

    def one(run: tuple[int, int]) -> None:
        lo, hi = run
        kernel(
            a.indptr, a.indices, a.data, b.indptr, b.indices, b.data, rows[lo:hi], cosine, float(shrink), keep,
            indices[lo * keep : hi * keep], data[lo * keep : hi * keep], counts[lo:hi],
        )  # fmt: skip

    if workers <= 1 or len(runs) == 1:
        for run in runs:
            one(run)
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(runs))) as pool:
            list(pool.map(one, runs))
    # move each run's packed entries down behind the previous run's
    nnz = 0
    for lo, hi in runs:
        got = int(counts[lo:hi].sum())
        if nnz != lo * keep:
            indices[nnz : nnz + got] = indices[lo * keep : lo * keep + got]
            data[nnz : nnz + got] = data[lo * keep : lo * keep + got]
        nnz += got
    # give back the unused tail in place (realloc, no copy) when no view of the buffers is left
    for buf in (indices, data):
        try:
            buf.resize(nnz, refcheck=True)
        except ValueError:
            indices, data = indices[:nnz].copy(), data[:nnz].copy()
            break
    per_row = np.zeros(n, np.int64)
    per_row[rows] = counts
    indptr = np.zeros(n + 1, np.int32)
    np.cumsum(per_row, out=indptr[1:])
    out = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    out.has_sorted_indices = True  # each row written by column
    return out


def _even_runs(work: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split ``len(work)`` rows into at most ``parts`` consecutive runs of about equal summed work."""
    total = int(work.sum())
    if parts <= 1 or len(work) <= 1 or total == 0:
        return [(0, len(work))]
    cuts = np.searchsorted(np.cumsum(work), np.linspace(0, total, parts + 1)[1:-1], side="right")
    bounds = np.unique(np.concatenate(([0], cuts, [len(work)])))
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


class _Csr:
    """A CSR matrix's arrays in one index dtype, as scipy's product routine wants them."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape: tuple[int, int]) -> None:
        self.indptr, self.indices, self.data, self.shape = indptr, indices, data, shape

    @classmethod
    def of(cls, mat: sp.csr_matrix, idx: type, dtype: type = np.float32) -> _Csr:
        """The arrays of ``mat`` in index dtype ``idx`` and value ``dtype`` (copied only if needed)."""
        return cls(
            mat.indptr.astype(idx, copy=False),
            mat.indices.astype(idx, copy=False),
            np.asarray(mat.data, dtype),
            (int(mat.shape[0]), int(mat.shape[1])),
        )

    def rows(self, r: np.ndarray) -> _Csr:
        """The rows ``r`` (sorted): views when they are consecutive, else a copy."""
        lo, hi = int(r[0]), int(r[-1]) + 1
        if hi - lo == len(r):
            p0, p1 = int(self.indptr[lo]), int(self.indptr[hi])
            indptr = self.indptr[lo : hi + 1] - self.indptr[lo]
            return _Csr(indptr, self.indices[p0:p1], self.data[p0:p1], (len(r), self.shape[1]))
        sub = sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)[r]
        return _Csr.of(sub, self.indptr.dtype.type)


class _Workspace:
    """Buffers one worker reuses from block to block: a product and its selection's scratch.

    Sized for the largest block's multiply-adds plus one row (the selection reads windows of
    up to a row's length past a block's last entry): 17 bytes per multiply-add with 32-bit
    indices; only the pages the blocks' products reach are ever touched.
    """

    def __init__(self, capacity: int, n_cols: int, idx: type) -> None:
        size = capacity + n_cols + 1
        self.indices: np.ndarray = np.empty(size, idx)
        self.data = np.empty(size, np.float32)
        self.scratch = np.empty(size, np.float32)
        self.rowid: np.ndarray = np.empty(size, idx)
        self.other: np.ndarray = np.empty(size, idx)  # also viewed as float32 scratch
        self.flags = np.empty(size, bool)

    @classmethod
    def holding(cls, dots: sp.csr_matrix) -> _Workspace:
        """A workspace whose product buffers hold a copy of ``dots``' entries."""
        idx = np.int32 if max(dots.nnz, dots.shape[1]) < np.iinfo(np.int32).max // 2 else np.int64
        ws = cls(dots.nnz, dots.shape[1], idx)
        ws.indices[: dots.nnz] = dots.indices
        ws.data[: dots.nnz] = dots.data
        return ws


def _block_topn(
    a: _Csr,
    b: _Csr,
    r: np.ndarray,
    keep: int,
    norms: np.ndarray | None,
    shrink: float,
    ws: _Workspace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``keep`` ``(local row, column, value)`` entries of rows ``r`` of ``a @ b``, in ``ws``."""
    n_rows, n_cols = len(r), b.shape[1]
    indptr = _product_into(a.rows(r), b, ws.indices, ws.data)
    nnz = int(indptr[-1])
    if not nnz:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    row_n = None if norms is None else norms[r]
    if nnz >= DENSE_MIN_DENSITY * n_rows * n_cols:
        # (the scratch arrays stay untouched: a worker's resident memory is its sparse blocks')
        dots = sp.csr_matrix((ws.data[:nnz], ws.indices[:nnz], indptr), shape=(n_rows, n_cols))
        return _dense_row_topn(dots, keep, row_n, norms, shrink, r)
    _similarities_in_place(indptr, nnz, row_n, norms, shrink, r, ws)
    return _select_entries(indptr, nnz, keep, ws)


def sparse_product(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    """``a @ b`` for CSR matrices, in one pass of scipy's sparse product (SMMP).

    scipy's ``@`` first runs a whole counting pass to size its output; here the output is
    sized by the multiply-add count instead (an upper bound, cheap from ``b``'s row lengths),
    which saves about 40% of the product's time. The result holds no duplicate entries and
    its column indices are not sorted within rows.
    """
    flops = int(np.diff(b.indptr)[a.indices].sum()) if a.nnz else 0
    idx = np.int32 if max(flops, b.shape[1], a.nnz, b.nnz) < np.iinfo(np.int32).max else np.int64
    indices = np.empty(flops, idx)
    dtype = np.result_type(a.dtype, b.dtype).type
    data = np.empty(flops, dtype)
    indptr = _product_into(_Csr.of(a, idx, dtype), _Csr.of(b, idx, dtype), indices, data)
    nnz = int(indptr[-1])
    return sp.csr_matrix((data[:nnz], indices[:nnz], indptr), shape=(a.shape[0], b.shape[1]))


def _product_into(a: _Csr, b: _Csr, indices: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``a @ b`` written into ``indices``/``data`` (long enough for its multiply-adds); returns its indptr.

    scipy's SMMP routine (``csr_matmat``), which ``@`` calls after a counting pass. That
    routine is scipy's private API: should a scipy release move it, the product falls back to
    ``@`` (the same routine behind the counting pass, so the same entries in the same order).
    """
    try:
        from scipy.sparse._sparsetools import csr_matmat
    except ImportError:
        return _product_by_matmul(a, b, indices, data)
    indptr = np.empty(a.shape[0] + 1, a.indptr.dtype)
    csr_matmat(a.shape[0], b.shape[1], a.indptr, a.indices, a.data, b.indptr, b.indices, b.data, indptr, indices, data)
    return indptr


def _product_by_matmul(a: _Csr, b: _Csr, indices: np.ndarray, data: np.ndarray) -> np.ndarray:
    """:func:`_product_into` through scipy's public ``@``, copied into the same buffers."""
    product = sp.csr_matrix((a.data, a.indices, a.indptr), shape=a.shape) @ sp.csr_matrix(
        (b.data, b.indices, b.indptr), shape=b.shape
    )
    nnz = product.nnz
    indices[:nnz] = product.indices
    data[:nnz] = product.data
    return product.indptr.astype(a.indptr.dtype, copy=False)


def sparse_row_topn(
    dots: sp.csr_matrix,
    keep: int,
    *,
    row_norms: np.ndarray | None = None,
    col_norms: np.ndarray | None = None,
    shrink: float = 0.0,
    self_cols: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Keep the ``keep`` largest positive entries of every row of a sparse product.

    Ties are broken by the lower column index, so the result is deterministic. Two ways,
    same entries:

    * a block with few stored entries per cell is selected on those entries only: each row's
      ``keep``-th value is found by one ``partition`` per bucket of rows of similar length
      (padded at most 2x); no sort of the entries;
    * a denser block (at least ``DENSE_MIN_DENSITY`` of its cells stored, as item-item
      products of a shop with many events per item are) becomes a dense array selected by
      the ranking kernel's grouped top-K, which reads it once at memory speed.

    Parameters
    ----------
    dots
        (r x n) sparse dot products, without duplicate entries (as a product is).
    keep
        Entries kept per row.
    row_norms, col_norms
        When given, entries become cosines ``dot / (row_norm * col_norm + shrink)``.
    shrink
        Cosine shrinkage (see :func:`topn_similarity`).
    self_cols
        Per row, a column to drop (the entity itself).
    """
    dots = sp.csr_matrix(dots, dtype=np.float32)
    n_rows, n_cols = dots.shape
    if not n_rows or keep <= 0 or not dots.nnz:
        return sp.csr_matrix(dots.shape, dtype=np.float32)
    if row_norms is None or col_norms is None:
        row_norms = col_norms = None
    if dots.nnz >= DENSE_MIN_DENSITY * n_rows * n_cols:
        r, c, v = _dense_row_topn(dots, keep, row_norms, col_norms, shrink, self_cols)
    else:
        ws = _Workspace.holding(dots)
        indptr = dots.indptr.astype(ws.rowid.dtype)
        _similarities_in_place(indptr, dots.nnz, row_norms, col_norms, shrink, self_cols, ws)
        r, c, v = _select_entries(indptr, dots.nnz, keep, ws)
    return sp.csr_matrix((v, (r, c)), shape=dots.shape, dtype=np.float32)


def _similarities_in_place(
    indptr: np.ndarray,
    nnz: int,
    row_norms: np.ndarray | None,
    col_norms: np.ndarray | None,
    shrink: float,
    self_cols: np.ndarray | None,
    ws: _Workspace,
) -> None:
    """Turn the CSR product held in ``ws`` into similarities, in place; fills ``ws.rowid``.

    Cosine ``dot / (row_norm * col_norm + shrink)`` when both norms are given (the same
    float32 operations as a dense brute force), and each row's own column (``self_cols``) 0.
    """
    c, v, rowid = ws.indices[:nnz], ws.data[:nnz], ws.rowid[:nnz]
    # each entry's row: 1 at every row start, summed up (no fresh nnz-sized array)
    rowid[:] = 0
    np.add.at(rowid, indptr[1:-1][indptr[1:-1] < nnz], 1)
    np.cumsum(rowid, dtype=rowid.dtype, out=rowid)
    if row_norms is not None and col_norms is not None:
        den, other = ws.scratch[:nnz], ws.other.view(np.float32)[:nnz]
        np.take(np.asarray(col_norms, np.float32), c, out=den)
        np.take(np.asarray(row_norms, np.float32), rowid, out=other)
        np.multiply(other, den, out=den)
        if shrink:
            np.add(den, np.float32(shrink), out=den)
        if float(den.min()) > 0:
            np.divide(v, den, out=v)
        else:
            np.divide(v, den, out=v, where=den > 0)
            v[den <= 0] = 0.0
    if self_cols is not None:
        own, flags = ws.other[:nnz], ws.flags[:nnz]
        np.take(np.asarray(self_cols, own.dtype), rowid, out=own)
        np.equal(c, own, out=flags)
        np.putmask(v, flags, np.float32(0.0))


def _select_entries(
    indptr: np.ndarray, nnz: int, keep: int, ws: _Workspace
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top-``keep`` entries per row of the CSR similarities held in ``ws``.

    Runs after :func:`_similarities_in_place` (which fills ``ws.rowid``). Returns ``(row,
    column, value)`` arrays: the positive entries above their row's ``keep``-th largest value,
    plus the lowest-column ties at it.
    """
    n_rows = len(indptr) - 1
    c, v, rowid, flags = ws.indices[:nnz], ws.data[:nnz], ws.rowid[:nnz], ws.flags[:nnz]
    lengths = np.diff(indptr)
    # each row's keep-th largest value (-inf: the row has at most `keep` entries, all kept)
    threshold = np.full(n_rows, -np.inf, np.float32)
    long_rows = np.flatnonzero(lengths > keep)
    if len(long_rows):
        bucket = np.ceil(np.log2(lengths[long_rows])).astype(np.int64)
        for b in np.unique(bucket):
            members = long_rows[bucket == b]
            threshold[members] = _kth_largest(ws.data, indptr, members, keep)
    # kept: positive and above the threshold ...
    cut = ws.scratch[:nnz]
    np.take(np.maximum(threshold, np.float32(0.0)), rowid, out=cut)
    np.greater(v, cut, out=flags)
    at = np.flatnonzero(flags)
    rows_a, cols_a, vals_a = rowid[at].astype(np.int64), c[at].astype(np.int64), v[at]
    # ... plus, where fewer than `keep` are above a positive threshold, the lowest-column ties at it
    room = keep - np.bincount(rows_a, minlength=n_rows)
    tied = (threshold > 0) & (room > 0)
    if tied.any():
        at_value = np.where(tied, threshold, np.float32(np.nan))
        np.take(at_value, rowid, out=cut)
        np.equal(v, cut, out=flags)
        at = np.flatnonzero(flags)
        tr, tc, tv = rowid[at].astype(np.int64), c[at].astype(np.int64), v[at]
        order = np.lexsort((tc, tr))
        tr, tc, tv = tr[order], tc[order], tv[order]
        rank = np.arange(len(tr)) - np.searchsorted(tr, tr)
        take = rank < room[tr]
        rows_a = np.concatenate([rows_a, tr[take]])
        cols_a = np.concatenate([cols_a, tc[take]])
        vals_a = np.concatenate([vals_a, tv[take]])
    return rows_a, cols_a, vals_a


def _kth_largest(buf: np.ndarray, indptr: np.ndarray, members: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep``-th largest value in each of the CSR rows ``members`` of ``buf``.

    Each row is copied as one window of the bucket's width (``buf`` extends at least that far
    past the last entry), the cells past the row's end set to ``-inf``, and one in-place
    ``partition`` finds every row's value.
    """
    starts = indptr[members]
    lengths = indptr[members + 1] - starts
    width = int(lengths.max())
    padded = sliding_window_view(buf, width)[starts]
    padded[np.arange(width)[None, :] >= lengths[:, None]] = -np.inf
    padded.partition(width - keep, axis=1)
    return padded[:, width - keep]


def _dense_row_topn(
    dots: sp.csr_matrix,
    keep: int,
    row_norms: np.ndarray | None,
    col_norms: np.ndarray | None,
    shrink: float,
    self_cols: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_select_entries` through a dense block (same values, same tie-break)."""
    from recctl.ranking import select_top_k

    n_rows, n_cols = dots.shape
    dense = dots.toarray()
    if row_norms is not None and col_norms is not None:
        # the same float32 operations as the sparse path, so values are identical; row by row,
        # so no block-sized denominator array
        cn = np.asarray(col_norms, np.float32)
        denom = np.empty(n_cols, np.float32)
        for i, rn in enumerate(np.asarray(row_norms, np.float32)):
            np.multiply(rn, cn, out=denom)
            denom += np.float32(shrink)
            np.divide(dense[i], denom, out=dense[i], where=denom > 0)
    if self_cols is not None:
        dense[np.arange(n_rows), np.asarray(self_cols)] = 0.0
    items, vals = select_top_k(dense, min(keep, n_cols))
    ok = vals > 0  # zero (no shared user), negative and padding entries are not neighbours
    r = np.broadcast_to(np.arange(n_rows)[:, None], ok.shape)[ok]
    return r, items[ok], vals[ok]


def normalize_scores(scores: np.ndarray, method: Literal["minmax", "zscore", "none"]) -> np.ndarray:
    """Normalise each row of a score block so different models can be added up.

    ``minmax`` maps a user's scores to [0, 1]; ``zscore`` to mean 0, standard deviation 1.
    A constant row (a model with no opinion about this user) becomes all zeros, so it
    neither helps nor hurts in a weighted sum. Non-finite entries are left as they are and
    ignored by the statistics.
    """
    s = np.asarray(scores, dtype=np.float64)
    if method == "none":
        return s.astype(np.float32)
    finite = np.isfinite(s)
    filled_lo = np.where(finite, s, np.inf)
    filled_hi = np.where(finite, s, -np.inf)
    if method == "minmax":
        lo = filled_lo.min(axis=1, keepdims=True)
        hi = filled_hi.max(axis=1, keepdims=True)
        rng = hi - lo
        ok = np.isfinite(rng) & (rng > 0)
        out = np.where(ok, (s - np.where(np.isfinite(lo), lo, 0.0)) / np.where(ok, rng, 1.0), 0.0)
    else:
        cnt = finite.sum(axis=1, keepdims=True)
        mean = np.where(finite, s, 0.0).sum(axis=1, keepdims=True) / np.maximum(cnt, 1)
        var = (np.where(finite, s - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / np.maximum(cnt, 1)
        std = np.sqrt(var)
        out = np.where(std > 0, (s - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.where(finite, out, s).astype(np.float32)
