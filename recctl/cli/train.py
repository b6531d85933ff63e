"""``recctl train``: fit the configured models."""

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
    manifest_summary,
    out,
    progress_bar,
    setup_logging,
    table,
)


@handle_errors
def train_command(
    config: ConfigArg,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Train only this model (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit every model in the config on the training split.

    Writes <workdir>/train/<model>.pkl and manifest.json (each file's sha256 is checked before it is ever loaded).

    \b
    Example:
        recctl train configs/quickstart.yaml
        recctl train configs/quickstart.yaml --model lightfm_warp --json
    """
    setup_logging(verbose, quiet)
    cfg = load(config)
    from recctl.stages.train import run_train

    with progress_bar(not as_json) as progress:
        manifest = run_train(cfg, models=model or None, progress=progress)
    rows = [[name, m["kind"], m["fit_seconds"], m["file"]] for name, m in manifest.summary["models"].items()]
    emit(
        manifest_summary(manifest),
        as_json,
        lambda: out.print(table("Trained models", ["model", "kind", "fit s", "file"], rows)),
    )
    if not as_json:
        err.print(f"models written to {cfg.stage_dir('train')}")
