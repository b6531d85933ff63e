"""The shared protocol: who is evaluated, what is excluded, segments and popularity bands."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recctl.evaluation.protocol import (
    build_protocol,
    history_segments,
    item_popularity,
    popularity_bands,
)
from recctl.evaluation.segments import band_breakdown, recommendation_popularity


def test_popularity_bands_by_cumulative_share():
    # total 20: item1 (10) opens at 0% -> head; item3 (5) at 50% -> torso;
    # item4 (4) at 75% -> torso;
    # item0 (1) at 95% -> tail; item2 (0) -> tail
    assert popularity_bands(np.array([1, 10, 0, 5, 4])).tolist() == [
        "tail",
        "head",
        "tail",
        "torso",
        "torso",
    ]


def test_popularity_bands_edge_cases():
    assert popularity_bands(np.zeros(3)).tolist() == ["tail"] * 3
    assert popularity_bands(np.array([7])).tolist() == ["head"]
    # ties are broken by lower index, deterministically
    # shares before each item: 0, .25 (head), .5, .75 (torso)
    assert popularity_bands(np.array([1, 1, 1, 1])).tolist() == ["head", "head", "torso", "torso"]


def test_history_segments_thresholds_and_new_users():
    n_train = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    labels, thresholds = history_segments(n_train)
    assert labels[0] == "new"
    assert thresholds == {"short_max": 3, "long_min": 7}
    assert labels[1:4].tolist() == ["short"] * 3
    assert labels[4:7].tolist() == ["medium"] * 3
    assert labels[7:].tolist() == ["long"] * 3


def test_build_protocol_excludes_seen_items_and_users_without_targets():
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]], dtype=float))
    test = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=float))
    proto = build_protocol(test, train, [2], ["precision"])
    # user 1's only test item was seen in train -> not evaluated; user 2 has no test item
    assert proto.users.tolist() == [0]
    assert proto.target.toarray()[0].tolist() == [0, 0, 1, 0]
    d = proto.describe()
    assert d["n_test_pairs"] == 3 and d["n_test_pairs_excluded"] == 2
    assert d["n_users_evaluated"] == 1 and d["n_users_with_test_items"] == 2
    counts, n_users = item_popularity(train)
    assert counts.tolist() == [2, 2, 0, 0] and n_users == 3
    kept = build_protocol(test, train, [2], ["precision"], exclude_seen=False)
    assert kept.users.tolist() == [0, 1] and kept.exclude is None


def test_band_breakdown_restricts_relevant_items_to_the_band():
    bands = np.array(["head", "tail", "tail", "torso"], dtype=object)
    items = np.array([[0, 1], [3, 0]])
    target = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 1, 0, 1]], dtype=float))
    rows = {r["band"]: r for r in band_breakdown(items, target, bands, 2)}
    assert rows["head"]["n_users"] == 1 and rows["head"]["recall@2"] == 1.0
    assert rows["tail"]["n_users"] == 2
    assert rows["tail"]["recall@2"] == (1 / 2 + 0.0) / 2
    assert rows["torso"]["hit_rate@2"] == 1.0


def test_recommendation_popularity_shares():
    pop = np.array([10, 5, 1, 0])
    bands = popularity_bands(pop)
    out = recommendation_popularity(np.array([[0, 1], [0, -1]]), pop, bands, n_bins=4)
    assert out["n_recommendations"] == 3
    assert out["deciles"] == [2 / 3, 1 / 3, 0.0, 0.0]
    assert out["bands"]["head"] == 2 / 3


def test_candidate_items_rules_are_applied_and_stated():
    from recctl.data.dataset import Dataset
    from recctl.evaluation.metrics import evaluate_model
    from recctl.evaluation.protocol import candidate_mask
    from recctl.models.popularity import PopularityModel

    # item 3 was never trained; it is the most relevant held-out item of both users
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0]], np.float32))
    test = sp.csr_matrix(np.array([[0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]], np.float32))
    mask, info = candidate_mask("trained", train)
    assert mask.tolist() == [True, True, True, False] and info["n_items"] == 3
    assert candidate_mask("all", train)[0] is None
    allowed, info = candidate_mask("allow_list", train, np.array([0, 3]))
    assert allowed.tolist() == [True, False, False, True] and info["rule"] == "allow_list"

    protocol = build_protocol(test, train, [2], ["recall"], candidates="trained")
    assert protocol.n_test_pairs_not_candidates == 2  # both test pairs of item 3 stay relevant
    described = protocol.describe()
    assert described["candidates"]["rule"] == "trained" and "3 of 4" in described["candidate_items"]

    # a model that would rank the cold item first (it scores by a fixed vector) never lists it
    model = PopularityModel().fit(Dataset(np.array(["a", "b", "c"]), np.array(["i0", "i1", "i2", "i3"]), train))
    model.item_scores_ = np.array([0.1, 0.2, 0.3, 1.0], np.float32)
    listed = model.recommend(protocol.users, 2, exclude=train, item_mask=protocol.candidates).items
    assert 3 not in listed
    result = evaluate_model(model, test, train, ks=[2], metrics=["recall"], item_mask=protocol.candidates)
    assert result.mean["recall@2"] == 0.25  # user 0 finds item 2 of its two; user 1 nothing
