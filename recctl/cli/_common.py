"""Shared CLI plumbing: consoles, options, the error boundary, progress bars, JSON output.

Only standard library, typer and rich are imported at module level so ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from recctl.progress import Progress

out = Console()  # results
err = Console(stderr=True)  # progress, logs, errors

F = TypeVar("F", bound=Callable[..., Any])
# usage errors (typer.BadParameter and friends) must reach Typer, which prints them and exits 2;
# Typer >= 0.26 vendors Click, so find the base class through BadParameter rather than importing click
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

ConfigArg = Annotated[
    Path,
    typer.Argument(help="The YAML experiment config.", metavar="CONFIG", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log details on stderr and show full tracebacks of internal errors.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

_state = {"verbose": False, "quiet": False}


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    """Send library logs to stderr through Rich (INFO with ``-v``, WARNING otherwise)."""
    from rich.logging import RichHandler

    _state["verbose"] = verbose
    _state["quiet"] = quiet
    root = logging.getLogger("recctl")
    root.handlers.clear()
    handler = RichHandler(console=err, show_path=False, show_time=verbose, rich_tracebacks=verbose)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False
    logging.captureWarnings(True)


def handle_errors(func: F) -> F:
    """Run a command body; turn ``RecctlError`` into a message on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recctl.errors import MachineError, RecctlError, machine_fault

        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: nothing half-written was published; earlier outputs are intact.")
            _json_error(as_json, "Interrupted", "interrupted; earlier outputs are intact", 130)
            raise typer.Exit(code=130) from None
        except (typer.Exit, typer.Abort, SystemExit, _CLICK_EXCEPTION):
            raise
        except Exception as exc:
            # a full disk or a read-only folder, wherever it surfaced (even wrapped as a data error
            # by a reader): exit 9 naming the path, never "a bug" and never blamed on the input
            known = isinstance(exc, RecctlError)
            fault = None if isinstance(exc, MachineError) else machine_fault(exc, include_missing=not known)
            error = fault or exc
            if isinstance(error, RecctlError):
                from rich.markup import escape  # messages hold brackets, e.g. pip install 'recctl[tune]'

                err.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False, soft_wrap=True)
                _json_error(as_json, type(error).__name__, str(error), error.exit_code)
                raise typer.Exit(code=error.exit_code) from None
            if _state["verbose"]:  # a bug: keep the traceback behind --verbose
                raise
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
            err.print("This is a bug in recctl. Run with --verbose to see the full exception.")
            _json_error(as_json, "InternalError", f"{type(exc).__name__}: {exc}", 1)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def _json_error(as_json: bool, kind: str, message: str, code: int) -> None:
    # with --json, a CI job parsing stdout gets a JSON answer on failure too (the message is also on stderr)
    if as_json:
        emit({"error": {"type": kind, "message": message, "exit_code": code}}, True)


def load(config: Path) -> Any:
    """Load and validate the config (raises ``ConfigError`` with every problem)."""
    from recctl.config import load_config

    return load_config(config)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress | None]:
    """Yield a ``progress(task, completed, total)`` callback drawing Rich bars on stderr."""
    if not enabled or _state["quiet"]:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def update(task: str, completed: float, total: float | None = None) -> None:
        if task not in tasks:
            tasks[task] = bars.add_task(task, total=total)
        bars.update(tasks[task], completed=completed, total=total)

    with bars:
        yield update


def emit(data: dict[str, Any], as_json: bool, render: Callable[[], None] | None = None) -> None:
    """Print a result: JSON on stdout with ``--json``, otherwise the human rendering."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
    elif render is not None:
        render()


def manifest_summary(manifest: Any) -> dict[str, Any]:
    """A compact JSON view of a stage manifest for ``--json`` output."""
    return {
        "stage": manifest.stage,
        "duration_s": manifest.duration_s,
        "outputs": [{"path": o.path, "rows": o.rows, "sha256": o.sha256} for o in manifest.outputs],
        "summary": manifest.summary,
    }


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    """Build a Rich table (numbers right-aligned)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[_fmt(v) for v in row])
    return t


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)
