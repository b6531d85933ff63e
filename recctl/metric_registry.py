"""Every metric recctl computes, declared once: its name, whether it takes a K, what it needs.

Config validation (``evaluate.metrics``, ``evaluate.primary_metric``, ``tune.objective``,
``update.drift.metric``), tuning, the drift guard, the A/B preview and the CLI read this
registry, so a metric name is written in one place; ``recctl.evaluation.metrics`` computes
them (a test checks every name here has a kernel there, and no kernel lacks a name).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

__all__ = ["METRICS", "MetricSpec", "metric_names", "parse_metric_at_k", "spec"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    Attributes
    ----------
    name
        As written in the config and in ``metrics.json`` keys (``ndcg@10``).
    has_k
        Computed at each cut-off K (``auc`` is not).
    per_user
        Has a value per user, so it can be compared user by user, tuned or drift-checked
        (``coverage`` is one number over all lists).
    accuracy
        Measured against held-out items (else: about the lists themselves).
    objective
        May be maximised by tuning and guarded by the drift check.
    needs
        What the data must provide (``item_features`` for diversity), or ``""``.
    """

    name: str
    has_k: bool = True
    per_user: bool = True
    accuracy: bool = True
    objective: bool = False
    needs: str = ""


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("precision", objective=True),
        MetricSpec("recall", objective=True),
        MetricSpec("f1", objective=True),
        MetricSpec("map", objective=True),
        MetricSpec("ndcg", objective=True),
        MetricSpec("ndcg_graded"),
        MetricSpec("mrr", objective=True),
        MetricSpec("hit_rate", objective=True),
        MetricSpec("auc", has_k=False),
        MetricSpec("coverage", per_user=False, accuracy=False),
        MetricSpec("novelty", accuracy=False),
        MetricSpec("diversity", accuracy=False, needs="item_features"),
        MetricSpec("popularity_bias", accuracy=False),
        MetricSpec("user_coverage", accuracy=False),
    )
}

_AT_K = re.compile(r"^([a-z_]+)@([0-9]+)$")
#: the largest K anything may be cut at (a list of 100,000 items per user is not a recommendation)
MAX_K = 10_000


def metric_names(
    *, objective: bool | None = None, accuracy: bool | None = None, per_user: bool | None = None
) -> tuple[str, ...]:
    """Registered names, in declaration order, filtered by the given flags."""
    return tuple(
        m.name
        for m in METRICS.values()
        if (objective is None or m.objective == objective)
        and (accuracy is None or m.accuracy == accuracy)
        and (per_user is None or m.per_user == per_user)
    )


def spec(name: str) -> MetricSpec:
    """The registered metric ``name``.

    Raises
    ------
    ValueError
        Naming the registered metrics and the closest one.
    """
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), METRICS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown metric {name!r}{hint}; metrics: {', '.join(METRICS)}") from None


def parse_metric_at_k(text: str, *, objective: bool = False) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)`` after checking the name, K and (``objective``) use.

    Raises
    ------
    ValueError
        Not ``<metric>@<K>``, an unknown metric, a metric without K, K outside 1..MAX_K, or (with
        ``objective``) a metric that cannot be maximised or drift-checked.
    """
    match = _AT_K.match(str(text).strip())
    allowed = metric_names(objective=True) if objective else tuple(m for m in METRICS if METRICS[m].has_k)
    if match is None:
        raise ValueError(f"must look like 'ndcg@10' (one of {', '.join(allowed)}, '@', a K); got {text!r}")
    name, k = match.group(1), int(match.group(2))
    if name not in METRICS:
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown metric '{name}'{hint}; one of {', '.join(allowed)}")
    found = spec(name)
    if not found.has_k:
        raise ValueError(f"'{name}' has no K; write it alone, not {text!r}")
    if objective and not found.objective:
        raise ValueError(f"'{name}' cannot be maximised or compared here; choose one of {', '.join(allowed)}")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"K must be a positive K of at most {MAX_K:,}; got {k:,}")
    return name, k
