"""The shipping decision on hand-made metrics: switch, keep, keep the baseline, regression warning."""

from __future__ import annotations

from typing import Any

from recctl.evaluation.decision import decide

P = "ndcg@10"


def _metrics(means: dict[str, float], verdicts: dict[tuple[str, str], str], interval: bool = True) -> dict[str, Any]:
    comparisons = [
        {
            "model": m,
            "reference": r,
            "role": "baseline" if r == "popular" else "best",
            "metric": P,
            "model_mean": means[m],
            "reference_mean": means[r],
            "diff": means[m] - means[r],
            "ci_low": means[m] - means[r] - 0.01,
            "ci_high": means[m] - means[r] + 0.01,
            "p_value": 0.001,
            "p_holm": 0.002,
            "verdict": v,
        }
        for (m, r), v in verdicts.items()
    ]
    return {
        "primary_metric": P,
        "baseline": "popular",
        "model_order": list(means),
        "models": {
            n: {"mean": {P: v}, "interval": {P: [v - 0.01, v + 0.01] if interval else [None, None]}}
            for n, v in means.items()
        },
        "comparisons": comparisons,
    }


MEANS = {"popular": 0.10, "knn": 0.14, "lightfm": 0.15}


def test_switch_only_when_better_than_baseline_and_the_serving_model() -> None:
    verdicts = {("knn", "popular"): "better", ("lightfm", "popular"): "better", ("knn", "lightfm"): "worse"}
    assert decide(_metrics(MEANS, verdicts))["headline"] == "Ship lightfm"
    kept = decide(
        _metrics(MEANS, {**verdicts, ("knn", "lightfm"): "no detectable difference"}), {"serving_model": "knn"}
    )
    assert (kept["action"], kept["ship"]) == ("keep", "knn")
    assert "not significantly better than 'knn'" in kept["reasons"][0]
    switched = decide(_metrics(MEANS, verdicts), {"serving_model": "knn"})
    assert (switched["action"], switched["ship"]) == ("switch", "lightfm")
    assert switched["evidence"]["vs_serving"]["diff"] > 0  # flipped from the knn - lightfm row


def test_keep_the_baseline_when_nothing_beats_it() -> None:
    verdicts = {("knn", "popular"): "no detectable difference", ("lightfm", "popular"): "worse"}
    decision = decide(_metrics(MEANS, verdicts))
    assert (decision["action"], decision["ship"]) == ("keep_baseline", "popular")


def test_regression_against_the_previous_run_is_a_warning_and_missing_intervals_are_fine() -> None:
    verdicts = {("knn", "popular"): "better", ("lightfm", "popular"): "better", ("knn", "lightfm"): "worse"}
    previous = {
        "finished_at": "2026-06-14T00:00:00Z",
        "models": {"lightfm": {"mean": {P: 0.30}, "interval": {P: [0.29, 0.31]}}},
    }
    warned = decide(_metrics(MEANS, verdicts), {"previous": previous})
    assert warned["warnings"] and "fell from 0.3000" in warned["warnings"][0]
    assert warned["evidence"]["previous"]["change"] < 0
    previous["models"]["lightfm"]["interval"] = {P: [None, None]}  # a run without bootstrap
    assert decide(_metrics(MEANS, verdicts, interval=False), {"previous": previous})["warnings"] == []
