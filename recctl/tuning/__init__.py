"""Hyper-parameter search scored on the validation split (never on test).

Modules: :mod:`~recctl.tuning.space` (sampling, grids), :mod:`~recctl.tuning.search`
(random / grid / TPE samplers and the search loop), :mod:`~recctl.tuning.trial` (one trial
with early stopping and pruning), :mod:`~recctl.tuning.parallel` (worker processes),
:mod:`~recctl.tuning.records` (checkpoint and trials table) and
:mod:`~recctl.tuning.best_config` (``best.yaml``). The stage is
:func:`recctl.stages.tune.run_tune`.
"""

from __future__ import annotations

from recctl.tuning.search import (
    GridSampler,
    RandomSampler,
    SearchPlan,
    TPESampler,
    make_sampler,
    run_search,
)
from recctl.tuning.space import grid_points, grid_values, sample_params, sample_value
from recctl.tuning.trial import TrialData, TrialResult, TrialSpec, load_trial_data, run_trial

__all__ = [
    "GridSampler",
    "RandomSampler",
    "SearchPlan",
    "TPESampler",
    "TrialData",
    "TrialResult",
    "TrialSpec",
    "grid_points",
    "grid_values",
    "load_trial_data",
    "make_sampler",
    "run_search",
    "run_trial",
    "sample_params",
    "sample_value",
]
