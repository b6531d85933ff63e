"""``recctl history``: the last runs' metrics, run summaries and publications; a regression gate."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recctl.cli._common import Invocation, command


@command()
def history_command(
    cli: Invocation,
    last: Annotated[int, typer.Option("--last", "-n", min=1, help="How many runs of each kind to show.")] = 10,
    max_drop: Annotated[
        float | None,
        typer.Option(
            "--max-drop",
            metavar="FRACTION",
            help="Gate: exit 7 when the serving model's primary metric fell by more than this "
            "(relative, e.g. 0.1) between the last two evaluations.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show the run history: each evaluation's metric per model, each run's stages, each publication.

    Evaluations: the serving model's primary metric with its interval, the best model and the decision, and the change since the previous evaluation. Runs: which stages ran or were skipped, how long, and the error of a failed run. Publications: the versions serve-export keeps for recctl rollback.

    --max-drop turns it into a gate for a scheduler: exit 7 (nothing to publish) when the metric fell by more than that fraction since the previous evaluation; fewer than two evaluations pass. The history keeps the last history.keep records (default 100).

    \b
    Example:
        recctl history configs/quickstart.yaml
        recctl history configs/quickstart.yaml --last 30 --format tsv
        recctl history configs/quickstart.yaml --last 2 --max-drop 0.1 --json
    """  # noqa: E501
    from recctl.experiment import history_view

    view = history_view(cli.config, last)
    change = view["change"]
    failed = None
    if max_drop is not None:
        view["gate"] = _gate(change, max_drop)
        if not view["gate"]["passed"]:
            failed = view["gate"]["reason"]
            view["error"] = {"type": "GateRefused", "message": failed, "exit_code": 7}
    cli.emit(view, lambda: _render(cli, view))
    if failed is not None:
        cli.exit_with(7, failed, "GateRefused")
    if max_drop is not None:
        cli.note(f"gate passed: {view['gate']['reason']}")


def _gate(change: dict[str, Any] | None, max_drop: float) -> dict[str, Any]:
    if change is None:
        return {"passed": True, "max_drop": max_drop, "reason": "fewer than two comparable evaluations"}
    relative = change["relative_change"]
    what = (
        f"{change['metric']} of the serving model {change['model']} {change['current']:.4f} vs "
        f"{change['previous']:.4f} ({change['previous_model']}) at the previous evaluation"
    )
    if relative is None:
        return {"passed": True, "max_drop": max_drop, "reason": f"{what}: no relative change (previous is 0)"}
    drop = -relative
    passed = drop <= max_drop
    verdict = "within" if passed else "more than"
    split = "" if change["same_test_split"] else " (the test split changed between the runs)"
    return {
        "passed": passed,
        "max_drop": max_drop,
        "drop": drop,
        "reason": f"{what}: {relative:+.1%}, {verdict} the allowed drop of {max_drop:.1%}{split}",
    }


def _render(cli: Invocation, view: dict[str, Any]) -> None:
    evaluations = view["evaluations"]
    if evaluations:
        rows = []
        previous = None
        for record in evaluations:
            metric = record.get("primary_metric")
            model = record.get("serving_model") or record.get("best")
            entry = record.get("models", {}).get(model, {})
            value = entry.get("mean", {}).get(metric)
            interval = entry.get("interval", {}).get(metric)
            shown = "" if value is None else f"{value:.4f}"
            if interval:
                shown += f" [{interval[0]:.4f}, {interval[1]:.4f}]"
            change = "" if previous is None or value is None else f"{value - previous:+.4f}"
            previous = value
            decision = (record.get("decision") or {}).get("headline", "")
            rows.append([record.get("finished_at"), model, metric, shown, change, record.get("best"), decision])
        cli.table(
            f"Evaluations in {view['workdir']}",
            ["finished at", "serving", "metric", "value [interval]", "change", "best", "decision"],
            rows,
        )
    else:
        cli.say("No evaluation recorded yet: run `recctl evaluate` (or `recctl run`).")
    runs = view["runs"]
    if runs:
        rows = [
            [
                r.get("finished_at"),
                r.get("status"),
                ", ".join(s["stage"] for s in r.get("stages", []) if s["status"] == "ran") or "-",
                r.get("duration_s"),
                (r.get("error") or {}).get("message", ""),
            ]
            for r in runs
        ]
        cli.table("Runs (recctl run)", ["finished at", "status", "stages run", "seconds", "error"], rows)
    publications = view["publications"]
    if publications:
        rows = [
            [
                ("* " if p.get("current") else "") + str(p.get("version")),
                p.get("file"),
                p.get("users"),
                p.get("rows"),
                "" if not p.get("metric") else f"{p['metric'].get('name')} {p['metric'].get('value') or 0:.4f}",
            ]
            for p in publications
        ]
        cli.table("Publications (* = current)", ["version", "file", "users", "rows", "metric"], rows)
    gate = view.get("gate")
    if gate is not None:
        style = "green" if gate["passed"] else "bold red"
        cli.say(f"[{style}]gate {'passed' if gate['passed'] else 'refused'}[/]: {gate['reason']}")
