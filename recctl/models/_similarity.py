"""Shared numerics of the neighbourhood and content models.

Everything here works on scipy sparse matrices and dense numpy blocks, with no Python loop
over users or items: term weighting (TF-IDF, BM25), cosine similarity with shrinkage and
top-N pruning computed block by block (memory bounded by ``block_entries`` floats), row
normalisation, and per-user score normalisation for blending.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import scipy.sparse as sp

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


def binarize(mat: sp.csr_matrix) -> sp.csr_matrix:
    """Return a copy of ``mat`` with every stored non-zero set to 1 (float32)."""
    out = sp.csr_matrix(mat, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def row_norms(mat: sp.csr_matrix) -> np.ndarray:
    """Euclidean norm of every row of a sparse matrix, as float64."""
    sq = sp.csr_matrix(mat, copy=True)
    sq.data = sq.data.astype(np.float64) ** 2
    return np.sqrt(np.asarray(sq.sum(axis=1)).ravel())


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
) -> sp.csr_matrix:
    """Sparse top-N similarity between the rows of ``vectors``.

    ``sim(a, b) = <a, b> / (|a| |b| + shrink)`` (cosine with shrinkage) when ``normalize``,
    else the plain dot product. Each row keeps its ``n_neighbors`` largest positive
    similarities (ties broken by the lower column); an entity is never its own neighbour.

    Rows are computed in blocks of about ``block_entries`` multiply-adds, on ``n_jobs``
    threads (scipy's sparse product and the numpy selection release the GIL).

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
        Multiply-adds (an upper bound of the products stored) per block: memory is about
        ``20 * block_entries`` bytes per worker.
    n_jobs
        Worker threads (``-1``: all cores).

    Returns
    -------
    scipy.sparse.csr_matrix
        (n x n) float32 with at most ``n_neighbors`` entries per row.
    """
    from recctl.ranking import resolve_n_jobs

    vectors = sp.csr_matrix(vectors, dtype=np.float32)
    n = vectors.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    norms = row_norms(vectors).astype(np.float32) if normalize else None
    vt = vectors.T.tocsr()
    keep = min(n_neighbors, max(n - 1, 0))
    blocks = _row_blocks(vectors, vt, rows, block_entries)

    def one(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        contiguous = int(r[-1]) - int(r[0]) + 1 == len(r)
        sub = vectors[int(r[0]) : int(r[-1]) + 1] if contiguous else vectors[r]
        local, cols, vals = _row_topn_entries(
            sparse_product(sub, vt), keep, None if norms is None else norms[r], norms, shrink, r
        )
        return vals, r[local], cols

    workers = min(resolve_n_jobs(n_jobs), len(blocks))
    if workers <= 1:
        parts = [one(r) for r in blocks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(one, blocks))
    if not parts:
        return sp.csr_matrix((n, n), dtype=np.float32)
    # blocks hold disjoint rows: concatenating their entries is the whole matrix
    data, row_ids, col_ids = (np.concatenate(x) for x in zip(*parts, strict=True))
    out = sp.csr_matrix((data, (row_ids, col_ids)), shape=(n, n), dtype=np.float32)
    out.sort_indices()
    return out


def _row_blocks(vectors: sp.csr_matrix, vt: sp.csr_matrix, rows: np.ndarray, budget: int) -> list[np.ndarray]:
    """Split ``rows`` into consecutive blocks of about ``budget`` multiply-adds of ``vectors @ vt``.

    Sized by work rather than by row count: popular items cost far more than the tail, and
    equal-work blocks keep both the memory per block and the threads' shares even. A block
    is also kept under ``budget`` dense cells, the size of its dense selection.
    """
    if not len(rows):
        return []
    # a row's work: the summed lengths of the vt rows its entries point at
    per_entry = np.cumsum(np.diff(vt.indptr)[vectors.indices], dtype=np.int64)
    ends = np.concatenate(([0], per_entry))[vectors.indptr.astype(np.int64)]
    work = np.diff(ends)[rows].astype(np.float64)
    # a new block starts wherever the work done so far crosses a multiple of the budget ...
    ids = ((np.cumsum(work) - work) // max(budget, 1)).astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ids)) + 1, [len(rows)]))
    # ... and every max_rows rows (the dense selection's size)
    max_rows = max(1, budget // max(vt.shape[1], 1))
    cuts = sorted({int(x) for a, b in zip(starts[:-1], starts[1:], strict=True) for x in range(a, b, max_rows)})
    cuts.append(len(rows))
    return [rows[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def sparse_product(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    """``a @ b`` for CSR matrices, in one pass of scipy's sparse product (SMMP).

    scipy's ``@`` first runs a whole counting pass to size its output; here the output is
    sized by the multiply-add count instead (an upper bound, cheap from ``b``'s row lengths),
    which saves about 40% of the product's time. The result holds no duplicate entries and
    its column indices are not sorted within rows. Falls back to ``@`` when scipy's internal
    routine is not available.
    """
    try:
        from scipy.sparse._sparsetools import csr_matmat
    except ImportError:  # pragma: no cover - a scipy without the internal routine
        return sp.csr_matrix(a @ b)
    n_rows, n_cols = a.shape[0], b.shape[1]
    flops = int(np.diff(b.indptr)[a.indices].sum()) if a.nnz else 0
    idx = np.int32 if max(flops, n_cols, a.nnz, b.nnz) < np.iinfo(np.int32).max else np.int64
    indptr = np.empty(n_rows + 1, idx)
    indices = np.empty(flops, idx)
    data = np.empty(flops, np.result_type(a.dtype, b.dtype))
    csr_matmat(
        n_rows,
        n_cols,
        a.indptr.astype(idx, copy=False),
        a.indices.astype(idx, copy=False),
        a.data,
        b.indptr.astype(idx, copy=False),
        b.indices.astype(idx, copy=False),
        b.data,
        indptr,
        indices,
        data,
    )
    nnz = int(indptr[-1])
    return sp.csr_matrix((data[:nnz], indices[:nnz], indptr), shape=(n_rows, n_cols))


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

    * a block with few stored entries per cell is selected on those entries only: rows are
      padded into buckets of similar length (at most 2x padding) and one ``partition`` per
      bucket finds each row's ``keep``-th value; no sort of the entries;
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
    r, c, v = _row_topn_entries(dots, keep, row_norms, col_norms, shrink, self_cols)
    return sp.csr_matrix((v, (r, c)), shape=dots.shape, dtype=np.float32)


def _row_topn_entries(
    dots: sp.csr_matrix,
    keep: int,
    row_norms: np.ndarray | None,
    col_norms: np.ndarray | None,
    shrink: float,
    self_cols: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sparse_row_topn` as ``(row, column, value)`` arrays (no matrix built)."""
    n_rows, n_cols = dots.shape
    if not n_rows or keep <= 0 or not dots.nnz:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    if dots.data.dtype != np.float32:
        dots = sp.csr_matrix(dots, dtype=np.float32)
    if dots.nnz >= DENSE_MIN_DENSITY * n_rows * n_cols:
        return _dense_row_topn(dots, keep, row_norms, col_norms, shrink, self_cols)
    indptr = dots.indptr.astype(np.int64)
    lengths = np.diff(indptr)
    r = np.repeat(np.arange(n_rows), lengths)
    c = dots.indices
    v = dots.data.copy()
    if row_norms is not None and col_norms is not None:
        denom = row_norms[r] * col_norms[c] + np.float32(shrink)
        np.divide(v, denom, out=v, where=denom > 0)
        v[denom <= 0] = 0.0
    if self_cols is not None:
        v[c == np.asarray(self_cols)[r]] = 0.0
    # each row's keep-th largest value (-inf: the row has at most `keep` entries, all kept)
    threshold = np.full(n_rows, -np.inf, np.float32)
    long_rows = np.flatnonzero(lengths > keep)
    if len(long_rows):
        bucket = np.ceil(np.log2(lengths[long_rows])).astype(np.int64)
        for b in np.unique(bucket):
            members = long_rows[bucket == b]
            threshold[members] = _kth_largest(v, indptr, members, keep)
    return _keep_above(r, c, v, threshold, keep, n_rows)


def _kth_largest(v: np.ndarray, indptr: np.ndarray, members: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep``-th largest of ``v`` in each of the CSR rows ``members`` (padded, one partition)."""
    lengths = indptr[members + 1] - indptr[members]
    width = int(lengths.max())
    padded = np.full((len(members), width), -np.inf, np.float32)
    local = np.repeat(np.arange(len(members)), lengths)
    pos = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[local, pos] = v[indptr[members][local] + pos]
    return np.partition(padded, width - keep, axis=1)[:, width - keep]


def _keep_above(
    r: np.ndarray, c: np.ndarray, v: np.ndarray, threshold: np.ndarray, keep: int, n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries above their row's threshold, plus the lowest-column ties at it (up to ``keep``)."""
    positive = v > 0
    row_threshold = threshold[r]
    above = positive & (v > row_threshold)
    at = positive & (v == row_threshold)
    rows_a, cols_a, vals_a = r[above], c[above], v[above]
    if at.any():
        tr, tc, tv = r[at], c[at], v[at]
        order = np.lexsort((tc, tr))
        tr, tc, tv = tr[order], tc[order], tv[order]
        room = keep - np.bincount(rows_a, minlength=n_rows)
        rank = np.arange(len(tr)) - np.searchsorted(tr, tr)
        take = rank < room[tr]
        rows_a = np.concatenate([rows_a, tr[take]])
        cols_a = np.concatenate([cols_a, tc[take]])
        vals_a = np.concatenate([vals_a, tv[take]])
    return rows_a, cols_a, vals_a


def _dense_row_topn(
    dots: sp.csr_matrix,
    keep: int,
    row_norms: np.ndarray | None,
    col_norms: np.ndarray | None,
    shrink: float,
    self_cols: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_row_topn_entries` through a dense block (same values, same tie-break)."""
    from recctl.ranking import select_top_k

    n_rows, n_cols = dots.shape
    dense = dots.toarray()
    if row_norms is not None and col_norms is not None:
        # the same float32 operations as the sparse path, so values are identical
        denom = np.multiply.outer(np.asarray(row_norms, np.float32), np.asarray(col_norms, np.float32))
        denom += np.float32(shrink)
        np.divide(dense, denom, out=dense, where=denom > 0)
        del denom
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
