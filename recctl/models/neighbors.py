"""Each item's K most similar allowed items, read from a stored top-N similarity (CSR rows).

One function serves two callers that must agree to the item:
:meth:`recctl.models.base.Recommender.similar_items` of a model with a stored top-N similarity
(item-kNN, RP3beta: ``stored_similarity()``; ``recommend --similar-to``, the list builder, the
serving bundle's similar lists) and :func:`recctl.serving.load`, which derives the bundle's
neighbour table from the live similarity the bundle already holds instead of storing the
table twice.

The lists equal the catalogue-wide kernel's over dense similarity rows when every stored similarity is
positive (:func:`stored_rows_rank`): the allowed stored neighbours by similarity, ties to the
lower index, then, when fewer than K, allowed items scoring 0 in index order.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["stored_neighbors", "stored_rows_rank"]

#: rows of the n x N neighbour table laid out at once by _top_stored (a few MB of temporaries:
#: reused from block to block instead of fresh pages, whose faults cost more than the sort)
_TOP_BLOCK_ROWS = 4096


def stored_rows_rank(data: np.ndarray) -> bool:
    """Whether stored rows with these values rank as dense rows do (every stored value > 0).

    An absent entry scores 0 in a dense row; a stored value <= 0 would rank at or below it,
    which the stored-row selection does not model.
    """
    return not len(data) or float(np.min(data)) > 0


def stored_neighbors(
    sim: sp.csr_matrix,
    item_idx: np.ndarray,
    k: int,
    item_mask: np.ndarray | None = None,
    *,
    index_dtype: type[np.signedinteger] = np.int64,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar allowed items of each of ``item_idx`` (the item itself excluded).

    Parameters
    ----------
    sim
        (n_items x n_items) top-N similarity, row ``i`` holding ``i``'s neighbours; every stored
        value positive (:func:`stored_rows_rank`).
    item_idx
        Reference items.
    k
        Neighbours per item.
    item_mask
        Items that may be returned (masked before selection, so ``k`` allowed ones come back).
    index_dtype
        Integer type of the returned items (the serving bundle keeps int32).

    Returns
    -------
    (items, scores)
        ``index_dtype`` and float32, ``len(item_idx) x k``, ``-1`` / ``-inf`` where fewer than ``k``
        items are allowed. Work is ``items x N``; memory a block's table.
    """
    item_idx = np.asarray(item_idx, np.int64)
    n_items = sim.shape[1]
    n = len(item_idx)
    items = np.full((n, max(k, 0)), -1, index_dtype)
    scores = np.full((n, max(k, 0)), -np.inf, np.float32)
    if n == 0 or k <= 0:
        return items, scores
    allowed = np.ones(n_items, bool) if item_mask is None else np.asarray(item_mask, bool)
    whole = n == sim.shape[0] and np.array_equal(item_idx, np.arange(n))
    sub = sim if whole else sim[item_idx]
    if not sub.has_sorted_indices:
        sub = sub.copy()
        sub.sort_indices()
    found = _top_stored(sub, item_idx, allowed, items, scores)
    short = np.flatnonzero(found < k)
    if len(short):
        # fill with allowed zero-score items in index order: enough candidates are the first
        # k + N + 1 allowed items (at most N are neighbours, one is the item itself)
        width = int(np.diff(sim.indptr).max(initial=0))
        cand = np.flatnonzero(allowed)[: k + width + 1]
        items[short], scores[short] = _fill_zero_scores(
            cand, item_idx[short], found[short], items[short], scores[short]
        )
    return items, scores


def _top_stored(
    sub: sp.csr_matrix, item_idx: np.ndarray, allowed: np.ndarray, items: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Fill ``items``/``scores`` (n x K, in place) with each row's best allowed stored neighbours.

    Rows of ``sub`` (sorted indices) are taken :data:`_TOP_BLOCK_ROWS` at a time, each block laid
    out as a ``rows x N`` table (N = the block's longest row, filled in CSR order through a
    boolean mask: no per-entry row numbers) and sorted by score with a stable sort, so ties
    keep the lower item index first, as the catalogue-wide kernel does. Work is ``n x N``;
    memory a block's table (the same temporaries for every block: fresh memory is costly to
    fault in). Returns how many were found per row.
    """
    n, k = items.shape
    found = np.zeros(n, np.int64)
    if k == 0:
        return found
    for start in range(0, n, _TOP_BLOCK_ROWS):
        stop = min(n, start + _TOP_BLOCK_ROWS)
        found[start:stop] = _top_block(
            sub.indptr[start : stop + 1],
            sub.indices,
            sub.data,
            item_idx[start:stop],
            allowed,
            items[start:stop],
            scores[start:stop],
        )
    return found


def _top_block(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    own: np.ndarray,
    allowed: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
) -> np.ndarray:
    """:func:`_top_stored` for one block of rows (``indptr`` its slice; ``items``/``scores`` views)."""
    lens = np.diff(indptr)
    width = int(lens.max(initial=0))
    if width == 0:
        return np.zeros(len(lens), np.int64)
    k = items.shape[1]
    lo, hi = int(indptr[0]), int(indptr[-1])
    filled = np.arange(width)[None, :] < lens[:, None]  # the table cells that hold an entry, row-major
    table = np.full((len(lens), width), -1, np.int32)
    table[filled] = indices[lo:hi]
    keys = np.full((len(lens), width), np.inf, np.float32)  # -similarity; +inf = masked, own item or absent
    keys[filled] = -np.asarray(data[lo:hi], np.float32)
    keys[~allowed[table] | (table == own[:, None]) | ~filled] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(keys, order, axis=1)
    hit = np.isfinite(best)
    m = order.shape[1]
    items[:, :m] = np.where(hit, np.take_along_axis(table, order, axis=1), -1)
    scores[:, :m] = np.where(hit, -best, -np.inf)
    return hit.sum(axis=1)


def _fill_zero_scores(
    cand: np.ndarray, own: np.ndarray, found: np.ndarray, items: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Complete short rows with candidates ``cand`` (sorted) at score 0, in index order.

    A candidate is skipped when it is the row's own item or already in its list. Returns the
    completed copies of ``items`` and ``scores``.
    """
    items, scores = items.copy(), scores.copy()
    k = items.shape[1]
    valid = cand[None, :] != own[:, None]
    if len(cand):
        where = np.minimum(np.searchsorted(cand, items), len(cand) - 1)
        listed = (items >= 0) & (cand[where] == items)
        r = np.broadcast_to(np.arange(len(items))[:, None], items.shape)
        valid[r[listed], where[listed]] = False
    need = (k - found)[:, None]
    pick = valid & (np.cumsum(valid, axis=1) <= need)
    r_loc, c_loc = np.nonzero(pick)
    slot = found[r_loc] + (np.cumsum(pick, axis=1)[r_loc, c_loc] - 1)
    items[r_loc, slot] = cand[c_loc]
    scores[r_loc, slot] = 0.0
    return items, scores
