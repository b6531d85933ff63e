"""Published versions: each publication's file, bundle, serving models and metrics, kept for rollback.

Every successful ``serve-export`` records a version in ``<workdir>/versions/<id>/``:

* ``version.json``: the id, when it was published, the ``latest`` pointer it wrote (file name,
  sha256, rows, customers, ...), the serving models (name, file, sha256), the evaluation
  headline, and ``files``: the sha256 of every file of the version;
* ``published/``: the published file and its side files (short lists, assignments, delta);
* ``bundle/``: the serving bundle;
* ``models/``: the model files that produced the lists;
* ``metrics.json``: the evaluation of those models, when there was one.

Files are hard links when the workdir's file system allows (a version then costs no space until
the stage it came from is rewritten), copies otherwise. Only the last ``export.versions`` are
kept; pruning deletes only files a version recorded, and only when their sha256 still matches
(:func:`recctl.workdir.remove_recorded`: a file someone put there by hand is moved aside, never
deleted).

``recctl rollback`` (:mod:`recctl.stages.rollback`) republishes a version: its file back into
the export directory, its bundle into ``<workdir>/export/bundle``, and the pointer last.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recctl import clock
from recctl.artifacts import sha256_file, write_json_atomic
from recctl.errors import ArtifactError

__all__ = ["VERSIONS_DIR", "Version", "list_versions", "new_version_id", "prune_versions", "record_version"]

log = logging.getLogger(__name__)

VERSIONS_DIR = "versions"
VERSION_FILE = "version.json"


@dataclass
class Version:
    """One recorded publication."""

    id: str
    path: Path
    meta: dict[str, Any]

    @property
    def pointer(self) -> dict[str, Any]:
        """The ``latest`` pointer this version published."""
        return dict(self.meta.get("pointer", {}))

    def file(self, relative: str) -> Path:
        """A file of the version, after checking its sha256 against ``version.json``.

        Raises
        ------
        ArtifactError
            When the file is missing or was changed after the version was recorded.
        """
        expected = self.meta.get("files", {}).get(relative)
        path = self.path / relative
        if expected is None or not path.exists():
            raise ArtifactError(f"{path}: version {self.id} does not hold this file (or it was removed).")
        if sha256_file(path) != expected:
            raise ArtifactError(f"{path}: sha256 does not match {self.path / VERSION_FILE}; the version was altered.")
        return path


def new_version_id(now: dt.datetime, digest: str) -> str:
    """A sortable id: UTC time of publication and the first 8 digits of the published file's sha256."""
    return f"{now.astimezone(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{digest[:8]}"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # published files and model files are never rewritten in place
    except OSError:
        shutil.copy2(src, dst)


def record_version(
    workdir: Path,
    version_id: str,
    *,
    pointer: dict[str, Any],
    published: list[Path],
    bundle: Path | None,
    models: dict[str, Path],
    metrics: Path | None,
    summary: dict[str, Any],
    known_sha256: dict[Path, str] | None = None,
) -> Version:
    """Record one publication as a version (written aside, then renamed into place).

    Parameters
    ----------
    workdir
        The experiment's workdir.
    version_id
        From :func:`new_version_id`.
    pointer
        The ``latest`` pointer just written.
    published
        The published files (main file first).
    bundle
        The bundle directory published with them, or ``None``.
    models
        Serving model name -> model file.
    metrics
        ``evaluate/metrics.json`` of those models, or ``None``.
    summary
        Headline numbers to show in ``recctl rollback --list``.
    known_sha256
        Hashes the caller already holds for some of these files (the bundle's arrays hashed as
        they were written, model files checked against their manifest when loaded): a kept
        file is a hard link to the same bytes, so hashing a multi-GB model again adds nothing.
    """
    root = workdir / VERSIONS_DIR
    staging = root / f".{version_id}.partial-{os.getpid()}"
    final = root / version_id
    if staging.exists():
        shutil.rmtree(staging)
    files: dict[str, str] = {}

    known = known_sha256 or {}

    def keep(src: Path, relative: str) -> None:
        _link_or_copy(src, staging / relative)
        files[relative] = known.get(src) or sha256_file(staging / relative)

    for path in published:
        keep(path, f"published/{path.name}")
    if bundle is not None and bundle.exists():
        for path in sorted(bundle.iterdir()):
            if path.is_file():
                keep(path, f"bundle/{path.name}")
    model_records = {}
    for name, path in models.items():
        keep(path, f"models/{path.name}")
        model_records[name] = {"file": f"models/{path.name}", "sha256": files[f"models/{path.name}"]}
    if metrics is not None and metrics.exists():
        keep(metrics, "metrics.json")
    meta = {
        "id": version_id,
        "recorded_at": clock.utc_stamp(),
        "pointer": pointer,
        "file": published[0].name if published else None,
        "models": model_records,
        "summary": summary,
        "files": files,
    }
    write_json_atomic(staging / VERSION_FILE, meta)
    os.replace(staging, final)
    return Version(version_id, final, meta)


def list_versions(workdir: Path) -> list[Version]:
    """Recorded versions, oldest first (unreadable or half-written ones are left out)."""
    root = workdir / VERSIONS_DIR
    out: list[Version] = []
    if not root.exists():
        return out
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not (path / VERSION_FILE).exists():
            continue
        try:
            meta = json.loads((path / VERSION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: unreadable, left out of the versions", path / VERSION_FILE)
            continue
        out.append(Version(path.name, path, meta))
    return out


def prune_versions(workdir: Path, keep: int, *, protect: set[str] | None = None) -> list[str]:
    """Delete versions beyond the newest ``keep`` (never one in ``protect``: the one published now).

    Deletion goes through :func:`recctl.workdir.remove_recorded`: only files the version
    recorded, with their recorded sha256, are deleted; anything else found in a version's
    directory is moved to ``<workdir>/.recctl/kept/`` and reported. Returns the ids removed.
    """
    from recctl.workdir import STATE_DIR, remove_recorded

    protect = protect or set()
    versions = list_versions(workdir)
    removed = []
    for version in versions[: max(0, len(versions) - keep)]:
        if version.id in protect:
            continue
        recorded = dict(version.meta.get("files", {}))
        recorded[VERSION_FILE] = sha256_file(version.path / VERSION_FILE)
        kept = remove_recorded(version.path, recorded, keep_in=workdir / STATE_DIR / "kept" / f"versions-{version.id}")
        if kept:
            log.warning("version %s: kept %d file(s) recctl did not write: %s", version.id, len(kept), kept[:5])
        removed.append(version.id)
    return removed
