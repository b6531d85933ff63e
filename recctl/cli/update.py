"""``recctl update``: fold newly ingested batches into the trained models without a full retrain."""

from __future__ import annotations

from typing import Annotated, Any

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
def update_command(
    config: ConfigArg,
    check_drift: Annotated[
        bool,
        typer.Option(
            "--check-drift",
            help="Also retrain from scratch on the same data and compare (update.drift rule).",
        ),
    ] = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
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
    setup_logging(verbose, quiet)
    cfg = load(config)
    from recctl.stages.update import run_update

    with progress_bar(not as_json) as progress:
        manifest = run_update(cfg, check_drift=check_drift, progress=progress)
    emit(manifest_summary(manifest), as_json, lambda: _render(manifest.summary))
    if not as_json:
        if manifest.summary.get("status") == "up to date":
            err.print(
                "nothing new to update: no batches were appended since the models' data "
                "(run `recctl ingest CONFIG --append FILES` first)"
            )
        else:
            err.print(f"updated models written to {cfg.stage_dir('update')}")
            if manifest.summary.get("drift", {}).get("retrain_needed"):
                err.print("[yellow]drift guard:[/] a full retrain is recommended (see the drift table)")


def _render(s: dict[str, Any]) -> None:
    if s.get("status") == "up to date":
        out.print(
            table(
                "Update",
                ["", "value"],
                [["status", "up to date"], ["rows consumed", s["consumed_rows"]]],
            )
        )
        return
    rows = [
        ["batches consumed", len(s.get("batches", []))],
        ["new events", s["n_new_events"]],
        ["users with new events", s["n_changed_users"]],
        ["new users", s["n_new_users"]],
        ["new items", s["n_new_items"]],
        ["users / items now", f"{s['n_users']:,} / {s['n_items']:,}"],
    ]
    out.print(table("Update", ["", "value"], rows))
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
    out.print(table("Models", ["model", "kind", "how", "result", "seconds", "detail"], model_rows))
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
        out.print(
            table(
                "Drift vs a full retrain",
                [
                    "model",
                    "metric",
                    "updated",
                    "retrained",
                    "rel. drop",
                    "jaccard",
                    "overlap ratio",
                    "action",
                ],
                drows,
            )
        )
    t = s.get("timings", {})
    out.print(table("Timings (s)", ["step", "seconds"], [[k, float(v)] for k, v in t.items()]))
