"""What every stage shares: a staging directory swapped in whole, and upstream checks.

A stage writes all its files into ``<workdir>/.<stage>.partial-<pid>/`` and, only when it
has finished, swaps that directory into ``<workdir>/<stage>/`` (the manifest is written
last, inside the staging directory). A stage that fails or is interrupted therefore leaves
the previous run's outputs exactly as they were.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from recctl.artifacts import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    config_hash,
    file_record,
    read_manifest,
    utc_now,
    verify_output,
)
from recctl.config import Config
from recctl.errors import ArtifactError

__all__ = ["StageRun", "require_stage", "stage_inputs_changed", "swap_in"]

#: directory name of each stage (the CLI command ``serve-export`` writes ``export/``)
STAGE_DIRS = {
    "ingest": "ingest",
    "preprocess": "preprocess",
    "train": "train",
    "evaluate": "evaluate",
    "tune": "tune",
    "recommend": "recommend",
    "serve-export": "export",
}


def swap_in(staging: Path, final: Path) -> None:
    """Replace directory ``final`` with ``staging`` as close to atomically as POSIX allows.

    The old directory is renamed aside first, then the new one renamed into place, then the
    old one deleted; a crash between the two renames leaves ``<final>.old-*`` to recover from.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
        sections: Iterable[str],
        inputs: Iterable[Path] = (),
        input_rows: dict[str, int] | None = None,
        hash_inputs_in_background: bool = False,
    ) -> None:
        self.cfg = cfg
        self.stage = stage
        self.final_dir = cfg.workdir_path / STAGE_DIRS.get(stage, stage)
        self.dir = cfg.workdir_path / f".{self.final_dir.name}.partial-{os.getpid()}"
        section = {name: cfg.section(name) for name in sections}
        section["seed"] = cfg.seed
        rows = input_rows or {}
        paths = list(inputs)
        self._pending_inputs: Future[list[FileRecord]] | None = None
        if hash_inputs_in_background:
            # hashing a multi-GB export costs ~0.7 s/GB; hashlib releases the GIL, so a stage
            # whose own work leaves a core idle at times (polars streaming) hides part of it
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-inputs")
            self._pending_inputs = pool.submit(lambda: [file_record(p, rows.get(str(p))) for p in paths])
            pool.shutdown(wait=False)
            records: list[FileRecord] = []
        else:
            records = [file_record(p, rows.get(str(p))) for p in paths]
        self.manifest = Manifest(
            stage=stage,
            config_section=section,
            config_hash=config_hash(section),
            seed=cfg.seed,
            inputs=records,
        )
        self.summary: dict[str, Any] = {}
        self._t0 = 0.0

    def __enter__(self) -> StageRun:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self._t0 = time.perf_counter()
        self.manifest.started_at = utc_now()
        return self

    def input_records(self) -> list[FileRecord]:
        """The inputs' records (sha256, size), waiting for the background hashing if it runs."""
        if self._pending_inputs is not None:
            self.manifest.inputs = self._pending_inputs.result()
            self._pending_inputs = None
        return self.manifest.inputs

    def add_output(self, path: Path, rows: int | None = None) -> None:
        """Record an output file (already written inside ``self.dir``)."""
        self.manifest.outputs.append(file_record(path, rows, relative_to=self.dir))

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        self.input_records()
        self.manifest.finished_at = utc_now()
        self.manifest.duration_s = round(time.perf_counter() - self._t0, 3)
        self.manifest.summary = self.summary
        self.manifest.write(self.dir)
        swap_in(self.dir, self.final_dir)
        self.dir = self.final_dir


def require_stage(
    cfg: Config, stage: str, outputs: Iterable[str] = (), *, sections: Iterable[str] | None = None
) -> tuple[Path, Manifest]:
    """Return ``(dir, manifest)`` of a finished upstream stage after checking it.

    Checks that the stage finished, that each named output still has the sha256 its
    manifest recorded, and (when ``sections`` is given) that it ran with the config
    sections the current config has.

    Raises
    ------
    ArtifactError
        Naming the command to re-run.
    """
    stage_dir = cfg.workdir_path / STAGE_DIRS.get(stage, stage)
    rerun = f"run `recctl {stage} {cfg.source_path or 'CONFIG'}`"
    manifest = read_manifest(stage_dir, stage=stage, hint=rerun)
    for name in outputs:
        verify_output(stage_dir, manifest, name)
    if sections is not None:
        current = {name: cfg.section(name) for name in sections}
        current["seed"] = cfg.seed
        recorded = {k: manifest.config_section.get(k) for k in current}
        if config_hash(recorded) != config_hash(current):
            changed = sorted(k for k in current if config_hash(current[k]) != config_hash(recorded.get(k)))
            raise ArtifactError(
                f"{stage_dir / MANIFEST_NAME}: '{stage}' ran with a different config "
                f"(changed: {', '.join(changed)}); {rerun} again first."
            )
    return stage_dir, manifest


def stage_inputs_changed(cfg: Config, stage: str, sections: Iterable[str], inputs: Iterable[Path]) -> str | None:
    """Why ``stage`` must run again, or ``None`` when its config section and inputs are unchanged."""
    stage_dir = cfg.workdir_path / STAGE_DIRS.get(stage, stage)
    try:
        manifest = read_manifest(stage_dir, stage=stage)
    except ArtifactError:
        return "no finished run"
    section = {name: cfg.section(name) for name in sections}
    section["seed"] = cfg.seed
    if manifest.config_hash != config_hash(section):
        return "config changed"
    recorded = {r.path: r.sha256 for r in manifest.inputs}
    current = {}
    for p in inputs:
        with contextlib.suppress(FileNotFoundError):
            current[str(p)] = file_record(p).sha256
    if recorded != current:
        return "inputs changed"
    for rec in manifest.outputs:
        try:
            verify_output(stage_dir, manifest, Path(rec.path).name)
        except ArtifactError:
            return "outputs changed or missing"
    return None
