"""``recctl rollback``: republish an earlier version's file and bundle (:mod:`recctl.versions`).

The version's files are checked against their recorded sha256 first; then, in this order:

1. its published file (and side files) go back into the export directory under their own
   names (already there and identical: left as they are; otherwise written under a temporary
   name and renamed);
2. its bundle replaces ``<workdir>/export/bundle`` with the export stage's directory swap, so a
   reader sees the old or the new bundle, never a mix; ``export/manifest.json`` then describes
   the rollback;
3. the ``latest`` pointer (JSON and symlink) moves to the version's file, last.

All of it runs under the export folder's lock (:func:`recctl.workdir.export_folder`, taken after
the workdir lock, as serve-export does), so a rollback and a publication from another workdir
into the same folder take turns. A failure before step 3 leaves the pointer where it was.
After a rollback ``recctl run`` keeps the rolled-back publication until something upstream
changes (a new day's ingest, a retrain).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from recctl import clock
from recctl.artifacts import Manifest, atomic_path, sha256_file
from recctl.config import Config
from recctl.errors import ArtifactError, ConfigError
from recctl.export import move_pointer, read_pointer
from recctl.stages._common import StageRun
from recctl.stages.export import export_directory, remote_directory
from recctl.versions import Version, list_versions
from recctl.workdir import Ledger, export_folder, lock_wait, writes_workdir

__all__ = ["current_version", "run_rollback", "versions_table"]

log = logging.getLogger(__name__)


def current_version(cfg: Config, versions: list[Version]) -> Version | None:
    """The version whose file the ``latest`` pointer names now (matched by sha256), if any."""
    pointer = read_pointer(export_directory(cfg), cfg.export) or {}
    for version in reversed(versions):
        if pointer.get("version") == version.id or (
            pointer.get("sha256") and version.pointer.get("sha256") == pointer.get("sha256")
        ):
            return version
    return None


def versions_table(cfg: Config) -> list[dict[str, Any]]:
    """Every kept version, oldest first, with ``current`` marking the one published now."""
    versions = list_versions(cfg.workdir_path)
    current = current_version(cfg, versions)
    return [
        {
            "version": v.id,
            "file": v.meta.get("file"),
            "users": v.meta.get("summary", {}).get("users"),
            "rows": v.meta.get("summary", {}).get("rows"),
            "metric": v.meta.get("summary", {}).get("metric"),
            "generated_at": v.meta.get("summary", {}).get("generated_at"),
            "current": current is not None and v.id == current.id,
        }
        for v in versions
    ]


def _pick(cfg: Config, versions: list[Version], to: str | None) -> Version:
    if not versions:
        raise ArtifactError(
            f"{cfg.workdir_path / 'versions'}: no published version is kept; serve-export records one per "
            "publication (export.versions > 0)."
        )
    if to is not None:
        matches = [v for v in versions if v.id == to or v.id.startswith(to)]
        if len(matches) != 1:
            shown = ", ".join(v.id for v in versions[-10:])
            raise ArtifactError(
                f"--to {to}: {'no' if not matches else 'more than one'} version matches; kept: {shown}."
            )
        return matches[0]
    current = current_version(cfg, versions)
    if current is None:
        return versions[-1]
    earlier = [v for v in versions if v.id < current.id]
    if not earlier:
        raise ArtifactError(
            f"the published file is the oldest version kept ({current.id}); there is nothing earlier to roll back to."
        )
    return earlier[-1]


def _ext(cfg: Config) -> str:
    from recctl.export import EXTENSIONS

    return EXTENSIONS[cfg.export.format]


@writes_workdir
def run_rollback(cfg: Config, *, to: str | None = None) -> Manifest:
    """Republish version ``to`` (default: the one before the current), file and bundle, pointer last.

    Parameters
    ----------
    cfg
        The experiment config (``export`` section).
    to
        A version id (or an unambiguous prefix); default: the version published before the
        current one.

    Returns
    -------
    Manifest
        The export stage's manifest, whose ``summary.rolled_back_to`` names the version.

    Raises
    ------
    ArtifactError
        No such version, nothing earlier, or a version file that was altered.
    ConfigError
        ``export.directory`` is a URI (exit 3): rollback works on local folders only.
    BusyError
        Another process (e.g. a serve-export from another workdir) holds the export folder
        longer than ``lock_wait_s`` (exit 8); nothing moved.
    """
    remote = remote_directory(cfg)
    if remote is not None:
        raise ConfigError(
            f"export.directory: '{remote}' is a URI; recctl rollback moves pointers in local folders only. "
            "To go back on the object store, copy the wanted version's published/<run>/ pointer "
            "(its <basename>_latest.json from an earlier run) over the current one, or re-run serve-export."
        )
    if not list_versions(cfg.workdir_path):  # refused before the shop's folder is touched
        _pick(cfg, [], to)
    directory = export_directory(cfg)
    # the shop's folder is locked as serve-export locks it (workdir lock first, always): a rollback
    # and a publication from another workdir into the same folder take turns
    with export_folder(directory, wait_s=lock_wait(cfg.lock_wait_s)):
        return _rollback(cfg, directory, to)


def _rollback(cfg: Config, directory: Path, to: str | None) -> Manifest:
    """:func:`run_rollback`'s work, with the workdir and the export folder locked."""
    versions = list_versions(cfg.workdir_path)
    target = _pick(cfg, versions, to)  # reads the pointer: under the folder's lock
    pointer = target.pointer
    files = sorted(rel for rel in target.meta.get("files", {}) if rel.startswith("published/"))
    checked = {rel: target.file(rel) for rel in files}  # every sha256 checked before anything moves
    bundle_files = sorted(rel for rel in target.meta.get("files", {}) if rel.startswith("bundle/"))
    for rel in bundle_files:
        target.file(rel)
    restored = []
    for rel, source in checked.items():
        dest = directory / source.name
        if dest.exists() and sha256_file(dest) == target.meta["files"][rel]:
            continue
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
            tmp.chmod(0o644)
        restored.append(dest.name)
    previous = read_pointer(directory, cfg.export)
    rolled_at = clock.utc_stamp()
    inputs = [target.path / rel for rel in files]
    with StageRun(cfg, "serve-export", sections=["export", "recommend", "experiment"], inputs=inputs) as run:
        if bundle_files:
            (run.dir / "bundle").mkdir()
            for rel in bundle_files:
                shutil.copy2(target.path / rel, run.dir / "bundle" / Path(rel).name)
        run.summary.update(
            rolled_back_to=target.id,
            rolled_back_from=None if previous is None else previous.get("version") or previous.get("file"),
            file=pointer.get("file"),
            published=[{"path": str(directory / Path(rel).name), "sha256": target.meta["files"][rel]} for rel in files],
            restored=restored,
            rows=pointer.get("rows"),
            users=pointer.get("users"),
            k=pointer.get("k"),
            format=pointer.get("format"),
            directory=str(directory),
            generated_at=pointer.get("generated_at"),
            published_at=rolled_at,
            version=target.id,
        )
    move_pointer(directory, cfg.export, {**pointer, "version": target.id, "rolled_back_at": rolled_at})
    # what recctl put into the export folder is recorded, so export.keep may prune it later
    ledger = Ledger(directory)
    for name in [*restored, f"{cfg.export.basename}_latest.json", f"{cfg.export.basename}_latest.{_ext(cfg)}"]:
        if (directory / name).exists() or (directory / name).is_symlink():
            ledger.record(name)
    ledger.save()
    log.info("rolled back to version %s (%s)", target.id, pointer.get("file"))
    return run.manifest
