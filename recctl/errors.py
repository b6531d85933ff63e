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
  * BusyError ................ exit 8  another recctl holds the workdir or export folder (lock)
  * MachineError ............. exit 9  disk full, read-only or vanished path, permission denied
* Typer usage errors ......... exit 2  (unknown option, missing argument)
* Interrupted (Ctrl-C) ....... exit 130

Messages say what went wrong, where (file, YAML key, row, column) and what to do next.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator

__all__ = [
    "EXIT_CODES",
    "ArtifactError",
    "BusyError",
    "MachineError",
    "machine_fault",
    "writing_into",
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


class BusyError(RecctlError):
    """Another recctl process holds the workdir (or export folder) lock past the wait."""

    exit_code = 8


class MachineError(RecctlError):
    """The machine refused: disk full, read-only or vanished path, permission denied.

    Never the input's fault and never a bug: the message names the path and the errno.
    """

    exit_code = 9


#: errno -> what it means for the user
_FAULTS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "the path vanished while recctl was using it",
    errno.EIO: "input/output error from the device",
}
#: how those faults read in the messages of libraries that do not raise OSError (polars, arrow)
_FAULT_TEXTS = (
    ("no space left on device", errno.ENOSPC),
    ("os error 28", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT),
    ("read-only file system", errno.EROFS),
    ("os error 30", errno.EROFS),
    ("permission denied", errno.EACCES),
    ("os error 13", errno.EACCES),
)


#: the folders recctl is writing now, innermost last (set by recctl.workdir.exclusive)
_writing: list[str] = []


@contextlib.contextmanager
def writing_into(path: object) -> Iterator[None]:
    """While inside, a machine fault reported only as text is attributed to ``path``."""
    _writing.append(str(path))
    try:
        yield
    finally:
        _writing.pop()


def machine_fault(exc: BaseException, *, include_missing: bool = False) -> MachineError | None:
    """The :class:`MachineError` behind ``exc`` (or its causes), or ``None`` if it is not one.

    Looks along ``__cause__``/``__context__`` for an ``OSError`` with a machine errno, or for a
    library error whose text says so (polars reports a full disk as "os error 28"). A vanished
    path (ENOENT) counts only with ``include_missing`` (a missing *input* is a config error).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = None
        path = None
        if isinstance(current, OSError) and current.errno in _FAULTS:
            code, path = current.errno, current.filename
        else:
            text = str(current)
            code = next((c for t, c in _FAULT_TEXTS if t in text.lower()), None)
            # a library's message names the file it was reading, not the disk that refused: name
            # the folder recctl was writing (the workdir), and never repeat its guess about the input
            found = re.search(r"(/[^\s'\"`,;:()]+)", text)
            path = _writing[-1] if _writing else (found.group(1) if found else None)
        if code is not None and (code != errno.ENOENT or include_missing):
            where = f"{path}: " if path else ""
            return MachineError(
                f"{where}{_FAULTS[code]}. This is the machine, not the input or recctl: "
                "free space, make the path writable or restore it, then run the command again; "
                "earlier outputs are intact."
            )
        current = current.__cause__ or current.__context__
    return None


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "error": RecctlError.exit_code,
    "usage": 2,
    "config": ConfigError.exit_code,
    "data": DataError.exit_code,
    "artifact": ArtifactError.exit_code,
    "missing_extra": MissingExtraError.exit_code,
    "export_validation": ExportValidationError.exit_code,
    "busy": BusyError.exit_code,
    "machine": MachineError.exit_code,
    "interrupted": 130,
}
