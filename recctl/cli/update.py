"""``recctl update``: fold newly ingested batches into the trained models without a full retrain."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recctl.cli._common import Invocation, command, manifest_summary


@command()
def update_command(
    cli: Invocation,
    check_drift: Annotated[
        bool,
        typer.Option(
            "--check-drift",
            help="Also retrain from scratch on the same data and compare (update.drift rule).",
        ),
    ] = False,
) -> None:
    """Update the trained models with the batches ingested since (recctl ingest --append), instead of retraining.

    New users and items are appended to the id maps; every old index stays put.

    LightFM grows, folds in the users with new events and trains on them plus a replay sample (approximate).

    popularity, item_knn, content and user_knn are refreshed exactly; other models are rebuilt.

    Writes <workdir>/update/; recommend and serve-export use it until the next full `recctl train`.

    --check-drift compares each update with a full retrain on the same data (test metric, top-K overlap).

    When the update.drift rule fires and update.drift.on_drift is `retrain`, the retrain is published instead.

    \b
    Example:
        recctl ingest configs/quickstart.yaml --append events_2026-05-02.csv
        recctl update configs/quickstart.yaml --check-drift
        recctl recommend configs/quickstart.yaml --changed-since last-update
    """
    from recctl.stages.update import run_update

    cfg = cli.config
    with cli.progress() as progress:
        manifest = run_update(cfg, check_drift=check_drift, progress=progress)
    cli.emit(manifest_summary(manifest), lambda: _render(cli, manifest.summary))
    if manifest.summary.get("status") == "up to date":
        cli.note(
            "nothing new to update: no batches were appended since the models' data "
            "(run `recctl ingest CONFIG --append FILES` first)"
        )
    else:
        cli.note(f"updated models written to {cfg.stage_dir('update')}")
        if manifest.summary.get("drift", {}).get("retrain_needed"):
            cli.warn("drift guard: a full retrain is recommended (see the drift table)")


def _render(cli: Invocation, s: dict[str, Any]) -> None:
    if s.get("status") == "up to date":
        cli.table("Update", ["", "value"], [["status", "up to date"], ["rows consumed", s["consumed_rows"]]])
        return
    rows = [
        ["batches consumed", len(s.get("batches", []))],
        ["new events", s["n_new_events"]],
        ["users with new events", s["n_changed_users"]],
        ["new users", s["n_new_users"]],
        ["new items", s["n_new_items"]],
        ["users / items now", f"{s['n_users']:,} / {s['n_items']:,}"],
    ]
    cli.table("Update", ["", "value"], rows)
    model_rows = []
    for name, m in s["models"].items():
        info = m.get("info", {})
        detail = info.get("mode") or info.get("reason") or ""
        if m["kind"] == "lightfm" and "n_folded_in" in info:
            detail = f"{info['n_folded_in']} folded in, {info['epochs']} epochs on {info['n_train_pairs']:,} pairs"
        model_rows.append(
            [
                name,
                m["kind"],
                m["how"],
                "exact" if m["exact"] else "approximate",
                m["seconds"],
                detail,
            ]
        )
    cli.table("Models", ["model", "kind", "how", "result", "seconds", "detail"], model_rows)
    drift = s.get("drift") or {}
    if drift.get("models"):
        drows = []
        for name, d in drift["models"].items():
            if "skipped" in d:
                drows.append([name, "", None, None, None, None, None, d["skipped"]])
                continue
            drows.append(
                [
                    name,
                    d["metric"],
                    d["updated"],
                    d["retrained"],
                    d["relative_drop"],
                    d["jaccard"],
                    d["overlap_ratio"],
                    d["action"],
                ]
            )
        cli.table(
            "Drift vs a full retrain",
            ["model", "metric", "updated", "retrained", "rel. drop", "jaccard", "overlap ratio", "action"],
            drows,
        )
    t = s.get("timings", {})
    cli.table("Timings (s)", ["step", "seconds"], [[k, float(v)] for k, v in t.items()])
