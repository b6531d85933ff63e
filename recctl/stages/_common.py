"""What every stage shares: a staging directory swapped in whole, and upstream checks.

A stage writes all its files into ``<workdir>/.<stage>.partial-<pid>/`` and, only when it
has finished, swaps that directory into ``<workdir>/<stage>/`` (the manifest is written
last, inside the staging directory). A stage that fails or is interrupted therefore leaves
the previous run's outputs exactly as they were.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from recctl import graph
from recctl.artifacts import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    config_hash,
    file_identity,
    file_record,
    known_sha256,
    read_manifest,
    utc_now,
)
from recctl.config import Config, is_uri
from recctl.errors import ArtifactError
from recctl.graph import require_stage
from recctl.workdir import STATE_DIR, exclusive, remove_recorded

__all__ = ["STAGE_DIRS", "StageRun", "require_stage", "swap_in", "timed_stage"]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
#: (perf_counter, UTC stamp) at the entry of the stage function running in this context
_STAGE_START: ContextVar[tuple[float, str] | None] = ContextVar("recctl_stage_start", default=None)


def timed_stage(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Mark a stage's entry point: its manifest's clock starts when it is called.

    A stage reads, checks and prepares its inputs before it opens its :class:`StageRun`
    (preprocess: four of its seven steps); without this mark ``duration_s`` and
    ``started_at`` would leave that work out.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        token = _STAGE_START.set((time.perf_counter(), utc_now()))
        try:
            return fn(*args, **kwargs)
        finally:
            _STAGE_START.reset(token)

    return wrapper


#: directory name of each stage, from the stage graph (:mod:`recctl.graph`)
STAGE_DIRS = {name: s.directory for name, s in graph.STAGES.items()}


def swap_in(staging: Path, final: Path) -> None:
    """Replace directory ``final`` with ``staging`` as close to atomically as POSIX allows.

    The old directory is renamed aside first, then the new one renamed into place; a crash
    between the two renames leaves ``.<final>.old-*``, which the next command restores
    (:func:`recctl.workdir.clean_debris`). Of the old directory only the files its manifest
    recorded (same name, same sha256) are deleted; anything else is moved to
    ``<workdir>/.recctl/kept/`` and reported, never deleted.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    recorded: dict[str, FileRecord | str] = {}
    if final.exists():
        recorded = _recorded_files(final)
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        keep_in = final.parent / STATE_DIR / "kept" / f"{final.name}-{time.time_ns()}"
        kept = remove_recorded(old, recorded, keep_in=keep_in)
        if kept:
            log.warning(
                "%s: kept %d file(s) recctl did not write (or that changed since) in %s: %s",
                final,
                len(kept),
                keep_in,
                ", ".join(kept[:5]),
            )


def _recorded_files(stage_dir: Path) -> dict[str, FileRecord | str]:
    """Relative path -> record (sha256, identity) of the files a stage directory's manifest says
    recctl wrote, the manifest itself included."""
    try:
        manifest = read_manifest(stage_dir)
    except ArtifactError:
        return {}  # an unreadable manifest vouches for nothing
    recorded: dict[str, FileRecord | str] = {Path(r.path).as_posix(): r for r in manifest.outputs}
    recorded[MANIFEST_NAME] = known_sha256(stage_dir / MANIFEST_NAME)
    return recorded


class StageRun:
    """Collects a stage's manifest while it writes into a private staging directory.

    Use as a context manager::

        with StageRun(cfg, "train", sections=["models"], inputs=[...]) as run:
            model.save(run.dir / "pop.pkl"); run.add_output(run.dir / "pop.pkl")
            run.summary["n_models"] = 1
        manifest = run.manifest      # written and swapped in on success
    """

    def __init__(
        self,
        cfg: Config,
        stage: str,
        *,
        sections: Iterable[str] | None = None,
        inputs: Iterable[Path | str] = (),
        input_rows: dict[str, int] | None = None,
        hash_inputs_in_background: bool = False,
        extends: Manifest | None = None,
    ) -> None:
        self.cfg = cfg
        self.stage = stage
        declared = graph.stage(stage)
        # the graph declares what a stage reads; a caller may not record something else
        if sections is not None and tuple(sections) != declared.sections:
            raise ValueError(f"stage '{stage}' declares sections {declared.sections}, got {tuple(sections)}")
        self.final_dir = cfg.workdir_path / declared.directory
        self.dir = cfg.workdir_path / f".{self.final_dir.name}.partial-{os.getpid()}"
        section = {name: cfg.section(name) for name in declared.sections}
        section["seed"] = cfg.seed
        rows = input_rows or {}
        paths = list(inputs)
        # the raw files the graph says this stage reads are always among its recorded inputs
        paths += [p for p in graph.raw_inputs(cfg, stage) if p not in paths]
        self._pending_inputs: Future[list[FileRecord]] | None = None
        # remote inputs (URIs) by their file status, here in the calling thread (it owns the Spark
        # session); local files by sha256, in the background when asked
        remote = [graph.input_record(cfg, p, rows.get(str(p))) for p in paths if is_uri(p)]
        local = [Path(p) for p in paths if not is_uri(p)]
        # an upstream output or a raw file recorded before keeps its sha256 while its identity is
        # unchanged (freshness bookkeeping: the stage reads the file itself, not the record)
        known = graph.known_records(cfg, stage)

        def record(p: Path) -> FileRecord:
            return file_record(p, rows.get(str(p)), known=known.get(str(p.resolve())))

        if hash_inputs_in_background:
            # hashing a multi-GB export costs ~0.7 s/GB; hashlib releases the GIL, so a stage
            # whose own work leaves a core idle at times (polars streaming) hides part of it
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-inputs")
            self._pending_inputs = pool.submit(lambda: remote + [record(p) for p in local])
            pool.shutdown(wait=False)
            records: list[FileRecord] = []
        else:
            records = remote + [record(p) for p in local]
        self.manifest = Manifest(
            stage=stage,
            config_section=section,
            config_hash=config_hash(section),
            seed=cfg.seed,
            inputs=records,
            upstream=graph.upstream_records(cfg, stage),
            lineage=[*extends.lineage, extends.run_id] if extends is not None else [],
        )
        self.summary: dict[str, Any] = {}
        self._t0 = 0.0

    def __enter__(self) -> StageRun:
        # the stage function normally holds the workdir already (reentrant); this is the net
        self._lock = exclusive(self.cfg)
        self._lock.__enter__()
        try:
            return self._enter()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def _enter(self) -> StageRun:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        # the clock of the stage function (see timed_stage), else from here
        start = _STAGE_START.get()
        self._t0, self.manifest.started_at = start if start is not None else (time.perf_counter(), utc_now())
        return self

    def input_records(self) -> list[FileRecord]:
        """The inputs' records (sha256, size), waiting for the background hashing if it runs."""
        if self._pending_inputs is not None:
            self.manifest.inputs = self._pending_inputs.result()
            self._pending_inputs = None
        # upstream outputs are recorded relative to the workdir, so a copied workdir stays valid
        workdir = self.cfg.workdir_path.resolve()
        for rec in self.manifest.inputs:
            p = Path(rec.path)
            if p.is_absolute() and p.resolve().is_relative_to(workdir):
                rec.path = p.resolve().relative_to(workdir).as_posix()
        return self.manifest.inputs

    def add_output(self, path: Path, rows: int | None = None, *, sha256: str | None = None) -> None:
        """Record an output file (already written inside ``self.dir``); ``sha256`` when already known."""
        self.manifest.outputs.append(file_record(path, rows, relative_to=self.dir, sha256=sha256, own=True))

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                return
            self.input_records()
            self._record_unlisted()
            self._settle_identities()
            self.manifest.finished_at = utc_now()
            self.manifest.duration_s = round(time.perf_counter() - self._t0, 3)
            self.manifest.summary = self.summary
            self.manifest.write(self.dir)
            swap_in(self.dir, self.final_dir)
            self.dir = self.final_dir
        finally:
            self._lock.__exit__(None, None, None)

    def _settle_identities(self) -> None:
        # a stage may hard-link an output after recording it (serve-export keeps a version of
        # the bundle), which changes only its ctime; take that ctime now, so the next run's
        # recorded deletion does not hash the file again. Anything else about the file changed
        # (size, mtime, inode): no identity, hashed when next needed.
        for rec in self.manifest.outputs:
            if rec.identity is None:
                continue
            try:
                now = file_identity((self.dir / rec.path).stat())
            except OSError:
                rec.identity = None
                continue
            rec.identity = now if now[:4] == list(rec.identity)[:4] else None

    def _record_unlisted(self) -> None:
        # every file a stage leaves in its directory is an output: recorded, hashed, and so
        # deletable later (recctl deletes nothing it did not record)
        listed = {Path(r.path).as_posix() for r in self.manifest.outputs}
        for path in sorted(self.dir.rglob("*")):
            if path.is_file() and path.relative_to(self.dir).as_posix() not in listed:
                self.add_output(path)
