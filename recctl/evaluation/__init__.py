"""Offline evaluation: vectorised metrics, the shared protocol, paired comparison, report.

Public API::

    from recctl.evaluation import evaluate_model, evaluate_rankings, EvalResult
    result = evaluate_model(model, target=valid, exclude=train, ks=[10], metrics=["ndcg"])
    result.mean["ndcg@10"]

Definitions of every metric are in ``docs/metrics.md``.
"""

from __future__ import annotations

from recctl.evaluation.comparison import (
    NO_DIFFERENCE,
    Comparison,
    bootstrap_mean_ci,
    compare_models,
    holm,
    paired_pvalue,
)
from recctl.evaluation.metrics import (
    ACCURACY_METRICS,
    ALL_METRICS,
    BEYOND_ACCURACY_METRICS,
    DEFAULT_METRICS,
    EvalResult,
    auc_from_scores,
    evaluate_model,
    evaluate_rankings,
    metric_key,
    relevant_target,
)
from recctl.evaluation.protocol import (
    EvalProtocol,
    build_protocol,
    history_segments,
    popularity_bands,
)
from recctl.evaluation.report import render_report

__all__ = [
    "NO_DIFFERENCE",
    "Comparison",
    "bootstrap_mean_ci",
    "compare_models",
    "holm",
    "paired_pvalue",
    "render_report",
    "ACCURACY_METRICS",
    "ALL_METRICS",
    "BEYOND_ACCURACY_METRICS",
    "DEFAULT_METRICS",
    "EvalProtocol",
    "EvalResult",
    "auc_from_scores",
    "build_protocol",
    "evaluate_model",
    "evaluate_rankings",
    "history_segments",
    "metric_key",
    "popularity_bands",
    "relevant_target",
]
