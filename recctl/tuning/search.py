"""Search methods (random, grid, TPE) and the search loop that drives the trials.

A sampler answers ``ask(number) -> params`` and learns from ``tell(result)``. Random and grid
samplers are stateless functions of ``(seed, number)``, so a resumed search asks exactly the
questions the interrupted one would have. TPE (through optuna, an optional extra) is
replayed: the finished trials are told to a fresh study before it is asked anything new, and
each proposal is drawn with a generator seeded by ``(seed, number)``, so a proposal depends
only on the trials before it and the seed, not on whether the search was resumed.

``number`` is the trial number. With ``tune.include_default`` trial 0 is the configured
parameters and is not asked; samplers are built with that ``offset`` and number their own
proposals from it.

The loop runs trials in batches of ``n_jobs`` and records results in trial order, so the
same seed and the same ``n_jobs`` give the same trials, however long each one takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recctl.config.tune import ChoiceSpace, FloatSpace, IntSpace, TuneConfig
from recctl.errors import MissingExtraError
from recctl.tuning.budget import Budget
from recctl.tuning.parallel import TrialRunner
from recctl.tuning.space import Space, grid_points, sample_params
from recctl.tuning.trial import TrialResult, TrialSpec, median_curve

__all__ = ["GridSampler", "RandomSampler", "Sampler", "SearchPlan", "TPESampler", "make_sampler", "run_search"]

log = logging.getLogger(__name__)


class Sampler:
    """Proposes the parameters of each trial."""

    #: how many trials this sampler can propose (``None`` = unbounded)
    size: int | None = None

    def ask(self, number: int) -> dict[str, Any]:
        """The parameters of trial ``number``."""
        raise NotImplementedError

    def tell(self, result: TrialResult) -> None:
        """Learn from a finished trial (no-op for non-adaptive samplers)."""


class RandomSampler(Sampler):
    """Independent draws: trial ``n`` uses ``default_rng([seed, n])``."""

    def __init__(self, space: Space, seed: int, offset: int = 0) -> None:
        self.space, self.seed, self.offset = space, seed, offset

    def ask(self, number: int) -> dict[str, Any]:
        """Draw trial ``number``'s parameters."""
        return sample_params(self.space, self.seed, number - self.offset)


class GridSampler(Sampler):
    """The full grid in a seeded order (see :func:`recctl.tuning.space.grid_points`)."""

    def __init__(self, space: Space, seed: int, n_points: int, offset: int = 0) -> None:
        self.points = grid_points(space, n_points, seed)
        self.size = len(self.points)
        self.offset = offset

    def ask(self, number: int) -> dict[str, Any]:
        """The grid point of trial ``number``."""
        return dict(self.points[number - self.offset])


class TPESampler(Sampler):
    """Tree-structured Parzen estimator through optuna (``pip install 'recctl[tune]'``).

    Raises
    ------
    MissingExtraError
        When optuna is not installed.
    """

    #: random trials before the model-based proposals start
    n_startup_trials = 5

    def __init__(self, space: Space, seed: int, offset: int = 0) -> None:
        try:
            import optuna
        except ImportError:
            raise MissingExtraError("TPE search", "tune", "optuna") from None
        self._optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.distributions = {key: _distribution(optuna, space[key]) for key in sorted(space)}
        self.seed = seed
        self.study = optuna.create_study(direction="maximize", sampler=self._sampler(0))
        self._asked: dict[int, Any] = {}

    def _sampler(self, number: int) -> Any:
        # a generator per proposal, seeded by (seed, number): resuming gives the same proposals
        seed = (self.seed * 1_000_003 + number) % (2**32)
        return self._optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)

    def ask(self, number: int) -> dict[str, Any]:
        """Ask optuna for trial ``number``'s parameters."""
        self.study.sampler = self._sampler(number)
        trial = self.study.ask(fixed_distributions=self.distributions)
        self._asked[number] = trial
        return {key: trial.params[key] for key in self.distributions}

    def tell(self, result: TrialResult) -> None:
        """Report a result, or replay a finished trial from the checkpoint."""
        states = self._optuna.trial.TrialState
        state = {"complete": states.COMPLETE, "pruned": states.PRUNED}.get(result.status, states.FAIL)
        value = result.value if state == states.COMPLETE else None
        trial = self._asked.pop(result.number, None)
        if trial is not None:
            self.study.tell(trial, value, state=state)
            return
        try:
            self.study.add_trial(
                self._optuna.trial.create_trial(
                    params=result.params, distributions=self.distributions, value=value, state=state
                )
            )
        except ValueError:
            # e.g. the configured-defaults trial lies outside the space: nothing to learn from
            log.debug("trial %d not told to TPE (parameters outside the space)", result.number)


def _distribution(optuna: Any, spec: ChoiceSpace | IntSpace | FloatSpace) -> Any:
    dists = optuna.distributions
    if isinstance(spec, ChoiceSpace):
        return dists.CategoricalDistribution(spec.values)
    if isinstance(spec, IntSpace):
        return dists.IntDistribution(spec.low, spec.high, log=spec.log)
    return dists.FloatDistribution(spec.low, spec.high, log=spec.type == "loguniform")


def make_sampler(tune: TuneConfig, seed: int) -> Sampler:
    """The sampler of ``tune.method`` (numbering its proposals after the defaults trial)."""
    offset = 1 if tune.include_default else 0
    if tune.method == "grid":
        return GridSampler(tune.space, seed, tune.grid_points, offset)
    if tune.method == "tpe":
        return TPESampler(tune.space, seed, offset)
    return RandomSampler(tune.space, seed, offset)


@dataclass
class SearchPlan:
    """What the search loop needs besides the sampler.

    Attributes
    ----------
    tune
        The ``tune:`` section.
    base_params
        The tuned model's configured parameters (with ``kind``).
    default_params
        The configured values of the searched parameters (trial 0 when
        ``tune.include_default``).
    n_trials
        Trial budget.
    seed
        The experiment seed.
    n_jobs
        Trials per batch (worker processes).
    epoch_wise
        The model trains epoch by epoch (its trials can be cut at a time limit).
    trial_share
        An epoch-wise trial gets at most ``1 / trial_share`` of the search's time budget, so
        the budget holds at least that many trials.
    """

    tune: TuneConfig
    base_params: dict[str, Any]
    default_params: dict[str, Any]
    n_trials: int
    seed: int
    n_jobs: int = 1
    epoch_wise: bool = False
    trial_share: int = 1

    def spec(
        self, number: int, params: dict[str, Any], done: list[TrialResult], time_limit_s: float | None = None
    ) -> TrialSpec:
        """The spec of trial ``number`` given the trials finished so far (and its time limit)."""
        return TrialSpec(
            number=number,
            params=params,
            model_params={**self.base_params, **params},
            metric=self.tune.metric,
            k=self.tune.k,
            patience=self.tune.patience,
            min_delta=self.tune.min_delta,
            prune=self.tune.prune and sum(r.status == "complete" for r in done) >= self.tune.prune_min_trials,
            prune_warmup_epochs=self.tune.prune_warmup_epochs,
            median=median_curve(done),
            seed=self.seed,
            time_limit_s=time_limit_s if self.epoch_wise else None,
        )

    def next_cost(self, done: list[TrialResult]) -> float | None:
        """The estimated cost of the next trial from the finished ones (``None`` before the first).

        A one-shot model's longest trial; for an epoch-wise model (whose trials are cut at
        their time limit) the time of ``min(patience, 2) + 1`` epochs at its slowest trial's
        pace, about the least a trial needs to show anything.
        """
        timed = [r for r in done if r.duration_s > 0 and r.status != "failed"]
        if not timed:
            return None
        if self.epoch_wise:
            per_epoch = max(r.duration_s / max(r.epochs_run, 1) for r in timed)
            return per_epoch * (min(self.tune.patience, 2) + 1)
        return max(r.duration_s for r in timed)


def run_search(
    plan: SearchPlan,
    sampler: Sampler,
    runner: TrialRunner,
    done: list[TrialResult],
    *,
    on_result: Callable[[TrialResult, list[TrialResult]], None] | None = None,
    timeout_s: float | None = None,
    first_estimate_s: float | None = None,
    run_first: bool = True,
) -> list[TrialResult]:
    """Run trials until the budget is spent; return every trial (resumed ones included).

    Parameters
    ----------
    plan
        Budget, model and objective.
    sampler
        Proposes parameters.
    runner
        Runs a batch of trials (in this process or in workers).
    done
        Trials finished earlier (from the checkpoint); they are told to the sampler and not
        run again.
    on_result
        Called after each new trial with it and the list of all trials so far (the stage
        checkpoints there; the CLI draws progress).
    timeout_s
        Time budget of this search: a batch starts only when its estimated cost
        (:meth:`SearchPlan.next_cost`, else ``first_estimate_s``) fits in what is left.
    first_estimate_s
        The model's own estimate of a trial before any has finished (``None``: unknown).
    run_first
        The first batch runs whatever the estimate (the search must report something).

    Returns
    -------
    list[TrialResult]
        All trials, ordered by number.
    """
    results = {r.number: r for r in done if r.number < plan.n_trials}
    for number in sorted(results):
        sampler.tell(results[number])
    offset = 1 if plan.tune.include_default else 0
    n_budget = plan.n_trials if sampler.size is None else min(plan.n_trials, sampler.size + offset)
    if sampler.size is not None and sampler.size + offset < plan.n_trials:
        log.info("the grid has %d points; running %d trials, not %d", sampler.size, n_budget, plan.n_trials)
    clock = Budget(timeout_s)
    todo = [n for n in range(n_budget) if n not in results]
    first = True
    while todo:
        finished = [results[n] for n in sorted(results)]
        left = clock.left()
        if left is not None and not (first and run_first):
            cost = plan.next_cost(list(done) + finished) or (None if finished else first_estimate_s)
            if left <= 0 or (cost is not None and cost > left):
                what = "spent" if left <= 0 else f"{left:.0f}s left, a trial takes about {cost:.0f}s"
                log.info("time budget of %.0fs %s; %d trials not started", timeout_s, what, len(todo))
                break
        first = False
        batch, todo = todo[: max(1, plan.n_jobs)], todo[max(1, plan.n_jobs) :]
        limit = None if left is None or timeout_s is None else min(left, timeout_s / max(1, plan.trial_share))
        specs = []
        for number in batch:
            params = dict(plan.default_params) if offset and number == 0 else sampler.ask(number)
            specs.append(plan.spec(number, params, finished, limit))
        for result in runner.run(specs):
            sampler.tell(result)
            results[result.number] = result
            if on_result is not None:
                on_result(result, [results[n] for n in sorted(results)])
    return [results[n] for n in sorted(results)]
