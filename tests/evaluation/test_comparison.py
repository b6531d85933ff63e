"""Statistics: Holm, the paired bootstrap interval, paired tests and verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.evaluation.comparison import (
    NO_DIFFERENCE,
    bootstrap_mean_ci,
    compare_models,
    holm,
    paired_pvalue,
)

from . import reference


def test_holm_known_example():
    # textbook example: sorted p 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2 (running max), x1
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_nan():
    out = holm([0.5, float("nan"), 0.9])
    assert out[0] == pytest.approx(1.0)
    assert np.isnan(out[1])
    assert out[2] == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_matches_textbook_procedure(p):
    assert holm(p).tolist() == pytest.approx(reference.holm(p))


@pytest.mark.parametrize(
    "p",
    [
        [0.01, 0.04, 0.03, 0.005],
        [0.05, 0.05, 0.01, 0.05, 0.2],  # ties
        [0.5, float("nan"), 0.9, 0.001],  # NaN kept out of m
        [0.0, 1.0, 0.3],
        [0.02],
        list(np.random.default_rng(7).random(12)),
    ],
)
def test_holm_is_statsmodels_holm(p):
    # the same arithmetic as statsmodels' multipletests(method="holm"); a few cases only, as
    # each multipletests call collects garbage (test_holm_matches_textbook_procedure covers many)
    from statsmodels.stats.multitest import multipletests

    values = np.asarray(p, dtype=np.float64)
    expected = np.full(values.shape, np.nan)
    ok = ~np.isnan(values)
    expected[ok] = multipletests(values[ok], method="holm")[1]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12, atol=0)


def test_holm_runs_no_garbage_collection(monkeypatch):
    # statsmodels' multipletests collects garbage on every call (seconds in a large process)
    import gc

    def refuse() -> int:
        raise AssertionError("holm ran gc.collect()")

    monkeypatch.setattr(gc, "collect", refuse)
    assert holm([0.2, 0.01]).tolist() == pytest.approx([0.2, 0.02])


def test_bootstrap_interval_covers_the_true_difference():
    # 200 simulated experiments with a known mean difference of 0.1: a 90% interval must
    # cover it in about 90% of them (binomial sd ~ 2 points)
    rng = np.random.default_rng(123)
    covered = 0
    n_sims = 200
    for s in range(n_sims):
        diffs = rng.normal(0.1, 1.0, size=150)
        low, high = bootstrap_mean_ci(diffs[:, None], n_bootstrap=400, alpha=0.10, seed=s)
        covered += bool(low[0] <= 0.1 <= high[0])
    assert 0.83 <= covered / n_sims <= 0.96


def test_bootstrap_is_repeatable_and_seed_dependent():
    diffs = np.random.default_rng(0).normal(size=(50, 2))
    a = bootstrap_mean_ci(diffs, n_bootstrap=100, alpha=0.05, seed=[1, 0])
    b = bootstrap_mean_ci(diffs, n_bootstrap=100, alpha=0.05, seed=[1, 0])
    c = bootstrap_mean_ci(diffs, n_bootstrap=100, alpha=0.05, seed=[2, 0])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_bootstrap_ignores_nan_cells():
    diffs = np.array([[1.0, np.nan], [1.0, 2.0], [1.0, 2.0]])
    low, high = bootstrap_mean_ci(diffs, n_bootstrap=50, alpha=0.05, seed=0)
    assert low.tolist() == [1.0, 2.0] and high.tolist() == [1.0, 2.0]


def test_paired_pvalue_edge_cases():
    assert paired_pvalue(np.zeros(20)) == 1.0
    assert paired_pvalue(np.full(20, 0.3)) == 0.0
    assert paired_pvalue(np.array([np.nan, 0.0])) == 1.0
    rng = np.random.default_rng(1)
    assert paired_pvalue(rng.normal(1.0, 1.0, 200)) < 1e-6
    assert paired_pvalue(rng.normal(1.0, 1.0, 200), test="t") < 1e-6


def test_identical_models_show_no_detectable_difference():
    rng = np.random.default_rng(5)
    values = rng.random((300, 3))
    rows = compare_models(
        {"base": values, "same": values.copy(), "other": values.copy()},
        ["ndcg@10", "precision@10", "novelty@10"],
        baseline="base",
        best="same",
        n_bootstrap=100,
        seed=1,
    )
    assert rows
    for r in rows:
        assert r.verdict == NO_DIFFERENCE
        assert r.diff == 0.0 and r.ci_low == 0.0 and r.ci_high == 0.0 and r.p_holm == 1.0


def test_clear_difference_is_better_or_worse_and_neutral_metrics_say_higher():
    rng = np.random.default_rng(6)
    base = rng.random((400, 2)) * 0.5
    good = base + 0.2 + rng.normal(0, 0.05, base.shape)
    bad = base - 0.2 + rng.normal(0, 0.05, base.shape)
    rows = compare_models(
        {"base": base, "good": good, "bad": bad},
        ["ndcg@10", "novelty@10"],
        baseline="base",
        best="good",
        n_bootstrap=200,
        seed=0,
    )
    verdict = {(r.model, r.reference, r.metric): r.verdict for r in rows}
    assert verdict[("good", "base", "ndcg@10")] == "better"
    assert verdict[("bad", "base", "ndcg@10")] == "worse"
    assert verdict[("bad", "good", "ndcg@10")] == "worse"
    assert verdict[("good", "base", "novelty@10")] == "higher"
    assert verdict[("bad", "base", "novelty@10")] == "lower"
    # the baseline-vs-best pair is not repeated as "good vs good"
    assert ("good", "good", "ndcg@10") not in verdict


def test_holm_family_is_per_metric():
    rng = np.random.default_rng(7)
    base = rng.random((100, 2))
    rows = compare_models(
        {
            "b": base,
            "m1": base + rng.normal(0.02, 0.2, base.shape),
            "m2": base + rng.normal(0.0, 0.2, base.shape),
        },
        ["a@1", "c@1"],
        baseline="b",
        n_bootstrap=0,
    )
    for metric in ("a@1", "c@1"):
        group = [r for r in rows if r.metric == metric]
        assert [r.p_holm for r in group] == pytest.approx(holm([r.p_value for r in group]).tolist())
    everything = compare_models(
        {"b": base, "m1": base + 0.01}, ["a@1", "c@1"], baseline="b", n_bootstrap=0, family="all"
    )
    assert len(everything) == 2


def test_mismatched_users_are_refused():
    with pytest.raises(ValueError, match="same users"):
        compare_models({"a": np.zeros((3, 1)), "b": np.zeros((4, 1))}, ["m@1"], baseline="a")


def test_significant_test_with_interval_straddling_zero_is_not_a_verdict():
    # most users gain a little, a few lose a lot: the signed-rank test sees a shift, the mean
    # difference is ~0 and its interval straddles 0 -> the two disagree -> no verdict
    base = np.zeros((300, 1))
    model = np.concatenate([np.full(250, 0.01), np.full(50, -0.0495)])[:, None]
    (row,) = compare_models({"b": base, "m": model}, ["ndcg@10"], baseline="b", n_bootstrap=400, seed=0)
    assert row.p_holm < 0.05
    assert row.ci_low < 0 < row.ci_high
    assert row.verdict == NO_DIFFERENCE


def test_best_equal_to_baseline_does_not_duplicate_comparisons() -> None:
    """Regression: with best == baseline every pair was compared twice, doubling Holm p-values."""
    import numpy as np

    from recctl.evaluation.comparison import compare_models

    rng = np.random.default_rng(0)
    per_user = {name: rng.random((200, 1)) for name in ("pop", "a", "b")}
    with_best = compare_models(per_user, ["ndcg@10"], baseline="pop", best="pop", n_bootstrap=50, seed=1)
    without = compare_models(per_user, ["ndcg@10"], baseline="pop", best=None, n_bootstrap=50, seed=1)
    assert len(with_best) == len(without) == 2
    assert [c.p_holm for c in with_best] == [c.p_holm for c in without]
