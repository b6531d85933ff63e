"""The ``ingest`` stage: raw exports -> canonical Parquet in ``<workdir>/ingest/``.

Outputs:

* ``interactions.parquet``  ``user_id, item_id, event, timestamp (UTC), value`` — accepted rows,
  exact duplicates dropped (first occurrence kept);
* ``items.parquet``         ``item_id`` + catalogue attributes (or just the interacted item ids
  when no catalogue is configured);
* ``users.parquet``         ``user_id`` + attributes, when ``data.users`` is configured;
* ``rejected.parquet``      ``source, row, column, value, reason`` of every quarantined row;
* ``manifest.json``         whose ``summary`` accounts for every raw row, per file
  (``read = accepted + rejected``; ``duplicates`` among the accepted), lists catalogue gaps,
  and keeps the ``batches`` appended with ``recctl ingest --append``.

Appended batches are remembered: a later full ingest (``recctl ingest`` or ``recctl run``)
re-reads the configured sources *and* every recorded batch file that still exists with the
same content, so re-running the pipeline never silently loses an appended day. Pass
``reset_batches=True`` (``--reset-batches``) to forget them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from recctl.artifacts import Manifest, read_manifest, sha256_file, utc_now
from recctl.columns import Columns
from recctl.config import Config, InteractionSource, is_uri
from recctl.data.ingest import (
    REJECTED_SCHEMA,
    FileStats,
    InteractionsResult,
    annotate_file,
    check_policy,
    ingest_interactions,
    read_table,
    rejected_counts,
    write_rejected,
)
from recctl.data.preflight import check_inputs
from recctl.data.readers import expand_paths
from recctl.errors import DataError
from recctl.progress import Progress
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.workdir import writes_workdir

__all__ = ["INGEST_OUTPUTS", "ingest_inputs", "run_ingest"]

log = logging.getLogger(__name__)

#: files every ingest run writes (users.parquet only with ``data.users``)
INGEST_OUTPUTS = ("interactions.parquet", "items.parquet", "rejected.parquet")
_SAMPLE_IDS = 10


def _source_key(cfg: Config, i: int) -> str:
    return "data.interactions" if not isinstance(cfg.data.interactions, list) else f"data.interactions.{i}"


def _configured_files(cfg: Config) -> list[tuple[InteractionSource, str, Path]]:
    """Configured interaction files; a URI (engine: spark) stays one unexpanded entry, Spark lists it."""
    files: list[tuple[InteractionSource, str, Path]] = []
    for i, src in enumerate(cfg.data.interaction_sources()):
        key = _source_key(cfg, i)
        patterns = [src.path] if isinstance(src.path, str) else src.path
        for pattern in patterns:
            if is_uri(pattern):
                files.append((src, key, pattern))  # type: ignore[arg-type]
            else:
                files.extend((src, key, path) for path in expand_paths(pattern, cfg.resolve, f"{key}.path"))
    return files


def _table_files(cfg: Config) -> list[Path]:
    """Catalogue, user and lookup files: inputs whose change must re-run ingest (URIs stay unexpanded)."""
    paths: list[Path] = []

    def add(spec: str | list[str], key: str) -> None:
        for pattern in [spec] if isinstance(spec, str) else spec:
            paths.extend([pattern] if is_uri(pattern) else expand_paths(pattern, cfg.resolve, key))  # type: ignore[list-item]

    for key, src in (("data.items", cfg.data.items), ("data.users", cfg.data.users)):
        if src is not None:
            add(src.path, f"{key}.path")
    for i, source in enumerate(cfg.data.interaction_sources()):
        for j, lookup in enumerate(source.lookups):
            add(lookup.path, f"{_source_key(cfg, i)}.lookups.{j}.path")
    return paths


def _local(paths: list[Path]) -> list[Path]:
    """The local files among ``paths`` (hashed); remote ones (URIs) are recorded from the graph's listing.

    :func:`recctl.graph.raw_inputs` expands a URI glob through Spark's Hadoop file system and
    :class:`~recctl.stages._common.StageRun` records each remote file by its file status
    (:func:`recctl.graph.input_record`): no remote byte is read on the driver to hash it.
    """
    return [p for p in paths if not is_uri(p)]


def _previous_batches(cfg: Config) -> list[dict[str, Any]]:
    try:
        manifest = read_manifest(cfg.workdir_path / "ingest", stage="ingest")
    except Exception:  # no previous run, or an unreadable one: nothing to carry over
        return []
    return [b for b in manifest.summary.get("batches", []) if b.get("kind") == "append"]


def _live_batches(cfg: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split recorded append batches into those still readable unchanged and those gone."""
    live, gone = [], []
    for batch in _previous_batches(cfg):
        path = Path(batch["path"])
        if path.is_file() and sha256_file(path) == batch["sha256"]:
            live.append(batch)
        else:
            gone.append(batch)
    return live, gone


def ingest_inputs(cfg: Config) -> list[Path]:
    """Every raw file a full ingest of ``cfg`` reads: configured sources, tables and live appended batches.

    The pipeline compares these with the ingest manifest's inputs to decide whether ingest
    must run again.
    """
    paths = [p for _, _, p in _configured_files(cfg)] + _table_files(cfg)
    live, _ = _live_batches(cfg)
    paths += [Path(b["path"]) for b in live]
    return list(dict.fromkeys(paths))


@writes_workdir
@timed_stage
def run_ingest(
    cfg: Config,
    *,
    append: list[Path] | None = None,
    reset_batches: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """Read the raw sources of ``cfg`` into canonical Parquet, accounting for every row.

    Parameters
    ----------
    cfg
        The experiment config (``data`` section).
    append
        New interaction files to add to the previous ingest output (``--append``). They are
        read with the first interaction source's mapping. A file whose content hash is already
        among the recorded batches is skipped; when every file is skipped nothing is written
        and the previous manifest is returned.
    reset_batches
        On a full ingest, forget previously appended batches instead of re-reading them.
    progress
        Optional progress callback.

    Returns
    -------
    Manifest
        With ``summary``: ``files`` (per-file accounting), ``totals``, ``rejected_by_reason``,
        ``catalogue`` gaps, ``batches``.

    Raises
    ------
    DataError
        Unreadable or empty files, missing columns, bad rows under ``on_error: fail``, more
        unreadable rows than a source's ``max_reject_rate``.
    ConfigError
        A section names a catalogue column no input provides (checked before any work,
        :func:`recctl.data.preflight.check_inputs`).
    ArtifactError
        ``append`` without a previous ingest run.
    """
    # every column the config names, checked against the inputs' headers before any work
    check_inputs(cfg)
    with tempfile.TemporaryDirectory(prefix="recctl-ingest-", dir=_scratch_parent(cfg)) as tmp:
        if append:
            return _run_append(cfg, [Path(p) for p in append], Path(tmp), progress)
        return _run_full(cfg, Path(tmp), reset_batches, progress)


def _scratch_parent(cfg: Config) -> Path:
    # decompressed copies can be large: keep them on the workdir's disk, not /tmp
    cfg.workdir_path.mkdir(parents=True, exist_ok=True)
    return cfg.workdir_path


def _read_interactions(
    files: list[tuple[InteractionSource, str, Path]],
    tmp: Path,
    progress: Progress | None,
    run: StageRun,
    previous: Path | None = None,
    order_offset: int = 0,
    resolve: Callable[[str], Path] | None = None,
) -> tuple[list[FileStats], list[Path]]:
    """Read every raw file once, write ``interactions.parquet``; return per-file stats and rejected-rows files.

    Each file's ``on_error`` policy is applied after the single streaming pass; a refused file
    fails the stage, whose staging directory is then discarded. With ``engine: spark`` the pass
    is a Spark job (:mod:`recctl.engine.spark.ingest`, same rules and accounting); ``--append``
    batches (small by nature) are read by the local stream on either engine.
    """
    resolve = resolve or run.cfg.resolve
    if run.cfg.engine.is_spark and previous is None:
        result = _spark_interactions(files, tmp, progress, run, order_offset, resolve)
    else:
        annotated = [
            annotate_file(
                path,
                src,
                key=key,
                file_idx=idx,
                tmp_dir=tmp / "raw",
                order=order_offset + idx,
                resolve=resolve,
            )
            for idx, (src, key, path) in enumerate(files)
        ]
        result = ingest_interactions(
            annotated, run.dir / "interactions.parquet", tmp, previous=previous, progress=progress
        )
    run.summary["deduplication"] = {"method": result.method, "hash_collision_recheck": result.exact_fallback}
    # the stage hashes its inputs while the files are read; hashing a multi-GB file twice would cost seconds
    hashes = {r.path: r.sha256 for r in run.input_records()}
    stats: list[FileStats] = []
    rejected: list[Path] = []
    for idx, (src, key, path) in enumerate(files):
        rej = result.rejected_files[idx]
        stat = FileStats(path=str(path), source=key, policy=src.on_error)
        stat.accepted = result.accepted.get(idx, 0)
        stat.rejected = rejected_counts(rej)
        stat.read = stat.accepted + stat.n_rejected
        stat.duplicates = result.duplicates.get(idx, 0)
        stat.sha256 = hashes.get(str(path)) or ("" if is_uri(path) else sha256_file(path))
        check_policy(rej, stat, src, key)
        stats.append(stat)
        rejected.append(rej)
        log.info("%s: %d read, %d accepted, %d rejected", path, stat.read, stat.accepted, stat.n_rejected)
    return stats, rejected


def _spark_inputs(
    cfg: Config, files: list[tuple[InteractionSource, str, Path]], tmp: Path
) -> tuple[list[tuple[InteractionSource, str, Path]], Callable[[str], Path]]:
    """Expand URI sources into their files (listed by Spark) and copy remote tables to ``tmp``."""
    from recctl.engine.spark.ingest import expand_spark_paths, localise_tables
    from recctl.engine.spark.session import get_spark

    spark = get_spark(cfg.engine)
    expanded: list[tuple[InteractionSource, str, Path]] = []
    for src, key, path in files:
        if is_uri(path):
            uris = expand_spark_paths(spark, str(path), cfg.resolve, f"{key}.path")
            expanded += [(src, key, uri) for uri in uris]  # type: ignore[misc]
        else:
            expanded.append((src, key, path))
    return expanded, localise_tables(spark, cfg, tmp / "remote")


def _spark_interactions(
    files: list[tuple[InteractionSource, str, Path]],
    tmp: Path,
    progress: Progress | None,
    run: StageRun,
    order_offset: int,
    resolve: Callable[[str], Path],
) -> InteractionsResult:
    """The Spark pass over the interaction files (:mod:`recctl.engine.spark.ingest`)."""
    from recctl.engine.spark.ingest import SparkFile, ingest_interactions_spark
    from recctl.engine.spark.session import get_spark

    spark = get_spark(run.cfg.engine)
    spark_files = [
        SparkFile(location=str(path), src=src, key=key, file_idx=idx, order=order_offset + idx)
        for idx, (src, key, path) in enumerate(files)
    ]
    result = ingest_interactions_spark(
        spark, run.cfg, spark_files, run.dir / "interactions.parquet", tmp, resolve=resolve, progress=progress
    )
    run.summary["engine"] = {"kind": "spark", "master": spark.sparkContext.master}
    return result


def _run_full(cfg: Config, tmp: Path, reset_batches: bool, progress: Progress | None) -> Manifest:
    files = _configured_files(cfg)
    live, gone = ([], []) if reset_batches else _live_batches(cfg)
    first_src, first_key = cfg.data.interaction_sources()[0], _source_key(cfg, 0)
    files += [(first_src, first_key, Path(b["path"])) for b in live]
    inputs = _local(list(dict.fromkeys([p for _, _, p in files] + _table_files(cfg))))
    with StageRun(cfg, "ingest", sections=["data"], inputs=inputs, hash_inputs_in_background=True) as run:
        resolve: Callable[[str], Path] = cfg.resolve
        if cfg.engine.is_spark:
            files, resolve = _spark_inputs(cfg, files, tmp)
        stats, rejected = _read_interactions(files, tmp, progress, run, resolve=resolve)
        for stat in stats[len(files) - len(live) :]:
            stat.source = "append"
        tables, table_rejects = _write_tables(cfg, run, tmp, resolve)
        quarantined = [(str(p), rejected[i]) for i, (src, _, p) in enumerate(files) if src.on_error == "quarantine"]
        n_rejected = write_rejected(quarantined, run.dir / "rejected.parquet")
        if table_rejects.height:
            _append_rejects(run.dir / "rejected.parquet", table_rejects)
            n_rejected += table_rejects.height
        batches = [_batch("source", s) for s in stats[: len(files) - len(live)]]
        batches += [_batch("append", s, recorded=b) for s, b in zip(stats[len(files) - len(live) :], live, strict=True)]
        _finish(cfg, run, stats, tables, n_rejected, batches)
        if gone:
            run.summary["dropped_batches"] = [b["path"] for b in gone]
            log.warning(
                "appended batches no longer readable unchanged, not re-read: %s", ", ".join(b["path"] for b in gone)
            )
    return run.manifest


def _run_append(cfg: Config, paths: list[Path], tmp: Path, progress: Progress | None) -> Manifest:
    prev_dir, prev = require_stage(cfg, "ingest", ["interactions.parquet", "rejected.parquet"])
    seen = {b["sha256"] for b in prev.summary.get("batches", [])}
    src, key = cfg.data.interaction_sources()[0], _source_key(cfg, 0)
    new: list[tuple[InteractionSource, str, Path]] = []
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: file not found (--append); check the path.")
        digest = sha256_file(path)
        if digest in seen:
            log.info("%s: already ingested (same content hash); skipped", path)
            continue
        seen.add(digest)
        new.append((src, key, path.resolve()))
    if not new:
        return prev
    inputs = [cfg.workdir_path / r.path for r in prev.inputs] + [p for _, _, p in new]
    with StageRun(
        cfg,
        "ingest",
        sections=["data"],
        inputs=list(dict.fromkeys(inputs)),
        hash_inputs_in_background=True,
        extends=prev,  # appended: later stages may tell "grew by batches" from "ran again"
    ) as run:
        # appended files come after every recorded batch (file-order times of sources without a time column)
        stats, rejected = _read_interactions(
            new,
            tmp,
            progress,
            run,
            previous=prev_dir / "interactions.parquet",
            order_offset=len(prev.summary.get("batches", [])),
        )
        for stat in stats:
            stat.source = "append"
        quarantined = [(str(p), rejected[i]) for i, (_, _, p) in enumerate(new) if src.on_error == "quarantine"]
        n_rejected = write_rejected(quarantined, run.dir / "rejected.parquet", previous=prev_dir / "rejected.parquet")
        tables: dict[str, pl.DataFrame] = {}
        for name in ("items.parquet", "users.parquet"):
            if (prev_dir / name).exists():
                shutil.copy2(prev_dir / name, run.dir / name)
                tables[name] = pl.read_parquet(run.dir / name)
        prev_files = [FileStats(**_stats_args(f)) for f in prev.summary.get("files", [])]
        batches = prev.summary.get("batches", []) + [_batch("append", s) for s in stats]
        _finish(cfg, run, prev_files + stats, tables, n_rejected, batches, table_stats=prev.summary.get("tables", []))
        run.summary["appended"] = [s.to_dict() for s in stats]
    return run.manifest


def _stats_args(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": d["path"],
        "source": d["source"],
        "policy": d["on_error"],
        "read": d["read"],
        "accepted": d["accepted"],
        "rejected": dict(d["rejected_by_reason"]),
        "duplicates": d["duplicates"],
        "sha256": d.get("sha256", ""),
    }


def _batch(kind: str, stat: FileStats, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": kind,
        "path": stat.path,
        "sha256": stat.sha256,
        "read": stat.read,
        "accepted": stat.accepted,
        "rejected": stat.n_rejected,
        "duplicates": stat.duplicates,
        "added": stat.added,
        "ingested_at": (recorded or {}).get("ingested_at", utc_now()),
    }


def _append_rejects(path: Path, extra: pl.DataFrame) -> None:
    merged = pl.concat([pl.read_parquet(path).cast(REJECTED_SCHEMA), extra.cast(REJECTED_SCHEMA)])
    merged.write_parquet(path, compression="zstd")


def _write_tables(
    cfg: Config, run: StageRun, tmp: Path, resolve: Callable[[str], Path]
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    tables: dict[str, pl.DataFrame] = {}
    rejects = []
    run.summary["tables"] = []
    for name, key, src, id_name in (
        ("items.parquet", "data.items", cfg.data.items, Columns.Item),
        ("users.parquet", "data.users", cfg.data.users, Columns.User),
    ):
        if src is None:
            continue
        result = read_table(src, resolve, key=key, id_name=id_name, tmp_dir=tmp / "tables")
        result.frame.write_parquet(run.dir / name, compression="zstd")
        tables[name] = result.frame
        rejects.append(result.rejected)
        run.summary.setdefault("warnings", []).extend(result.warnings)
        run.summary["tables"].append(
            {
                "table": key,
                "rows": result.frame.height,
                "duplicate_ids": result.duplicate_ids,
                "dedupe": src.dedupe,
                "files": [s.to_dict() for s in result.stats],
            }
        )
    if "items.parquet" not in tables:
        # no catalogue: the items are the interacted ids, so downstream always finds items.parquet
        items = (
            pl.scan_parquet(run.dir / "interactions.parquet").select(Columns.Item).unique().sort(Columns.Item).collect()
        )
        items.write_parquet(run.dir / "items.parquet", compression="zstd")
        tables["items.parquet"] = items
    rejected = pl.concat(rejects) if rejects else pl.DataFrame(schema=REJECTED_SCHEMA)
    return tables, rejected


def _finish(
    cfg: Config,
    run: StageRun,
    stats: list[FileStats],
    tables: dict[str, pl.DataFrame],
    n_rejected: int,
    batches: list[dict[str, Any]],
    table_stats: list[dict[str, Any]] | None = None,
) -> None:
    """Record outputs and the accounting summary of an ingest run."""
    interactions = pl.scan_parquet(run.dir / "interactions.parquet")
    n_interactions = interactions.select(pl.len()).collect().item()
    run.add_output(run.dir / "interactions.parquet", n_interactions)
    for name, frame in tables.items():
        run.add_output(run.dir / name, frame.height)
    run.add_output(run.dir / "rejected.parquet", n_rejected)
    by_reason: dict[str, int] = {}
    for s in stats:
        for reason, n in s.rejected.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    totals = {
        "read": sum(s.read for s in stats),
        "accepted": sum(s.accepted for s in stats),
        "rejected": sum(s.n_rejected for s in stats),
        "duplicates": sum(s.duplicates for s in stats),
        "interactions": n_interactions,
        "quarantined": n_rejected,
    }
    run.summary.update(
        files=[s.to_dict() for s in stats],
        totals=totals,
        rejected_by_reason=dict(sorted(by_reason.items())),
        batches=batches,
        events=dict(interactions.group_by(Columns.Event).agg(pl.len()).sort(Columns.Event).collect().iter_rows()),
    )
    if table_stats is not None:
        run.summary["tables"] = table_stats
    run.summary["catalogue"] = _catalogue_report(interactions, tables, cfg)
    warnings = run.summary.get("warnings", []) + _negative_value_warnings(cfg, interactions)
    run.summary["warnings"] = warnings
    for warning in warnings:
        log.warning(warning)


def _negative_value_warnings(cfg: Config, interactions: pl.LazyFrame) -> list[str]:
    """A warning when negative values (returns, cancellations) were accepted as ordinary interactions.

    Online Retail without a ``cancellations`` rule takes 8,841 negative-quantity lines as positive
    purchases; the rows are kept (they may mean something else), but never silently.
    """
    unruled = [
        (_source_key(cfg, i), src)
        for i, src in enumerate(cfg.data.interaction_sources())
        if src.columns.value is not None
        and src.value_rule is None
        and (src.cancellations is None or not src.cancellations.negative_value)
    ]
    if not unruled:
        return []
    n = interactions.select((pl.col(Columns.Value) < 0).sum()).collect().item() or 0
    if n == 0:
        return []
    keys = ", ".join(k for k, _ in unruled)
    column = unruled[0][1].columns.value
    return [
        f"{n:,} accepted rows have a negative value ('{column}'), usually returns or cancellations, and are kept "
        f"as ordinary interactions: {keys} has no cancellation rule for them. Add "
        f"`{unruled[0][0]}.cancellations: {{negative_value: true}}` to reject them (reason cancelled), or ignore "
        "this if negative values mean something else in this export."
    ]


def _catalogue_report(interactions: pl.LazyFrame, tables: dict[str, pl.DataFrame], cfg: Config) -> dict[str, Any]:
    """Items (users) missing from the catalogue (user table), and catalogue rows never interacted with."""
    report_: dict[str, Any] = {}
    for name, id_col, configured in (
        ("items", Columns.Item, cfg.data.items is not None),
        ("users", Columns.User, cfg.data.users is not None),
    ):
        table = tables.get(f"{name}.parquet")
        if not configured or table is None:
            continue
        known = table.select(id_col).lazy()
        counts = interactions.group_by(id_col).agg(pl.len().alias("n"))
        missing = counts.join(known, on=id_col, how="anti").sort(id_col).collect()
        unused = known.join(counts.select(id_col), on=id_col, how="anti").sort(id_col).collect()
        report_[name] = {
            "in_table": table.height,
            "missing_from_table": missing.height,
            "interactions_with_missing": int(missing["n"].sum()) if missing.height else 0,
            "missing_examples": missing[id_col].head(_SAMPLE_IDS).to_list(),
            "without_interactions": unused.height,
            "without_interactions_examples": unused[id_col].head(_SAMPLE_IDS).to_list(),
        }
    return report_
