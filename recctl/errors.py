"""The recctl exception tree and the exit code of each class.

Every error a user can cause is a :class:`RecctlError`. The CLI catches it at one
boundary (``recctl.cli.main``), prints its message on stderr and exits with its code.
Anything else is a bug and keeps its traceback (shown with ``--verbose``).

* RecctlError ................ exit 1  (generic, should be rare)
  * ConfigError .............. exit 3  bad YAML, unknown key, wrong type, missing file
  * DataError ................ exit 4  unreadable file, missing column, bad rows under ``fail``
  * ArtifactError ............ exit 5  missing or stale stage output, hash mismatch
  * MissingExtraError ........ exit 6  an optional dependency is not installed
  * ExportValidationError .... exit 7  the nightly file failed validation; nothing was published
* Typer usage errors ......... exit 2  (unknown option, missing argument)
* Interrupted (Ctrl-C) ....... exit 130

Messages say what went wrong, where (file, YAML key, row, column) and what to do next.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "ArtifactError",
    "ConfigError",
    "DataError",
    "ExportValidationError",
    "MissingExtraError",
    "RecctlError",
]


class RecctlError(Exception):
    """Base class of every error recctl raises on purpose."""

    exit_code: int = 1


class ConfigError(RecctlError):
    """The experiment config is invalid: unknown key, wrong type, missing file."""

    exit_code = 3


class DataError(RecctlError):
    """Input data cannot be read or breaks the schema."""

    exit_code = 4


class ArtifactError(RecctlError):
    """A stage output is missing, stale, or does not match its manifest."""

    exit_code = 5


class MissingExtraError(RecctlError):
    """An optional dependency is needed but not installed."""

    exit_code = 6

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the optional package '{module}', which is not installed. "
            f"Install it with: pip install 'recctl[{extra}]'"
        )
        self.extra = extra
        self.module = module


class ExportValidationError(RecctlError):
    """The export failed its contract checks; the previous export was left untouched."""

    exit_code = 7


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "error": RecctlError.exit_code,
    "usage": 2,
    "config": ConfigError.exit_code,
    "data": DataError.exit_code,
    "artifact": ArtifactError.exit_code,
    "missing_extra": MissingExtraError.exit_code,
    "export_validation": ExportValidationError.exit_code,
    "interrupted": 130,
}
