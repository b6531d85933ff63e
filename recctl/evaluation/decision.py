"""Which model to ship, and why: one decision from an evaluation, the serving model and the previous run.

:func:`decide` reads the ``metrics.json`` content (means, per-model intervals, the paired
comparisons with Holm-corrected verdicts) and a little context (the model ``recommend.model``
serves, the previous evaluate run from :mod:`recctl.history`, costs, tuning results) and says:

* **switch** to the best model when it is significantly better than the baseline *and* than
  the model serving now (the paired test after Holm and the bootstrap interval agree, see
  :mod:`recctl.evaluation.comparison`); without a serving model, better than the baseline is
  enough;
* **keep** the serving model when nothing is clearly better than it (switching has a cost and
  a risk; "no detectable difference" is not a reason to change), or when it is the best;
* **keep the baseline** when no model beats it.

It also flags a **regression**: the chosen model's primary metric fell below the previous
run's interval. Intervals are the runs' own (bootstrap percentile of the mean over users);
runs are not paired (the test split may differ), so that check is a warning, not a test.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["decide"]


def _comparison(metrics: dict[str, Any], model: str, reference: str, metric: str) -> dict[str, Any] | None:
    """The comparison row ``model - reference`` on ``metric``, flipped if only the reverse was computed."""
    for c in metrics.get("comparisons", []):
        if c["metric"] != metric:
            continue
        if c["model"] == model and c["reference"] == reference:
            return dict(c)
        if c["model"] == reference and c["reference"] == model:
            flipped = dict(c)
            flipped.update(
                model=model,
                reference=reference,
                model_mean=c["reference_mean"],
                reference_mean=c["model_mean"],
                diff=None if c["diff"] is None else -c["diff"],
                ci_low=None if c["ci_high"] is None else -c["ci_high"],
                ci_high=None if c["ci_low"] is None else -c["ci_low"],
                verdict={"better": "worse", "worse": "better", "higher": "lower", "lower": "higher"}.get(
                    c["verdict"], c["verdict"]
                ),
            )
            return flipped
    return None


def _mean(metrics: dict[str, Any], model: str, metric: str) -> float | None:
    value = metrics["models"].get(model, {}).get("mean", {}).get(metric)
    return value if value is not None and math.isfinite(value) else None


def decide(metrics: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipping decision for an evaluation.

    Parameters
    ----------
    metrics
        The ``metrics.json`` content of an evaluate run.
    context
        Optional: ``serving_model`` (the model ``recommend.model`` names), ``previous`` (the
        previous evaluate run's history record), ``costs`` (``{model: {fit_seconds,
        score_seconds}}``), ``tuning`` (the tune stage's summary, with ``tuned_in_use``).

    Returns
    -------
    dict
        ``action`` (``switch`` / ``keep`` / ``keep_baseline``), ``ship`` (model name),
        ``headline`` (one sentence), ``reasons`` (sentences), ``warnings`` (sentences),
        ``primary_metric``, and ``evidence``: for the shipped model, its mean and interval and
        the comparisons with the baseline, the serving model and the previous run.
    """
    context = context or {}
    primary = metrics["primary_metric"]
    baseline = metrics["baseline"]
    serving = context.get("serving_model")
    if serving not in metrics["models"]:
        serving = None
    names = [n for n in metrics.get("model_order") or metrics["models"] if n != baseline]
    better = [n for n in names if (_comparison(metrics, n, baseline, primary) or {}).get("verdict") == "better"]
    best = max(better, key=lambda n: (_mean(metrics, n, primary) or -math.inf, n == serving)) if better else None
    reasons: list[str] = []
    if best is None:
        ship = (
            serving
            if serving is not None and serving != baseline and _not_worse(metrics, serving, baseline, primary)
            else baseline
        )
        action = "keep" if serving is not None and ship == serving else "keep_baseline"
        reasons.append(
            f"no model is significantly better than the baseline '{baseline}' on {primary} "
            "(paired test with Holm's correction and bootstrap interval must agree)"
        )
        if action == "keep" and ship != baseline:
            reasons.append(f"'{ship}' serves now and is not significantly worse than the baseline")
    elif serving is None or serving == best:
        ship, action = best, ("keep" if serving == best else "switch")
        reasons.append(f"'{best}' has the highest {primary} of the models significantly better than '{baseline}'")
        if serving == best:
            reasons.append("it is the model serving now ('recommend.model')")
    else:
        versus = _comparison(metrics, best, serving, primary)
        if versus is not None and versus["verdict"] == "better":
            ship, action = best, "switch"
            reasons.append(
                f"'{best}' is significantly better than the baseline '{baseline}' and than '{serving}', "
                "which serves now"
            )
        else:
            ship, action = serving, "keep"
            reasons.append(
                f"'{best}' beats the baseline but is not significantly better than '{serving}', which serves now; "
                "switching would change the lists without a measured gain"
            )
    headline = {
        "switch": f"Ship {ship}",
        "keep": f"Keep {ship}",
        "keep_baseline": f"Keep the baseline {ship}",
    }[action]
    evidence = _evidence(metrics, ship, baseline, serving, primary, context.get("previous"))
    warnings = []
    prev = evidence.get("previous") or {}
    low, high = (prev.get("interval") or [None, None])[:2]
    if low is not None and high is not None and evidence.get("mean") is not None and evidence["mean"] < low:
        warnings.append(
            f"{primary} of '{ship}' fell from {prev['mean']:.4f} in the previous run ({prev.get('finished_at', '?')}) "
            f"to {evidence['mean']:.4f}, below that run's interval [{low:.4f}, {high:.4f}]: check the data "
            "before publishing"
        )
    costs = (context.get("costs") or {}).get(ship)
    if costs:
        evidence["costs"] = costs
    tuning = context.get("tuning")
    if (
        tuning
        and tuning.get("model") == ship
        and not tuning.get("tuned_in_use")
        and (tuning.get("gain_over_default") or 0) > 0
    ):
        reasons.append(
            f"tuning found parameters {tuning['gain_over_default']:+.4f} {tuning.get('objective')} better on the "
            "validation split; they are not the ones evaluated here (recctl train <workdir>/tune/best.yaml)"
        )
    return {
        "action": action,
        "ship": ship,
        "headline": headline,
        "primary_metric": primary,
        "reasons": reasons,
        "warnings": warnings,
        "evidence": evidence,
    }


def _not_worse(metrics: dict[str, Any], model: str, baseline: str, metric: str) -> bool:
    return (_comparison(metrics, model, baseline, metric) or {}).get("verdict") != "worse"


def _evidence(
    metrics: dict[str, Any],
    ship: str,
    baseline: str,
    serving: str | None,
    primary: str,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    model = metrics["models"][ship]
    evidence: dict[str, Any] = {
        "model": ship,
        "mean": _mean(metrics, ship, primary),
        "interval": (model.get("interval") or {}).get(primary),
        "vs_baseline": _comparison(metrics, ship, baseline, primary) if ship != baseline else None,
        "vs_serving": _comparison(metrics, ship, serving, primary) if serving not in (None, ship) else None,
    }
    if previous:
        prev_model = previous.get("models", {}).get(ship)
        if prev_model and prev_model.get("mean", {}).get(primary) is not None:
            evidence["previous"] = {
                "finished_at": previous.get("finished_at"),
                "mean": prev_model["mean"][primary],
                "interval": (prev_model.get("interval") or {}).get(primary),
                "change": None if evidence["mean"] is None else evidence["mean"] - prev_model["mean"][primary],
            }
    return evidence
