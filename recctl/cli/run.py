"""``recctl run``: the whole pipeline under one config."""

from __future__ import annotations

from typing import Annotated

import typer

from recctl.cli._common import (
    ConfigArg,
    JsonOpt,
    QuietOpt,
    VerboseOpt,
    emit,
    err,
    handle_errors,
    load,
    out,
    progress_bar,
    setup_logging,
    table,
)


@handle_errors
def run_command(
    config: ConfigArg,
    force: Annotated[bool, typer.Option("--force", help="Run every stage even if nothing changed.")] = False,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", help="Stage to leave out, e.g. --skip tune (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run ingest, preprocess, train, evaluate, tune, recommend and serve-export in order.

    A stage whose config sections and input files are unchanged since its last run is skipped, so re-running after editing only the models section re-trains and re-evaluates without re-ingesting. Stages without a section in the config (tune, recommend) are left out.

    \b
    Example:
        recctl run configs/quickstart.yaml
        recctl run configs/quickstart.yaml --skip tune --json
        recctl run configs/quickstart.yaml --force
    """
    setup_logging(verbose, quiet)
    cfg = load(config)
    from recctl.pipeline import PIPELINE_STAGES, run_all

    unknown = [s for s in (skip or []) if s not in PIPELINE_STAGES]
    if unknown:
        raise typer.BadParameter(
            f"unknown stage {unknown[0]!r}; stages: {', '.join(PIPELINE_STAGES)}", param_hint="--skip"
        )

    def announce(outcome) -> None:  # noqa: ANN001
        if not as_json:
            colour = {"ran": "green", "skipped": "cyan"}.get(outcome.status, "dim")
            extra = f" in {outcome.duration_s:.1f}s" if outcome.status == "ran" else ""
            err.print(f"[{colour}]{outcome.stage:>12}[/] {outcome.status}{extra} ({outcome.reason})")

    with progress_bar(not as_json) as progress:
        report = run_all(cfg, force=force, skip=tuple(skip or ()), on_stage=announce, progress=progress)

    def render() -> None:
        rows = [
            [s.stage, s.status, s.reason, f"{s.duration_s:.1f}" if s.status == "ran" else ""] for s in report.stages
        ]
        out.print(table(f"recctl run {config}", ["stage", "status", "why", "seconds"], rows))
        _print_metrics(cfg)

    emit(report.to_dict(), as_json, render)


def _print_metrics(cfg) -> None:  # noqa: ANN001
    """Show the evaluation headline after a run (the table analysts look for)."""
    import json

    from recctl.cli.evaluate import render_metrics

    path = cfg.stage_dir("evaluate") / "metrics.json"
    if path.exists():
        render_metrics(json.loads(path.read_text()))
