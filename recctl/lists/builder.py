"""The one list builder: (model chain, rules, each user's full history) -> exactly K items.

:class:`ListBuilder` is what every caller uses: the nightly batch (``recommend``), ``recommend
--users``, anonymous baskets (``--items``), ``--similar-to``, the related-products file, the
serving bundle and ``recommend --changed-since``; the HTTP service (one request) and the Spark
engine (one block of users per task, in another process) call it the same way. It holds no
user state: who the user is and what they did arrive with each call, as a :class:`Request`.

How a row is served (the chain is ``recommend.model`` then ``recommend.fallback``):

* **a user the models know** (``rows[i] >= 0``): every model of the chain scores the user's
  row, in turn, for the slots still open;
* **a user the models do not know** (``rows[i] == -1``) who has a history (events the
  preprocess filters or the evaluation protocol left out of training, a batch appended since):
  treated like an anonymous visitor whose basket is that history; each model of the chain
  that scores from items (``supports_item_history``) fills in turn;
* **nobody known, no history** (a customer-file-only customer, a brand-new id): the models
  that serve a user without history (``supports_cold_users``: popularity) fill.

Whatever fills a slot, the request's ``exclude`` (the user's full history under the rules)
and the item rules hold, and the list rules (MMR, caps) apply to the whole list
(:mod:`recctl.lists.fill`). ``recommend.min_score`` drops the *main* model's weak items (its
"no evidence") in every path.

Cost per call: one score block per source with rows still short; for one user that is one
``1 x n_items`` product and a selection, plus small fixed numpy work (well under a millisecond
on the sample shop, see ``benchmarks/bench_lists.py``).
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from recctl.lists.fill import Lists, fill_lists
from recctl.ranking import DEFAULT_BLOCK_BYTES, block_rows_for, mask_scores, resolve_n_jobs, select_top_k
from recctl.rules import ItemRules

__all__ = ["ListBuilder", "Request", "iter_blocks"]

T = TypeVar("T")


def _csr_rows(n_rows: int, n_items: int, rows: Sequence[Iterable[int]]) -> sp.csr_matrix:
    lengths = [len(list(r)) for r in rows]
    indices = np.fromiter((int(i) for r in rows for i in r), np.int64, count=sum(lengths))
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    mat = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n_rows, n_items))
    mat.sum_duplicates()
    return mat


@dataclass
class Request:
    """Who to build lists for: one row per user (or visitor), aligned arrays.

    Attributes
    ----------
    rows
        int64 ``(n,)``: the user's row in the models, ``-1`` when the models do not know them.
    basket
        CSR ``(n, n_items)``: what a user the models do not know interacted with (their full
        history, or a visitor's items), scored by the models that recommend from items. Rows
        of known users are ignored (the models have them). ``None``: no history.
    exclude
        CSR ``(n, n_items)``: items never to return to that row (the history under the rules:
        every seen item, or the ``exclude_events`` ones). ``None``: nothing excluded.
    """

    rows: np.ndarray
    basket: sp.csr_matrix | None = None
    exclude: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, np.int64).reshape(-1)
        for name in ("basket", "exclude"):
            mat = getattr(self, name)
            if mat is not None:
                mat = sp.csr_matrix(mat)
                if mat.shape[0] != len(self.rows):
                    raise ValueError(f"{name} has {mat.shape[0]} rows for {len(self.rows)} users")
                setattr(self, name, mat)

    def __len__(self) -> int:
        return len(self.rows)

    def slice(self, start: int, stop: int) -> Request:
        """Rows ``start:stop`` (CSR row slices are views of the same arrays, cheap)."""
        return Request(
            self.rows[start:stop],
            None if self.basket is None else self.basket[start:stop],
            None if self.exclude is None else self.exclude[start:stop],
        )

    @classmethod
    def for_user(cls, row: int, n_items: int, *, basket: Iterable[int] = (), exclude: Iterable[int] = ()) -> Request:
        """A one-row request (an HTTP handler's call): item indices as plain iterables."""
        basket, exclude = list(basket), list(exclude)
        return cls(
            np.array([row], np.int64),
            _csr_rows(1, n_items, [basket]) if basket else None,
            _csr_rows(1, n_items, [exclude]) if exclude else None,
        )

    @classmethod
    def for_visitors(cls, baskets: Sequence[Iterable[int]], n_items: int) -> Request:
        """Visitors known only by item lists: each basket is scored from and excluded."""
        mat = _csr_rows(len(baskets), n_items, baskets)
        return cls(np.full(len(baskets), -1, np.int64), mat, mat)


class _ModelSource:
    """One model of the chain, bound to one request (see :class:`~recctl.lists.fill.CandidateSource`)."""

    def __init__(self, builder: ListBuilder, name: str, model: Any, request: Request, *, main: bool) -> None:
        self.name = name
        self.model = model
        self.builder = builder
        self.request = request
        self.min_score = builder.min_score if main else None

    def _masked_top(self, scores: np.ndarray, positions: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(scores)
        if scores.dtype != np.float32:
            scores = scores.astype(np.float32)
        elif not scores.flags.writeable:
            scores = scores.copy()
        exclude = self.request.exclude
        mask_scores(
            scores,
            None if exclude is None else exclude[positions],
            None,
            excluded_cols=self.builder.excluded_cols,
        )
        items, top = select_top_k(scores, m)
        if self.min_score is not None:
            weak = top <= self.min_score
            items[weak], top[weak] = -1, -np.inf
        return items, top

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        items = np.full((len(rows), m), -1, np.int64)
        scores = np.full((len(rows), m), -np.inf, np.float32)
        model_rows = self.request.rows[rows]
        known = np.flatnonzero(model_rows >= 0)
        if len(known):
            items[known], scores[known] = self._masked_top(self.model.score(model_rows[known]), rows[known], m)
        unknown = np.flatnonzero(model_rows < 0)
        if not len(unknown) or not self.model.supports_item_history:
            return items, scores
        basket = self.request.basket
        sizes = np.zeros(len(unknown), np.int64) if basket is None else np.diff(basket.indptr)[rows[unknown]]
        with_items = unknown[sizes > 0]
        if len(with_items) and basket is not None:
            block = np.empty((len(with_items), self.builder.n_items), np.float32)
            for j, pos in enumerate(rows[with_items]):
                start, stop = basket.indptr[pos], basket.indptr[pos + 1]
                block[j] = self.model.score_from_items(basket.indices[start:stop], basket.data[start:stop])
            items[with_items], scores[with_items] = self._masked_top(block, rows[with_items], m)
        cold = unknown[sizes == 0]
        if len(cold) and self.model.supports_cold_users:
            vector = self.builder.cold_scores(self.name)
            exclude = self.request.exclude
            has_ex = np.zeros(len(cold), bool) if exclude is None else np.diff(exclude.indptr)[rows[cold]] > 0
            plain = cold[~has_ex]
            if len(plain):  # the same list for all of them: select once
                it, sc = self._masked_top(vector[None, :].copy(), rows[plain[:1]], m)
                items[plain], scores[plain] = it, sc
            own = cold[has_ex]
            if len(own):
                block = np.broadcast_to(vector, (len(own), len(vector))).copy()
                items[own], scores[own] = self._masked_top(block, rows[own], m)
        return items, scores


class _SimilarSource:
    """A model's item similarity as a source: row ``i`` of the request is reference item ``ref[i]``."""

    def __init__(
        self, builder: ListBuilder, name: str, model: Any, ref: np.ndarray, min_score: float | None = None
    ) -> None:
        self.name = name
        self.model = model
        self.builder = builder
        self.ref = ref
        self.min_score = min_score

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        top = self.model.similar_items(self.ref[rows], m, item_mask=self.builder.item_mask)
        items, scores = top.items, top.scores
        if self.min_score is not None:
            items, scores = items.copy(), scores.copy()
            weak = scores <= self.min_score
            items[weak], scores[weak] = -1, -np.inf
        return items, scores


class _ColdSource:
    """A model's no-history scores (its most popular allowed items), the same for every row."""

    def __init__(self, builder: ListBuilder, name: str) -> None:
        self.name = name
        self.builder = builder

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        vector = self.builder.cold_scores(self.name)[None, :].copy()
        mask_scores(vector, None, None, excluded_cols=self.builder.excluded_cols)
        items, scores = select_top_k(vector, m)
        return np.repeat(items, len(rows), axis=0), np.repeat(scores, len(rows), axis=0)


class ListBuilder:
    """Turns a model chain, the rules and each user's history into lists of exactly K items.

    Parameters
    ----------
    chain
        ``(name, model)`` pairs: the main model first, then the fallbacks, in order. All are
        fitted on the same id maps (row ``u`` is the same user in each).
    rules
        Item rules resolved against the catalogue (:func:`recctl.rules.build_item_rules`).
    k
        List length.
    min_score
        The main model's items scoring at or below this are dropped ("no evidence").
    candidates
        ``recommend.rules.candidates``: candidates asked of each source per row when list
        rules (caps, MMR) may drop some (default ``3 k + 20``); without list rules, ``k``.

    Notes
    -----
    A builder is safe to share between threads (``iter_build`` does) and to pickle (a Spark
    task receives one): it holds the models, the rules and a cache of cold-user scores only.
    """

    def __init__(
        self,
        chain: Sequence[tuple[str, Any]],
        rules: ItemRules,
        k: int,
        *,
        min_score: float | None = None,
        candidates: int | None = None,
    ) -> None:
        if not chain:
            raise ValueError("a list builder needs at least one model")
        self.chain = [(str(name), model) for name, model in chain]
        self.rules = rules
        self.k = int(k)
        self.min_score = min_score
        self.n_items = int(self.chain[0][1].n_items)
        self.candidates = candidates
        self.item_mask = None if rules.item_mask is None else np.asarray(rules.item_mask, bool)
        self.excluded_cols = None if self.item_mask is None else np.flatnonzero(~self.item_mask)
        self._cold: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """Source names of the chain, in order (the ``source`` values lists can carry)."""
        return [name for name, _ in self.chain]

    @property
    def main(self) -> str:
        """Name of the main model."""
        return self.chain[0][0]

    def cold_scores(self, name: str) -> np.ndarray:
        """Model ``name``'s scores for a user without history (computed once, cached)."""
        with self._lock:
            if name not in self._cold:
                model = dict(self.chain)[name]
                vector = np.asarray(model.score_from_items(np.empty(0, np.int64)), np.float32).reshape(-1)
                vector.setflags(write=False)
                self._cold[name] = vector
            return self._cold[name]

    def n_candidates(self, k: int) -> int:
        """Candidates asked of a source per row for lists of ``k`` (as :func:`recctl.rules.candidate_count`)."""
        if not self.rules.reranks:
            return k
        return int(min(max(self.candidates or 3 * k + 20, k), self.n_items))

    def can_serve_without_history(self) -> bool:
        """Whether some model of the chain serves a user with no history at all."""
        return any(m.supports_cold_users and m.supports_item_history for _, m in self.chain)

    # -- lists for users -------------------------------------------------------------------
    def build(self, request: Request, k: int | None = None) -> Lists:
        """Lists for every row of ``request`` (one block; see :meth:`iter_build` for many users).

        Parameters
        ----------
        request
            Rows, baskets and exclusions.
        k
            List length (default: the builder's).

        Returns
        -------
        Lists
            ``sources`` index :attr:`names`.
        """
        k = self.k if k is None else int(k)
        main = self.main
        sources = [_ModelSource(self, name, model, request, main=name == main) for name, model in self.chain]
        return fill_lists(
            len(request),
            k,
            sources,
            self.rules,
            exclude=request.exclude,
            n_candidates=self.n_candidates(k),
            n_items=self.n_items,
        )

    def iter_build(
        self,
        request: Request,
        *,
        batch_size: int = 4096,
        n_jobs: int = 1,
        max_block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> Iterator[tuple[int, Lists]]:
        """Build lists block by block on a thread pool; yields ``(start_row, Lists)`` in order.

        Blocks hold at most ``batch_size`` rows and one float32 score block of at most
        ``max_block_bytes``; at most two blocks per worker are in flight, so memory stays
        bounded whatever the number of users. BLAS runs single-threaded inside the pool (the
        workers already use the cores).
        """
        rows = block_rows_for(self.n_items, batch_size, max_block_bytes)
        yield from iter_blocks(lambda a, b: self.build(request.slice(a, b)), len(request), rows, n_jobs)

    def for_items(self, item_idx: Iterable[int], k: int | None = None) -> Lists:
        """One list for an anonymous visitor known by some items (basket, session).

        The same path as a user the models do not know, with the basket as history; the
        basket's items are never returned.
        """
        return self.build(Request.for_visitors([list(item_idx)], self.n_items), k)

    # -- lists for items ---------------------------------------------------------------------
    def similar(
        self, item_idx: np.ndarray, k: int | None = None, *, fill: bool = False, min_score: float | None = None
    ) -> Lists:
        """Similar items for each reference item, from the chain's models with item similarity.

        The first model with ``supports_similar_items`` answers and later ones fill in; the
        reference item is never returned; item rules are masked before selection and list rules
        apply as for users.

        Parameters
        ----------
        item_idx
            Reference items.
        k
            List length (default: the builder's).
        fill
            Also let the chain's models that serve users without history (popularity) fill
            the slots similarity leaves open, with their most popular allowed items (the
            related-products file; ``--similar-to`` answers with similarity only).
        min_score
            Similarities of the *first* model at or below this are dropped (``0``: no evidence).

        Raises
        ------
        ValueError
            When no model of the chain has item similarity.
        """
        ref = np.asarray(item_idx, np.int64).reshape(-1)
        capable = [(name, m) for name, m in self.chain if m.supports_similar_items]
        if not capable:
            raise ValueError(f"none of the models {self.names} has item similarity")
        k = self.k if k is None else int(k)
        own = sp.csr_matrix((np.ones(len(ref), np.float32), (np.arange(len(ref)), ref)), shape=(len(ref), self.n_items))
        sources: list[Any] = []
        for name, model in self.chain:
            if model.supports_similar_items:
                first = not sources
                sources.append(_SimilarSource(self, name, model, ref, min_score if first else None))
            elif fill and model.supports_cold_users and model.supports_item_history:
                sources.append(_ColdSource(self, name))
        return fill_lists(
            len(ref),
            k,
            sources,
            self.rules,
            exclude=own,
            n_candidates=self.n_candidates(k),
            n_items=self.n_items,
        )

    def iter_similar(
        self,
        item_idx: np.ndarray,
        k: int | None = None,
        *,
        block: int = 1024,
        fill: bool = False,
        min_score: float | None = None,
    ) -> Iterator[tuple[int, Lists]]:
        """:meth:`similar` for many reference items, ``block`` at a time (bounded memory)."""
        ref = np.asarray(item_idx, np.int64).reshape(-1)
        for start in range(0, len(ref), block):
            yield start, self.similar(ref[start : start + block], k, fill=fill, min_score=min_score)


def iter_blocks(build: Callable[[int, int], T], n: int, rows: int, n_jobs: int = 1) -> Iterator[tuple[int, T]]:
    """Run ``build(start, stop)`` over consecutive blocks of ``rows`` rows on a thread pool.

    Yields ``(start, result)`` in block order. At most two blocks per worker are in flight, so
    memory stays bounded whatever ``n``; while the pool runs BLAS is single-threaded (the
    workers already use the cores). ``n_jobs`` ``-1`` means all cores.
    """
    starts = list(range(0, n, max(1, rows)))
    workers = min(resolve_n_jobs(n_jobs), max(1, len(starts)))
    if workers == 1:
        for start in starts:
            yield start, build(start, min(start + rows, n))
        return
    with _single_threaded_blas(), ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        it = iter(starts)
        for start in it:
            pending.append((start, pool.submit(build, start, min(start + rows, n))))
            if len(pending) >= 2 * workers:
                break
        try:
            while pending:
                start, future = pending.popleft()
                result = future.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(build, nxt, min(nxt + rows, n))))
                yield start, result
        finally:
            for _, future in pending:  # the consumer stopped early or failed: drop queued work
                future.cancel()


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    # N workers each calling an N-threaded BLAS would run N*N threads on N cores
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
