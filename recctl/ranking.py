"""The batched top-K kernel that every model's ``recommend`` goes through.

Users are scored in blocks (memory is bounded by ``batch_size x n_items`` floats per
worker, never ``n_users x n_items``), excluded items are masked to ``-inf``, and the top
K are picked with ``argpartition`` (linear time) before only those K are sorted.
Blocks run on a thread pool: the heavy parts (BLAS matrix products, partitioning) release
the GIL, so threads use every core without copying the model into processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["ScoreFn", "TopK", "iter_top_k", "mask_scores", "resolve_n_jobs", "select_top_k", "top_k"]

#: maps an array of user row indices to a dense (len(users), n_items) score block
ScoreFn = Callable[[np.ndarray], np.ndarray]
#: called with the number of users finished so far
ProgressFn = Callable[[int], None]


@dataclass
class TopK:
    """Top-K per user: ``items[i, r]`` is the item index at rank ``r + 1`` for user ``i``.

    Lists shorter than K (too few eligible items) are padded with item ``-1`` and score
    ``-inf``.
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        """Number of real (non-padding) items in each user's list."""
        return (self.items >= 0).sum(axis=1)

    @staticmethod
    def concat(parts: list[TopK]) -> TopK:
        """Concatenate blocks (in order) into one result."""
        if not parts:
            return TopK(np.empty(0, np.int64), np.empty((0, 0), np.int64), np.empty((0, 0), np.float32))
        return TopK(
            np.concatenate([p.users for p in parts]),
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )


def resolve_n_jobs(n_jobs: int) -> int:
    """Turn ``-1`` (all cores) or a positive count into a worker count >= 1."""
    if n_jobs is None or n_jobs < 1:
        return max(1, os.cpu_count() or 1)
    return n_jobs


def mask_scores(scores: np.ndarray, exclude_rows: sp.csr_matrix | None, item_mask: np.ndarray | None) -> np.ndarray:
    """Set excluded entries of a score block to ``-inf`` in place and return the block.

    Parameters
    ----------
    scores
        Dense (n_block_users, n_items) float block; modified in place.
    exclude_rows
        CSR rows aligned with ``scores`` whose non-zeros are items to exclude per user.
    item_mask
        Boolean vector over items; ``False`` items are excluded for everyone.
    """
    if item_mask is not None:
        scores[:, ~item_mask] = -np.inf
    if exclude_rows is not None and exclude_rows.nnz:
        rows = np.repeat(np.arange(exclude_rows.shape[0]), np.diff(exclude_rows.indptr))
        scores[rows, exclude_rows.indices] = -np.inf
    return scores


def select_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick the K best columns of every row without sorting whole rows.

    Ties are broken by the lower item index, so results are deterministic.

    Returns
    -------
    (items, scores)
        ``items`` int64 (n, k) with ``-1`` where fewer than K finite scores exist.
    """
    n, n_items = scores.shape
    kk = min(k, n_items)
    if n == 0 or kk == 0:
        return np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    if kk < n_items:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n_items), (n, n_items)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    # sort by score desc, then item index asc (lexsort's last key is primary)
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    # argpartition may pick an arbitrary member of a tie group at the K boundary; make the
    # boundary deterministic by re-selecting ties with the lowest item index.
    if kk < n_items:
        items, top = _fix_boundary_ties(scores, items, top)
    invalid = ~np.isfinite(top)
    items[invalid] = -1
    top[invalid] = -np.inf
    if kk < k:
        pad = k - kk
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, top


def _fix_boundary_ties(scores: np.ndarray, items: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kth = top[:, -1:]
    n_at_kth_total = (scores == kth).sum(axis=1)
    n_at_kth_in = (top == kth).sum(axis=1)
    rows = np.nonzero(n_at_kth_total > n_at_kth_in)[0]
    for r in rows:  # rare: only rows with a tie that straddles the cut
        keep = top[r] > kth[r, 0]
        n_keep = int(keep.sum())
        tied = np.nonzero(scores[r] == kth[r, 0])[0][: items.shape[1] - n_keep]
        items[r, n_keep:] = tied
        top[r, n_keep:] = kth[r, 0]
    return items, top


def _block_top_k(
    score_fn: ScoreFn, users: np.ndarray, k: int, exclude: sp.csr_matrix | None, item_mask: np.ndarray | None
) -> TopK:
    scores = np.asarray(score_fn(users), dtype=np.float32)
    if scores.ndim != 2 or scores.shape[0] != len(users):
        raise ValueError(f"score function returned shape {scores.shape} for {len(users)} users")
    if not scores.flags.writeable:
        scores = scores.copy()
    mask_scores(scores, exclude[users] if exclude is not None else None, item_mask)
    items, top = select_top_k(scores, k)
    return TopK(users, items, top)


def iter_top_k(
    score_fn: ScoreFn,
    user_idx: np.ndarray,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = 4096,
    n_jobs: int = 1,
    progress: ProgressFn | None = None,
) -> Iterator[TopK]:
    """Yield top-K results block by block, in user order (for streaming to disk).

    Parameters
    ----------
    score_fn
        Maps user row indices to a dense score block.
    user_idx
        User row indices to recommend for.
    k
        List length.
    exclude
        (n_users x n_items) sparse matrix of items to exclude per user (e.g. seen items).
    item_mask
        Boolean vector: items allowed for everyone (business rules).
    batch_size
        Users per block; memory is about ``n_jobs * batch_size * n_items * 4`` bytes.
    n_jobs
        Worker threads (``-1``: all cores).
    progress
        Called with the count of users done after each block.
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
    blocks = [user_idx[i : i + batch_size] for i in range(0, len(user_idx), batch_size)]
    workers = resolve_n_jobs(n_jobs)
    done = 0
    if workers == 1 or len(blocks) <= 1:
        for block in blocks:
            result = _block_top_k(score_fn, block, k, exclude, item_mask)
            done += len(block)
            if progress:
                progress(done)
            yield result
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # keep at most 2 blocks per worker in flight so memory stays bounded
        pending = []
        it = iter(blocks)
        for block in it:
            pending.append(pool.submit(_block_top_k, score_fn, block, k, exclude, item_mask))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_block_top_k, score_fn, nxt, k, exclude, item_mask))
            done += len(result)
            if progress:
                progress(done)
            yield result


def top_k(score_fn: ScoreFn, user_idx: np.ndarray, k: int, **kwargs: object) -> TopK:
    """Compute top-K for all ``user_idx`` at once (see :func:`iter_top_k` for the options)."""
    return TopK.concat(list(iter_top_k(score_fn, user_idx, k, **kwargs)))  # type: ignore[arg-type]
