"""``recctl rollback``: republish an earlier version of the nightly file and its serving bundle."""

from __future__ import annotations

from typing import Annotated

import typer

from recctl.cli._common import Invocation, command, manifest_summary


@command()
def rollback_command(
    cli: Invocation,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version id (or an unambiguous prefix) to republish; default: the one before."),
    ] = None,
    list_only: Annotated[bool, typer.Option("--list", help="List the kept versions and exit.")] = False,
) -> None:
    """Republish an earlier published version: its file, side files and serving bundle, the latest pointer last.

    serve-export keeps the last export.versions publications (file, bundle, serving models, metrics) under <workdir>/versions/. Each file is checked against its recorded sha256 before anything moves; the bundle is swapped in whole; the pointer (<basename>_latest.json and the symlink) moves last, so a reader sees yesterday's or today's publication, never a mix. An unknown version, or nothing earlier to go back to: exit 5, nothing moved.

    Without --to: the version published before the current one. --list shows the versions and which one is current.

    \b
    Example:
        recctl rollback configs/quickstart.yaml --list
        recctl rollback configs/quickstart.yaml
        recctl rollback configs/quickstart.yaml --to 20261203T020000
    """  # noqa: E501
    cfg = cli.config
    from recctl.stages.rollback import run_rollback, versions_table

    if list_only:
        rows = versions_table(cfg)

        def render_list() -> None:
            body = [
                [
                    ("* " if r["current"] else "  ") + r["version"],
                    r["file"],
                    r["users"],
                    r["rows"],
                    "" if not r["metric"] else f"{r['metric']['name']} {r['metric']['value']:.4f}",
                ]
                for r in rows
            ]
            cli.table("Published versions (* = current)", ["version", "file", "users", "rows", "metric"], body)

        cli.emit({"versions": rows}, render_list)
        return
    manifest = run_rollback(cfg, to=to)
    s = manifest.summary

    def render() -> None:
        body = [["version", s["rolled_back_to"]], ["file", s["file"]], ["users", s["users"]], ["rows", s["rows"]]]
        cli.table("Rolled back", ["", "value"], body)

    cli.emit(manifest_summary(manifest), render)
    cli.note(f"republished to {s['directory']}; latest pointer and serving bundle moved")
