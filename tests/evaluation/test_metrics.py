"""Metric values against hand-computed examples, edge cases, and a reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.evaluation import evaluate_rankings, popularity_bands, relevant_target
from recctl.evaluation.metrics import ACCURACY_METRICS, auc_from_scores

from . import reference

L2, L3, L4 = math.log2(2), math.log2(3), math.log2(4)


def _target(rows: list[dict[int, float]], n_items: int) -> sp.csr_matrix:
    data, r, c = [], [], []
    for u, rel in enumerate(rows):
        for i, w in rel.items():
            r.append(u)
            c.append(i)
            data.append(w)
    return sp.csr_matrix((data, (r, c)), shape=(len(rows), n_items))


# User A: relevant {1: 3, 3: 1, 5: 2}, list [1, 2, 3, 0] -> hits at ranks 1 and 3.
# User B: relevant {4: 1}, a short list [0, 4] (two real items, then padding).
# User C: no relevant item -> not evaluated.
ITEMS = np.array([[1, 2, 3, 0], [0, 4, -1, -1], [5, 1, 2, 3]])
TARGET = _target([{1: 3.0, 3: 1.0, 5: 2.0}, {4: 1.0}, {}], 6)


def _eval(ks, metrics, **kw):
    return evaluate_rankings(ITEMS, TARGET, ks, metrics, **kw)


def test_users_without_relevant_items_are_not_evaluated():
    res = _eval([4], ["precision"])
    assert res.n_users == 2
    assert res.n_skipped == 1
    assert res.per_user["user_idx"].to_list() == [0, 1]


def test_precision_divides_by_k_even_for_short_lists():
    res = _eval([1, 2, 4], ["precision"])
    a, b = res.per_user["precision@4"].to_list()
    assert a == pytest.approx(2 / 4)
    assert b == pytest.approx(1 / 4)  # one hit in a two-item list, still over K = 4
    assert res.per_user["precision@1"].to_list() == [1.0, 0.0]
    assert res.mean["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_recall_and_f1():
    res = _eval([2, 4], ["recall", "f1"])
    assert res.per_user["recall@4"].to_list() == pytest.approx([2 / 3, 1.0])
    assert res.per_user["recall@2"].to_list() == pytest.approx([1 / 3, 1.0])
    p, r = 2 / 4, 2 / 3
    assert res.per_user["f1@4"][0] == pytest.approx(2 * p * r / (p + r))  # = 4/7
    assert res.per_user["f1@4"][1] == pytest.approx(2 * 0.25 * 1 / 1.25)


def test_f1_is_zero_without_hits():
    items = np.array([[0, 1]])
    res = evaluate_rankings(items, _target([{2: 1.0}], 3), [2], ["f1"])
    assert res.per_user["f1@2"].to_list() == [0.0]


def test_map_normalised_by_min_relevant_and_k():
    res = _eval([2, 4], ["map"])
    # AP@4 of A = (1/1 + 2/3) / min(3, 4); AP@2 = (1/1) / min(3, 2)
    assert res.per_user["map@4"][0] == pytest.approx((1 + 2 / 3) / 3)
    assert res.per_user["map@2"][0] == pytest.approx(1 / 2)
    assert res.per_user["map@4"][1] == pytest.approx((1 / 2) / 1)


def test_map_of_perfect_list_is_one_when_more_relevant_than_k():
    res = evaluate_rankings(np.array([[0, 1]]), _target([{0: 1, 1: 1, 2: 1}], 3), [2], ["map", "ndcg"])
    assert res.mean["map@2"] == pytest.approx(1.0)
    assert res.mean["ndcg@2"] == pytest.approx(1.0)


def test_binary_ndcg():
    res = _eval([4], ["ndcg"])
    dcg = 1 / L2 + 1 / L4
    idcg = 1 / L2 + 1 / L3 + 1 / L4
    assert res.per_user["ndcg@4"][0] == pytest.approx(dcg / idcg)
    assert res.per_user["ndcg@4"][1] == pytest.approx((1 / L3) / 1.0)


def test_graded_ndcg_uses_test_weights_as_linear_gains():
    res = _eval([4], ["ndcg_graded"])
    dcg = 3 / L2 + 1 / L4
    idcg = 3 / L2 + 2 / L3 + 1 / L4
    assert res.per_user["ndcg_graded@4"][0] == pytest.approx(dcg / idcg)


def test_mrr_and_hit_rate():
    res = _eval([1, 4], ["mrr", "hit_rate"])
    assert res.per_user["mrr@4"].to_list() == pytest.approx([1.0, 0.5])
    assert res.per_user["mrr@1"].to_list() == pytest.approx([1.0, 0.0])
    assert res.per_user["hit_rate@1"].to_list() == [1.0, 0.0]
    assert res.per_user["hit_rate@4"].to_list() == [1.0, 1.0]


def test_user_coverage_counts_full_lists():
    res = _eval([2, 4], ["user_coverage"])
    assert res.per_user["user_coverage@2"].to_list() == [1.0, 1.0]
    assert res.per_user["user_coverage@4"].to_list() == [1.0, 0.0]
    assert res.mean["user_coverage@4"] == 0.5


def test_catalogue_coverage_is_one_aggregate_number():
    res = _eval([1, 4], ["coverage"])
    assert "coverage@4" not in res.per_user.columns
    assert res.mean["coverage@1"] == pytest.approx(2 / 6)  # items 1 and 0
    assert res.mean["coverage@4"] == pytest.approx(5 / 6)  # items 0..4 (user C is not evaluated)


def test_novelty_is_mean_self_information():
    counts = np.array([9, 4, 1, 0, 2, 3])
    res = _eval([2], ["novelty"], item_popularity=counts, n_popularity_users=9)
    a = (-math.log2(5 / 10) - math.log2(2 / 10)) / 2
    b = (-math.log2(10 / 10) - math.log2(3 / 10)) / 2
    assert res.per_user["novelty@2"].to_list() == pytest.approx([a, b])


def test_popularity_bias_is_share_of_head_items():
    head = np.array([True, True, False, False, False, False])
    res = _eval([4], ["popularity_bias"], item_popularity=np.ones(6), head_items=head)
    assert res.per_user["popularity_bias@4"].to_list() == pytest.approx([2 / 4, 1 / 2])


def test_diversity_is_mean_pairwise_cosine_distance():
    features = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0], [0, 1]], dtype=float))
    res = _eval([1, 2, 4], ["diversity"], item_features=features)
    # A: items 1,2,3,0 -> pairs (1,2)=1, (1,3)=1-1/sqrt2, (1,0)=0,
    #    (2,3)=1-1/sqrt2, (2,0)=1, (3,0)=1-1/sqrt2
    expected = (1 + 3 * (1 - 1 / math.sqrt(2)) + 0 + 1) / 6
    assert res.per_user["diversity@4"][0] == pytest.approx(expected)
    # B: items 0 and 4 (no features) -> distance 1
    assert res.per_user["diversity@4"][1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in res.per_user["diversity@1"].to_list())  # one item: undefined
    assert math.isnan(res.mean["diversity@1"])


def test_k_larger_than_list_width_pads():
    res = evaluate_rankings(np.array([[2]]), _target([{2: 1.0}], 3), [1, 3], ["precision", "ndcg"])
    assert res.mean["precision@3"] == pytest.approx(1 / 3)
    assert res.mean["ndcg@3"] == pytest.approx(1.0)


def test_zero_and_negative_weights_are_not_relevant():
    target = _target([{0: 0.0, 1: -1.0, 2: 2.0}], 3)
    res = evaluate_rankings(np.array([[0, 1, 2]]), target, [3], ["precision", "recall"])
    assert res.mean["recall@3"] == 1.0
    assert res.mean["precision@3"] == pytest.approx(1 / 3)


def test_excluded_items_are_removed_from_the_relevant_set():
    target = _target([{0: 1.0, 1: 1.0}], 3)
    seen = _target([{0: 1.0}], 3)
    clean = relevant_target(target, seen)
    assert clean.toarray().tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (np.array([[0, 0]]), "same item twice"),
        (np.array([[0, 9]]), "item indices"),
        (np.array([0, 1]), "2-d"),
    ],
)
def test_invalid_rankings_are_refused(items, message):
    with pytest.raises(ValueError, match=message):
        evaluate_rankings(items, _target([{0: 1.0}], 3), [2], ["precision"])


def test_unknown_metric_and_bad_k_are_refused():
    with pytest.raises(ValueError, match="unknown metric"):
        _eval([2], ["precsion"])
    with pytest.raises(ValueError, match="positive"):
        _eval([0], ["precision"])
    with pytest.raises(ValueError, match="item_popularity"):
        _eval([2], ["novelty"])
    with pytest.raises(ValueError, match="auc"):
        _eval([2], ["auc"])


def test_auc_hand_computed_with_ties_and_exclusion():
    # scores over 5 items; item 4 excluded (seen); positives {0, 2}; negatives {1, 3}
    scores = np.array([[0.9, 0.5, 0.5, 0.1, 5.0]])
    target = _target([{0: 1.0, 2: 1.0}], 5)
    seen = _target([{4: 1.0}], 5)
    auc = auc_from_scores(lambda u: scores[u], np.array([0]), relevant_target(target, seen), seen)
    # pairs: (0,1) win, (0,3) win, (2,1) tie = 1/2, (2,3) win -> 3.5 / 4
    assert auc.tolist() == pytest.approx([3.5 / 4])


def test_auc_is_nan_without_negatives():
    scores = np.array([[0.3, 0.2]])
    auc = auc_from_scores(lambda u: scores[u], np.array([0]), _target([{0: 1.0, 1: 1.0}], 2))
    assert math.isnan(auc[0])


# -- property tests against the reference implementation ----------------------------------


@st.composite
def ranking_problems(draw):
    n_items = draw(st.integers(2, 12))
    n_users = draw(st.integers(1, 6))
    width = draw(st.integers(1, min(n_items, 6)))
    items, rels = [], []
    for _ in range(n_users):
        perm = draw(st.permutations(list(range(n_items))))
        length = draw(st.integers(0, width))
        items.append(list(perm[:length]) + [-1] * (width - length))
        chosen = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items))
        rels.append({i: float(draw(st.integers(1, 5))) for i in sorted(chosen)})
    ks = sorted(draw(st.sets(st.integers(1, 8), min_size=1, max_size=3)))
    counts = draw(st.lists(st.integers(0, 20), min_size=n_items, max_size=n_items))
    features = draw(st.lists(st.lists(st.integers(0, 2), min_size=3, max_size=3), min_size=n_items, max_size=n_items))
    return n_items, np.array(items, dtype=np.int64), rels, ks, counts, features


@settings(max_examples=150, deadline=None)
@given(ranking_problems())
def test_vectorised_metrics_match_reference(problem):
    n_items, items, rels, ks, counts, features = problem
    metrics = [
        *ACCURACY_METRICS,
        "user_coverage",
        "novelty",
        "popularity_bias",
        "diversity",
        "coverage",
    ]
    n_pop = max(sum(1 for c in counts if c > 0), 1)
    res = evaluate_rankings(
        items,
        _target(rels, n_items),
        ks,
        metrics,
        item_popularity=np.array(counts),
        n_popularity_users=n_pop,
        item_features=sp.csr_matrix(np.array(features, float)),
    )
    evaluated = [u for u, rel in enumerate(rels) if rel]
    assert res.n_users == len(evaluated)
    assert res.per_user["user_idx"].to_list() == evaluated
    head = set(np.nonzero(popularity_bands(np.array(counts)) == "head")[0].tolist())
    for row, u in enumerate(evaluated):
        ranked = items[u].tolist()
        for k in ks:
            expected = reference.user_metrics(ranked, rels[u], k)
            expected["novelty"] = reference.novelty(ranked, k, counts, n_pop)
            expected["popularity_bias"] = reference.popularity_bias(ranked, k, head)
            expected["diversity"] = reference.diversity(ranked, k, features)
            for name, value in expected.items():
                got = res.per_user[f"{name}@{k}"][row]
                if math.isnan(value):
                    assert math.isnan(got), (name, k)
                else:
                    assert got == pytest.approx(value, abs=1e-9), (name, k)
            # every accuracy metric lies in [0, 1]
            for name in ACCURACY_METRICS:
                assert 0.0 <= res.per_user[f"{name}@{k}"][row] <= 1.0 + 1e-12
    for k in ks:
        shown = {i for u in evaluated for i in items[u, :k].tolist() if i >= 0}
        assert res.mean[f"coverage@{k}"] == pytest.approx(len(shown) / n_items)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_auc_matches_reference(data):
    n_items = data.draw(st.integers(2, 10))
    n_users = data.draw(st.integers(1, 5))
    scores = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(0, 4), min_size=n_items, max_size=n_items),
                min_size=n_users,
                max_size=n_users,
            )
        ),
        dtype=float,
    )
    rels = [data.draw(st.sets(st.integers(0, n_items - 1), min_size=1)) for _ in range(n_users)]
    seen = [data.draw(st.sets(st.integers(0, n_items - 1))) - rels[u] for u in range(n_users)]
    target = _target([dict.fromkeys(r, 1.0) for r in rels], n_items)
    exclude = _target([dict.fromkeys(s, 1.0) for s in seen], n_items)
    got = auc_from_scores(
        lambda u: scores[u],
        np.arange(n_users),
        relevant_target(target, exclude),
        exclude,
        batch_size=2,
    )
    for u in range(n_users):
        expected = reference.auc(scores[u].tolist(), rels[u], seen[u])
        if math.isnan(expected):
            assert math.isnan(got[u])
        else:
            assert got[u] == pytest.approx(expected)


class _ConstantModel:
    """Scores every item the same: the ranking is decided by the tie rule alone."""

    n_items = 6

    def score(self, users):
        return np.zeros((len(users), self.n_items), np.float32)

    def recommend(self, users, k, *, exclude=None, batch_size=4096, n_jobs=1, progress=None):
        from recctl.ranking import top_k

        return top_k(self.score, users, k, exclude=exclude, batch_size=batch_size)


def test_evaluate_model_excludes_seen_items_and_breaks_ties_by_index():
    from recctl.evaluation import evaluate_model

    train = _target([{0: 1.0, 2: 1.0}, {1: 1.0}, {}], 6)
    test = _target([{2: 1.0, 3: 1.0}, {1: 1.0}, {5: 1.0}], 6)
    res = evaluate_model(_ConstantModel(), test, train, ks=[3], metrics=["precision", "recall", "auc"])
    # user 1's only test item was seen in training: not evaluated
    assert res.per_user["user_idx"].to_list() == [0, 2]
    # all scores tie -> lowest item indices first, seen items skipped
    assert res.items.tolist() == [[1, 3, 4], [0, 1, 2]]
    assert res.per_user["recall@3"].to_list() == [1.0, 0.0]  # item 2 was seen, so only item 3 counts
    assert res.per_user["auc"].to_list() == [0.5, 0.5]  # every pair is a tie
    only = evaluate_model(_ConstantModel(), test, train, ks=[3], metrics=["precision"], users=np.array([1, 2]))
    assert only.per_user["user_idx"].to_list() == [2]
