"""Drift measures and rule."""

from __future__ import annotations

import numpy as np
import pytest

from recctl.incremental.drift import DriftRule, compare_models, jaccard_at_k, rbo_at_k
from recctl.models.lightfm_model import LightFMModel
from recctl.models.popularity import PopularityModel


def test_overlap_measures() -> None:
    a = np.array([[1, 2, 3], [1, 2, 3], [1, 2, -1], [-1, -1, -1]])
    b = np.array([[1, 2, 3], [4, 5, 6], [2, 1, -1], [-1, -1, -1]])
    np.testing.assert_allclose(jaccard_at_k(a, b), [1.0, 0.0, 1.0, 1.0])
    r = rbo_at_k(a, b)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(0.0)
    # same set, different order: full Jaccard, RBO below 1; swapping the top matters more
    top_swap = rbo_at_k(np.array([[1, 2, 3, 4]]), np.array([[2, 1, 3, 4]]))[0]
    tail_swap = rbo_at_k(np.array([[1, 2, 3, 4]]), np.array([[1, 2, 4, 3]]))[0]
    assert top_swap < tail_swap < 1.0


def test_identical_models_have_no_drift(shop, make_dataset) -> None:
    ds = make_dataset(shop["x"])
    m = PopularityModel().fit(ds)
    rep = compare_models(
        "pop",
        m,
        m,
        exclude=ds.interactions,
        target=ds.interactions,
        rule=DriftRule(),
        users=np.arange(50),
    )
    assert rep.relative_drop == 0 and rep.jaccard == 1 and rep.rbo == pytest.approx(1.0)
    assert not rep.retrain_needed and rep.to_dict()["reference_jaccard"] is None


def test_rule_fires_when_the_update_is_far_from_the_retrain(shop, make_dataset) -> None:
    x = shop["x"]
    train, test = x.copy(), x.copy()
    train.data[::3] = 0  # hold out every third pair as the target
    train.eliminate_zeros()
    test.data[np.arange(len(test.data)) % 3 != 0] = 0
    test.eliminate_zeros()
    ds = make_dataset(train)
    good = LightFMModel(no_components=16, epochs=10, random_state=1).fit(ds)
    bad = PopularityModel().fit(ds)  # ignores everyone's taste: a stand-in for a broken update
    rep = compare_models(
        "m",
        bad,
        good,
        exclude=train,
        target=test,
        rule=DriftRule(max_metric_drop=0.05, min_overlap=0.5),
        users=np.arange(100),
    )
    assert rep.retrain_needed
    assert any("dropped" in r for r in rep.reasons) and any("overlap" in r for r in rep.reasons)
