"""``recctl ingest``: raw exports -> canonical Parquet, every raw row accounted for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from recctl.cli._common import Invocation, command, manifest_summary


@command()
def ingest_command(
    cli: Invocation,
    append: Annotated[
        list[Path] | None,
        typer.Option(
            "--append",
            "-a",
            metavar="FILE",
            help="Add this file as a new batch to the previous ingest (repeatable).",
            show_default=False,
        ),
    ] = None,
    reset_batches: Annotated[
        bool, typer.Option("--reset-batches", help="Forget batches added earlier with --append.")
    ] = False,
) -> None:
    """Read the raw interaction, catalogue and user files into canonical Parquet.

    Writes <workdir>/ingest/: interactions, items, users (if configured) and rejected rows as Parquet; manifest.json.

    Every raw row is accounted for: read = accepted + rejected, per file; exact duplicates are counted and dropped.

    A source's on_error decides about bad rows: fail (stop at the first), skip (count) or quarantine (rejected.parquet).

    --append adds new files (e.g. today's events); a file already ingested (same content hash) is skipped.

    \b
    Example:
        recctl ingest configs/quickstart.yaml
        recctl ingest configs/quickstart.yaml \\
            --append exports/events-2026-05-02.csv --json
    """
    from recctl.stages.ingest import run_ingest

    cfg = cli.config
    with cli.progress() as progress:
        manifest = run_ingest(
            cfg, append=list(append) if append else None, reset_batches=reset_batches, progress=progress
        )
    cli.emit(manifest_summary(manifest), lambda: _render(cli, manifest.summary))
    cli.note(f"canonical data written to {cfg.stage_dir('ingest')}")
    for path in manifest.summary.get("dropped_batches", []):
        cli.warn(f"appended batch {path} is gone or changed; not re-read")


def _render(cli: Invocation, summary: dict[str, Any]) -> None:
    rows = [
        [Path(f["path"]).name, f["on_error"], f["read"], f["accepted"], f["rejected"], f["duplicates"], f["added"]]
        for f in summary.get("files", [])
    ]
    t = summary.get("totals", {})
    rows.append(
        ["total", "", t.get("read"), t.get("accepted"), t.get("rejected"), t.get("duplicates"), t.get("interactions")]
    )
    cli.table("Interactions", ["file", "on_error", "read", "accepted", "rejected", "duplicates", "kept"], rows)
    reasons = summary.get("rejected_by_reason", {})
    if reasons:
        cli.table("Rejected rows by reason", ["reason", "rows"], [[r, n] for r, n in reasons.items()])
    tables = summary.get("tables", [])
    if tables:
        cli.table(
            "Tables",
            ["table", "rows", "duplicate ids", "dedupe"],
            [[x["table"], x["rows"], x["duplicate_ids"], x["dedupe"]] for x in tables],
        )
    for name, gap in summary.get("catalogue", {}).items():
        cli.say(
            f"{name}: {gap['missing_from_table']:,} interacted ids missing from the {name} table "
            f"({gap['interactions_with_missing']:,} interactions, kept), "
            f"{gap['without_interactions']:,} {name} without any interaction"
        )
    appended = summary.get("appended")
    if appended is not None:
        cli.say(f"appended {len(appended)} batch(es); {len(summary.get('batches', []))} batches in total")
