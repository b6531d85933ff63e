"""``recctl info``: what each stage of an experiment holds and whether it is up to date."""

from __future__ import annotations

from typing import Any

from recctl.cli._common import ConfigArg, JsonOpt, VerboseOpt, emit, handle_errors, load, out, setup_logging, table


@handle_errors
def info_command(config: ConfigArg, as_json: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Show every stage's status: finished when, how long it took, and whether it is stale.

    \b
    Example:
        recctl info configs/quickstart.yaml
        recctl info configs/quickstart.yaml --json
    """
    setup_logging(verbose)
    cfg = load(config)
    from recctl.artifacts import read_manifest
    from recctl.errors import ArtifactError
    from recctl.pipeline import PIPELINE_STAGES, why_stale
    from recctl.stages._common import STAGE_DIRS

    rows: list[dict[str, Any]] = []
    for stage in PIPELINE_STAGES:
        try:
            manifest = read_manifest(cfg.workdir_path / STAGE_DIRS[stage], stage=stage)
        except ArtifactError:
            rows.append({"stage": stage, "finished_at": None, "duration_s": None, "outputs": 0, "status": "not run"})
            continue
        reason = why_stale(cfg, stage)
        rows.append(
            {
                "stage": stage,
                "finished_at": manifest.finished_at,
                "duration_s": manifest.duration_s,
                "outputs": len(manifest.outputs),
                "status": "up to date" if reason is None else f"stale: {reason}",
            }
        )

    def render() -> None:
        out.print(
            table(
                f"{cfg.name} in {cfg.workdir_path}",
                ["stage", "finished at", "seconds", "outputs", "status"],
                [[r["stage"], r["finished_at"], r["duration_s"], r["outputs"], r["status"]] for r in rows],
            )
        )

    emit({"workdir": str(cfg.workdir_path), "stages": rows}, as_json, render)
