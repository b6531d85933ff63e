"""One decorator for every command: the global flags, config loading and the error boundary.

A command module writes only what is its own::

    @command()
    def train_command(cli: Invocation, model: ModelOpt = None) -> None:
        \"\"\"Fit every model ... (the --help text).\"\"\"
        from recctl.stages.train import run_train

        with cli.progress() as progress:
            manifest = run_train(cli.config, models=model, progress=progress)
        cli.emit(manifest_summary(manifest), lambda: cli.table("Trained models", [...], rows))

:func:`command` adds the positional ``CONFIG`` argument and the global options (``--set``,
``--json``, ``--format``, ``-v``, ``-q``, ``--log-format``) to the command's signature, sets up
logging, and runs the body inside :func:`error_boundary`, which turns a ``RecctlError`` into its
message on stderr, one JSON object on stdout with ``--json``, and its exit code. Usage errors
(exit 2) raised by Typer or by the body get the same JSON object through :class:`RecctlGroup`.

Only the standard library, typer and rich are imported at module level so ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup

from recctl.cli._logging import LogFormat, cli_log, setup_logging
from recctl.cli._output import OutputFormat, err, out, print_json, render_table, render_text

if TYPE_CHECKING:
    from recctl.config import Config
    from recctl.progress import Progress

__all__ = [
    "Invocation",
    "OutputFormat",
    "RecctlCommand",
    "RecctlGroup",
    "command",
    "err",
    "error_boundary",
    "manifest_summary",
    "out",
]

# usage errors (typer.BadParameter and friends) must reach Typer, which prints them and exits 2;
# Typer >= 0.26 vendors Click, so find the base class through BadParameter rather than importing click
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

#: what the error boundary and the group need to know about the running command
_state: dict[str, Any] = {"verbose": False, "json": False, "argv": []}


# -- the global options ----------------------------------------------------------------------
def _check_overrides(values: list[str] | None) -> list[str]:
    from recctl.config.overrides import parse_override
    from recctl.errors import ConfigError

    for value in values or []:
        try:
            parse_override(value)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--set") from None
    return values or []


_CONFIG_HELP = "The YAML experiment config."
_PANEL = "Global options"
ConfigArg = Annotated[Path, typer.Argument(help=_CONFIG_HELP, metavar="CONFIG", show_default=False)]
OptionalConfigArg = Annotated[Path | None, typer.Argument(help=_CONFIG_HELP, metavar="CONFIG", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        callback=_check_overrides,
        show_default=False,
        rich_help_panel=_PANEL,
        help="Override a config key, e.g. --set evaluate.k=[5,10] (YAML value; repeatable; checked like the file).",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", rich_help_panel=_PANEL, help="One JSON object on stdout, also on failure.")
]
FormatOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        metavar="FORMAT",
        case_sensitive=False,
        rich_help_panel=_PANEL,
        help="Result tables as table, markdown, tsv or json (= --json).",
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", "-v", rich_help_panel=_PANEL, help="Log details; full tracebacks of internal errors."),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", rich_help_panel=_PANEL, help="No progress or notes; warnings and errors only.")
]
LogFormatOpt = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        metavar="FORMAT",
        case_sensitive=False,
        rich_help_panel=_PANEL,
        help="stderr as text, or json (one object per line, for CI).",
    ),
]

#: (parameter name, annotation, default) of the options every command gets, in help order
_GLOBALS: list[tuple[str, Any, Any]] = [
    ("g_json", JsonOpt, False),
    ("g_format", FormatOpt, OutputFormat.table),
    ("g_verbose", VerboseOpt, False),
    ("g_quiet", QuietOpt, False),
    ("g_log_format", LogFormatOpt, LogFormat.text),
]


class Invocation:
    """What a command receives: the global flags, the config, and the ways to answer.

    Attributes
    ----------
    config_path
        The CONFIG argument (``None`` for commands without one).
    overrides
        The ``--set KEY=VALUE`` strings, in order.
    json
        ``--json`` or ``--format json``: stdout is one JSON object.
    format
        How result tables are printed.
    verbose, quiet
        ``-v`` / ``-q``.
    """

    def __init__(
        self,
        *,
        config_path: Path | None,
        overrides: Sequence[str],
        json: bool,
        format: OutputFormat,
        verbose: bool,
        quiet: bool,
        log_format: LogFormat,
    ) -> None:
        self.config_path = config_path
        self.overrides = list(overrides)
        self.format = OutputFormat.json if json else format
        self.json = self.format is OutputFormat.json
        self.verbose = verbose
        self.quiet = quiet
        self.log_format = log_format
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The validated config (with ``--set`` overrides), loaded on first use."""
        if self._config is None:
            if self.config_path is None:
                raise typer.BadParameter("this needs a CONFIG", param_hint="CONFIG")
            from recctl.config import load_config

            self._config = load_config(self.config_path, overrides=self.overrides)
        return self._config

    # -- answering ----------------------------------------------------------------------------
    def emit(self, data: dict[str, Any], render: Callable[[], None] | None = None) -> None:
        """Answer: ``data`` as one JSON object with ``--json``, otherwise ``render()``."""
        if self.json:
            print_json(data)
        elif render is not None:
            render()

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Print a result table in the chosen ``--format`` (nothing with ``--json``)."""
        if not self.json:
            render_table(self.format, title, columns, rows)

    def say(self, text: str, *, markup: bool = True) -> None:
        """Print a line of result prose on stdout (stderr under ``--format tsv``)."""
        render_text(self.format, text, markup=markup)

    def note(self, text: str) -> None:
        """Tell the user something on stderr ("written to ..."); hidden by ``-q`` and ``--json``."""
        cli_log.info(text)

    def warn(self, text: str) -> None:
        """A warning on stderr, always shown."""
        cli_log.warning(text)

    def exit_with(self, code: int, message: str, kind: str = "DataError") -> None:
        """End the command with ``code`` after its answer was printed (the message goes to stderr).

        For a check that fails on purpose (``--fail-on-srm``): the answer already holds the error.
        """
        cli_log.error(message, extra={"exit_code": code, "error_type": kind})
        raise typer.Exit(code=code)

    @contextmanager
    def progress(self) -> Iterator[Progress | None]:
        """Yield a ``progress(task, completed, total)`` callback drawing Rich bars on stderr.

        ``None`` (silence) with ``--json``, ``-q``, ``--log-format json`` or off a terminal.
        """
        if self.json or self.quiet or self.log_format is LogFormat.json or not err.is_terminal:
            yield None
            return
        with progress_bar() as update:
            yield update

    @property
    def live(self) -> bool:
        """Whether live progress may be shown (no ``--json``, ``-q`` or JSON logs)."""
        return not (self.json or self.quiet or self.log_format is LogFormat.json)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """Rich progress bars on stderr: ``update(task, completed, total)``."""
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
    )
    tasks: dict[str, Any] = {}

    def update(task: str, completed: float, total: float | None = None) -> None:
        if task not in tasks:
            tasks[task] = bars.add_task(task, total=total)
        bars.update(tasks[task], completed=completed, total=total)

    with bars:
        yield update


# -- the error boundary ----------------------------------------------------------------------
@contextmanager
def error_boundary(as_json: bool) -> Iterator[None]:
    """Turn what a command raises into a message on stderr, a JSON error with ``--json``, an exit code.

    ``RecctlError`` -> its ``exit_code``; a machine fault (disk full, read-only or vanished path,
    permission denied; also when a reader wrapped it) -> 9; Ctrl-C -> 130; usage errors pass
    through to Typer (exit 2; :class:`RecctlGroup` adds the JSON object); anything else is a bug:
    exit 1, with the traceback under ``--verbose``.
    """
    from recctl.errors import MachineError, RecctlError, machine_fault

    try:
        yield
    except KeyboardInterrupt:
        _fail(
            as_json, "Interrupted", "interrupted: nothing half-written was published; earlier outputs are intact", 130
        )
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
            _fail(as_json, type(error).__name__, str(error), error.exit_code)
            raise typer.Exit(code=error.exit_code) from None
        if _state["verbose"]:  # a bug: keep the traceback behind --verbose
            raise
        _fail(as_json, "InternalError", f"internal error: {type(exc).__name__}: {exc}", 1)
        cli_log.error(
            "This is a bug in recctl. Run with --verbose to see the full exception.", extra={"no_prefix": True}
        )
        raise typer.Exit(code=1) from None


def _fail(as_json: bool, kind: str, message: str, code: int) -> None:
    cli_log.error(message, extra={"exit_code": code, "error_type": kind})
    # with --json a CI job parsing stdout gets a JSON answer on failure too (the message is also on stderr)
    if as_json:
        print_json({"error": {"type": kind, "message": message, "exit_code": code}})


# -- the decorator -----------------------------------------------------------------------------
def command(*, config: Literal["required", "optional", "none"] = "required") -> Callable[[Callable[..., Any]], Any]:
    """Make ``func(cli: Invocation, **own_options)`` a command with the global flags.

    Parameters
    ----------
    config
        ``required``: a positional CONFIG and ``--set``; ``optional``: ``[CONFIG]`` and ``--set``;
        ``none``: neither.

    Returns
    -------
    Callable
        A decorator; the decorated function's signature (what Typer reads) is CONFIG, the
        command's own options, then the global options.
    """

    def decorate(func: Callable[..., Any]) -> Any:
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]  # drop `cli`
        params = []
        if config != "none":
            arg = ConfigArg if config == "required" else OptionalConfigArg
            default = inspect.Parameter.empty if config == "required" else None
            params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=arg, default=default))
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        if config != "none":
            params.append(inspect.Parameter("g_set", inspect.Parameter.KEYWORD_ONLY, annotation=SetOpt, default=None))
        params += [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for name, annotation, default in _GLOBALS
        ]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            cli = Invocation(
                config_path=kwargs.pop("config", None),
                overrides=kwargs.pop("g_set", None) or [],
                json=kwargs.pop("g_json"),
                format=kwargs.pop("g_format"),
                verbose=kwargs.pop("g_verbose"),
                quiet=kwargs.pop("g_quiet"),
                log_format=kwargs.pop("g_log_format"),
            )
            _state.update(verbose=cli.verbose, json=cli.json)
            setup_logging(cli.verbose, cli.quiet, cli.log_format, json_output=cli.json)
            with error_boundary(cli.json):
                return func(cli, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def manifest_summary(manifest: Any) -> dict[str, Any]:
    """A compact JSON view of a stage manifest for ``--json`` output."""
    return {
        "stage": manifest.stage,
        "duration_s": manifest.duration_s,
        "outputs": [{"path": o.path, "rows": o.rows, "sha256": o.sha256} for o in manifest.outputs],
        "summary": manifest.summary,
    }


# -- Click classes: flags without a type in --help, JSON usage errors ---------------------------
def _argv_wants_json(args: Sequence[str]) -> bool:
    args = list(args)
    if "--json" in args or "--format=json" in args:
        return True
    return any(a == "--format" and b.lower() == "json" for a, b in zip(args, args[1:], strict=False))


def _untyped_flags(params: list[Any]) -> list[Any]:
    # Typer's help shows `--json <bool>` for a flag, which reads as if it took a value
    # (`--json true` is a usage error); an empty metavar shows nothing
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""
    return params


class RecctlCommand(TyperCommand):
    """A Typer command whose flags show no ``<bool>`` type in ``--help``."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, flags without a displayed type."""
        return _untyped_flags(super().get_params(ctx))


class RecctlGroup(TyperGroup):
    """A Typer group that answers a usage error with a JSON object when ``--json`` was given."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, flags without a displayed type."""
        return _untyped_flags(super().get_params(ctx))

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Remember the raw arguments (to see ``--json`` even when parsing them fails)."""
        argv = kwargs.get("args")
        if argv is None and args:
            argv = args[0]
        _state["argv"] = list(sys.argv[1:] if argv is None else argv)
        return super().main(*args, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        """Parse this group's own options; a usage error gets a JSON answer with ``--json``."""
        with _json_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        """Run the subcommand; a usage error gets a JSON answer with ``--json``."""
        with _json_usage_errors():
            return super().invoke(ctx)


@contextmanager
def _json_usage_errors() -> Iterator[None]:
    try:
        yield
    except _CLICK_EXCEPTION as exc:
        if _argv_wants_json(_state["argv"]) and not getattr(exc, "_recctl_json", False):
            exc._recctl_json = True  # type: ignore[attr-defined]  # nested groups answer once
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            print_json({"error": {"type": "UsageError", "message": message, "exit_code": exc.exit_code}})  # type: ignore[attr-defined]
        raise


def usage_error(message: str, param_hint: str | None = None) -> typer.BadParameter:
    """A usage error (exit 2) to ``raise`` from a command body."""
    return typer.BadParameter(message, param_hint=param_hint)
