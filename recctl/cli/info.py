"""``recctl info``: what each stage of an experiment holds and whether it is up to date."""

from __future__ import annotations

from typing import Any

from recctl.cli._common import Invocation, command


@command()
def info_command(cli: Invocation) -> None:
    """Show every stage's status: finished when, how long it took, and whether it is stale.

    "stale" is exactly what the stage commands refuse (exit 5) and what `recctl run` re-runs. info only reads: it never waits for a running command.

    \b
    Example:
        recctl info configs/quickstart.yaml
        recctl info configs/quickstart.yaml --json
    """
    cfg = cli.config
    from recctl import graph
    from recctl.artifacts import read_manifest
    from recctl.errors import ArtifactError

    rows: list[dict[str, Any]] = []
    for stage in graph.STAGES:
        row: dict[str, Any] = {"stage": stage, "finished_at": None, "duration_s": None, "outputs": 0}
        try:
            manifest = read_manifest(graph.stage_dir(cfg, stage), stage=stage)
        except ArtifactError as exc:
            missing = not (graph.stage_dir(cfg, stage) / "manifest.json").exists()
            if missing and not graph.STAGES[stage].in_run:
                continue  # update / recommend --users: shown once they ran
            row["status"] = "not configured" if not graph.configured(cfg, stage) else "not run"
            if not missing:
                row["status"] = f"corrupt: {exc}"
            rows.append(row)
            continue
        row.update(finished_at=manifest.finished_at, duration_s=manifest.duration_s, outputs=len(manifest.outputs))
        row["status"] = graph.status(cfg, stage)
        rows.append(row)

    from recctl.ranking import selection_backend

    selection = selection_backend()  # "compiled", or "numpy (why)": same lists, slower

    def render() -> None:
        cli.table(
            f"{cfg.name} in {cfg.workdir_path}",
            ["stage", "finished at", "seconds", "outputs", "status"],
            [[r["stage"], r["finished_at"], r["duration_s"], r["outputs"], r["status"]] for r in rows],
        )
        # one extension holds every kernel, so the selection's state is theirs too (recctl.kernels)
        cli.note(f"compiled kernels (top-K selection, item-kNN, preprocess): {selection}")

    cli.emit({"workdir": str(cfg.workdir_path), "stages": rows, "topk_selection": selection}, render)
