"""``recctl serve-export``: publish the nightly recommendations file."""

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
def serve_export_command(
    config: ConfigArg,
    date: Annotated[
        str | None, typer.Option("--date", help="Date stamped into the file name, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Publish the recommend stage's lists as the nightly file (csv, csv_wide, jsonl or parquet).

    The file <basename>_<YYYY-MM-DD>.<ext> is written under a temporary name, validated (schema, exactly K unique items per user, every user present, no seen or rule-excluded item), and only then renamed into export.directory; <basename>_latest.json (and a <basename>_latest.<ext> symlink) then point to it.

    If validation fails nothing is published, the previous file and pointer stay as they were, and the exit code is 7.

    Also writes the serving bundle <workdir>/export/bundle/ (JSON + .npy, no pickle) that a web application loads with recctl.serving.load (export.bundle: false turns it off).

    \b
    Example:
        recctl serve-export configs/quickstart.yaml
        recctl serve-export configs/quickstart.yaml --date 2026-12-01 --json
    """  # noqa: E501
    setup_logging(verbose, quiet)
    if date is not None:
        import re

        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            # exit 2 like any usage error (handle_errors would report a BadParameter as a bug)
            err.print(f"[bold red]usage error:[/] --date must be YYYY-MM-DD, got '{date}'", highlight=False)
            raise typer.Exit(code=2)
    cfg = load(config)
    from recctl.stages.export import run_serve_export

    with progress_bar(not as_json) as progress:
        manifest = run_serve_export(cfg, date=date, progress=progress)
    s = manifest.summary

    def render() -> None:
        rows = [[p["path"].rsplit("/", 1)[-1], p["rows"], p["users"], p["sha256"][:16]] for p in s["published"]]
        out.print(table(f"Published ({s['format']}, k={s['k']})", ["file", "rows", "users", "sha256"], rows))
        err.print(f"published to {s['directory']}; latest pointer updated")

    emit(manifest_summary(manifest), as_json, render)
