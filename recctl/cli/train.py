"""``recctl train``: fit the configured models."""

from __future__ import annotations

from typing import Annotated

import typer

from recctl.cli._common import Invocation, command, manifest_summary

ModelOpt = Annotated[
    list[str] | None, typer.Option("--model", "-m", metavar="NAME", help="Train only this model (repeatable).")
]


@command()
def train_command(cli: Invocation, model: ModelOpt = None) -> None:
    """Fit every model in the config on the training split.

    Writes <workdir>/train/<model>.pkl and manifest.json (each file's sha256 is checked before it is ever loaded).

    \b
    Example:
        recctl train configs/quickstart.yaml
        recctl train configs/quickstart.yaml --model lightfm_warp --json
    """
    from recctl.stages.train import run_train

    cfg = cli.config
    with cli.progress() as progress:
        manifest = run_train(cfg, models=model or None, progress=progress)
    rows = [[name, m["kind"], m["fit_seconds"], m["file"]] for name, m in manifest.summary["models"].items()]
    cli.emit(manifest_summary(manifest), lambda: cli.table("Trained models", ["model", "kind", "fit s", "file"], rows))
    cli.note(f"models written to {cfg.stage_dir('train')}")
