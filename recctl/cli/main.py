"""The ``recctl`` application: one Typer command per stage, each in its own module."""

from __future__ import annotations

import importlib

import typer

from recctl.cli._common import RecctlCommand, RecctlGroup

app = typer.Typer(
    cls=RecctlGroup,
    name="recctl",
    help=(
        "Personalised product recommendations from a shop's raw exports.\n\n"
        "Stages pass Parquet and model files under one YAML config: ingest -> preprocess -> "
        "train -> evaluate -> tune -> recommend -> serve-export; `recctl run CONFIG` chains them.\n\n"
        "Exit codes: 0 ok, 1 internal error, 2 usage, 3 config, 4 data, 5 artifact (missing or "
        "stale stage output), 6 missing optional extra, 7 export failed validation or a publication gate, 8 busy (workdir, "
        "export folder, port or event log held by another process), 9 machine fault (disk full, read-only, "
        "permission), 130 interrupted.\n\n"
        "Every command takes --json (one JSON object on stdout, also on failure), --format, -v, -q and "
        "--log-format; those with a CONFIG also take --set KEY=VALUE."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"recctl {version('recctl')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Personalised product recommendations from a shop's raw exports."""


# (module, function, command name); each module owns one command
_COMMANDS = [
    ("recctl.cli.ingest", "ingest_command", "ingest"),
    ("recctl.cli.preprocess", "preprocess_command", "preprocess"),
    ("recctl.cli.train", "train_command", "train"),
    ("recctl.cli.evaluate", "evaluate_command", "evaluate"),
    ("recctl.cli.tune", "tune_command", "tune"),
    ("recctl.cli.recommend", "recommend_command", "recommend"),
    ("recctl.cli.export", "serve_export_command", "serve-export"),
    ("recctl.cli.rollback", "rollback_command", "rollback"),
    ("recctl.cli.update", "update_command", "update"),
    ("recctl.cli.serve", "serve_command", "serve"),
    ("recctl.cli.run", "run_command", "run"),
    ("recctl.cli.info", "info_command", "info"),
    ("recctl.cli.history", "history_command", "history"),
]
# (module, typer app attribute, group name)
_GROUPS = [("recctl.cli.ab", "ab_app", "ab")]

for _module, _func, _name in _COMMANDS:
    app.command(_name, cls=RecctlCommand)(getattr(importlib.import_module(_module), _func))

for _module, _attr, _name in _GROUPS:
    app.add_typer(getattr(importlib.import_module(_module), _attr), name=_name)


def main() -> None:  # pragma: no cover - console entry point
    """Run the recctl command line."""
    app()
