"""Publication gates: checks a new nightly file must pass before it replaces the published one.

A file can be valid (every customer, K items, nothing repeated) and still be a bad night: half
the usual input arrived, or the model broke. The gates compare the new file with what is
published and with the offline evaluation, and refuse to publish (exit 7, the published file
untouched) when:

* ``min_users`` / ``min_rows``: the file has fewer customers / rows than this;
* ``max_drop``: it has more than this fraction fewer customers, or rows, than the file
  published now (the ``latest`` pointer);
* ``metric: baseline``: the serving model's ``evaluate.primary_metric`` is below the baseline
  model's (on the same test users, from ``evaluate/metrics.json``);
* ``metric_floor``: that metric is below a fixed floor.

The metric gates need an evaluation of the models that serve now; without one they are
skipped and the summary says so, unless ``require_evaluation`` makes that a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recctl.config.recommend import GatesConfig

__all__ = ["Evaluation", "GateReport", "check_gates"]


@dataclass
class Evaluation:
    """The offline numbers the metric gates read (from ``evaluate/metrics.json``)."""

    metric: str
    model: str
    value: float | None
    baseline: str | None
    baseline_value: float | None


@dataclass
class GateReport:
    """Outcome of :func:`check_gates`."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every gate passed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the manifest."""
        return {"ok": self.ok, "problems": self.problems, "checked": self.checked, "skipped": self.skipped}


def _drop(new: int, old: int) -> float:
    return 0.0 if old <= 0 else max(0.0, (old - new) / old)


def check_gates(
    gates: GatesConfig,
    *,
    users: int,
    rows: int,
    k: int | None = None,
    previous: dict[str, Any] | None,
    evaluation: Evaluation | None,
    evaluation_problem: str | None = None,
) -> GateReport:
    """Check a new file against the gates.

    Parameters
    ----------
    gates
        ``export.gates``.
    users, rows
        The new file's customers and rows.
    k
        The new file's list length; when the published file's differs (a config change),
        its rows are rescaled to the new K before the drop is measured.
    previous
        The ``latest`` pointer of the file published now (``users``, ``rows``, ``file``), or
        ``None`` for the first publication.
    evaluation
        The serving model's evaluation, or ``None`` when there is none for the models serving now.
    evaluation_problem
        Why there is no evaluation (for the message).

    Returns
    -------
    GateReport
        ``problems`` holds one sentence per failed gate, naming the YAML key to change.
    """
    report = GateReport()
    if gates.min_users is not None:
        report.checked.append("min_users")
        if users < gates.min_users:
            report.problems.append(
                f"the file has {users:,} customers, fewer than export.gates.min_users = {gates.min_users:,}"
            )
    if gates.min_rows is not None:
        report.checked.append("min_rows")
        if rows < gates.min_rows:
            report.problems.append(f"the file has {rows:,} rows, fewer than export.gates.min_rows = {gates.min_rows:,}")
    if gates.max_drop is not None:
        if previous is None:
            report.skipped.append("max_drop (nothing published yet)")
        else:
            report.checked.append("max_drop")
            name = previous.get("file", "the published file")
            old_rows = int(previous.get("rows") or 0)
            old_k = previous.get("k")
            if k and old_k and int(old_k) != k and previous.get("format") in ("csv", "parquet"):
                old_rows = round(old_rows * k / int(old_k))  # a new K changes the rows by design
            for what, new, old in (
                ("customers", users, int(previous.get("users") or 0)),
                ("rows", rows, old_rows),
            ):
                drop = _drop(new, old)
                if drop > gates.max_drop:
                    report.problems.append(
                        f"{new:,} {what} against {old:,} in {name}: a drop of {drop:.0%}, more than "
                        f"export.gates.max_drop = {gates.max_drop:.0%} (half the input? check today's ingest)"
                    )
    wants_metric = gates.metric == "baseline" or gates.metric_floor is not None
    if wants_metric and (evaluation is None or evaluation.value is None):
        why = evaluation_problem or "no evaluation of the serving model"
        if gates.require_evaluation:
            report.problems.append(
                f"the metric gates cannot be checked: {why}; run `recctl evaluate` (or set "
                "export.gates.require_evaluation: false)"
            )
        else:
            report.skipped.append(f"metric ({why})")
        return report
    if evaluation is None or evaluation.value is None:
        return report
    if gates.metric == "baseline":
        if evaluation.baseline is None or evaluation.baseline_value is None or evaluation.baseline == evaluation.model:
            report.skipped.append("metric baseline (the serving model is the baseline)")
        else:
            report.checked.append("metric baseline")
            if evaluation.value < evaluation.baseline_value:
                report.problems.append(
                    f"{evaluation.model} scores {evaluation.metric} = {evaluation.value:.4f}, below the baseline "
                    f"{evaluation.baseline} ({evaluation.baseline_value:.4f}) on the test split; a broken or "
                    "worse model is not published (export.gates.metric: off turns this gate off)"
                )
    if gates.metric_floor is not None:
        report.checked.append("metric_floor")
        if evaluation.value < gates.metric_floor:
            report.problems.append(
                f"{evaluation.model} scores {evaluation.metric} = {evaluation.value:.4f}, below "
                f"export.gates.metric_floor = {gates.metric_floor}"
            )
    return report
