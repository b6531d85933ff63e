"""Everything the CLI says on stderr goes through logging: library logs, notes, warnings, errors.

Two renderings, chosen by ``--log-format``:

* ``text`` (default): one line per record, never wrapped by recctl (a path stays whole when
  copied from a log), coloured on a terminal; ``warning:`` / ``error:`` prefixes.
* ``json``: one JSON object per line, ``{"time", "level", "logger", "message"}`` plus
  ``exit_code``/``error_type`` on the error that ends a command, for CI log collectors.

The library logs under ``recctl.*`` (shown from WARNING, from INFO with ``-v``); the CLI's own
notes ("written to ...") are INFO records of ``recctl.cli``, shown unless ``-q`` or ``--json``.
"""

from __future__ import annotations

import enum
import json
import logging
from typing import Any

from recctl.cli._output import err

__all__ = ["LogFormat", "cli_log", "setup_logging"]

cli_log = logging.getLogger("recctl.cli")

#: the extra attributes a record may carry into the JSON rendering
_EXTRA_FIELDS = ("exit_code", "error_type", "path")


class LogFormat(str, enum.Enum):
    """``--log-format``: how stderr lines are written."""

    text = "text"
    json = "json"


class _ConsoleHandler(logging.Handler):
    """One soft-wrapped line per record on the stderr console."""

    _PREFIX = {logging.WARNING: ("warning:", "yellow"), logging.ERROR: ("error:", "bold red")}

    def __init__(self, show_time: bool, show_logger: bool) -> None:
        super().__init__()
        self.show_time = show_time
        self.show_logger = show_logger

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        try:
            text = Text()
            if self.show_time:
                text.append(self._time(record) + " ", style="dim")
            level = max((lvl for lvl in self._PREFIX if record.levelno >= lvl), default=None)
            if level is not None and not getattr(record, "no_prefix", False):
                label, style = self._PREFIX[level]
                text.append(label + " ", style=style)
            if self.show_logger and record.name != cli_log.name:
                text.append(record.name + ": ", style="dim")
            text.append(record.getMessage())
            if record.exc_info and record.levelno >= logging.ERROR:
                text.append("\n" + logging.Formatter().formatException(record.exc_info))
            # soft_wrap: the terminal may fold a long line, but recctl never inserts a newline
            err.print(text, soft_wrap=True, highlight=False)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)

    @staticmethod
    def _time(record: logging.LogRecord) -> str:
        from recctl import clock  # the time of day is read through recctl.clock only

        return clock.now().strftime("%H:%M:%SZ")


class _JsonHandler(logging.Handler):
    """One JSON object per line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        import sys

        from recctl import clock

        try:
            entry: dict[str, Any] = {
                "time": clock.utc_stamp(),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
            for field in _EXTRA_FIELDS:
                if hasattr(record, field):
                    entry[field] = getattr(record, field)
            if record.exc_info:
                entry["traceback"] = logging.Formatter().formatException(record.exc_info)
            sys.stderr.write(json.dumps(entry, default=str) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(verbose: bool, quiet: bool, log_format: LogFormat = LogFormat.text, *, json_output: bool) -> None:
    """Route the library's and the CLI's records to stderr.

    Parameters
    ----------
    verbose
        Library records from INFO (otherwise WARNING), with times and logger names.
    quiet
        No CLI notes (warnings and errors are still shown).
    log_format
        ``text`` or ``json`` lines.
    json_output
        ``--json``: stdout carries the answer, so the CLI's notes are left out like with ``-q``.
    """
    handler: logging.Handler
    if log_format is LogFormat.json:
        handler = _JsonHandler()
    else:
        handler = _ConsoleHandler(show_time=verbose, show_logger=verbose)
    root = logging.getLogger("recctl")
    root.handlers.clear()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False
    cli_log.setLevel(logging.WARNING if quiet or json_output else logging.INFO)
    # Python warnings (e.g. a library's DeprecationWarning) are shown the same way
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.handlers.clear()
    warnings_log.addHandler(handler)
    warnings_log.propagate = False
    logging.captureWarnings(True)
