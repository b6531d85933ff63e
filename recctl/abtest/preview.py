"""Offline preview of an experiment: each variant's model on the test split, paired with control.

Before traffic is split, the same held-out test users are ranked by every variant's trained
model; per-user metrics (e.g. ``ndcg@10``) are differenced against the control's on the same
users, and the evaluation's paired comparison
(:func:`recctl.evaluation.comparison.compare_models`: paired bootstrap interval of the mean
difference, paired test, Holm over the variants) gives the expected difference and its
uncertainty. It is an offline proxy: it says which variant ranks held-out interactions better,
not by how much conversion will move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recctl.abtest.run import experiment_of
from recctl.columns import Columns
from recctl.errors import ConfigError, DataError
from recctl.progress import Progress

__all__ = ["PreviewResult", "run_preview"]


@dataclass
class PreviewResult:
    """What ``recctl ab preview`` shows."""

    experiment: str
    control: str
    alpha: float
    n_users: int
    metrics: list[str]
    variant_models: dict[str, str]
    means: dict[str, dict[str, float | None]]
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "experiment": self.experiment,
            "control": self.control,
            "alpha": self.alpha,
            "n_users": self.n_users,
            "split": "test",
            "metrics": self.metrics,
            "variant_models": self.variant_models,
            "means": self.means,
            "comparisons": self.comparisons,
            "method": (
                "paired bootstrap percentile CI of the per-user mean difference, paired test, "
                "Holm over variants per metric (recctl.evaluation.comparison.compare_models)"
            ),
        }


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def run_preview(
    cfg: Any,
    *,
    k: int | None = None,
    metrics: list[str] | None = None,
    progress: Progress | None = None,
) -> PreviewResult:
    """Evaluate every variant's trained model on the test split and compare each with control.

    Parameters
    ----------
    cfg
        Loaded config with an ``experiment:`` section; models come from the ``train`` stage and
        the splits from ``preprocess``.
    k
        Cut-off; default the largest of ``evaluate.k``.
    metrics
        Per-user metrics (``ndcg``, ``hit_rate``, ...); default the accuracy metrics of
        ``evaluate.metrics``.
    progress
        Optional ``progress(task, completed, total)`` callback.

    Returns
    -------
    PreviewResult

    Raises
    ------
    ConfigError
        A metric that is not per user (coverage) or unknown.
    ArtifactError
        Preprocess or train outputs missing or stale (naming the command to run).
    DataError
        No test user to evaluate.
    """
    from recctl.data.dataset import load_dataset, load_split_matrix
    from recctl.evaluation import ACCURACY_METRICS, evaluate_model
    from recctl.evaluation.comparison import compare_models
    from recctl.graph import require_stage
    from recctl.model_store import load_trained_model

    experiment = experiment_of(cfg)
    ecfg = cfg.evaluate
    chosen = list(metrics) if metrics else [m for m in ecfg.metrics if m in ACCURACY_METRICS] or ["ndcg"]
    bad = [m for m in chosen if m not in ACCURACY_METRICS]
    if bad:
        raise ConfigError(f"--metric: {bad} cannot be compared user by user; choose from {', '.join(ACCURACY_METRICS)}")
    cutoff = k if k is not None else max(ecfg.k)
    pre_dir, _ = require_stage(cfg, "preprocess", ["users.parquet", "items.parquet", "train.parquet", "test.parquet"])
    dataset = load_dataset(pre_dir, "train")
    test = load_split_matrix(pre_dir, "test", dataset.n_users, dataset.n_items)
    exclude = dataset.interactions if ecfg.exclude_seen else None

    names = [experiment.control, *experiment.treatments]
    variant_models = {v: experiment.variants[v].model for v in names}
    loaded: dict[str, Any] = {}
    results = {}
    for i, variant in enumerate(names):
        model_name = variant_models[variant]
        if model_name not in loaded:
            loaded[model_name] = load_trained_model(cfg, model_name)
        task = f"preview {variant}"

        def _tick(done: int, task: str = task) -> None:
            if progress is not None:
                progress(task, done, None)

        results[variant] = evaluate_model(loaded[model_name], test, exclude, [cutoff], chosen, progress=_tick)
        if progress is not None:
            progress("variants", i + 1, len(names))
    control_result = results[experiment.control]
    if control_result.n_users == 0:
        raise DataError(
            f"{pre_dir / 'test.parquet'}: no test user has a held-out item outside their training items; "
            "nothing to preview. Check preprocess.split."
        )
    cols = [c for c in control_result.per_user.columns if c != Columns.UserIdx]
    comparisons = compare_models(
        {v: r.per_user.select(cols).to_numpy() for v, r in results.items()},
        cols,
        baseline=experiment.control,
        best=None,
        n_bootstrap=ecfg.n_bootstrap or 1000,
        alpha=experiment.alpha,
        seed=cfg.seed,
    )
    rows = []
    for c in comparisons:
        d = c.to_dict()
        rows.append(
            {
                "variant": d["model"],
                "metric": d["metric"],
                "control_mean": d["reference_mean"],
                "variant_mean": d["model_mean"],
                "diff": d["diff"],
                "ci_low": d["ci_low"],
                "ci_high": d["ci_high"],
                "p_value": d["p_value"],
                "p_holm": d["p_holm"],
                "n_users": d["n_users"],
                "verdict": d["verdict"],
            }
        )
    means = {v: {m: _finite(r.mean.get(m, float("nan"))) for m in cols} for v, r in results.items()}
    return PreviewResult(
        experiment.name,
        experiment.control,
        experiment.alpha,
        control_result.n_users,
        cols,
        variant_models,
        means,
        rows,
    )
