"""Sampling and grid expansion of a search space (the ``tune.space`` section).

Random sampling is seeded *per trial*: trial ``i`` draws from ``default_rng([seed, i])``. A
trial's parameters therefore depend only on the seed and its number, never on how many trials
ran before it, in which process, or whether the search was interrupted and resumed.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from recctl.config.tune import ChoiceSpace, FloatSpace, IntSpace

__all__ = ["Space", "grid_points", "grid_values", "sample_params", "sample_value"]

Space = dict[str, ChoiceSpace | IntSpace | FloatSpace]


def _plain(value: Any) -> Any:
    # numpy scalars would leak into YAML and Parquet as opaque objects
    return value.item() if isinstance(value, np.generic) else value


def sample_value(spec: ChoiceSpace | IntSpace | FloatSpace, rng: np.random.Generator) -> Any:
    """Draw one value of a parameter.

    Parameters
    ----------
    spec
        The parameter's space: ``choice`` (uniform over the values), ``int`` (uniform over
        ``low..high`` inclusive, or log-uniform with ``log: true``), ``float`` (uniform on
        ``[low, high]``) or ``loguniform`` (``exp`` of a uniform draw on ``[log low, log high]``).
    rng
        The random generator.

    Returns
    -------
    Any
        A plain Python value (int, float or one of the choices).
    """
    if isinstance(spec, ChoiceSpace):
        return _plain(spec.values[int(rng.integers(len(spec.values)))])
    if isinstance(spec, IntSpace):
        if spec.log:
            # sample on [log low, log(high + 1)) and floor, so every integer gets its log-share
            value = math.floor(math.exp(rng.uniform(math.log(spec.low), math.log(spec.high + 1))))
            return int(min(max(value, spec.low), spec.high))
        return int(rng.integers(spec.low, spec.high + 1))
    if spec.type == "loguniform":
        drawn = math.exp(rng.uniform(math.log(spec.low), math.log(spec.high)))
        return float(min(max(drawn, spec.low), spec.high))  # guard exp/log rounding at the ends
    return float(rng.uniform(spec.low, spec.high))


def sample_params(space: Space, seed: int, trial: int) -> dict[str, Any]:
    """Draw the parameters of random-search trial ``trial`` (deterministic in ``seed, trial``).

    Parameters are drawn in sorted key order so that the YAML order of ``space`` does not
    change the trials.
    """
    rng = np.random.default_rng([seed, trial])
    return {key: sample_value(space[key], rng) for key in sorted(space)}


def grid_values(spec: ChoiceSpace | IntSpace | FloatSpace, n_points: int) -> list[Any]:
    """The grid of one parameter.

    Choices use every value; an int range uses every integer when it has at most
    ``n_points`` of them, otherwise ``n_points`` evenly (or log-evenly) spaced integers;
    float ranges use ``n_points`` evenly spaced values, ``loguniform`` geometrically spaced.
    """
    if isinstance(spec, ChoiceSpace):
        return [_plain(v) for v in spec.values]
    if isinstance(spec, IntSpace):
        if spec.high - spec.low + 1 <= n_points:
            return list(range(spec.low, spec.high + 1))
        raw = np.geomspace(spec.low, spec.high, n_points) if spec.log else np.linspace(spec.low, spec.high, n_points)
        return sorted({int(round(v)) for v in raw})
    if spec.low == spec.high:
        return [float(spec.low)]
    spacing = np.geomspace if spec.type == "loguniform" else np.linspace
    raw = spacing(spec.low, spec.high, n_points)
    return [float(v) for v in raw]


def grid_points(space: Space, n_points: int, seed: int) -> list[dict[str, Any]]:
    """Every combination of the per-parameter grids, in a seeded random order.

    The order is shuffled (with ``seed``) so that a trial budget smaller than the grid still
    covers it evenly, and so that the first N trials do not depend on the budget: raising
    ``n_trials`` later extends the same sequence.
    """
    keys = sorted(space)
    axes = [grid_values(space[key], n_points) for key in keys]
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes)]
    order = np.random.default_rng([seed, 0x6D1D]).permutation(len(combos))
    return [combos[i] for i in order]
