"""One tuning trial: build the model with the sampled parameters, fit on ``tune_train``,
score on ``valid``, stop early and prune.

Everything a trial needs travels in a :class:`TrialSpec` of plain data, so the same function
runs in this process or in a spawned worker. A trial never raises for a model failure: the
error is returned in a ``failed`` :class:`TrialResult` and the search goes on.

Only two splits are ever read here: ``tune_train`` (through ``load_dataset``) to fit and
``valid`` (through ``load_split_matrix``) to score. The test split is left for ``evaluate``.
"""

from __future__ import annotations

import logging
import math
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recctl.data.dataset import Dataset, load_dataset, load_split_matrix
from recctl.tuning import budget

__all__ = [
    "REPORT_METRICS",
    "TrialData",
    "TrialResult",
    "TrialSpec",
    "load_trial_data",
    "median_curve",
    "run_trial",
    "score_on_valid",
]

log = logging.getLogger(__name__)

#: metrics recorded for every trial, besides the objective (all at the objective's K)
REPORT_METRICS = ("precision", "recall", "ndcg", "map")

#: the splits tuning reads; anything else (``test`` above all) is a leak
TUNE_SPLITS = ("tune_train", "valid")


@dataclass
class TrialData:
    """The training and validation data of every trial (loaded once per process).

    ``candidates`` is the boolean vector of items models may rank (``evaluate.candidates``,
    computed on ``tune_train``), or ``None`` for every item.
    """

    dataset: Dataset
    valid: sp.csr_matrix
    candidates: np.ndarray | None = None

    @property
    def train(self) -> sp.csr_matrix:
        """The ``tune_train`` interactions (items each user saw, excluded from the ranking)."""
        return self.dataset.interactions


def load_trial_data(
    preprocess_dir: str | Path, candidates: str = "all", allowed_ids: list[str] | None = None
) -> TrialData:
    """Load ``tune_train`` (to fit) and ``valid`` (to score) from a preprocess directory.

    ``test.parquet`` is never opened: tuning must not see the split the final evaluation uses.
    ``candidates`` (and ``allowed_ids`` for ``allow_list``) is ``evaluate.candidates``: trials
    rank the items the final evaluation will, with ``trained`` meaning trained in ``tune_train``.
    """
    from recctl.evaluation.protocol import candidate_mask

    dataset = load_dataset(preprocess_dir, "tune_train")
    valid = load_split_matrix(Path(preprocess_dir), "valid", dataset.n_users, dataset.n_items)
    allowed = None
    if allowed_ids is not None:
        idx = dataset.item_index(allowed_ids)
        allowed = idx[idx >= 0]
    mask, _ = candidate_mask(candidates, dataset.interactions, allowed)
    return TrialData(dataset, valid, mask)


@dataclass
class TrialSpec:
    """What one trial runs (plain data, picklable for worker processes).

    Attributes
    ----------
    number
        The trial's number (0-based; trial 0 is the configured parameters when
        ``tune.include_default`` is on).
    params
        The searched parameters of this trial.
    model_params
        The complete model parameters (``kind`` + configured values with ``params`` applied).
    metric, k
        The objective, maximised on the validation split.
    patience, min_delta
        Early stopping of epoch-wise models.
    prune, prune_warmup_epochs, median
        Median pruning: after ``prune_warmup_epochs``, a trial whose best value so far is
        below ``median[epoch - 1]`` (the median curve of finished trials) is stopped.
    seed
        Given to models with a ``random_state`` that the config leaves unset.
    time_limit_s
        An epoch-wise trial stops after the epoch that leaves less than one more epoch's time
        within this many seconds (its share of the tune budget); ``None``: no limit.
    """

    number: int
    params: dict[str, Any]
    model_params: dict[str, Any]
    metric: str
    k: int
    patience: int = 3
    min_delta: float = 0.0
    prune: bool = True
    prune_warmup_epochs: int = 3
    median: list[float] | None = None
    seed: int = 42
    time_limit_s: float | None = None

    @property
    def objective(self) -> str:
        """The objective's key in the metrics, e.g. ``ndcg@10``."""
        return f"{self.metric}@{self.k}"


@dataclass
class TrialResult:
    """The outcome of one trial.

    ``status`` is ``complete``, ``pruned`` (stopped by the median rule) or ``failed`` (the
    model raised; ``error`` says why). ``value`` and ``metrics`` are those of the best epoch;
    ``curve`` holds the objective after every epoch; ``cut_at_budget``: an epoch-wise trial
    stopped by its time limit.
    """

    number: int
    params: dict[str, Any]
    status: str
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    duration_s: float = 0.0
    error: str | None = None
    curve: list[float] = field(default_factory=list)
    cut_at_budget: bool = False
    #: the objective per validation user at the best epoch (users in index order), for paired tests
    per_user: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints and JSON)."""
        return asdict(self)


def median_curve(results: list[TrialResult]) -> list[float] | None:
    """Median, per epoch, of the best-so-far curves of complete trials.

    A trial that stopped before an epoch keeps its final best value there (it would not
    have improved: that is why it stopped). ``None`` when no trial has a curve.
    """
    import numpy as np

    curves = [r.curve for r in results if r.status == "complete" and r.curve]
    if not curves:
        return None
    length = max(len(c) for c in curves)
    rows = []
    for c in curves:
        best = np.maximum.accumulate(np.nan_to_num(np.asarray(c, dtype=np.float64), nan=-np.inf))
        rows.append(np.concatenate([best, np.full(length - len(best), best[-1])]))
    return [float(v) for v in np.median(np.vstack(rows), axis=0)]


def _model_config(spec: TrialSpec) -> Any:
    from recctl.models.registry import get_model_class

    cls = get_model_class(spec.model_params["kind"])
    config = cls.config_class.model_validate(spec.model_params)
    # same rule as the train stage: an unset random_state takes the experiment seed, so
    # trials differ only by their parameters
    if "random_state" in type(config).model_fields and getattr(config, "random_state", 0) is None:
        config = config.model_copy(update={"random_state": spec.seed})
    return config


def score_on_valid(model: Any, data: TrialData, metric: str, k: int) -> tuple[dict[str, float], np.ndarray]:
    """Mean metrics at ``k`` and the per-user ``metric@k`` of a fitted model on the validation split."""
    from recctl.evaluation import evaluate_model

    metrics = list(dict.fromkeys([metric, *REPORT_METRICS]))
    result = evaluate_model(
        model, target=data.valid, exclude=data.train, ks=[k], metrics=metrics, item_mask=data.candidates
    )
    per_user = result.per_user[f"{metric}@{k}"].to_numpy().astype(np.float64)
    return {key: float(value) for key, value in result.mean.items()}, per_user


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def run_trial(spec: TrialSpec, data: TrialData) -> TrialResult:
    """Run one trial and return its result (never raises for a model or parameter failure).

    Epoch-wise models (``supports_epochs``) are scored on the validation split after every
    epoch of ``iter_fit``; the trial stops after ``patience`` epochs without an improvement
    of more than ``min_delta``, or when pruned, and reports its best epoch. Other models are
    fitted once and scored once.

    Parameters
    ----------
    spec
        The trial.
    data
        ``tune_train`` and ``valid`` (see :func:`load_trial_data`).

    Returns
    -------
    TrialResult
        ``complete``, ``pruned`` or ``failed`` with the error message.
    """
    from recctl.models.registry import create_model

    started = budget.now()
    result = TrialResult(number=spec.number, params=dict(spec.params), status="complete")
    best = -math.inf
    since_best = 0
    epochs = None
    try:
        model = create_model(_model_config(spec))
        epoch_wise = bool(getattr(model, "supports_epochs", False))
        epochs = model.iter_fit(data.dataset)
        for epoch in epochs:
            metrics, per_user = score_on_valid(model, data, spec.metric, spec.k)
            value = metrics[spec.objective]
            result.curve.append(value)
            result.epochs_run = int(epoch)
            if result.best_epoch is None or _finite(value) > best + spec.min_delta:
                best, result.best_epoch, result.metrics, since_best = _finite(value), int(epoch), metrics, 0
                result.per_user = per_user
            else:
                since_best += 1
            if not epoch_wise:
                continue
            if since_best >= spec.patience:
                result.stopped_early = True
                break
            if spec.time_limit_s is not None:
                spent = budget.now() - started
                if spent + spent / epoch > spec.time_limit_s:  # another epoch would end past the limit
                    result.cut_at_budget = True
                    break
            if (
                spec.prune
                and spec.median
                and epoch >= spec.prune_warmup_epochs
                and epoch <= len(spec.median)
                and best < spec.median[epoch - 1]
            ):
                result.status = "pruned"
                break
        if result.best_epoch is None:
            raise RuntimeError("the model's iter_fit yielded no epoch")
        if best == -math.inf:
            raise FloatingPointError(f"{spec.objective} is not finite at any epoch (did training diverge?)")
        result.value = best
    except Exception as exc:  # a trial's failure is data, not a reason to stop the search
        log.debug("trial %d failed:\n%s", spec.number, traceback.format_exc())
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        result.value = None
        result.metrics = {}
        result.per_user = None
    finally:
        if epochs is not None and hasattr(epochs, "close"):
            epochs.close()
    result.duration_s = round(budget.now() - started, 3)  # the budget's clock: estimates are made from it
    return result
