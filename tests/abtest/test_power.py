"""Sample size and minimum detectable effect."""

from __future__ import annotations

import math

import pytest

from recctl.abtest.power import (
    mde_means,
    mde_proportions,
    plan_experiment,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
)


def test_textbook_sample_size() -> None:
    # 5 % -> 5.5 %, alpha 0.05 two-sided, power 0.8: about 31,200 users per arm (Fleiss)
    n0, n1 = sample_size_proportions(0.05, 0.055)
    assert n0 == n1
    assert 31_000 <= n0 <= 31_500


def test_sample_size_gives_the_requested_power() -> None:
    n0, n1 = sample_size_proportions(0.1, 0.12, power=0.9, ratio=2.0)
    assert n1 == pytest.approx(2 * n0, abs=2)
    assert power_proportions(0.1, 0.12, n0, n1) == pytest.approx(0.9, abs=0.005)


def test_mde_inverts_sample_size() -> None:
    n0, n1 = sample_size_proportions(0.03, 0.036)
    assert mde_proportions(0.03, n0, n1) == pytest.approx(0.006, rel=0.01)


def test_means_formulas() -> None:
    n0, n1 = sample_size_means(1.0, 10.0)
    # (1.95996 + 0.84162)^2 * 100 * 2 = 1569.8
    assert n0 == n1 == 1570
    assert mde_means(10.0, n0, n1) == pytest.approx(1.0, rel=0.002)


def test_plan_with_weights_and_holdout() -> None:
    plan = plan_experiment(baseline=0.05, mde=0.1, weights=[2, 1, 1], holdout=0.1)
    assert plan.alpha_per_comparison == pytest.approx(0.025)  # Bonferroni over 2 treatments
    assert set(plan.users_per_arm) == {"control", "treatment_1", "treatment_2"}
    assert plan.shares["control"] == pytest.approx(0.45)
    needed = sample_size_proportions(0.05, 0.055, alpha=0.025, ratio=0.5)
    assert plan.users_per_arm["treatment_1"] >= needed[1] - 1
    assert plan.users_per_arm["control"] >= needed[0] - 1
    back = plan_experiment(baseline=0.05, users=plan.total_users, weights=[2, 1, 1], holdout=0.1)
    assert back.mde_relative == pytest.approx(0.1, rel=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"baseline": 0.05, "weights": [1, 1]}, "either"),
        ({"baseline": 0.05, "weights": [1, 1], "mde": 0.1, "users": 100}, "either"),
        ({"baseline": 0.05, "weights": [1], "mde": 0.1}, "at least two"),
        ({"baseline": 0.05, "weights": [1, -1], "mde": 0.1}, "positive"),
        ({"baseline": 1.2, "weights": [1, 1], "mde": 0.1}, r"\(0, 1\)"),
    ],
)
def test_plan_rejects_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_experiment(**kwargs)


def test_undetectable_effect_is_infinite() -> None:
    assert math.isinf(mde_proportions(0.5, 3, 3))
