"""Shared numerics of the neighbourhood and content models.

Everything here works on scipy sparse matrices and dense numpy blocks, with no Python loop
over users or items: term weighting (TF-IDF, BM25), cosine similarity with shrinkage and
top-N pruning computed block by block (memory bounded by ``block_entries`` floats), row
normalisation, and per-user score normalisation for blending.
"""

from __future__ import annotations

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
    "sparse_row_topn",
    "topn_similarity",
]

Weighting = Literal["none", "tfidf", "bm25"]

#: dense entries a similarity block may hold at once (64M float32 = 256 MB)
DEFAULT_BLOCK_ENTRIES = 1 << 26


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
) -> sp.csr_matrix:
    """Sparse top-N similarity between the rows of ``vectors``.

    ``sim(a, b) = <a, b> / (|a| |b| + shrink)`` (cosine with shrinkage) when ``normalize``,
    else the plain dot product. Each row keeps its ``n_neighbors`` largest positive
    similarities; an entity is never its own neighbour.

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
        Dense entries per block: bounds memory at about ``4 * block_entries`` bytes.

    Returns
    -------
    scipy.sparse.csr_matrix
        (n x n) float32 with at most ``n_neighbors`` entries per row.
    """
    vectors = sp.csr_matrix(vectors, dtype=np.float32)
    n = vectors.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    norms = row_norms(vectors).astype(np.float32) if normalize else None
    vt = vectors.T.tocsr()
    block = max(1, block_entries // max(n, 1))
    keep = min(n_neighbors, max(n - 1, 0))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(rows), block):
        r = rows[start : start + block]
        top = sparse_row_topn(
            vectors[r] @ vt,
            keep,
            row_norms=None if norms is None else norms[r],
            col_norms=norms,
            shrink=shrink,
            self_cols=r,
        ).tocoo()
        parts.append((top.data, r[top.row], top.col))
    if not parts:
        return sp.csr_matrix((n, n), dtype=np.float32)
    # blocks hold disjoint rows: concatenating their entries is the whole matrix
    data, row_ids, col_ids = (np.concatenate(x) for x in zip(*parts, strict=True))
    out = sp.csr_matrix((data, (row_ids, col_ids)), shape=(n, n), dtype=np.float32)
    out.sort_indices()
    return out


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

    Works on the stored entries only (no dense ``rows x n`` block, no ``argpartition`` over
    zeros), which is what makes kNN fast when similarities are sparse. Ties are broken by
    the lower column index, so the result is deterministic.

    Parameters
    ----------
    dots
        (r x n) sparse dot products.
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
    dots.sum_duplicates()
    n_rows = dots.shape[0]
    r = np.repeat(np.arange(n_rows), np.diff(dots.indptr))
    c = dots.indices.astype(np.int64)
    v = dots.data
    if row_norms is not None and col_norms is not None:
        denom = row_norms[r] * col_norms[c] + np.float32(shrink)
        v = np.divide(v, denom, out=np.zeros_like(v), where=denom > 0)
    ok = v > 0
    if self_cols is not None:
        ok &= c != np.asarray(self_cols)[r]
    r, c, v = r[ok], c[ok], v[ok]
    # one stable sort on a composite key (row first, then -value); columns are ascending
    # within a row (CSR with sorted indices), so stability breaks ties by the lower column
    scale = 2.0 * (float(v.max()) + 1.0) if len(v) else 1.0
    order = np.argsort(r * scale - v.astype(np.float64), kind="stable")
    r, c, v = r[order], c[order], v[order]
    rank = np.arange(len(r)) - np.searchsorted(r, np.arange(n_rows))[r]
    sel = rank < keep
    return sp.csr_matrix((v[sel], (r[sel], c[sel])), shape=dots.shape, dtype=np.float32)


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
