"""``recctl run``: the whole pipeline under one config."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recctl.cli._common import Invocation, command, usage_error


@command()
def run_command(
    cli: Invocation,
    force: Annotated[bool, typer.Option("--force", help="Run every stage even if nothing changed.")] = False,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", metavar="STAGE", help="Stage to leave out, e.g. --skip tune (repeatable)."),
    ] = None,
) -> None:
    """Run ingest, preprocess, train, evaluate, tune, recommend and serve-export in order.

    A stage whose config sections and input files are unchanged since its last run is skipped, so re-running after editing only the models section re-trains and re-evaluates without re-ingesting. Stages without a section in the config (tune, recommend) are left out.

    \b
    Example:
        recctl run configs/quickstart.yaml
        recctl run configs/quickstart.yaml --skip tune --json
        recctl run configs/quickstart.yaml --set models.lightfm_warp.epochs=5
        recctl run configs/quickstart.yaml --force
    """  # noqa: E501
    from recctl.pipeline import PIPELINE_STAGES, run_all

    unknown = [s for s in (skip or []) if s not in PIPELINE_STAGES]
    if unknown:
        raise usage_error(f"unknown stage {unknown[0]!r}; stages: {', '.join(PIPELINE_STAGES)}", "--skip")
    cfg = cli.config

    def announce(outcome: Any) -> None:
        extra = f" in {outcome.duration_s:.1f}s" if outcome.status == "ran" else ""
        cli.note(f"{outcome.stage:>12} {outcome.status}{extra} ({outcome.reason})")

    with cli.progress() as progress:
        report = run_all(cfg, force=force, skip=tuple(skip or ()), on_stage=announce, progress=progress)

    def render() -> None:
        rows = [
            [s.stage, s.status, s.reason, f"{s.duration_s:.1f}" if s.status == "ran" else ""] for s in report.stages
        ]
        cli.table(f"recctl run {cli.config_path}", ["stage", "status", "why", "seconds"], rows)
        _print_metrics(cli, cfg)

    cli.emit(report.to_dict(), render)


def _print_metrics(cli: Invocation, cfg: Any) -> None:
    """Show the evaluation headline after a run (the table analysts look for)."""
    import json

    from recctl.cli.evaluate import render_metrics

    path = cfg.stage_dir("evaluate") / "metrics.json"
    if path.exists():
        render_metrics(cli, json.loads(path.read_text()))
