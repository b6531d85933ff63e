"""The fill step of the one list builder: chain order, rules on every member, exactly K or all eligible."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.columns import Columns
from recctl.errors import ConfigError
from recctl.lists import Lists, eligible_capacity, fill_lists
from recctl.lists.audience import build_audience
from recctl.lists.fill import row_members
from recctl.rules import ItemRules


class Fixed:
    """A source offering the same ranked candidates to every row (scores descending)."""

    def __init__(self, name: str, items: list[int]) -> None:
        self.name = name
        self.items = np.array(items, np.int64)

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        items = np.full((len(rows), m), -1, np.int64)
        scores = np.full((len(rows), m), -np.inf, np.float32)
        n = min(m, len(self.items))
        items[:, :n] = self.items[:n]
        scores[:, :n] = np.linspace(1.0, 0.1, len(self.items), dtype=np.float32)[:n]
        return items, scores


def excl(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    data = [(r, i) for r, items in enumerate(rows) for i in items]
    return sp.csr_matrix(
        (np.ones(len(data), np.float32), ([r for r, _ in data], [i for _, i in data])), shape=(len(rows), n_items)
    )


def test_chain_order_exclusions_and_sources() -> None:
    out = fill_lists(
        2,
        4,
        [Fixed("main", [0, 1, 2]), Fixed("pop", [1, 5, 6, 7])],
        ItemRules(),
        exclude=excl([[1], []], 8),
        n_candidates=4,
        n_items=8,
    )
    assert out.items.tolist() == [[0, 2, 5, 6], [0, 1, 2, 5]]  # row 0 never gets item 1
    assert out.sources.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    assert out.source_names == ["main", "pop"]


def test_the_cap_counts_fallback_members_too() -> None:
    rules = ItemRules(cap_codes=np.array([0, 0, 0, 1, 1, 2, 2, 2]), cap=2)
    out = fill_lists(
        1, 5, [Fixed("main", [0, 1]), Fixed("pop", [2, 3, 4, 5, 6, 7])], rules, exclude=None, n_candidates=6, n_items=8
    )
    # item 2 would be a third of category 0, item 7 a third of category 2
    assert out.items.tolist() == [[0, 1, 3, 4, 5]]
    assert out.sources.tolist() == [[0, 0, 1, 1, 1]]


def test_mmr_reranks_fallback_members_against_the_whole_list() -> None:
    rules = ItemRules(mmr_lambda=0.9, mmr_codes=np.array([0, 0, 1, 1, 2]))
    out = fill_lists(
        1, 3, [Fixed("main", [0]), Fixed("pop", [1, 2, 3, 4])], rules, exclude=None, n_candidates=4, n_items=5
    )
    # the fallback's best item (1) shares item 0's category: a different one comes first
    assert out.items.tolist()[0][:2] == [0, 2]
    plain = fill_lists(
        1, 3, [Fixed("main", [0]), Fixed("pop", [1, 2, 3, 4])], ItemRules(), exclude=None, n_candidates=4, n_items=5
    )
    assert plain.items.tolist() == [[0, 1, 2]]


def test_a_second_pass_reaches_every_eligible_item() -> None:
    # the first pass sees only 3 candidates; the history excludes them all
    rules = ItemRules(item_mask=np.array([True] * 9 + [False]))
    out = fill_lists(
        1, 3, [Fixed("pop", list(range(10)))], rules, exclude=excl([[0, 1, 2]], 10), n_candidates=3, n_items=10
    )
    assert out.items.tolist() == [[3, 4, 5]]
    # a crawler: only item 8 left (9 is masked)
    out = fill_lists(
        1, 3, [Fixed("pop", list(range(10)))], rules, exclude=excl([list(range(8))], 10), n_candidates=3, n_items=10
    )
    assert out.items.tolist() == [[8, -1, -1]] and out.lengths.tolist() == [1]
    assert eligible_capacity(rules, excl([list(range(8))], 10), 1, 10).tolist() == [1]


def test_prefilled_lists_are_continued() -> None:
    start = Lists(np.array([[4, 2]]), np.array([[9.0, 8.0]], np.float32), np.array([[0, 1]], np.int8), ["a", "b"])
    out = fill_lists(
        1, 4, [Fixed("pop", [4, 0, 1])], ItemRules(), exclude=None, n_candidates=4, n_items=6, prefill=start
    )
    assert out.items.tolist() == [[4, 2, 0, 1]] and out.source_names == ["a", "b", "pop"]
    assert out.sources.tolist() == [[0, 1, 2, 2]]


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(3, 30),
    k=st.integers(1, 8),
    cap=st.one_of(st.none(), st.integers(1, 3)),
    seed=st.integers(0, 10_000),
)
def test_lists_are_exactly_k_or_every_eligible_item(n_items: int, k: int, cap: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, n_items)
    mask = rng.random(n_items) < 0.8
    rules = ItemRules(item_mask=mask, cap_codes=codes if cap else None, cap=cap)
    history = [rng.choice(n_items, size=int(rng.integers(0, n_items)), replace=False).tolist() for _ in range(5)]
    exclude = excl(history, n_items)
    chain = [
        Fixed("a", rng.permutation(n_items)[: n_items // 2].tolist()),
        Fixed("b", rng.permutation(n_items).tolist()),
    ]
    out = fill_lists(5, k, chain, rules, exclude=exclude, n_candidates=k, n_items=n_items)
    capacity = eligible_capacity(rules, exclude, 5, n_items)
    assert out.lengths.tolist() == np.minimum(capacity, k).tolist()
    for row in range(5):
        got = out.items[row][out.items[row] >= 0]
        assert len(set(got.tolist())) == len(got)  # no repeat
        assert mask[got].all() and not set(got.tolist()) & set(history[row])
        if cap:
            assert np.bincount(codes[got], minlength=4).max(initial=0) <= cap
        assert (out.items[row][: len(got)] >= 0).all()  # compact, padding at the end
    assert not row_members(exclude, np.arange(5), out.items).any()


def _events() -> pl.DataFrame:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return pl.DataFrame(
        {
            Columns.User: ["u1", "u1", "u2", "u3", "u3"],
            Columns.Item: ["a", "b", "a", "c", "ghost"],
            Columns.Event: ["view", "purchase", "purchase", "view", "view"],
            Columns.Timestamp: [t] * 5,
        }
    )


def test_the_audience_is_every_customer_with_their_full_history() -> None:
    users = pl.DataFrame({Columns.User: ["u1", "u2"], Columns.UserIdx: [1, 0]})
    items = pl.DataFrame({Columns.Item: ["a", "b", "c"], Columns.ItemIdx: [0, 1, 2]})
    aud = build_audience(_events(), users, items, customers=pl.Series(["u9", "u1"]))
    assert aud.user_ids.to_list() == ["u1", "u2", "u3", "u9"]
    assert aud.rows.tolist() == [1, 0, -1, -1]
    assert aud.origin_counts() == {"model": 2, "fallback": 1, "customer_file": 1}
    assert aud.history.toarray().tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]  # ghost: not sold
    assert aud.exclude is aud.history
    bought = build_audience(_events(), users, items, exclude_events=["purchase"])
    assert bought.exclude.toarray().tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert build_audience(_events(), users, items, exclude_seen=False).exclude is None
    with pytest.raises(ConfigError, match=r"event\(s\) \['refund'\] never occur.*purchase, view"):
        build_audience(_events(), users, items, exclude_events=["refund"])
    picked = aud.select(["u3", "new", "u1"])
    assert picked.user_ids.to_list() == ["u3", "new", "u1"] and picked.rows.tolist() == [-1, -1, 1]
    assert picked.history.toarray().tolist() == [[0, 0, 1], [0, 0, 0], [1, 1, 0]]
