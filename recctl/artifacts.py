"""Stage manifests, hashing, atomic writes and integrity-checked model files.

Every stage writes into ``<workdir>/<stage>/`` and finishes by writing ``manifest.json``
there, *last*: a directory without a manifest is an unfinished stage. Every file is
written to a temporary name in the same directory and renamed into place, so a crash
or Ctrl-C never leaves a half-written file where a reader would take it for a whole one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recctl import clock
from recctl.errors import ArtifactError

log = logging.getLogger(__name__)

__all__ = [
    "INTERMEDIATE_PARQUET",
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "FileRecord",
    "Manifest",
    "atomic_path",
    "config_hash",
    "file_identity",
    "file_record",
    "known_sha256",
    "library_versions",
    "load_pickle_checked",
    "model_stamp",
    "read_manifest",
    "save_pickle",
    "sha256_file",
    "utc_now",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_text_atomic",
]

MANIFEST_NAME = "manifest.json"
#: 2: manifests record ``run_id``, ``lineage`` and the ``upstream`` runs they read (freshness)
SCHEMA_VERSION = 2
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


#: how recctl writes the Parquet files it reads back itself (stage outputs such as
#: ``preprocess/*.parquet``, ``update``'s, trials, per-user metrics): polars ``write_parquet`` /
#: ``sink_parquet`` keyword arguments. LZ4 without column statistics: at 20M events
#: preprocess's six files cost 4.5 CPU-s to write (hash included) and 1.4 to read against 5.4
#: and 2.1 with zstd level 1 and statistics, for 985 MB on disk against 743 (no reader of
#: these files filters on a column whose row groups the statistics could skip: see
#: docs/architecture.md, "Preprocess at 20M events"). Files a shop or another tool reads
#: (exports, the nightly lists) keep their own settings.
INTERMEDIATE_PARQUET: dict[str, Any] = {"compression": "lz4", "statistics": False}


def write_parquet_atomic(frame: Any, path: str | os.PathLike[str]) -> Path:
    """Write a polars DataFrame to Parquet atomically (:data:`INTERMEDIATE_PARQUET`)."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, **INTERMEDIATE_PARQUET)
    return Path(path)


def library_versions() -> dict[str, str]:
    """Return the versions of Python and of the libraries that shape recctl's results.

    Read once per process (the libraries a process has imported do not change under it; each
    look-up scans the installed distributions' metadata, ~50 ms).
    """
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
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
    """One input or output file of a stage: where it is, its hash, its row count, its identity.

    ``identity`` is :func:`file_identity` of the file as it was hashed, or ``None`` (manifests
    written before it existed, a file still changing when it was hashed): while a file's identity
    is unchanged, its recorded sha256 is reused instead of reading the file again
    (:func:`known_sha256`; docs/architecture.md, "The artifact contract").
    """

    path: str
    sha256: str
    bytes: int
    rows: int | None = None
    identity: list[int] | None = None


#: a file whose last change (ctime) is this recent when it is hashed gets no identity: a file
#: system stamps times from a clock that ticks coarsely (a jiffy on Linux, 2 s on FAT), so a
#: second write within the same tick could leave the identity as it was. Files recctl has just
#: written itself, under the workdir lock, are exempt (``own=True``).
RACY_NS = 2_000_000_000


def file_identity(st: os.stat_result) -> list[int]:
    """A file's identity: ``[st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns]``.

    Any write to the file, a truncation, a rename over it or a ``chmod`` changes it; ctime cannot
    be set by a user process, so an edit that restores the size and modification time (``touch
    -r``, ``os.utime``) still changes it. Adding or removing a hard link changes it too.
    """
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _hash_with_identity(path: Path, *, own: bool) -> tuple[str, list[int] | None]:
    """sha256 of ``path`` and its identity, ``None`` when the identity cannot vouch for the hash
    (the file changed while it was read, or changed within :data:`RACY_NS` before, unless ``own``)."""
    before = path.stat()
    started = time.time_ns()
    digest = sha256_file(path)
    identity = file_identity(before)
    if file_identity(path.stat()) != identity or (not own and started - before.st_ctime_ns < RACY_NS):
        return digest, None
    return digest, identity


#: sha256 by (path, identity) for the life of the process: one command checks the freshness of
#: several stages, each walking up to the same raw files
_SEEN: dict[tuple[str, tuple[int, ...]], str] = {}
_SEEN_LOCK = threading.Lock()


def known_sha256(path: str | os.PathLike[str], record: FileRecord | None = None) -> str:
    """The sha256 of ``path`` now: ``record``'s when the file's identity is the one it recorded.

    For freshness and bookkeeping (is an input still the file a stage read, is a file recctl is
    about to delete still the one it wrote), never as the gate before trusting a file's content
    (model files and bundle arrays are hashed before they are loaded). Otherwise hashed, at most
    once per process per identity.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    p = Path(path)
    identity = file_identity(p.stat())
    if record is not None and record.identity is not None and list(record.identity) == identity:
        return record.sha256
    key = (str(p), tuple(identity))
    with _SEEN_LOCK:
        seen = _SEEN.get(key)
    if seen is not None:
        return seen
    digest, settled = _hash_with_identity(p, own=False)
    if settled is not None:
        with _SEEN_LOCK:
            _SEEN[(str(p), tuple(settled))] = digest
    return digest


def file_record(
    path: str | os.PathLike[str],
    rows: int | None = None,
    *,
    relative_to: Path | None = None,
    sha256: str | None = None,
    known: FileRecord | None = None,
    own: bool = False,
) -> FileRecord:
    """Hash ``path`` and describe it for a manifest, with its identity (:func:`file_identity`).

    Parameters
    ----------
    path
        The file to describe.
    rows
        Its row count, when it is a table.
    relative_to
        If given, record the path relative to this directory (keeps manifests portable).
    sha256
        The file's hash when the caller has just computed it from the very bytes it wrote (a
        multi-GB bundle array is not read back to hash it twice).
    known
        An earlier record of the same file (an upstream stage's output record): its sha256 is
        reused when the file's identity is unchanged since.
    own
        The file was just written by this recctl process (a stage output in its staging directory):
        its identity is recorded even though it changed a moment ago (:data:`RACY_NS`).
    """
    p = Path(path)
    shown = str(p)
    if relative_to is not None:
        with contextlib.suppress(ValueError):
            shown = os.path.relpath(p.resolve(), relative_to.resolve())
    st = p.stat()
    identity: list[int] | None = file_identity(st)
    if sha256 is None and known is not None and known.identity is not None and list(known.identity) == identity:
        sha256 = known.sha256
    elif sha256 is None:
        sha256, identity = _hash_with_identity(p, own=own)
    elif not own:
        identity = None  # a hash the caller computed from bytes recctl did not write: no identity
    return FileRecord(path=shown, sha256=sha256, bytes=st.st_size, rows=rows, identity=identity)


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
    #: unique id of this run
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: run ids whose outputs this run's outputs extend by appending only (``ingest --append``)
    lineage: list[str] = field(default_factory=list)
    #: per upstream stage read: ``{"run_id": ..., "outputs": <outputs digest>}``
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as plain JSON-serialisable data (a record without identity has no key)."""
        data = asdict(self)
        for where in ("inputs", "outputs"):
            for rec in data[where]:
                if rec.get("identity") is None:
                    rec.pop("identity", None)
        return data

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
        """Build a manifest from the data of a ``manifest.json``.

        Raises
        ------
        ValueError
            Naming the first field that is missing or of the wrong type (a hand-edited or
            corrupt manifest); :func:`read_manifest` turns it into an ``ArtifactError``.
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise _SchemaMismatch(version)
        unknown = sorted(set(data) - set(_FIELD_TYPES))
        if unknown:
            raise ValueError(f"unknown field '{unknown[0]}'")
        for name, (types, required) in _FIELD_TYPES.items():
            if name not in data:
                if required:
                    raise ValueError(f"field '{name}' is missing")
                continue
            value = data[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                want = " or ".join("null" if t is type(None) else _JSON_NAMES.get(t, t.__name__) for t in types)
                raise ValueError(f"field '{name}' is {_json_name(value)}, expected {want}")
        data["inputs"] = [_file_record(r, "inputs") for r in data.get("inputs", [])]
        data["outputs"] = [_file_record(r, "outputs") for r in data.get("outputs", [])]
        return cls(**data)


class _SchemaMismatch(ValueError):
    def __init__(self, version: object) -> None:
        super().__init__(f"schema_version {version!r}")
        self.version = version


_JSON_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
}


def _json_name(value: object) -> str:
    if value is None:
        return "null"
    return _JSON_NAMES.get(type(value), type(value).__name__)


_NUM = (int, float)
#: manifest field -> (allowed JSON types, required)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "stage": ((str,), True),
    "config_section": ((dict,), True),
    "config_hash": ((str,), True),
    "seed": ((int,), True),
    "inputs": ((list,), True),
    "outputs": ((list,), True),
    "started_at": ((str,), True),
    "finished_at": ((str, type(None)), False),
    "duration_s": ((*_NUM, type(None)), False),
    "versions": ((dict,), True),
    "schema_version": ((int,), True),
    "summary": ((dict,), True),
    "run_id": ((str,), True),
    "lineage": ((list,), True),
    "upstream": ((dict,), True),
}


_RECORD_KEYS = {"path", "sha256", "bytes", "rows", "identity"}


def _file_record(data: object, where: str) -> FileRecord:
    if not isinstance(data, dict):
        raise ValueError(f"an entry of '{where}' is {_json_name(data)}, expected an object")
    path, sha, size, rows = data.get("path"), data.get("sha256"), data.get("bytes"), data.get("rows")
    identity = data.get("identity")
    if set(data) - _RECORD_KEYS:
        raise ValueError(f"an entry of '{where}' has unknown keys {sorted(set(data) - _RECORD_KEYS)}")
    if not isinstance(path, str) or not path:
        raise ValueError(f"an entry of '{where}' has no path")
    if not isinstance(sha, str) or len(sha) != 64:
        raise ValueError(f"'{where}' entry {path}: sha256 is not 64 hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"'{where}' entry {path}: bytes is not a count")
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool)):
        raise ValueError(f"'{where}' entry {path}: rows is not a count")
    if identity is not None and (
        not isinstance(identity, list)
        or len(identity) != 5
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in identity)
    ):
        raise ValueError(f"'{where}' entry {path}: identity is not a list of 5 integers")
    return FileRecord(path=path, sha256=sha, bytes=size, rows=rows, identity=identity)


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
        return Manifest.from_dict(data)
    except _SchemaMismatch as exc:
        raise ArtifactError(
            f"{path}: manifest schema_version is {exc.version!r}; this recctl reads manifests with "
            f"schema_version {SCHEMA_VERSION} (the integer), written by recctl itself; {todo}."
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: corrupt or hand-edited manifest ({exc}); {todo}.") from exc


def verify_output(
    stage_dir: str | os.PathLike[str], manifest: Manifest, name: str, *, trust_identity: bool = False
) -> Path:
    """Return the path of output ``name`` after checking its sha256 against the manifest.

    ``trust_identity``: a freshness check (is it still the file the stage wrote?): the recorded
    sha256 stands for the file while its identity is the recorded one (:func:`known_sha256`).
    Without it the file is read and hashed.

    Raises
    ------
    ArtifactError
        If the file is missing or was changed after the stage wrote it.
    """
    record = manifest.output(name)
    rel = Path(record.path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ArtifactError(
            f"{Path(stage_dir) / MANIFEST_NAME}: output path {record.path!r} points outside the stage directory; "
            f"the manifest was edited. Re-run `recctl {manifest.stage}`."
        )
    path = Path(stage_dir) / rel
    if not path.exists():
        raise ArtifactError(
            f"{path}: listed in the '{manifest.stage}' manifest but missing; re-run `recctl {manifest.stage}`."
        )
    actual = known_sha256(path, record) if trust_identity else sha256_file(path)
    if actual != record.sha256:
        raise ArtifactError(
            f"{path}: sha256 {actual[:12]}… does not match the '{manifest.stage}' manifest "
            f"({record.sha256[:12]}…); the file changed after it was written. "
            f"Re-run `recctl {manifest.stage}`."
        )
    return path


#: first object of every model file: who wrote it (read before the model itself)
MODEL_FORMAT = "recctl-model"
MODEL_FORMAT_VERSION = 1
#: libraries whose version a model file records; a different major version refuses the load
_STAMPED = ("recctl", "numpy", "scipy", "lightfm-next", "implicit", "torch")


def model_stamp() -> dict[str, Any]:
    """The header a model file starts with: format, and the versions of recctl and its libraries."""
    versions = {k: v for k, v in library_versions().items() if k in _STAMPED or k == "python"}
    for dist in ("implicit", "torch"):
        if dist not in versions:
            from importlib import metadata

            with contextlib.suppress(metadata.PackageNotFoundError):
                versions[dist] = metadata.version(dist)
    return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "versions": versions}


def _sorted(items: Any) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


class _StablePickler(pickle.Pickler):
    """Pickles sets in sorted order, so the same model gives the same bytes in every process.

    A set's iteration order follows string hashing, which Python salts per process (pydantic
    configs carry a set of the fields that were set): without this, a rerun of the same training
    wrote a different file, and "identical to an uninterrupted run" could not be checked by hash.
    Sets go out as persistent ids ``("set"|"frozenset", sorted items)``, which
    :class:`_ModelUnpickler` rebuilds; everything else is the C pickler's.
    """

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is set:
            return ("set", _sorted(obj))
        if type(obj) is frozenset:
            return ("frozenset", _sorted(obj))
        return None


def save_pickle(obj: Any, path: str | os.PathLike[str]) -> FileRecord:
    """Pickle ``obj`` to ``path`` atomically, after a version stamp, and return its record (sha256)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(model_stamp(), handle, protocol=PICKLE_PROTOCOL)
        _StablePickler(handle, protocol=PICKLE_PROTOCOL).dump(obj)
    return file_record(path, own=True)


# -- restricted unpickling -----------------------------------------------------------------
#: exact (module, name) globals a model file may name besides recctl's own model classes
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._mt19937", "MT19937"),
        ("numpy.random._pcg64", "PCG64"),
        ("numpy.random._pcg64", "PCG64DXSM"),
        ("numpy.random._philox", "Philox"),
        ("numpy.random._sfc64", "SFC64"),
        ("numpy.random._generator", "Generator"),
        ("numpy.random.mtrand", "RandomState"),
        ("lightfm.lightfm", "LightFM"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("builtins", "bytearray"),
        ("builtins", "object"),
        ("copyreg", "_reconstructor"),
        ("collections", "OrderedDict"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
    }
)
_SPARSE_MODULES = (
    "scipy.sparse._csr",
    "scipy.sparse._csc",
    "scipy.sparse._coo",
    "scipy.sparse.csr",
    "scipy.sparse.csc",
)
_SPARSE_NAMES = frozenset({"csr_matrix", "csc_matrix", "coo_matrix", "csr_array", "csc_array", "coo_array"})


class _Refused(Exception):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.target = f"{module}.{name}"


class _ModelUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays, scipy sparse matrices, LightFM and recctl's model classes.

    A pickle names every class or function it needs; anything not on the allow-list (``os.system``,
    ``builtins.eval``, ``subprocess.Popen``, a class of another package) is refused before it is
    imported, so a crafted file cannot run code however its manifest was rewritten.
    """

    def persistent_load(self, pid: Any) -> Any:
        # the only persistent ids recctl writes: sets in sorted order (_StablePickler)
        if isinstance(pid, tuple) and len(pid) == 2 and isinstance(pid[1], list):
            if pid[0] == "set":
                return set(pid[1])
            if pid[0] == "frozenset":
                return frozenset(pid[1])
        raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]!r}")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module in _SPARSE_MODULES and name in _SPARSE_NAMES:
            return super().find_class(module, name)
        if (module == "recctl.models" or module.startswith("recctl.models.")) and not name.startswith("__"):
            obj = super().find_class(module, name)
            # classes only (a model, its config, its small helpers), defined in that module
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        # a model kind registered from elsewhere (a plugin, a test) and its config class: only
        # when its module is already imported, so nothing is imported on the file's say-so
        registry = sys.modules.get("recctl.models.registry")
        loaded = sys.modules.get(module)
        if registry is not None and loaded is not None:
            obj = getattr(loaded, name, None)
            kinds = getattr(registry, "MODELS", {}).values()
            if isinstance(obj, type) and any(obj is cls or obj is getattr(cls, "config_class", None) for cls in kinds):
                return obj
        raise _Refused(module, name)


class _HeaderUnpickler(pickle.Unpickler):
    """The model file's header: plain data only (dicts, lists, strings, numbers)."""

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(module, name)


def _check_stamp(path: Path, stamp: object) -> None:
    """Refuse or warn per the versions rule (docs/architecture.md, "Model files")."""
    rerun = "Re-run `recctl train` (or `recctl run`) with this recctl."
    if not isinstance(stamp, dict) or stamp.get("format") != MODEL_FORMAT:
        raise ArtifactError(f"{path}: not a recctl model file (no version stamp; written by an older recctl?). {rerun}")
    if stamp.get("format_version") != MODEL_FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: model file format {stamp.get('format_version')!r}, "
            f"this recctl reads {MODEL_FORMAT_VERSION}. {rerun}"
        )
    versions = stamp.get("versions")
    written: dict[str, Any] = versions if isinstance(versions, dict) else {}
    here = model_stamp()["versions"]
    differ = []
    for dist in _STAMPED:
        theirs, ours = written.get(dist), here.get(dist)
        if theirs is None or ours is None or theirs == ours:
            continue
        if _major(str(theirs)) != _major(str(ours)) or (dist == "recctl" and _minor(str(theirs)) != _minor(str(ours))):
            raise ArtifactError(
                f"{path}: written with {dist} {theirs}, this environment has {ours}: a different "
                f"{'minor' if dist == 'recctl' else 'major'} version may read the file wrongly. {rerun}"
            )
        differ.append(f"{dist} {theirs} -> {ours}")
    if differ:
        log.warning("%s: written under other library versions (%s); loading it", path, ", ".join(differ))


def _major(version: str) -> str:
    return version.split(".")[0]


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def load_pickle_checked(path: str | os.PathLike[str], expected_sha256: str, expected_type: type | None = None) -> Any:
    """Load a model file: sha256 first, then its version stamp, then a restricted unpickling.

    The hash only catches accidents (whoever rewrites the file can rewrite the manifest too);
    the restricted unpickler is what keeps a crafted file from running code: it resolves only
    numpy, scipy.sparse, LightFM and recctl model classes. Version rule: a different major
    version of a stamped library, or another recctl minor version, refuses the file; other
    differences load with a warning.

    Raises
    ------
    ArtifactError
        Missing file, hash mismatch, no or foreign stamp, refused versions, a class outside the
        allow-list, a truncated file, or an object of the wrong class (exit 5, what to re-run).
    """
    p = Path(path)
    rerun = "Re-run `recctl train`."
    if not p.exists():
        raise ArtifactError(f"{p}: model file missing; {rerun}")
    actual = sha256_file(p)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{p}: sha256 {actual[:12]}… does not match its manifest ({expected_sha256[:12]}…); "
            f"refusing to load a file that changed after it was written. {rerun}"
        )
    with open(p, "rb") as handle:
        try:
            stamp = _HeaderUnpickler(handle).load()
        except _Refused as exc:
            raise ArtifactError(f"{p}: not a recctl model file (its header names {exc.target}). {rerun}") from None
        except Exception as exc:
            raise ArtifactError(f"{p}: unreadable model file ({type(exc).__name__}: {exc}). {rerun}") from None
        _check_stamp(p, stamp)
        try:
            obj = _ModelUnpickler(handle).load()
        except _Refused as exc:
            raise ArtifactError(
                f"{p}: refused: the file asks for {exc.target}, which no recctl model contains; it was not "
                f"written by recctl (or was tampered with), whatever its manifest says. Nothing from it ran. {rerun}"
            ) from None
        except Exception as exc:  # truncated or corrupt: EOFError, UnpicklingError, ValueError...
            raise ArtifactError(f"{p}: corrupt model file ({type(exc).__name__}: {exc}). {rerun}") from None
    if expected_type is not None and not isinstance(obj, expected_type):
        raise ArtifactError(f"{p}: holds a {type(obj).__name__}, expected a {expected_type.__name__}.")
    return obj
