"""Search-space sampling: bounds, log-uniform shape, grids, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.config.tune import ChoiceSpace, FloatSpace, IntSpace
from recctl.tuning.space import grid_points, grid_values, sample_params, sample_value

SPACE = {
    "no_components": ChoiceSpace(type="choice", values=[16, 32, 64]),
    "learning_rate": FloatSpace(type="loguniform", low=1e-3, high=1e-1),
    "k": IntSpace(type="int", low=5, high=9),
    "alpha": FloatSpace(type="float", low=0.0, high=1.0),
}


@settings(max_examples=60, deadline=None)
@given(low=st.integers(-50, 50), width=st.integers(0, 30), seed=st.integers(0, 2**31))
def test_int_samples_stay_inside_inclusive_bounds(low: int, width: int, seed: int) -> None:
    spec = IntSpace(type="int", low=low, high=low + width)
    rng = np.random.default_rng(seed)
    values = [sample_value(spec, rng) for _ in range(20)]
    assert all(isinstance(v, int) and low <= v <= low + width for v in values)


@settings(max_examples=60, deadline=None)
@given(low=st.floats(1e-8, 1e3), factor=st.floats(1.0, 1e4), seed=st.integers(0, 2**31))
def test_loguniform_samples_stay_inside_bounds(low: float, factor: float, seed: int) -> None:
    spec = FloatSpace(type="loguniform", low=low, high=low * factor)
    rng = np.random.default_rng(seed)
    assert all(spec.low <= sample_value(spec, rng) <= spec.high for _ in range(20))


def test_int_range_reaches_both_ends() -> None:
    spec = IntSpace(type="int", low=1, high=3)
    rng = np.random.default_rng(0)
    assert {sample_value(spec, rng) for _ in range(200)} == {1, 2, 3}


def test_loguniform_is_uniform_in_log_space() -> None:
    spec = FloatSpace(type="loguniform", low=1e-4, high=1.0)
    rng = np.random.default_rng(1)
    logs = np.log10([sample_value(spec, rng) for _ in range(4000)])
    # each decade gets about a quarter of the draws (a plain uniform would put ~90% in the last)
    counts = np.histogram(logs, bins=[-4, -3, -2, -1, 0])[0] / len(logs)
    assert np.allclose(counts, 0.25, atol=0.04)


def test_log_int_range_favours_small_values() -> None:
    spec = IntSpace(type="int", low=1, high=1000, log=True)
    rng = np.random.default_rng(2)
    values = np.array([sample_value(spec, rng) for _ in range(3000)])
    assert values.min() >= 1 and values.max() <= 1000
    assert 0.25 < np.mean(values < 32) < 0.6  # log-uniform: ~half below sqrt(1000)


def test_float_uniform_and_choice() -> None:
    rng = np.random.default_rng(3)
    floats = [sample_value(SPACE["alpha"], rng) for _ in range(500)]
    assert 0.0 <= min(floats) and max(floats) <= 1.0 and abs(np.mean(floats) - 0.5) < 0.05
    assert {sample_value(SPACE["no_components"], rng) for _ in range(100)} == {16, 32, 64}


def test_sample_params_is_deterministic_per_seed_and_trial() -> None:
    first = [sample_params(SPACE, 42, i) for i in range(5)]
    assert first == [sample_params(SPACE, 42, i) for i in range(5)]
    assert first != [sample_params(SPACE, 43, i) for i in range(5)]
    assert len({tuple(sorted(p.items())) for p in first}) == 5
    # YAML order of the space does not change the draws
    assert sample_params(dict(reversed(list(SPACE.items()))), 42, 3) == first[3]
    assert all(type(p["no_components"]) is int for p in first)


def test_grid_values_per_kind() -> None:
    assert grid_values(SPACE["no_components"], 3) == [16, 32, 64]
    assert grid_values(IntSpace(type="int", low=1, high=3), 5) == [1, 2, 3]
    assert grid_values(IntSpace(type="int", low=0, high=100), 3) == [0, 50, 100]
    assert grid_values(IntSpace(type="int", low=1, high=100, log=True), 3) == [1, 10, 100]
    assert grid_values(FloatSpace(type="float", low=0, high=1), 3) == [0.0, 0.5, 1.0]
    lr = grid_values(SPACE["learning_rate"], 3)
    assert lr == pytest.approx([1e-3, 1e-2, 1e-1])
    assert grid_values(FloatSpace(type="float", low=2, high=2), 4) == [2.0]


def test_grid_points_is_the_full_product_in_a_seeded_order() -> None:
    points = grid_points(SPACE, 3, seed=7)
    assert len(points) == 3 * 3 * 3 * 3
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert points == grid_points(SPACE, 3, seed=7)
    assert points != grid_points(SPACE, 3, seed=8)
    assert {p["alpha"] for p in points} == {0.0, 0.5, 1.0}


def test_space_config_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="low"):
        FloatSpace(type="loguniform", low=0.0, high=1.0)
    with pytest.raises(ValueError, match="<= high"):
        IntSpace(type="int", low=5, high=1)
    with pytest.raises(ValueError, match="low >= 1"):
        IntSpace(type="int", low=0, high=10, log=True)
