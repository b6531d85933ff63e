"""The batched top-K kernel that every model's ``recommend`` goes through.

How it stays fast and bounded:

* **Blocks of users.** Scores are computed for a block of users at a time, so memory is
  about ``n_jobs x block_rows x n_items x 4`` bytes, never ``n_users x n_items``. The block
  is also capped by a byte budget (``max_block_bytes``): a block that fits in the CPU caches
  makes the passes after the matrix product nearly free.
* **Masks, not copies.** Seen items (a CSR row slice) and rule-excluded items (a column
  list computed once) are written to ``-inf`` in place.
* **Selection without sorting rows, compiled.** ``recctl._kernels`` (C, ``recctl/_kernels.c``) reads
  each float32 row once: a heap of the K best items so far, whose worst score is a running
  threshold, and chunks of 64 scores compared with it by vector instructions, so a chunk is
  looked at item by item only when it holds a winner. It runs without the GIL.
* **The numpy fallback** (the extension not built, float64 blocks, or
  ``RECCTL_TOPK_SELECTION=numpy``): for wide catalogues the columns are split into ``G``
  strided groups; one vectorised pass takes each group's maximum, the K-th largest group
  maximum ``t`` is a provable lower bound of the K-th best score (the K groups holding the K
  best maxima hold K items scoring at least ``t``), so only groups whose maximum reaches
  ``t`` are gathered and the exact top K is picked among those few hundred candidates.
  Both paths are exact, including ties (broken by the lower item index, so results are
  deterministic and equal to a stable sort by descending score), and return the same lists.
* **All cores.** Blocks run on a thread pool: BLAS products and numpy passes release the GIL.
  While the pool runs, BLAS is limited to one thread per worker (``threadpoolctl``) so that
  ``n_jobs`` workers x BLAS threads do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recctl.kernels import KERNELS_ENV, compiled, missing_reason, wanted

__all__ = [
    "ScoreFn",
    "TopK",
    "block_rows_for",
    "compiled_kernels_wanted",
    "iter_top_k",
    "mask_scores",
    "max_threads",
    "resolve_n_jobs",
    "select_top_k",
    "selection_backend",
    "top_k",
]

#: maps an array of user row indices to a dense (len(users), n_items) score block
ScoreFn = Callable[[np.ndarray], np.ndarray]
#: called with the number of users finished so far
ProgressFn = Callable[[int], None]

#: default byte budget of one worker's score block (cache-friendly; see module docstring)
DEFAULT_BLOCK_BYTES = 16 * 1024 * 1024
#: below this many columns a plain argpartition is as fast as the grouped selection
_GROUPED_MIN_ITEMS = 2048
#: environment variable: ``numpy`` selects with numpy even when the compiled selection is built
SELECTION_ENV = KERNELS_ENV


#: the compiled selection (None when recctl._kernels is not built) and why it is missing
_SELECT_F32: Callable[..., None] | None = compiled("select_f32")
_COMPILED_MISSING = missing_reason()


def selection_backend() -> str:
    """Which top-K selection runs: ``"compiled"`` or ``"numpy (<why>)"`` (shown by ``recctl info``)."""
    if _SELECT_F32 is None:
        return f"numpy (recctl._kernels not built: {_COMPILED_MISSING}; reinstall with `pip install -e .`)"
    if not compiled_kernels_wanted():
        return f"numpy ({SELECTION_ENV}=numpy)"
    return "compiled"


@dataclass
class TopK:
    """Top-K per user: ``items[i, r]`` is the item index at rank ``r + 1`` for user ``users[i]``.

    Lists shorter than K (too few eligible items) are padded with item ``-1`` and score
    ``-inf``.

    Attributes
    ----------
    users
        int64 (n,) user row indices.
    items
        int64 (n, k) item column indices, best first.
    scores
        float32 (n, k) scores aligned with ``items``.
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


#: environment variable capping every thread count recctl resolves (a shared machine, or
#: processes that each run part of the work, such as parallel tuning trials)
MAX_THREADS_ENV = "RECCTL_MAX_THREADS"


def max_threads() -> int:
    """The cores this process may use: its CPU affinity, capped by ``RECCTL_MAX_THREADS``."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = max(1, os.cpu_count() or 1)
    cap = os.environ.get(MAX_THREADS_ENV, "").strip()
    if cap.isdigit() and int(cap) >= 1:
        cores = min(cores, int(cap))
    return cores


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Turn ``-1``/``None`` (all cores) or a positive count into a worker count >= 1.

    Every count is capped by :func:`max_threads` (``RECCTL_MAX_THREADS``), so one
    environment variable bounds every multi-threaded stage of a run.
    """
    cores = max_threads()
    if n_jobs is None or n_jobs < 1:
        return cores
    return min(int(n_jobs), cores)


def block_rows_for(n_items: int, batch_size: int, max_block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Users per score block: ``batch_size`` capped so a float32 block fits the byte budget.

    Parameters
    ----------
    n_items
        Width of a score block.
    batch_size
        The largest block wanted (users).
    max_block_bytes
        Memory budget of one block.

    Returns
    -------
    int
        At least 1.
    """
    by_bytes = max(1, int(max_block_bytes) // max(1, 4 * int(n_items)))
    return max(1, min(int(batch_size), by_bytes))


def mask_scores(
    scores: np.ndarray,
    exclude_rows: sp.csr_matrix | None,
    item_mask: np.ndarray | None,
    *,
    excluded_cols: np.ndarray | None = None,
) -> np.ndarray:
    """Set excluded entries of a score block to ``-inf`` in place and return the block.

    Parameters
    ----------
    scores
        Dense (n_block_users, n_items) float block; modified in place.
    exclude_rows
        CSR rows aligned with ``scores`` whose stored entries are items to exclude per user.
    item_mask
        Boolean vector over items; ``False`` items are excluded for everyone.
    excluded_cols
        The same as ``item_mask`` given as the column indices to exclude (computed once by
        the caller when masking many blocks); used instead of ``item_mask`` when given.

    Returns
    -------
    numpy.ndarray
        ``scores`` itself.
    """
    if excluded_cols is None and item_mask is not None:
        excluded_cols = np.flatnonzero(~np.asarray(item_mask, dtype=bool))
    if excluded_cols is not None and len(excluded_cols):
        scores[:, excluded_cols] = -np.inf
    if exclude_rows is not None and exclude_rows.nnz:
        rows = np.repeat(np.arange(exclude_rows.shape[0]), np.diff(exclude_rows.indptr))
        scores[rows, exclude_rows.indices] = -np.inf
    return scores


def _group_shape(n_items: int, k: int) -> tuple[int, int]:
    """``(n_groups, per_group)`` for the grouped selection.

    About ``sqrt(n / 2k)`` items per group balances partitioning the ``G`` group maxima
    against gathering the ~k winning groups (``k * n / G`` values per row, strided, so each
    is a cache miss); the group-max pass itself costs the same for any G. Measured (CPU
    time, ``fmax`` group maxima) on 50k-item blocks of 83 rows: 32 items per group beat 16
    and 71 at K=10 (0.38 vs 0.43 / 0.42 s per 20k rows), 24-32 beat 64 at K=50. Groups of at
    least 8 items keep the vertical max worth it, and at least ``4k`` groups keep the
    threshold tight.
    """
    per_group = int(min(256, max(8, round(math.sqrt(n_items / (2 * max(k, 1)))))))
    n_groups = n_items // per_group
    return n_groups, per_group


def _finish(rows: np.ndarray, items: np.ndarray, vals: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Order candidate (row, item, score) triples and keep the first ``k`` of every row."""
    # primary: row asc, then score desc, then item asc (lexsort's last key is primary)
    order = np.lexsort((items, -vals, rows))
    rows, items, vals = rows[order], items[order], vals[order]
    counts = np.bincount(rows, minlength=n)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(len(rows)) - np.repeat(starts, counts)
    keep = pos < k
    out_items = np.full((n, k), -1, np.int64)
    out_scores = np.full((n, k), -np.inf, np.float32)
    out_items[rows[keep], pos[keep]] = items[keep]
    out_scores[rows[keep], pos[keep]] = vals[keep]
    invalid = np.isneginf(out_scores) | np.isnan(out_scores)
    out_items[invalid] = -1
    out_scores[invalid] = -np.inf
    return out_items, out_scores


def _select_partition(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by argpartition; used for narrow blocks (and as the reference path)."""
    n, n_items = scores.shape
    kk = min(k, n_items)
    if kk < n_items:
        # the k-th largest value per row; every item at or above it is a candidate (ties incl.)
        kth = np.partition(scores, n_items - kk, axis=1)[:, n_items - kk]
        rows, items = np.nonzero(scores >= kth[:, None])
    else:
        rows, items = np.nonzero(np.ones_like(scores, dtype=bool))
    return _finish(rows, items.astype(np.int64), scores[rows, items], n, k)


def _select_grouped(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k through strided group maxima (see the module docstring)."""
    n, n_items = scores.shape
    n_groups, per_group = _group_shape(n_items, k)
    body = per_group * n_groups  # columns [0, body) form the groups; the tail (< per_group) is
    # treated as one more group
    # column c (< body) belongs to group c % G: a (n, m, G) view; max over m is a vertical,
    # SIMD-friendly reduction of contiguous rows of length G
    grouped = scores[:, :body].reshape(n, per_group, n_groups)
    tail = scores[:, body:]
    bounds = np.empty((n, n_groups + (1 if tail.shape[1] else 0)), scores.dtype)
    # fmax skips NaN (a NaN score is never selected) and is 2-3x faster than max, which has
    # to propagate NaN; only an all-NaN group gets a NaN bound, and it holds no eligible item
    np.fmax.reduce(grouped, axis=1, out=bounds[:, :n_groups])
    if tail.shape[1]:
        np.fmax.reduce(tail, axis=1, out=bounds[:, n_groups])
    nan_bounds = np.isnan(bounds)
    if nan_bounds.any():
        bounds[nan_bounds] = -np.inf
    n_bounds = bounds.shape[1]
    kk = min(k, n_bounds)
    threshold = np.partition(bounds, n_bounds - kk, axis=1)[:, n_bounds - kk]
    # -inf is never selected: with fewer than k eligible items the threshold is -inf, and
    # comparing with the lowest finite value instead keeps the excluded items out of the gather
    threshold = np.maximum(threshold, np.finfo(scores.dtype).min)
    # every item scoring >= threshold lives in a group whose max >= threshold
    sel_rows, sel_groups = np.nonzero(bounds[:, :n_groups] >= threshold[:, None])
    # gather the selected groups: (n_sel, m) values; item index = group + G * j
    vals = grouped[sel_rows, :, sel_groups]
    keep = vals >= threshold[sel_rows][:, None]
    sel_idx, pos = np.nonzero(keep)
    c_rows = sel_rows[sel_idx]
    c_items = sel_groups[sel_idx].astype(np.int64) + n_groups * pos
    c_vals = vals[sel_idx, pos]
    if tail.shape[1]:
        t_rows, t_cols = np.nonzero(tail >= threshold[:, None])
        c_rows = np.concatenate([c_rows, t_rows])
        c_items = np.concatenate([c_items, t_cols + body])
        c_vals = np.concatenate([c_vals, tail[t_rows, t_cols]])
    return _finish(c_rows, c_items, c_vals, n, k)


def _select_compiled(
    scores: np.ndarray, k: int, exclude: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of a float block by ``recctl._kernels`` (one pass per row, GIL released).

    ``exclude`` (CSR ``(indptr, indices)`` of the block's rows, see :func:`_excluded_rows`)
    is written to ``-inf`` in ``scores`` (a float32 C-contiguous block; otherwise a copy) just
    before each row is read. ``k`` >= 1.
    """
    assert _SELECT_F32 is not None
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    n = scores.shape[0]
    items = np.empty((n, k), np.int64)
    top = np.empty((n, k), np.float32)
    if exclude is None:
        _SELECT_F32(scores, k, items, top)
    else:
        if not scores.flags.writeable:
            scores = scores.copy()
        indptr, indices = (np.ascontiguousarray(a, dtype=np.int64) for a in exclude)
        _SELECT_F32(scores, k, items, top, indptr, indices)
    return items, top


def _select_numpy(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k in numpy: grouped maxima for wide blocks, argpartition for narrow ones."""
    n_items = scores.shape[1]
    if n_items >= _GROUPED_MIN_ITEMS and _group_shape(n_items, k)[0] >= 4 * k:
        return _select_grouped(scores, k)
    if np.isnan(scores).any():
        scores = np.nan_to_num(scores, nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    return _select_partition(scores, k)


def select_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick the K best columns of every row without sorting whole rows.

    Items scoring ``-inf`` (or NaN) are never selected; ties are broken by the lower item
    index, so results are deterministic and equal to a stable sort by descending score.
    float32 blocks go through the compiled selection when it is built (see
    :func:`selection_backend`), others through numpy; both give the same lists.

    Parameters
    ----------
    scores
        Dense (n, n_items) float block (not modified).
    k
        List length.

    Returns
    -------
    (items, scores)
        ``items`` int64 (n, k) with ``-1`` where fewer than K eligible items exist, and the
        float32 scores with ``-inf`` there.
    """
    scores = np.asarray(scores)
    if scores.dtype != np.float32 and scores.dtype != np.float64:
        scores = scores.astype(np.float32)
    n, n_items = scores.shape
    if n == 0 or n_items == 0 or k <= 0:
        return np.full((n, max(k, 0)), -1, np.int64), np.full((n, max(k, 0)), -np.inf, np.float32)
    if _SELECT_F32 is not None and scores.dtype == np.float32 and compiled_kernels_wanted():
        return _select_compiled(scores, k)
    return _select_numpy(scores, k)


def compiled_kernels_wanted() -> bool:
    """False when ``RECCTL_TOPK_SELECTION=numpy`` asks every compiled kernel to give way to its
    numpy path (:func:`recctl.kernels.wanted`)."""
    return wanted()


def _excluded_rows(exclude: sp.csr_matrix | None, users: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``exclude``'s CSR rows for ``users`` as ``(indptr, indices)``, without building a matrix.

    ``indptr`` has ``len(users) + 1`` entries and is not rebased: row ``r``'s items are
    ``indices[indptr[r] - indptr[0] : indptr[r + 1] - indptr[0]]``. A contiguous user range
    reads the CSR arrays directly (building a scipy matrix per block cost about as much as the
    masking itself); other orders take a fancy row index.
    """
    if exclude is None or not len(users):
        return None
    first, last = int(users[0]), int(users[-1])
    if last - first + 1 == len(users) and (len(users) == 1 or bool((np.diff(users) == 1).all())):
        indptr = exclude.indptr[first : last + 2]
        indices = exclude.indices[int(indptr[0]) : int(indptr[-1])]
    else:
        sub = exclude[users]
        indptr, indices = sub.indptr, sub.indices
    if not len(indices):
        return None
    return indptr, indices


def _block_top_k(
    score_fn: ScoreFn,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
    excluded_cols: np.ndarray | None,
) -> TopK:
    scores = np.asarray(score_fn(users))
    if scores.ndim != 2 or scores.shape[0] != len(users):
        raise ValueError(f"score function returned shape {scores.shape} for {len(users)} users")
    if scores.dtype != np.float32:
        scores = scores.astype(np.float32)
    elif not scores.flags.writeable:
        scores = scores.copy()
    if excluded_cols is not None and len(excluded_cols):
        scores[:, excluded_cols] = -np.inf
    seen = _excluded_rows(exclude, users)
    if _SELECT_F32 is not None and k > 0 and scores.shape[1] and compiled_kernels_wanted():
        # the compiled selection writes the seen items to -inf row by row as it reads the row
        items, top = _select_compiled(scores, k, seen)
        return TopK(users, items, top)
    if seen is not None:
        indptr, indices = seen
        scores[np.repeat(np.arange(len(users)), np.diff(indptr)), indices] = -np.inf
    items, top = select_top_k(scores, k)
    return TopK(users, items, top)


@contextlib.contextmanager
def _single_threaded_blas(active: bool) -> Iterator[None]:
    # N workers each calling an N-threaded BLAS would run N*N threads on N cores; limit BLAS
    # to one thread while the pool runs (threadpoolctl is optional: without it, no limit)
    if not active:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


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
    n_items: int | None = None,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[TopK]:
    """Yield top-K results block by block, in user order (for streaming to disk).

    Parameters
    ----------
    score_fn
        Maps user row indices to a dense score block (float32 preferred).
    user_idx
        User row indices to recommend for.
    k
        List length.
    exclude
        (n_users x n_items) sparse matrix of items to exclude per user (e.g. seen items).
    item_mask
        Boolean vector: items allowed for everyone (business rules).
    batch_size
        Largest number of users per block.
    n_jobs
        Worker threads (``-1``: all cores).
    progress
        Called with the count of users done after each block.
    n_items
        Catalogue width, if known (it is also taken from ``item_mask`` or ``exclude``); with
        it, blocks are capped to ``max_block_bytes``.
    max_block_bytes
        Memory budget of one score block; peak memory is about
        ``n_jobs x max_block_bytes x 3`` plus the results.

    Yields
    ------
    TopK
        One block of users, in the order of ``user_idx``.
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        n_items = n_items or exclude.shape[1]
    excluded_cols = None
    if item_mask is not None:
        item_mask = np.asarray(item_mask, dtype=bool)
        n_items = n_items or len(item_mask)
        excluded_cols = np.flatnonzero(~item_mask)
    rows = block_rows_for(n_items, batch_size, max_block_bytes) if n_items else max(1, int(batch_size))
    blocks = [user_idx[i : i + rows] for i in range(0, len(user_idx), rows)]
    workers = min(resolve_n_jobs(n_jobs), max(1, len(blocks)))
    done = 0
    if workers == 1:
        for block in blocks:
            result = _block_top_k(score_fn, block, k, exclude, excluded_cols)
            done += len(block)
            if progress:
                progress(done)
            yield result
        return
    with _single_threaded_blas(True), ThreadPoolExecutor(max_workers=workers) as pool:
        # at most 2 blocks per worker in flight: memory stays bounded, workers never starve
        pending: deque = deque()
        it = iter(blocks)
        for block in it:
            pending.append(pool.submit(_block_top_k, score_fn, block, k, exclude, excluded_cols))
            if len(pending) >= 2 * workers:
                break
        try:
            while pending:
                result = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(_block_top_k, score_fn, nxt, k, exclude, excluded_cols))
                done += len(result)
                if progress:
                    progress(done)
                yield result
        finally:
            for fut in pending:  # consumer stopped early or an error: drop queued work
                fut.cancel()


def top_k(score_fn: ScoreFn, user_idx: np.ndarray, k: int, **kwargs: object) -> TopK:
    """Compute top-K for all ``user_idx`` at once (see :func:`iter_top_k` for the options)."""
    parts = list(iter_top_k(score_fn, user_idx, k, **kwargs))  # type: ignore[arg-type]
    if not parts:
        return TopK(np.empty(0, np.int64), np.empty((0, k), np.int64), np.empty((0, k), np.float32))
    return TopK.concat(parts)
