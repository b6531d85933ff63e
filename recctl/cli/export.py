"""``recctl serve-export``: publish the nightly recommendations file."""

from __future__ import annotations

from typing import Annotated

import typer

from recctl.cli._common import Invocation, command, manifest_summary, usage_error


@command()
def serve_export_command(
    cli: Invocation,
    date: Annotated[
        str | None, typer.Option("--date", help="Date stamped into the file name, YYYY-MM-DD (default: today, UTC).")
    ] = None,
) -> None:
    """Publish the recommend stage's lists as the nightly file (csv, csv_wide, jsonl or parquet).

    The file <basename>_<YYYY-MM-DD>.<ext> is written under a temporary name, validated (schema, K unique items per user or every eligible item when fewer, every customer present, no seen or rule-excluded item), and only then renamed into export.directory; <basename>_latest.json (and a <basename>_latest.<ext> symlink) then point to it. With engine: spark, export.directory may be a URI (s3a://, gs://, abfss://, hdfs://): the files are staged under _staging/, validated there, moved to published/<run>/, and <basename>_latest.json is written last (docs/spark.md).

    Before anything is written the publication gates (export.gates) compare the new lists with the published file and the last evaluation: too few customers or rows, a drop of more than export.gates.max_drop, a serving model below the baseline: exit 7, nothing published. Each publication is kept as a version for `recctl rollback`; with export.related, related products for every catalogue item are published alongside.

    If validation fails nothing is published, the previous file and pointer stay as they were, and the exit code is 7.

    Also writes the serving bundle <workdir>/export/bundle/ (JSON + .npy, no pickle) that a web application loads with recctl.serving.load (export.bundle: false turns it off).

    \b
    Example:
        recctl serve-export configs/quickstart.yaml
        recctl serve-export configs/quickstart.yaml --date 2026-12-01 --json
    """  # noqa: E501
    if date is not None:
        import re

        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            raise usage_error(f"must be YYYY-MM-DD, got '{date}'", "--date")
    from recctl.stages.export import run_serve_export

    cfg = cli.config
    with cli.progress() as progress:
        manifest = run_serve_export(cfg, date=date, progress=progress)
    s = manifest.summary

    def render() -> None:
        rows = [[p["path"].rsplit("/", 1)[-1], p["rows"], p["users"], p["sha256"][:16]] for p in s["published"]]
        cli.table(f"Published ({s['format']}, k={s['k']})", ["file", "rows", "users", "sha256"], rows)

    cli.emit(manifest_summary(manifest), render)
    cli.note(f"published to {s['directory']}; latest pointer updated")
