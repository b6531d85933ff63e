"""Filling K slots from an ordered chain of candidate sources: the one place lists are assembled.

Every list recctl hands out (the nightly file, ``recommend --users``, an anonymous basket,
``--similar-to``, the related-products file and the serving bundle's answers) is built here:

1. the first source of the chain (the main model) offers its best candidates for the rows
   still short, then the next source (a fallback) for the rows still short, and so on;
2. every offered candidate passes the same checks, whichever source offered it: a real item
   (``>= 0``, finite score), allowed by the item rules (``item_mask``), not excluded for that
   row (``exclude``: the user's history under the rules), not already in the list;
3. **list rules apply to every member, whatever its source**: MMR diversity re-ranks each
   source's surviving candidates against everything already in the list, and a category cap
   counts every item of the list; so a fallback never breaks a cap and a list is diverse
   across the whole of it, not only within the main model's part;
4. items keep the order of the chain: a source's items rank after the previous source's;
5. when the chain's candidates run out before K (caps, long histories), the chain is asked a
   second time for *every* eligible item, so a list is shorter than K only when fewer than K
   items are eligible for it (:func:`eligible_capacity` says how many are). That second pass
   is rare (a crawler's list, a tight cap) and keeps each source's order without MMR, whose
   pairwise similarities cannot be formed over a whole catalogue.

The functions here are pure numpy over *positions* of a block (row ``i`` of the block is one
user, visitor or reference item); sources map positions to whatever they score. Nothing here
loops over users in Python: the only loops run over candidate columns (at most the candidate
count) and sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.rules import ItemRules

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CandidateSource",
    "Lists",
    "eligible_capacity",
    "fill_lists",
    "row_members",
    "to_arrow",
]


@dataclass
class Lists:
    """Finished lists for a block of rows.

    Attributes
    ----------
    items
        int64 ``(n, k)`` item indices, best first, ``-1`` padded (only when fewer than K items
        are eligible for the row).
    scores
        float32 ``(n, k)``: each item's score in its source model (``-inf`` on padding).
        Scores of different sources are not comparable: order by rank.
    sources
        int8 ``(n, k)`` codes into ``source_names`` (``-1`` on padding).
    source_names
        Name of each source of the chain, in chain order.
    """

    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    source_names: list[str]

    def __len__(self) -> int:
        return int(self.items.shape[0])

    @property
    def k(self) -> int:
        """List length asked for."""
        return int(self.items.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """Number of items in each row's list."""
        return (self.items >= 0).sum(axis=1)

    def take(self, rows: np.ndarray) -> Lists:
        """The lists of some rows, in the given order."""
        return Lists(self.items[rows], self.scores[rows], self.sources[rows], self.source_names)

    @staticmethod
    def empty(n: int, k: int, source_names: list[str]) -> Lists:
        """``n`` empty lists of length ``k``."""
        return Lists(
            np.full((n, k), -1, np.int64),
            np.full((n, k), -np.inf, np.float32),
            np.full((n, k), -1, np.int8),
            list(source_names),
        )


class CandidateSource(Protocol):
    """One link of a chain: offers candidates for some rows of a block.

    ``name`` is what the ``source`` column says. ``candidates(rows, m)`` returns ``(items,
    scores)``, both ``(len(rows), m)`` (or wider), best first, ``-1`` / ``-inf`` padded. A
    source may leave item rules and exclusions to :func:`fill_lists` (which checks every
    candidate) or apply them itself before selecting (cheaper: it never wastes a slot of its
    ``m``).
    """

    name: str

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``m`` candidates for each of the block rows ``rows``."""
        ...


def row_members(matrix: sp.csr_matrix | None, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether ``items[i, j]`` is a stored entry of ``matrix`` row ``rows[i]`` (vectorised).

    Parameters
    ----------
    matrix
        CSR ``(n_rows, n_items)`` or ``None`` (nothing is a member).
    rows
        ``(r,)`` row numbers into ``matrix``.
    items
        ``(r, m)`` item indices (negative entries are never members).

    Returns
    -------
    numpy.ndarray
        Boolean ``(r, m)``.
    """
    out = np.zeros(items.shape, dtype=bool)
    if matrix is None or not len(rows) or matrix.nnz == 0:
        return out
    n_items = np.int64(matrix.shape[1])
    indptr = matrix.indptr
    starts, stops = indptr[rows].astype(np.int64), indptr[np.asarray(rows) + 1].astype(np.int64)
    counts = stops - starts
    if not counts.sum():
        return out
    # keys row_position * n_items + item of the members, gathered without a fancy-indexed copy
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    member_cols = matrix.indices[np.arange(int(counts.sum())) + offsets].astype(np.int64)
    member_keys = np.repeat(np.arange(len(rows), dtype=np.int64), counts) * n_items + member_cols
    valid = items >= 0
    keys = np.arange(len(rows), dtype=np.int64)[:, None] * n_items + np.where(valid, items, 0)
    out = np.isin(keys, member_keys) & valid
    return out


def _present(list_items: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``cand[i, j]`` already among ``list_items[i]`` (both small: K and the candidate count)."""
    if list_items.shape[1] <= 32 and cand.shape[1] <= 4096:
        return (cand[:, :, None] == list_items[:, None, :]).any(axis=2) & (cand >= 0)
    width = np.int64(max(int(cand.max(initial=0)), int(list_items.max(initial=0))) + 1)
    rows = np.arange(len(cand), dtype=np.int64)[:, None]
    have = (rows * width + list_items)[list_items >= 0]
    return np.isin(rows * width + np.where(cand >= 0, cand, 0), have) & (cand >= 0)


def _first_in_row(cand: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Drop later repeats of an item within a row (a source should not repeat; be safe)."""
    if cand.shape[1] < 2:
        return valid
    order = np.argsort(np.where(valid, cand, -1), axis=1, kind="stable")
    sorted_c = np.take_along_axis(np.where(valid, cand, -1), order, axis=1)
    dup_sorted = np.zeros_like(valid)
    dup_sorted[:, 1:] = (sorted_c[:, 1:] == sorted_c[:, :-1]) & (sorted_c[:, 1:] >= 0)
    dup = np.zeros_like(valid)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return valid & ~dup


def _similarity(rules: ItemRules, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MMR similarity of items ``a`` ``(r, p)`` to items ``b`` ``(r, q)`` per row -> ``(r, p, q)``."""
    if rules.mmr_vectors is not None:
        return np.einsum("npd,nqd->npq", rules.mmr_vectors[a], rules.mmr_vectors[b])
    codes = rules.mmr_codes
    assert codes is not None  # build_item_rules sets vectors or codes whenever mmr_lambda > 0
    return (codes[a][:, :, None] == codes[b][:, None, :]).astype(np.float32)


def _mmr_order(
    cand: np.ndarray, scores: np.ndarray, valid: np.ndarray, chosen: np.ndarray, rules: ItemRules
) -> tuple[np.ndarray, np.ndarray]:
    """Re-order each row's valid candidates by maximal marginal relevance.

    ``argmax (1 - lambda) * rel - lambda * max_sim(already chosen)``, greedily, where ``rel`` is
    the score min-max scaled over the row's valid candidates (so lambda means the same for any
    model's scale) and "already chosen" starts with the items the list holds from earlier
    sources. Returns ``(items, scores)`` with the invalid candidates dropped (``-1`` padded).
    """
    r, m = cand.shape
    safe = np.where(valid, cand, 0)
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.where(valid, scores, np.inf).min(axis=1, keepdims=True)
        hi = np.where(valid, scores, -np.inf).max(axis=1, keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        rel = np.where(valid, (scores - np.where(np.isfinite(lo), lo, 0.0)) / span, -np.inf).astype(np.float32)
    lam = np.float32(rules.mmr_lambda)
    max_sim = np.zeros((r, m), np.float32)
    if (chosen >= 0).any():
        sim = _similarity(rules, safe, np.where(chosen >= 0, chosen, 0))
        sim = np.where((chosen >= 0)[:, None, :], sim, 0.0)
        max_sim = np.maximum(max_sim, sim.max(axis=2))
    pair = _similarity(rules, safe, safe)  # (r, m, m)
    out_items = np.full((r, m), -1, np.int64)
    out_scores = np.full((r, m), -np.inf, np.float32)
    taken = ~valid
    rows = np.arange(r)
    for step in range(int(valid.sum(axis=1).max(initial=0))):
        obj = np.where(taken, -np.inf, (1 - lam) * rel - lam * max_sim)
        pick = obj.argmax(axis=1)
        ok = ~taken[rows, pick]
        out_items[rows[ok], step] = cand[rows[ok], pick[ok]]
        out_scores[rows[ok], step] = scores[rows[ok], pick[ok]]
        taken[rows, pick] = True
        max_sim = np.maximum(max_sim, pair[rows, pick, :])
    return out_items, out_scores


class _Fill:
    """The lists of one block while they are filled (internal to :func:`fill_lists`)."""

    def __init__(
        self,
        n: int,
        k: int,
        rules: ItemRules,
        exclude: sp.csr_matrix | None,
        names: list[str],
        prefill: Lists | None = None,
    ) -> None:
        self.lists = Lists.empty(n, k, names)
        if prefill is not None:
            width = min(k, prefill.k)
            self.lists.items[:, :width] = prefill.items[:, :width]
            self.lists.scores[:, :width] = prefill.scores[:, :width]
            self.lists.sources[:, :width] = prefill.sources[:, :width]
        self.count = (self.lists.items >= 0).sum(axis=1).astype(np.int64)
        self.k = k
        self.rules = rules
        self.exclude = exclude

    def short_rows(self) -> np.ndarray:
        return np.flatnonzero(self.count < self.k)

    def offer(
        self, rows: np.ndarray, cand: np.ndarray, scores: np.ndarray, code: int, *, diversify: bool = True
    ) -> None:
        if not len(rows) or not cand.size:
            return
        cand = np.asarray(cand, np.int64)
        scores = np.asarray(scores, np.float32)
        rules = self.rules
        valid = (cand >= 0) & np.isfinite(scores)
        safe = np.where(valid, cand, 0)
        if rules.item_mask is not None:
            valid &= rules.item_mask[safe]
        valid &= ~row_members(self.exclude, rows, cand)
        current = self.lists.items[rows]
        valid &= ~_present(current, cand)
        valid = _first_in_row(cand, valid)
        if diversify and rules.mmr_lambda > 0 and valid.any():
            cand, scores = _mmr_order(cand, scores, valid, current, rules)
            valid = cand >= 0
        if rules.cap is not None:
            self._place_capped(rows, cand, scores, valid, code)
        else:
            self._place(rows, cand, scores, valid, code)

    def _place(self, rows: np.ndarray, cand: np.ndarray, scores: np.ndarray, valid: np.ndarray, code: int) -> None:
        # the i-th valid candidate of a row goes to slot count + i, while slots remain
        need = self.k - self.count[rows]
        order = np.cumsum(valid, axis=1) - 1
        take = valid & (order < need[:, None])
        r_idx, c_idx = np.nonzero(take)
        dest = self.count[rows][r_idx] + order[r_idx, c_idx]
        target = rows[r_idx]
        self.lists.items[target, dest] = cand[r_idx, c_idx]
        self.lists.scores[target, dest] = scores[r_idx, c_idx]
        self.lists.sources[target, dest] = code
        self.count[rows] += take.sum(axis=1)

    def _place_capped(
        self, rows: np.ndarray, cand: np.ndarray, scores: np.ndarray, valid: np.ndarray, code: int
    ) -> None:
        # column by column (vectorised over rows): an item enters while its category count
        # in the *whole* list stays within the cap
        codes = self.rules.cap_codes
        cap = self.rules.cap
        assert codes is not None and cap is not None  # only called with a cap
        lists = self.lists
        for j in range(cand.shape[1]):
            open_rows = self.count[rows] < self.k
            if not open_rows.any():
                break
            ok = valid[:, j] & open_rows
            if not ok.any():
                continue
            sub = rows[ok]
            items_j = cand[ok, j]
            cat = codes[items_j]
            have = lists.items[sub]
            in_cat = ((np.where(have >= 0, codes[np.where(have >= 0, have, 0)], -1)) == cat[:, None]).sum(axis=1)
            fits = in_cat < cap
            sub, items_j = sub[fits], items_j[fits]
            slot = self.count[sub]
            lists.items[sub, slot] = items_j
            lists.scores[sub, slot] = scores[ok, j][fits]
            lists.sources[sub, slot] = code
            self.count[sub] += 1


def fill_lists(
    n: int,
    k: int,
    sources: Sequence[CandidateSource],
    rules: ItemRules,
    *,
    exclude: sp.csr_matrix | None,
    n_candidates: int,
    n_items: int,
    prefill: Lists | None = None,
) -> Lists:
    """Fill ``n`` lists of ``k`` items from ``sources``, in chain order (see the module docstring).

    Parameters
    ----------
    n, k
        Number of rows in the block and list length.
    sources
        The chain, first (main) source first.
    rules
        Item mask, category cap and MMR settings.
    exclude
        CSR ``(n, n_items)``: items each row must never get (its history under the rules).
    n_candidates
        Candidates asked of a source per row in the first pass (``rules.candidates``,
        more than ``k`` when caps or MMR drop some).
    n_items
        Catalogue size: the second pass asks for every item.
    prefill
        Lists to continue rather than start empty (the serving bundle continues a user's
        nightly list): compacted to the front, ``-1`` padded, already obeying the rules. Their
        ``source_names`` come first in the result's, the chain's after them.

    Returns
    -------
    Lists
    """
    names = [*(prefill.source_names if prefill is not None else []), *[s.name for s in sources]]
    if len(names) > 127:
        raise ValueError("at most 127 sources fit the int8 source codes")
    fill = _Fill(n, k, rules, exclude, names, prefill)
    base = 0 if prefill is None else len(prefill.source_names)
    m = int(min(max(n_candidates, k), n_items))
    passes = [m] if m >= n_items else [m, n_items]
    for width in passes:
        for code, source in enumerate(sources):
            short = fill.short_rows()
            if not len(short):
                return fill.lists
            if width == n_items:
                # every eligible item, for the few rows the first pass could not fill; in chunks
                # so a block of such rows never holds more than ~4M candidates
                step = max(1, (1 << 22) // max(1, n_items))
                for start in range(0, len(short), step):
                    part = short[start : start + step]
                    items, scores = source.candidates(part, width)
                    # MMR compares candidates pairwise: not over the whole catalogue; these
                    # leftover slots keep the source's order (caps still hold)
                    fill.offer(part, items, scores, base + code, diversify=False)
            else:
                items, scores = source.candidates(short, width)
                fill.offer(short, items, scores, base + code)
    return fill.lists


def eligible_capacity(rules: ItemRules, exclude_rows: sp.csr_matrix | None, n_rows: int, n_items: int) -> np.ndarray:
    """How many items a list can hold at most, per row: eligible items, within the category cap.

    ``eligible = item_mask minus the row's exclusions``; with a category cap, at most ``cap``
    of each category count. A list shorter than K is correct exactly when it holds this many.

    Parameters
    ----------
    rules
        Item mask and cap.
    exclude_rows
        CSR ``(n_rows, n_items)`` of excluded items per row, or ``None``.
    n_rows, n_items
        Shape.

    Returns
    -------
    numpy.ndarray
        int64 ``(n_rows,)``.
    """
    mask = np.ones(n_items, bool) if rules.item_mask is None else np.asarray(rules.item_mask, bool)
    if exclude_rows is None:
        ex = sp.csr_matrix((n_rows, n_items), dtype=np.float32)
    else:
        ex = sp.csr_matrix(exclude_rows, dtype=np.float32, copy=True)
        ex.data[:] = 1.0
        ex.sum_duplicates()
        ex.data[:] = 1.0
    if rules.cap is None:
        excluded = np.asarray(ex @ mask.astype(np.float32)).ravel()
        return (int(mask.sum()) - np.rint(excluded)).astype(np.int64)
    codes = np.asarray(rules.cap_codes, np.int64)
    n_codes = int(codes.max(initial=-1)) + 1
    onehot = sp.csr_matrix(
        (mask.astype(np.float32), (np.arange(n_items), codes)), shape=(n_items, max(n_codes, 1)), dtype=np.float32
    )
    per_cat = np.asarray(onehot.sum(axis=0)).ravel()
    excluded = np.rint((ex @ onehot).toarray()).astype(np.int64)
    left = per_cat.astype(np.int64)[None, :] - excluded
    return np.minimum(left, int(rules.cap)).clip(min=0).sum(axis=1).astype(np.int64)


def numpy_arrow(values: np.ndarray) -> Any:
    """A numeric numpy array as an Arrow array over the same memory (no copy).

    ``pyarrow.array`` on a numpy array (or a list) imports pandas the first time (about a
    second of CPU in a CLI process that never needs it); building from the buffer does not.
    Bool arrays are not supported (Arrow packs them to bits).
    """
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        raise TypeError("numpy_arrow: bool arrays are bit-packed in Arrow; convert them with pyarrow.array")
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def string_arrow(values: list[str]) -> Any:
    """Python strings as an Arrow ``string`` array, through polars (see :func:`numpy_arrow` for why)."""
    import pyarrow as pa

    return pl.Series(values, dtype=pl.String).to_arrow().cast(pa.string())


def to_arrow(
    lists: Lists,
    user_ids: Any,
    item_ids: Any,
    *,
    per_row: dict[str, Any] | None = None,
) -> pa.Table:
    """Long rows ``user_id, rank, item_id, score, source`` (+ ``per_row`` columns), padding dropped.

    Parameters
    ----------
    lists
        A block of lists.
    user_ids
        Arrow (or polars) string array: the id of each row of the block.
    item_ids
        Arrow (or polars) string array of the catalogue (index -> id).
    per_row
        Extra columns with one value per block row (``model``, ``variant``), repeated on each
        of the row's items.

    Returns
    -------
    pyarrow.Table
        Ids are gathered with Arrow ``take``: they are never widened to fixed-width strings.
    """
    import pyarrow as pa

    def arrow(values: Any) -> pa.Array:
        if isinstance(values, pl.Series):
            return values.to_arrow()
        if isinstance(values, pa.ChunkedArray):
            return values.combine_chunks()
        return values if isinstance(values, pa.Array) else pa.array(values)

    rows, ranks = np.nonzero(lists.items >= 0)
    take_rows = numpy_arrow(rows.astype(np.int64))
    names = string_arrow(list(lists.source_names))
    columns = {
        "user_id": arrow(user_ids).take(take_rows),
        "rank": numpy_arrow((ranks + 1).astype(np.int32)),
        "item_id": arrow(item_ids).take(numpy_arrow(lists.items[rows, ranks].astype(np.int64))),
        "score": numpy_arrow(lists.scores[rows, ranks].astype(np.float32)),
        "source": names.take(numpy_arrow(lists.sources[rows, ranks].astype(np.int64))),
    }
    for name, values in (per_row or {}).items():
        columns[name] = arrow(values).take(take_rows)
    return pa.table(columns)
