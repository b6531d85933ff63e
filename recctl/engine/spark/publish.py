"""Publishing the nightly file into an object store or HDFS: staging prefix, validation, then the pointer.

Object stores have no atomic rename, so a file cannot be swapped into place under its name as
:func:`recctl.export.publish` does on a local disk. With ``export.directory`` a URI
(``engine: spark``), a publication is:

1. the files written locally by the same writers, then uploaded under
   ``<directory>/_staging/<run>/`` (Hadoop FileSystem API of the Spark session);
2. validated **there**: each staged object is read back and compared (sha256, length), and the
   main file goes through the same :func:`recctl.export.validate_export` as on a local disk
   (schema, exactly-K, every expected user, catalogue, rules, exclusions);
3. the staging prefix renamed to ``<directory>/published/<run>/`` (a server-side copy on S3 and
   GCS: no reader looks there until the pointer names it);
4. ``<directory>/<basename>_latest.json`` replaced last: **the pointer is the commit**. It names
   the file relative to the directory (``published/<run>/<basename>_<date>.<ext>``).

A failure or a kill before step 4 publishes nothing: the previous pointer and the files it
names are untouched; what the failed run wrote is deleted (a killed run's ``_staging/<run>/``
is deleted by the next publication once a day old). ``export.keep`` keeps the newest N
``published/<run>/`` prefixes (the one the pointer names always stays).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from recctl import clock
from recctl.artifacts import sha256_file
from recctl.config.recommend import ExportConfig
from recctl.errors import ExportValidationError
from recctl.export import (
    EXTENSIONS,
    ExportExpectations,
    PublishedFile,
    ValidationReport,
    dated_name,
    pointer_record,
    validate_date,
    validate_export,
    write_export,
    write_side_file,
)

from .hadoopfs import HadoopFS

__all__ = ["STAGING", "PUBLISHED", "publish_remote", "read_remote_pointer"]

log = logging.getLogger(__name__)

STAGING = "_staging"
PUBLISHED = "published"
#: a staging prefix older than this is a killed run's leftover (a live run finishes well before)
STALE_STAGING_S = 86_400


def _join(directory: str, *parts: str) -> str:
    return "/".join([directory.rstrip("/"), *parts])


def read_remote_pointer(fs: HadoopFS, directory: str, cfg: ExportConfig) -> dict[str, Any] | None:
    """The ``<basename>_latest.json`` pointer under a URI directory, or ``None``."""
    try:
        text = fs.read_text(_join(directory, f"{cfg.basename}_latest.json"))
        pointer = json.loads(text) if text else None
    except ValueError:
        return None
    return pointer if isinstance(pointer, dict) else None


def _stage(fs: HadoopFS, local: Path, uri: str) -> tuple[str, int]:
    """Upload ``local`` to ``uri``, read it back and check it arrived whole; sha256 and bytes."""
    digest, size = sha256_file(local), local.stat().st_size
    fs.upload(local, uri)
    back = local.with_name(f"{local.name}.readback")
    try:
        fs.download(uri, back)
        if back.stat().st_size != size or sha256_file(back) != digest:
            raise ExportValidationError(f"{uri}: the staged object differs from the file written (sha256/length)")
    finally:
        back.unlink(missing_ok=True)
    return digest, size


def _validate_staged(fs: HadoopFS, uri: str, work: Path, fmt: str, exp: ExportExpectations) -> ValidationReport:
    """The local validator on the staged object as the store returns it."""
    back = work / f"validate.{EXTENSIONS[fmt]}"
    fs.download(uri, back)
    try:
        return validate_export(back, fmt, exp)
    finally:
        back.unlink(missing_ok=True)


def _commit_pointer(fs: HadoopFS, directory: str, cfg: ExportConfig, pointer: dict[str, Any], run: str) -> None:
    """Replace the pointer: from here on the new files are published."""
    fs.replace_text(
        _join(directory, f"{cfg.basename}_latest.json"),
        json.dumps(pointer, indent=2, sort_keys=True),
        _join(directory, STAGING, f"{run}.pointer.json"),
    )


def _sweep(fs: HadoopFS, directory: str, cfg: ExportConfig, current: str | None) -> list[str]:
    """Delete killed runs' staging prefixes (a day old) and published prefixes beyond ``export.keep``."""
    now_ms = time.time() * 1000
    for name, _, modified in fs.children(_join(directory, STAGING)):
        if now_ms - modified > STALE_STAGING_S * 1000:
            fs.delete(_join(directory, STAGING, name))
    removed: list[str] = []
    if cfg.keep:
        # the run just committed is the newest whatever its name: two runs in the same second
        # (or a clock set back) would otherwise be ordered by their random suffix
        older = sorted(
            (n for n, is_dir, _ in fs.children(_join(directory, PUBLISHED)) if is_dir and n != current), reverse=True
        )
        runs = ([current] if current else []) + older
        for name in runs[cfg.keep :]:
            fs.delete(_join(directory, PUBLISHED, name))
            removed.append(f"{PUBLISHED}/{name}")
    return removed


def publish_remote(
    spark: Any,
    recs: pl.DataFrame,
    cfg: ExportConfig,
    directory: str,
    exp: ExportExpectations,
    local_copies: Path,
    *,
    date: str,
    generated_at: str,
    extra: dict[str, pl.DataFrame] | None = None,
    pointer_extra: dict[str, Any] | None = None,
) -> tuple[PublishedFile, ValidationReport, list[PublishedFile], list[str]]:
    """Write, stage, validate and publish the export under a URI directory; the pointer last.

    Parameters
    ----------
    spark
        The session whose Hadoop configuration opens ``directory``.
    recs, cfg, exp, date, generated_at, extra, pointer_extra
        As for :func:`recctl.export.publish`.
    directory
        ``export.directory``, a URI (``s3a://bucket/exports``, ``hdfs://...``, ``file:///...``).
    local_copies
        An empty local folder: the files are written there first (and left there for the
        caller, e.g. to keep a version of them).

    Returns
    -------
    (main, report, side_files, pruned)
        ``PublishedFile.path`` is the published object's URI.

    Raises
    ------
    ExportValidationError
        A staged file failed validation or did not arrive whole: nothing was published (exit 7).
    """
    validate_date(date)
    fs = HadoopFS(spark)
    run = f"{clock.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = _join(directory, STAGING, run)
    published = _join(directory, PUBLISHED, run)
    previous = read_remote_pointer(fs, directory, cfg)
    current = previous.get("file") if previous else None
    files: list[tuple[str, Path, int, int | None]] = []  # (name, local, rows, users)
    main_name = dated_name(cfg, date)
    rows = write_export(recs, local_copies / main_name, cfg, k=exp.k, generated_at=generated_at)
    files.append((main_name, local_copies / main_name, rows, None))
    for kind, frame in (extra or {}).items():
        name = dated_name(cfg, date, kind)
        write_side_file(frame, local_copies / name, "parquet" if kind == "assignments" else cfg.format)
        files.append((name, local_copies / name, frame.height, None))
    committed = False
    try:
        digests = {name: _stage(fs, local, _join(staging, name)) for name, local, _, _ in files}
        with tempfile.TemporaryDirectory(dir=local_copies.parent, prefix=".export-validate.", suffix=".tmp") as work:
            report = _validate_staged(fs, _join(staging, main_name), Path(work), cfg.format, exp)
        if not report.ok:
            raise ExportValidationError(
                f"{_join(staging, main_name)}: the export failed validation, nothing was published"
                f"{f' ({current} is still the latest file)' if current else ''}:\n  - " + "\n  - ".join(report.problems)
            )
        if not fs.rename(staging, published):
            raise ExportValidationError(f"{staging}: could not be renamed to {published}; nothing was published")
        rel = f"{PUBLISHED}/{run}"
        digest, size = digests[main_name]
        main = PublishedFile(_join(published, main_name), digest, size, rows, report.users)
        side = [PublishedFile(_join(published, n), *digests[n], r) for n, _, r, _ in files[1:]]
        pointer = pointer_record(
            cfg,
            exp,
            main,
            report,
            file=f"{rel}/{main_name}",
            side_files={f"{rel}/{n}": digests[n][0] for n, _, _, _ in files[1:]},
            date=date,
            generated_at=generated_at,
            extra=pointer_extra,
        )
        _commit_pointer(fs, directory, cfg, pointer, run)
        committed = True
    finally:
        if not committed:  # nothing of this run may stay: the previous pointer's files are untouched
            for uri in (staging, published, _join(directory, STAGING, f"{run}.pointer.json")):
                try:
                    fs.delete(uri)
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    log.warning("could not delete %s after a failed publication", uri)
    try:  # published already: housekeeping that fails must not fail the publication
        pruned = _sweep(fs, directory, cfg, run)
    except Exception as exc:  # noqa: BLE001 - py4j carries the file system's own error
        log.warning("%s: published, but old runs could not be pruned (%s)", directory, str(exc).splitlines()[0])
        pruned = []
    return main, report, side, pruned
