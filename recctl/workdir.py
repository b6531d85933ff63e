"""Owning a workdir: one writer at a time, never adopting a stranger's folder, never deleting theirs.

* **Lock.** Every command that writes takes ``<dir>/.recctl/lock`` with ``fcntl.flock``: an OS
  lock that dies with its process (``kill -9`` included), so there is no stale PID file to
  clean up. It is reentrant inside one process (``recctl run`` holds it while each stage takes
  it again). A second writer waits up to ``lock_wait_s`` (config; the ``RECCTL_LOCK_WAIT``
  environment variable overrides it) and then exits 8 naming the holder. Read-only commands
  (``info``, ``--help``) never take it. The export folder has its own lock, so two workdirs
  publishing into one folder take turns.
* **Marker.** A workdir recctl created holds ``.recctl/workdir.json``. recctl adopts a missing
  or empty folder; a non-empty folder without the marker is refused (exit 3) unless it only
  holds what an older recctl wrote (stage directories with their manifests).
* **Deleting.** recctl deletes only files whose name and sha256 it recorded: a replaced stage
  directory loses the outputs its manifest lists (unchanged ones); anything else in it is moved
  to ``.recctl/kept/`` and reported. Published files are recorded in the export folder's
  ``.recctl/ledger.json``; ``export.keep`` prunes only those (:class:`Ledger`).
* **Debris.** Holding the lock proves no other recctl is writing, so the first command that
  takes it removes what killed runs left: ``.<stage>.partial-<pid>/`` staging directories,
  ``recctl-ingest-*`` and ``.spark-scratch`` (engine: spark) scratch, half-written
  ``.<name>.XXXXXXXX.tmp`` files, and restores a stage directory a crash left renamed aside
  (``.<stage>.old-*``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from recctl import clock
from recctl.artifacts import MANIFEST_NAME, FileRecord, known_sha256, sha256_file, write_json_atomic
from recctl.errors import BusyError, ConfigError, MachineError, RecctlError, machine_fault, writing_into

__all__ = [
    "MARKER",
    "STATE_DIR",
    "Ledger",
    "clean_debris",
    "ensure_workdir",
    "exclusive",
    "export_folder",
    "refuse_foreign",
    "exclusive_dir",
    "holding",
    "lock_wait",
    "remove_recorded",
    "writes_workdir",
]

log = logging.getLogger(__name__)

STATE_DIR = ".recctl"
MARKER = "workdir.json"
_LOCK = "lock"
_HOLDER = "holder.json"
_POLL_S = 0.05
DEFAULT_WAIT_S = 60.0

#: names an older recctl (before the marker) left at the top of a workdir
_LEGACY_NAMES = {
    "ingest",
    "preprocess",
    "train",
    "evaluate",
    "tune",
    "recommend",
    "recommend-users",
    "export",
    "update",
    "exports",
    "abtest",
    "history",
    "versions",
    "events",
    ".tune-checkpoint",
}
_PARTIAL = re.compile(r"^\.(?P<name>[\w.-]+)\.partial-(?P<pid>\d+)$")
_OLD = re.compile(r"^\.(?P<name>[\w-]+)\.old-\d+-\d+$")
_SCRATCH = re.compile(r"^(recctl-ingest-\w+|\.spark-scratch)$")
#: temporary files of :func:`recctl.artifacts.atomic_path` (mkstemp: 8 random characters), and
#: of the export's symlink swap (``.<name>.tmp-<pid>``)
_TMP = re.compile(r"^\..+\.([A-Za-z0-9_]{8}\.tmp|tmp-\d+)$")


# -- the lock ------------------------------------------------------------------------------
@dataclass
class _Held:
    fd: int
    depth: int


_held: dict[str, _Held] = {}
_guard = threading.RLock()


def lock_wait(configured: float | None = None) -> float:
    """Seconds a writer waits for a busy lock: ``RECCTL_LOCK_WAIT``, else ``configured``, else 60."""
    env = os.environ.get("RECCTL_LOCK_WAIT")
    if env:
        try:
            value = float(env)
        except ValueError:
            raise ConfigError(f"RECCTL_LOCK_WAIT={env!r}: not a number of seconds") from None
        if value < 0:
            raise ConfigError(f"RECCTL_LOCK_WAIT={env!r}: must be 0 or more seconds")
        return value
    return DEFAULT_WAIT_S if configured is None else float(configured)


def holding(directory: Path) -> bool:
    """True when this process holds the lock of ``directory``."""
    return str(directory.resolve()) in _held


@contextlib.contextmanager
def exclusive_dir(directory: Path, *, wait_s: float, what: str = "workdir") -> Iterator[bool]:
    """Hold ``directory``'s lock (reentrant); yield True when this call took it first.

    Raises
    ------
    BusyError
        When another process holds it for longer than ``wait_s`` seconds (exit 8).
    """
    key = str(directory.resolve())
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
    if held is not None:
        try:
            yield False
        finally:
            with _guard:
                held.depth -= 1
        return
    state = directory / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, directory, wait_s, what)
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[key] = _Held(fd, 1)
    try:
        _write_holder(state)
        yield True
    finally:
        with _guard:
            del _held[key]
        with contextlib.suppress(OSError):
            (state / _HOLDER).unlink()
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(fd: int, directory: Path, wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise BusyError(
                f"{directory}: {what} busy: {_holder_text(directory)} is writing it; waited {wait_s:g} s. "
                "Run again when it has finished, or wait longer with `lock_wait_s` in the config "
                "or RECCTL_LOCK_WAIT=SECONDS."
            )
        if not announced:
            log.warning("%s: %s busy (%s); waiting up to %g s", directory, what, _holder_text(directory), wait_s)
            announced = True
        time.sleep(_POLL_S)


def _write_holder(state: Path) -> None:
    info = {"pid": os.getpid(), "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}
    info["since"] = clock.utc_stamp()
    with contextlib.suppress(OSError):
        (state / _HOLDER).write_text(json.dumps(info), encoding="utf-8")


def _holder_text(directory: Path) -> str:
    try:
        info = json.loads((directory / STATE_DIR / _HOLDER).read_text(encoding="utf-8"))
        return f"another recctl (pid {info['pid']}, `{info['command']}`, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another recctl process"


# -- the workdir ---------------------------------------------------------------------------
def ensure_workdir(workdir: Path) -> None:
    """Create or adopt ``workdir`` as a recctl workdir (marker written), or refuse it.

    Raises
    ------
    ConfigError
        ``workdir`` is a file, or a non-empty folder recctl did not create (exit 3).
    """
    marker = workdir / STATE_DIR / MARKER
    if marker.exists():
        return
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"workdir {workdir}: is a file, not a folder; point `workdir` at a folder recctl may own.")
    entries = sorted(p.name for p in workdir.iterdir()) if workdir.exists() else []
    if entries and not _legacy_workdir(workdir, entries):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(
            f"workdir {workdir}: the folder already holds files recctl did not write ({shown}) and has no "
            f"{STATE_DIR}/{MARKER}; recctl only writes into a new or empty folder it then owns. "
            "Point `workdir` at a new folder (e.g. runs/<name>)."
        )
    if entries:
        log.warning("%s: adopting a workdir written by an older recctl (stage folders with manifests)", workdir)
    (workdir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    from recctl.artifacts import library_versions

    write_json_atomic(
        marker,
        {"created_by": "recctl", "recctl": library_versions().get("recctl"), "created_at": clock.utc_stamp()},
    )


def _legacy_workdir(workdir: Path, entries: list[str]) -> bool:
    for name in entries:
        if name == STATE_DIR or _PARTIAL.match(name) or _OLD.match(name) or _SCRATCH.match(name) or _TMP.match(name):
            continue
        if name not in _LEGACY_NAMES:
            return False
        path = workdir / name
        if name in ("exports", "abtest", "history", "versions", "events", ".tune-checkpoint"):
            continue
        if not (path / MANIFEST_NAME).is_file():
            return False
        try:
            data = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not (isinstance(data, dict) and "config_hash" in data and "stage" in data):
            return False
    return True


@contextlib.contextmanager
def exclusive(cfg: Any) -> Iterator[None]:
    """Hold ``cfg``'s workdir for writing: create/adopt it, lock it, clear debris on first entry."""
    workdir = cfg.workdir_path
    first = not holding(workdir) if workdir.exists() else True
    if first:
        ensure_workdir(workdir)
    with (
        exclusive_dir(workdir, wait_s=lock_wait(getattr(cfg, "lock_wait_s", None))) as took,
        writing_into(workdir),
    ):
        if took:
            removed = clean_debris(workdir)
            if removed:
                log.warning("%s: removed what interrupted runs left: %s", workdir, ", ".join(removed))
        try:
            yield
        except MachineError:
            raise
        except Exception as exc:
            # named here, while it is known which folder was being written (a reader's message
            # names the input file it was reading, not the disk that refused)
            fault = machine_fault(exc, include_missing=not isinstance(exc, RecctlError))
            if fault is None:
                raise
            raise fault from exc


F = TypeVar("F", bound=Callable[..., Any])


def writes_workdir(func: F) -> F:
    """Decorate a stage function ``f(cfg, ...)``: it runs holding ``cfg``'s workdir lock."""
    import functools

    @functools.wraps(func)
    def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        with exclusive(cfg):
            return func(cfg, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -- debris --------------------------------------------------------------------------------
def clean_debris(directory: Path) -> list[str]:
    """Remove what killed recctl runs left in ``directory`` (call only holding its lock).

    Returns
    -------
    list of str
        What was removed or restored, for the log.
    """
    done: list[str] = []
    if not directory.is_dir():
        return done
    for path in sorted(directory.iterdir()):
        name = path.name
        if _PARTIAL.match(name) or _SCRATCH.match(name):
            _remove(path)
            done.append(name)
        elif (m := _OLD.match(name)) is not None:
            final = directory / m.group("name")
            if final.exists():
                _remove(path)
                done.append(name)
            else:  # killed between the two renames of a swap: the old outputs go back
                os.replace(path, final)
                done.append(f"{name} (restored as {final.name})")
        elif _TMP.match(name) and path.is_file():
            path.unlink()
            done.append(name)
    for sub in (".tune-checkpoint",):
        if (directory / sub).is_dir():
            for path in (directory / sub).iterdir():
                if _TMP.match(path.name) and path.is_file():
                    path.unlink()
                    done.append(f"{sub}/{path.name}")
    return done


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# -- deleting only what recctl recorded ---------------------------------------------------
def remove_recorded(directory: Path, recorded: dict[str, FileRecord | str], *, keep_in: Path) -> list[str]:
    """Delete ``directory``'s files whose relative path and sha256 are in ``recorded``.

    ``recorded`` maps a relative path to its sha256, or to its manifest record: then the recorded
    sha256 stands while the file's identity is the recorded one (bookkeeping: the file is being
    deleted, not read; :func:`recctl.artifacts.known_sha256`).

    Whatever else is in it (a file recctl did not write, or one changed since) is moved under
    ``keep_in`` and returned, never deleted.
    """
    kept: list[str] = []
    for path in sorted(directory.rglob("*"), reverse=True):
        rel = path.relative_to(directory).as_posix()
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # empty once its recorded files are gone
            continue
        rec = recorded.get(rel)
        if rec is not None and path.is_file() and not path.is_symlink():
            sha = rec if isinstance(rec, str) else rec.sha256
            if known_sha256(path, None if isinstance(rec, str) else rec) == sha:
                path.unlink()
                continue
        kept.append(rel)
    if kept:
        keep_in.parent.mkdir(parents=True, exist_ok=True)
        os.replace(directory, keep_in)
    else:
        with contextlib.suppress(OSError):
            directory.rmdir()
    return kept


@contextlib.contextmanager
def export_folder(directory: Path, *, wait_s: float) -> Iterator[None]:
    """Hold the export folder's lock; the first holder clears half-written files of killed runs."""
    directory.mkdir(parents=True, exist_ok=True)
    with exclusive_dir(directory, wait_s=wait_s, what="export folder") as took:
        if took:  # only recctl's own temporary names: the folder is the shop's
            removed = []
            for path in sorted(directory.iterdir()):
                if _TMP.match(path.name) and (path.is_file() or path.is_symlink()):
                    path.unlink()
                    removed.append(path.name)
            if removed:
                log.warning("%s: removed half-written files of interrupted exports: %s", directory, ", ".join(removed))
        yield


def refuse_foreign(directory: Path, names: list[str]) -> None:
    """Raise unless every name is absent from ``directory`` or a file recctl published there.

    Raises
    ------
    ConfigError
        Naming the file recctl would otherwise replace (exit 3).
    """
    ledger = Ledger(directory)
    for name in names:
        if not ledger.may_write(name):
            raise ConfigError(
                f"{directory / name}: exists and recctl did not publish it (not in {STATE_DIR}/ledger.json); "
                "recctl never replaces a file it did not write. Move it away, or change export.basename "
                "or export.directory."
            )


class Ledger:
    """The files recctl published into a folder it does not own (the export folder).

    ``<folder>/.recctl/ledger.json`` maps each published name to its sha256. recctl replaces
    or deletes a file there only when the ledger has it with the same content.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_DIR / "ledger.json"
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.files = dict(data.get("files", {}))
            except (OSError, ValueError, AttributeError):
                log.warning("%s: unreadable ledger; recctl will delete nothing it lists", self.path)

    def owns(self, name: str) -> bool:
        """True when ``name`` exists with the content recctl recorded for it."""
        path = self.directory / name
        rec = self.files.get(name)
        if rec is None or not path.is_file():
            return False
        if path.is_symlink():
            return rec.get("symlink") == os.readlink(path)
        return sha256_file(path) == rec.get("sha256")

    def may_write(self, name: str) -> bool:
        """True when writing ``name`` destroys nothing recctl did not write (absent, or owned)."""
        path = self.directory / name
        return not (path.exists() or path.is_symlink()) or self.owns(name)

    def record(self, name: str, *, sha256: str | None = None) -> None:
        """Record ``name`` (already written) as published by recctl.

        ``sha256``: its hash when the caller has just computed it from the file as written
        (not hashed again).
        """
        path = self.directory / name
        if path.is_symlink():
            self.files[name] = {"symlink": os.readlink(path), "published_at": clock.utc_stamp()}
        else:
            self.files[name] = {"sha256": sha256 or sha256_file(path), "bytes": path.stat().st_size}
            self.files[name]["published_at"] = clock.utc_stamp()

    def remove(self, name: str) -> bool:
        """Delete ``name`` if recctl recorded it unchanged; return whether it was deleted."""
        if not self.owns(name):
            return False
        (self.directory / name).unlink()
        del self.files[name]
        return True

    def save(self) -> None:
        """Write the ledger (atomically), forgetting files that are gone."""
        self.files = {n: r for n, r in self.files.items() if (self.directory / n).exists()}
        write_json_atomic(self.path, {"files": self.files})
