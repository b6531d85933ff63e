"""The stage graph: every stage, its directory, the config it reads and the stages it reads, once.

Every command reads this declaration: ``recctl run`` (order, what to skip), ``recctl info``
(status), each stage (which upstream it requires, and whether that upstream is still fresh),
:class:`recctl.stages._common.StageRun` (what a manifest records) and the docs (a test keeps
``docs/architecture.md``'s table equal to :func:`stage_table`).

**Freshness.** A stage's last run is *fresh* when

1. its ``manifest.json`` is there and readable;
2. every upstream stage it reads is fresh, and still holds the outputs this stage read
   (the manifest records each upstream's outputs digest and run id);
3. the config sections it declares are unchanged (dotted keys: ``recommend.refit_on_all_data``);
4. its raw inputs (ingest's data files, recommend's allow/deny lists) are the same files with
   the same sha256 (the recorded one while a file's identity is unchanged: size, times, inode;
   :func:`recctl.artifacts.known_sha256`), and no new one matches the config; a remote input (a URI, ``engine: spark``)
   is not read on the driver: its fingerprint is its Hadoop file status (length and
   modification time, with the file system's checksum when it offers one: HDFS, S3A ETags),
   recorded as the sha256 of that text (:func:`input_record`);
5. stage-specific facts hold (train holds every configured model).

Every stage command refuses a stale upstream (exit 5) naming the first stale stage and the
command to re-run; ``recctl run`` re-runs exactly the stale stages; ``recctl info`` reports the
same verdicts. One relaxation: ``ingest --append`` grows the ingest outputs, and
``recctl update`` exists to fold such batches into models trained before them, so *update*
accepts a preprocess/train whose ingest has only grown by appended batches since (its
lineage). Everything else treats that as stale ("ingest has appended batches since").

This module sits below the stages (it imports only config, artifacts, errors and the data
readers), so the incremental and serving layers may use it without reaching up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recctl import clock
from recctl.artifacts import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    config_hash,
    file_record,
    known_sha256,
    read_manifest,
    verify_output,
)
from recctl.config import Config, is_uri
from recctl.errors import ArtifactError

__all__ = [
    "PIPELINE",
    "STAGES",
    "Stale",
    "Stage",
    "check",
    "configured",
    "current_update",
    "input_record",
    "known_records",
    "order",
    "outputs_digest",
    "raw_inputs",
    "read_stage",
    "require_stage",
    "stage",
    "stage_dir",
    "stage_table",
    "stage_table_markdown",
    "status",
    "upstream_of",
    "upstream_records",
    "why_stale",
]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    Attributes
    ----------
    name
        The stage's name, also the key of its manifest's ``stage`` field.
    directory
        Its directory under the workdir.
    command
        The ``recctl`` command that (re-)runs it.
    sections
        Config sections (or dotted keys) it reads; recorded in its manifest.
    upstream
        Stages whose outputs it reads. ``SERVING`` stands for "the serving source": the current
        ``recctl update`` when there is one, else preprocess + train.
    in_run
        Part of ``recctl run``.
    describes
        What it writes, for the docs.
    folds_appends
        Its upstream stages may lag behind ingest by ``--append`` batches (``update``).
    raw
        The raw files it reads, for the docs (they are listed by :func:`raw_inputs`).
    """

    name: str
    directory: str
    command: str
    sections: tuple[str, ...]
    upstream: tuple[str, ...] = ()
    in_run: bool = True
    describes: str = ""
    #: reads stages whose ingest grew by appended batches since (the update's whole point)
    folds_appends: bool = False
    #: raw files outside the workdir it reads (path + sha256 recorded, see :func:`raw_inputs`)
    raw: str = ""


#: placeholder in ``Stage.upstream``: the serving source (update, or preprocess + train)
SERVING = "<serving>"
#: placeholder in ``Stage.upstream``: tune, when ``tune.apply`` makes train use its result
TUNED = "<tuned>"

#: every stage, in the order ``recctl run`` executes those with ``in_run``
STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "ingest", "ingest", "ingest", ("data",), describes="raw exports -> canonical Parquet", raw="data.* files"
        ),
        Stage("preprocess", "preprocess", "preprocess", ("preprocess",), ("ingest",), describes="weights, ids, splits"),
        Stage(
            "train",
            "train",
            "train",
            ("models", "recommend.refit_on_all_data", "tune.apply"),
            ("preprocess", TUNED),
            describes="model files",
        ),
        Stage(
            "evaluate",
            "evaluate",
            "evaluate",
            ("evaluate",),
            ("preprocess", "train"),
            describes="metrics, report",
            raw="evaluate.candidate_list",
        ),
        Stage(
            "tune",
            "tune",
            "tune",
            ("tune", "models", "evaluate.candidates", "evaluate.candidate_list"),
            ("preprocess",),
            describes="trials, tuned.json, best.yaml",
            raw="evaluate.candidate_list",
        ),
        Stage(
            "recommend",
            "recommend",
            "recommend",
            ("recommend", "experiment"),
            (SERVING, "ingest"),
            describes="top-K lists",
            raw="rules allow/deny lists",
        ),
        Stage(
            "serve-export",
            "export",
            "serve-export",
            ("export", "recommend", "experiment"),
            ("recommend",),
            describes="nightly file, serving bundle",
        ),
        Stage(
            "update",
            "update",
            "update",
            ("update", "preprocess", "models", "recommend.refit_on_all_data"),
            ("ingest", "preprocess", "train"),
            in_run=False,
            describes="models grown by appended batches",
            folds_appends=True,
        ),
        Stage(
            "recommend-users",
            "recommend-users",
            "recommend --users",
            ("recommend", "experiment"),
            (SERVING, "ingest"),
            in_run=False,
            describes="ad-hoc lists for given users",
            raw="rules allow/deny lists",
        ),
    )
}

#: the stages ``recctl run`` executes, in order (tune moves before train with ``tune.apply``)
PIPELINE: tuple[str, ...] = tuple(name for name, s in STAGES.items() if s.in_run)


def order(cfg: Config) -> tuple[str, ...]:
    """The order ``recctl run`` executes stages in for ``cfg``: upstream stages first.

    With ``tune.apply`` train reads tune's result (``tune/tuned.json``), so tune runs before
    train; otherwise tune reads only preprocess outputs and runs after evaluate.
    """
    if cfg.tune is not None and cfg.tune.apply:
        return ("ingest", "preprocess", "tune", "train", "evaluate", "recommend", "serve-export")
    return PIPELINE


def stage(name: str) -> Stage:
    """Return the declaration of stage ``name``.

    Raises
    ------
    ArtifactError
        For a name that is not a stage.
    """
    try:
        return STAGES[name]
    except KeyError:
        raise ArtifactError(f"unknown stage '{name}'; stages: {', '.join(STAGES)}") from None


def stage_dir(cfg: Config, name: str) -> Path:
    """``<workdir>/<directory of stage name>``."""
    return cfg.workdir_path / stage(name).directory


def configured(cfg: Config, name: str) -> bool:
    """Whether the config asks for stage ``name`` (tune needs ``tune:``, serving ``recommend:``)."""
    if name == "tune":
        return cfg.tune is not None
    if name in ("recommend", "serve-export", "recommend-users"):
        return cfg.recommend is not None
    return True


def stage_table() -> list[dict[str, str]]:
    """The graph as rows (stage, directory, command, config, reads) for the docs and ``--help``."""
    rows = []
    for s in STAGES.values():
        named = {SERVING: "update, or preprocess + train", TUNED: "tune (with tune.apply)"}
        reads = ", ".join(named.get(u, u) for u in s.upstream)
        reads = "; ".join(r for r in (reads, s.raw) if r)
        rows.append(
            {
                "stage": s.name,
                "directory": f"{s.directory}/",
                "command": f"recctl {s.command}",
                "config": ", ".join(s.sections),
                "reads": reads,
                "writes": s.describes,
                "in run": "yes" if s.in_run else "no",
            }
        )
    return rows


# -- the serving source ------------------------------------------------------------------
def outputs_digest(manifest: Manifest) -> str:
    """A sha256 over a stage's output records: equal digests mean byte-identical outputs."""
    pairs = sorted((Path(r.path).as_posix(), r.sha256) for r in manifest.outputs)
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def _try_manifest(cfg: Config, name: str) -> Manifest | None:
    path = stage_dir(cfg, name) / MANIFEST_NAME
    if not path.exists():
        return None
    return read_manifest(path.parent, stage=name, hint=_rerun(cfg, name))


def current_update(cfg: Config) -> tuple[Path, Manifest] | None:
    """The update stage's directory and manifest when it serves, else ``None``.

    An update serves while it was built on the train run now in ``train/`` (a later full
    ``recctl train`` retires it, so an update never mixes with models of another run).
    """
    try:
        manifest = _try_manifest(cfg, "update")
        train = _try_manifest(cfg, "train")
    except ArtifactError:
        return None
    if manifest is None or train is None:
        return None
    recorded = manifest.upstream.get("train", {})
    if recorded.get("outputs") != outputs_digest(train):
        return None
    return stage_dir(cfg, "update"), manifest


def upstream_of(cfg: Config, name: str) -> tuple[str, ...]:
    """The stages ``name`` reads now (the serving source resolved)."""
    out: list[str] = []
    for u in stage(name).upstream:
        if u == SERVING:
            out += ["update"] if current_update(cfg) is not None else ["preprocess", "train"]
        elif u == TUNED:
            if cfg.tune is not None and cfg.tune.apply:
                out.append("tune")
        else:
            out.append(u)
    return tuple(dict.fromkeys(out))


def upstream_records(cfg: Config, name: str) -> dict[str, dict[str, Any]]:
    """What a run of ``name`` records about each upstream it reads: run id and outputs digest."""
    records = {}
    for u in upstream_of(cfg, name):
        manifest = _try_manifest(cfg, u)
        if manifest is not None:
            records[u] = {"run_id": manifest.run_id, "outputs": outputs_digest(manifest)}
    return records


# -- raw inputs ----------------------------------------------------------------------------
def raw_inputs(cfg: Config, name: str, manifest: Manifest | None = None) -> list[Path | str]:
    """The files outside the workdir a run of ``name`` would read now (raw data, rule lists).

    Local files are paths; remote ones (``engine: spark``) are URIs (``str``), globs expanded by
    the Spark session's Hadoop file system.
    """
    if name == "ingest":
        return _ingest_raw_inputs(cfg, manifest)
    if name in ("recommend", "recommend-users") and cfg.recommend is not None:
        rules = cfg.recommend.rules
        return [x for v in (rules.allow_list, rules.deny_list) if v for x in _one_input(cfg, v)]
    if name in ("evaluate", "tune") and cfg.evaluate.candidates == "allow_list" and cfg.evaluate.candidate_list:
        return _one_input(cfg, cfg.evaluate.candidate_list)
    return []


def _one_input(cfg: Config, value: str) -> list[Path | str]:
    return list(_remote_files(cfg, value)) if is_uri(value) else [cfg.resolve(value)]


def _expand(cfg: Config, spec: str | list[str], key: str) -> list[Path | str]:
    from recctl.data.readers import expand_paths

    out: list[Path | str] = []
    for pattern in [spec] if isinstance(spec, str) else spec:
        out += _remote_files(cfg, pattern) if is_uri(pattern) else expand_paths(pattern, cfg.resolve, key)
    return out


def _remote_files(cfg: Config, pattern: str) -> list[str]:
    """The files a URI (glob allowed) names now, listed by the Spark session's Hadoop file system."""
    from recctl.engine.spark.hadoopfs import HadoopFS
    from recctl.engine.spark.session import get_spark

    files = [f.uri for f in HadoopFS(get_spark(cfg.engine)).glob(pattern)]
    if not files:
        raise ArtifactError(f"no file matches '{pattern}' (listed through Spark's Hadoop file system)")
    return files


def input_record(cfg: Config, path: Path | str, rows: int | None = None) -> FileRecord:
    """A manifest input record: a local file's sha256, or a remote file's fingerprint.

    A URI is not read on the driver: its record's ``sha256`` is the sha256 of its Hadoop file
    status text (the file system's checksum when there is one, the length, else the
    modification time; :meth:`recctl.engine.spark.hadoopfs.FileInfo.fingerprint`) and
    ``bytes`` its length. Equal records mean the same object, not re-read.
    """
    if not is_uri(path):
        return file_record(path, rows)
    from recctl.engine.spark.hadoopfs import HadoopFS
    from recctl.engine.spark.session import get_spark

    info = HadoopFS(get_spark(cfg.engine)).info(str(path))
    return FileRecord(path=str(path), sha256=_status_digest(info.fingerprint()), bytes=info.length, rows=rows)


def _status_digest(fingerprint: str) -> str:
    return hashlib.sha256(f"hadoop-file-status:{fingerprint}".encode()).hexdigest()


def _ingest_raw_inputs(cfg: Config, manifest: Manifest | None) -> list[Path | str]:
    paths: list[Path | str] = []
    sources = cfg.data.interaction_sources()
    for i, src in enumerate(sources):
        key = "data.interactions" if not isinstance(cfg.data.interactions, list) else f"data.interactions.{i}"
        paths += _expand(cfg, src.path, f"{key}.path")
        for j, lookup in enumerate(src.lookups):
            paths += _expand(cfg, lookup.path, f"{key}.lookups.{j}.path")
    for key, table in (("data.items", cfg.data.items), ("data.users", cfg.data.users)):
        if table is not None:
            paths += _expand(cfg, table.path, f"{key}.path")
    # batches added with `ingest --append` are inputs of every later full ingest too
    if manifest is not None:
        for batch in manifest.summary.get("batches", []):
            if isinstance(batch, dict) and batch.get("kind") == "append":
                paths.append(Path(batch["path"]))
    return list(dict.fromkeys(paths))


class _Hashes:
    """sha256 of files now: the recorded one while a file's identity is unchanged, else hashed
    (once per identity in a process, :func:`recctl.artifacts.known_sha256`); URIs by file status."""

    def of(self, path: Path | str, cfg: Config, record: FileRecord | None = None) -> str | None:
        if is_uri(path):
            try:
                return input_record(cfg, path).sha256
            except Exception:  # noqa: BLE001 - a vanished object (FileNotFoundException through py4j)
                return None
        try:
            return known_sha256(path, record)
        except OSError:
            return None


def known_records(cfg: Config, name: str) -> dict[str, FileRecord]:
    """Records a run of ``name`` may reuse for its inputs, by absolute path: the outputs of the
    stages it reads (their manifests) and the inputs its own last run recorded (raw files)."""
    known: dict[str, FileRecord] = {}
    workdir = cfg.workdir_path
    try:
        own = _try_manifest(cfg, name)
    except ArtifactError:
        own = None
    for rec in own.inputs if own is not None else []:
        if not is_uri(rec.path):
            p = Path(rec.path)
            known[str(p if p.is_absolute() else workdir / p)] = rec
    for u in upstream_of(cfg, name):
        try:
            manifest = _try_manifest(cfg, u)
        except ArtifactError:
            continue
        for rec in manifest.outputs if manifest is not None else []:
            known[str(stage_dir(cfg, u) / rec.path)] = rec
    return {str(Path(k).resolve()): v for k, v in known.items()}


# -- freshness -----------------------------------------------------------------------------
@dataclass
class Stale:
    """Why a stage's last run cannot be used: ``stage`` is the first stale stage, ``reason`` why."""

    stage: str
    reason: str
    missing: bool = False
    via: list[str] = field(default_factory=list)

    def message(self, cfg: Config, required: str | None = None) -> str:
        """The error text: which stage is stale, why, and what to run."""
        config = cfg.source_path or "CONFIG"
        cmd = stage(self.stage).command
        if self.missing:
            text = f"{stage_dir(cfg, self.stage) / MANIFEST_NAME}: no finished '{self.stage}' stage here"
        else:
            text = f"{self.stage} is stale: {self.reason}"
        if required and required != self.stage:
            text = f"{required} cannot be used: {text}"
        later = " (then the stages after it)" if required and required != self.stage else ""
        return f"{text}; run `recctl {cmd} {config}`{later} or `recctl run {config}`."


def _rerun(cfg: Config, name: str) -> str:
    config = cfg.source_path or "CONFIG"
    return f"run `recctl {stage(name).command} {config}` or `recctl run {config}`"


def _changed_keys(recorded: Any, current: Any, prefix: str) -> list[str]:
    if isinstance(recorded, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(recorded) | set(current), key=str):
            if config_hash(recorded.get(key)) != config_hash(current.get(key)):
                out += _changed_keys(recorded.get(key), current.get(key), f"{prefix}.{key}")
        return out or [prefix]
    return [prefix]


def _sections_reason(cfg: Config, name: str, manifest: Manifest) -> str | None:
    current = {s: cfg.section(s) for s in stage(name).sections}
    current["seed"] = cfg.seed
    recorded = {k: manifest.config_section.get(k) for k in current}
    if config_hash(recorded) == config_hash(current):
        return None
    changed: list[str] = []
    for key in current:
        if config_hash(recorded[key]) != config_hash(current[key]):
            changed += _changed_keys(recorded[key], current[key], key)
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"{shown} changed"


def _raw_reason(cfg: Config, name: str, manifest: Manifest, hashes: _Hashes) -> str | None:
    workdir = cfg.workdir_path
    try:
        now = [str(p) for p in raw_inputs(cfg, name, manifest)]
    except Exception as exc:  # a data path that no longer matches anything
        return f"raw inputs unreadable ({exc})"
    # every recorded input by absolute path (files inside the workdir are recorded relative to it);
    # raw inputs are those outside the workdir, and those the graph lists (a batch appended from
    # inside the workdir, e.g. the service's event log)
    recorded: dict[str, FileRecord] = {}
    for rec in manifest.inputs:
        if is_uri(rec.path):
            recorded[rec.path] = rec
            continue
        p = Path(rec.path)
        full = str(p if p.is_absolute() else workdir / p)
        if not _inside(Path(full), workdir) or full in now:
            recorded[full] = rec
    for path in now:
        if path not in recorded:
            return f"new raw input {path}"
    for path, rec in recorded.items():
        sha = rec.sha256
        actual = hashes.of(path, cfg, rec)
        if actual is None:
            return f"raw input {path} is gone"
        if actual != sha and is_uri(path):
            return f"raw input {path} changed (its file status: length, modification time or checksum)"
        if actual != sha:
            return f"raw input {path} changed (sha256 {actual[:12]}…, recorded {sha[:12]}…)"
    if name == "ingest" and set(recorded) - set(now):
        return f"raw input {sorted(set(recorded) - set(now))[0]} is no longer configured"
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _special_reason(cfg: Config, name: str, manifest: Manifest, for_run: bool) -> str | None:
    if name == "train":
        trained = set(manifest.summary.get("models", {}))
        missing = sorted(set(cfg.models) - trained)
        if missing:
            return f"models not trained: {', '.join(missing)}"
    if name == "serve-export" and for_run:
        # the nightly file is named by its date: a new day publishes a new file even when
        # nothing else changed, so the shop never reads yesterday's date as today's
        dated = re.search(r"\d{4}-\d{2}-\d{2}", str(manifest.summary.get("file") or ""))
        published = dated.group(0) if dated else str(manifest.summary.get("generated_at") or "")[:10]
        if manifest.summary.get("rolled_back_to"):
            # `recctl rollback` republished an earlier file today on purpose: keep it until
            # something upstream changes, rather than republish the lists it replaced
            published = str(manifest.summary.get("published_at") or "")[:10]
        today = clock.today()
        if published != today:
            return f"last export is from {published or 'an unknown date'}, today is {today}"
    return None


def check(
    cfg: Config,
    name: str,
    *,
    verify: bool | Iterable[str] = False,
    allow_appended: bool = False,
    for_run: bool = False,
    _memo: dict[str, Stale | None] | None = None,
    _hashes: _Hashes | None = None,
) -> Stale | None:
    """Why stage ``name``'s last run cannot be used, or ``None`` when it is fresh.

    Parameters
    ----------
    cfg
        The experiment config.
    name
        The stage.
    verify
        Also check the sha256 of the stage's own outputs: ``True`` all, or these names.
    allow_appended
        Accept an ingest that only grew by ``--append`` batches since (``recctl update``).
    for_run
        Include reasons only ``recctl run`` acts on (a new day for serve-export).

    Raises
    ------
    ArtifactError
        When a manifest exists but is corrupt (the message says what to re-run).
    """
    memo = {} if _memo is None else _memo
    hashes = _hashes or _Hashes()
    key = f"{name}|{allow_appended}|{for_run}"
    if key in memo and verify is False:
        return memo[key]
    result = _check(cfg, name, verify, allow_appended, for_run, memo, hashes)
    memo[key] = result
    return result


def _check(
    cfg: Config,
    name: str,
    verify: bool | Iterable[str],
    allow_appended: bool,
    for_run: bool,
    memo: dict[str, Stale | None],
    hashes: _Hashes,
) -> Stale | None:
    manifest = _try_manifest(cfg, name)
    if manifest is None:
        return Stale(name, "no finished run", missing=True)
    now = upstream_of(cfg, name)
    for u in now:
        if u not in manifest.upstream:
            read = ", ".join(manifest.upstream) or "nothing"
            return Stale(name, f"it read {read}, but now {u} must be read ({_rerun(cfg, name)} again)")
    for u in now:
        tolerate = allow_appended or stage(name).folds_appends
        inner = check(cfg, u, allow_appended=tolerate, for_run=False, _memo=memo, _hashes=hashes)
        if inner is not None:
            return inner
        upstream = _try_manifest(cfg, u)
        assert upstream is not None
        recorded = manifest.upstream[u]
        if recorded.get("outputs") == outputs_digest(upstream):
            continue
        if recorded.get("run_id") in upstream.lineage:
            n = len(upstream.lineage) - upstream.lineage.index(recorded["run_id"])
            if allow_appended:
                continue
            return Stale(name, f"{u} has {n} appended batch(es) since {name} read it (`recctl update` folds them in)")
        return Stale(name, f"{u} ran again since {name} read it")
    reason = (
        _sections_reason(cfg, name, manifest)
        or _raw_reason(cfg, name, manifest, hashes)
        or _special_reason(cfg, name, manifest, for_run)
    )
    if reason is not None:
        return Stale(name, reason)
    names = [r.path for r in manifest.outputs] if verify is True else list(verify or [])
    for out in names:
        try:
            # freshness: the recorded sha256 stands while the output's identity is unchanged
            path = verify_output(stage_dir(cfg, name), manifest, out, trust_identity=True)
        except ArtifactError as exc:
            return Stale(name, f"output {out} changed or missing ({exc})")
        broken = _unreadable_parquet(path)
        if broken is not None:
            return Stale(name, f"output {path} is corrupt although its sha256 matches the manifest ({broken})")
    return None


def _unreadable_parquet(path: Path) -> str | None:
    """Why a Parquet output cannot be read (its footer), or ``None``: a truncated file whose hash
    was rewritten into the manifest is caught here, not as a traceback in the next stage."""
    if path.suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def why_stale(cfg: Config, name: str) -> str | None:
    """Why ``recctl run`` must run ``name`` again (``None``: skip it). Reads what ``info`` shows."""
    try:
        found = check(cfg, name, verify=True, for_run=True)
    except ArtifactError as exc:
        return f"unreadable manifest ({exc})"
    if found is None:
        return None
    if found.missing and found.stage == name:
        return "no finished run"
    return found.reason if found.stage == name else f"{found.stage} is stale: {found.reason}"


def status(cfg: Config, name: str) -> str:
    """``up to date``, ``not run``, ``stale: ...`` or ``not configured``: what ``info`` shows."""
    if not configured(cfg, name):
        return "not configured"
    reason = why_stale(cfg, name)
    if reason is None:
        return "up to date"
    return "not run" if reason == "no finished run" else f"stale: {reason}"


def read_stage(cfg: Config, name: str, outputs: Iterable[str] = ()) -> tuple[Path, Manifest]:
    """``(dir, manifest)`` of a finished stage, its ``outputs`` verified, freshness not checked.

    For reading a stage's own previous state (e.g. the lists ``--changed-since`` keeps rows
    from); an *input* of a stage goes through :func:`require_stage`.

    Raises
    ------
    ArtifactError
        When the stage never finished or an output changed.
    """
    manifest = _try_manifest(cfg, name)
    if manifest is None:
        raise ArtifactError(Stale(name, "no finished run", missing=True).message(cfg))
    for out in outputs:
        verify_output(stage_dir(cfg, name), manifest, out)
    return stage_dir(cfg, name), manifest


def require_stage(
    cfg: Config,
    name: str,
    outputs: Iterable[str] = (),
    *,
    allow_appended: bool = False,
) -> tuple[Path, Manifest]:
    """Return ``(dir, manifest)`` of stage ``name`` after checking it is finished and fresh.

    Fresh means what the module docstring says, recursively through the stages it reads;
    ``outputs`` are verified against their recorded sha256 too.

    Raises
    ------
    ArtifactError
        Naming the first stale stage, why, and the command to re-run (exit 5).
    """
    found = check(cfg, name, verify=list(outputs), allow_appended=allow_appended)
    if found is not None:
        raise ArtifactError(found.message(cfg, required=name))
    manifest = _try_manifest(cfg, name)
    assert manifest is not None
    return stage_dir(cfg, name), manifest


def stage_table_markdown() -> str:
    """:func:`stage_table` as the Markdown table docs/architecture.md carries (a test compares)."""
    rows = stage_table()
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += [
        "| " + " | ".join(f"`{r[h]}`" if h in ("directory", "command") else r[h] for h in head) + " |" for r in rows
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m recctl.graph: the table for docs/architecture.md
    print(stage_table_markdown(), end="")
