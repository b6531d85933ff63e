"""Stage manifests, hashing, atomic writes and integrity-checked model files.

Every stage writes into ``<workdir>/<stage>/`` and finishes by writing ``manifest.json``
there, *last*: a directory without a manifest is an unfinished stage. Every file is
written to a temporary name in the same directory and renamed into place, so a crash
or Ctrl-C never leaves a half-written file where a reader would take it for a whole one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recctl import clock
from recctl.errors import ArtifactError

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "FileRecord",
    "Manifest",
    "atomic_path",
    "config_hash",
    "file_record",
    "library_versions",
    "load_pickle_checked",
    "read_manifest",
    "save_pickle",
    "sha256_file",
    "utc_now",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_text_atomic",
]

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
PICKLE_PROTOCOL = 5
_CHUNK = 1 << 20
# mkstemp creates files readable by their owner only; published files should get the
# usual permissions (0666 less the umask), like any file the user's shell would create.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def utc_now() -> str:
    """Return the current UTC time (:func:`recctl.clock.now`) as ISO 8601 with a ``Z`` suffix."""
    return clock.utc_stamp()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(section: Any) -> str:
    """Return a stable sha256 of a JSON-serialisable config section (keys sorted)."""
    text = json.dumps(section, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic
    on POSIX. On any exception (including ``KeyboardInterrupt``) the temporary file is
    removed and ``path`` keeps its previous content, if it had any.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet_atomic(frame: Any, path: str | os.PathLike[str]) -> Path:
    """Write a polars DataFrame to Parquet atomically (zstd, statistics on)."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
    return Path(path)


def library_versions() -> dict[str, str]:
    """Return the versions of Python and of the libraries that shape recctl's results."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("recctl", "polars", "pyarrow", "numpy", "scipy", "lightfm-next", "pydantic"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


@dataclass
class FileRecord:
    """One input or output file of a stage: where it is, its hash, and its row count."""

    path: str
    sha256: str
    bytes: int
    rows: int | None = None


def file_record(
    path: str | os.PathLike[str], rows: int | None = None, *, relative_to: Path | None = None
) -> FileRecord:
    """Hash ``path`` and describe it for a manifest.

    Parameters
    ----------
    path
        The file to describe.
    rows
        Its row count, when it is a table.
    relative_to
        If given, record the path relative to this directory (keeps manifests portable).
    """
    p = Path(path)
    shown = str(p)
    if relative_to is not None:
        with contextlib.suppress(ValueError):
            shown = os.path.relpath(p.resolve(), relative_to.resolve())
    return FileRecord(path=shown, sha256=sha256_file(p), bytes=p.stat().st_size, rows=rows)


@dataclass
class Manifest:
    """What a stage read, which config it used, what it wrote, and how long it took.

    Shaped after ``dvc.lock``: inputs (``deps``), the config section (``params``) with its
    hash, and outputs (``outs``), plus versions, timings and the seed.
    """

    stage: str
    config_section: dict[str, Any]
    config_hash: str
    seed: int
    inputs: list[FileRecord] = field(default_factory=list)
    outputs: list[FileRecord] = field(default_factory=list)
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    duration_s: float | None = None
    versions: dict[str, str] = field(default_factory=library_versions)
    schema_version: int = SCHEMA_VERSION
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as plain JSON-serialisable data."""
        return asdict(self)

    def output(self, name: str) -> FileRecord:
        """Return the output record whose path ends with ``name``."""
        for rec in self.outputs:
            if rec.path == name or rec.path.endswith("/" + name):
                return rec
        raise ArtifactError(f"stage '{self.stage}' has no output named '{name}'")

    def write(self, stage_dir: str | os.PathLike[str]) -> Path:
        """Write ``manifest.json`` into ``stage_dir`` atomically (always the last write)."""
        return write_json_atomic(Path(stage_dir) / MANIFEST_NAME, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build a manifest from the data of a ``manifest.json``."""
        data = dict(data)
        data["inputs"] = [FileRecord(**r) for r in data.get("inputs", [])]
        data["outputs"] = [FileRecord(**r) for r in data.get("outputs", [])]
        return cls(**data)


def read_manifest(stage_dir: str | os.PathLike[str], *, stage: str | None = None, hint: str | None = None) -> Manifest:
    """Read ``<stage_dir>/manifest.json``.

    Raises
    ------
    ArtifactError
        If the manifest is missing or unreadable; the message names the command to run.
    """
    path = Path(stage_dir) / MANIFEST_NAME
    name = stage or Path(stage_dir).name
    todo = hint or f"run `recctl {name} CONFIG` first"
    if not path.exists():
        raise ArtifactError(f"{path}: no finished '{name}' stage here; {todo}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest.from_dict(data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc}); {todo}.") from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: manifest schema_version {manifest.schema_version}, this recctl reads {SCHEMA_VERSION}; {todo}."
        )
    return manifest


def verify_output(stage_dir: str | os.PathLike[str], manifest: Manifest, name: str) -> Path:
    """Return the path of output ``name`` after checking its sha256 against the manifest.

    Raises
    ------
    ArtifactError
        If the file is missing or was changed after the stage wrote it.
    """
    record = manifest.output(name)
    path = Path(stage_dir) / Path(record.path).name
    if not path.exists():
        raise ArtifactError(
            f"{path}: listed in the '{manifest.stage}' manifest but missing; re-run `recctl {manifest.stage}`."
        )
    actual = sha256_file(path)
    if actual != record.sha256:
        raise ArtifactError(
            f"{path}: sha256 {actual[:12]}… does not match the '{manifest.stage}' manifest "
            f"({record.sha256[:12]}…); the file changed after it was written. "
            f"Re-run `recctl {manifest.stage}`."
        )
    return path


def save_pickle(obj: Any, path: str | os.PathLike[str]) -> FileRecord:
    """Pickle ``obj`` to ``path`` atomically and return its record (with sha256)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(obj, handle, protocol=PICKLE_PROTOCOL)
    return file_record(path)


def load_pickle_checked(path: str | os.PathLike[str], expected_sha256: str, expected_type: type | None = None) -> Any:
    """Unpickle ``path`` only after its sha256 matches ``expected_sha256``.

    Unpickling runs code, so a file that does not match the hash its manifest recorded is
    refused before it is opened by pickle.

    Raises
    ------
    ArtifactError
        If the file is missing, its hash differs, or it holds an object of the wrong class.
    """
    p = Path(path)
    if not p.exists():
        raise ArtifactError(f"{p}: model file missing; re-run `recctl train`.")
    actual = sha256_file(p)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{p}: sha256 {actual[:12]}… does not match its manifest ({expected_sha256[:12]}…); "
            "refusing to unpickle a file that changed after it was written. Re-run `recctl train`."
        )
    with open(p, "rb") as handle:
        obj = pickle.load(handle)  # noqa: S301 - hash verified above
    if expected_type is not None and not isinstance(obj, expected_type):
        raise ArtifactError(f"{p}: holds a {type(obj).__name__}, expected a {expected_type.__name__}.")
    return obj
