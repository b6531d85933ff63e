"""Ingest on Spark: raw interaction files from any path Spark reads, annotated by recctl's own rules.

What is shared with the local engine, and how:

* **The per-row rules are the local engine's code.** Spark reads each raw file (CSV/TSV as text,
  JSON Lines, Parquet; local paths, ``hdfs://``, ``s3a://`` ... through the user's Spark
  configuration) and every task hands its Arrow batches to
  :func:`recctl.data.ingest.annotate_rows`, the same polars annotation the local stream runs:
  id canonicalisation, timestamp layouts and time zones, event maps, value rules, cancellations,
  ``require`` checks, and the reject reasons in the same order. The driver-side peeks that
  configure it (float-printed ids, the one timestamp layout of ``auto``) run the same functions
  on the same first 1,000 values.
* **Row numbers are the file's.** A first, cheap job counts the rows of every input split; the
  splits in byte order give each task the number of its first row, so rejected rows and
  file-order times carry the same 1-based row numbers as on the local engine.
* **Blank lines and quoted line breaks count as the local engine counts them**: a line pass over
  each CSV/TSV file (:mod:`recctl.engine.spark.csv_lines`) turns on ``multiLine`` only where a
  quoted field holds a line break, and the blank records Spark's reader drops are numbered and
  annotated on the driver.
* **De-duplication keeps the first copy in file and row order** (a window over the canonical
  columns ordered by file and row), charges each later copy to its file, and the accepted rows
  are written in file and row order, as the local stream writes them.
* The rejected rows (few) come back to the driver, where the local engine's ``on_error``
  policies, the whole-column checks and ``rejected.parquet`` writer take over unchanged.

* **UTF-16 text** (``encoding: utf16``, Excel's "Unicode text") is transcoded to UTF-8 by one
  executor task per file (the local engine's codec: a byte-order mark sets the byte order),
  into the scratch folder, and the copy read as any UTF-8 file (line pass, row numbers, blank
  lines): Spark's own reader splits lines on the byte ``0x0A``, which cuts UTF-16 characters.
  A file that starts with a UTF-16 byte-order mark under another ``encoding`` is refused (exit 4)
  naming the file and the setting.

Not read by Spark (a ConfigError says so and names the key): spreadsheets, ``skip_lines``, zip and
xz archives (gzip and bz2 are read natively). Catalogue, user and lookup tables are small and are
read on the driver by the local readers; remote ones are copied to the scratch folder first.
"""

from __future__ import annotations

import glob as globlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from recctl.columns import Columns
from recctl.config import Config, InteractionSource, is_uri
from recctl.config.data import FileSource
from recctl.data.ingest import (
    FILE_IDX,
    PARQUET_WRITE,
    InteractionsResult,
    annotate_rows,
    float_ids,
    read_lookups,
)
from recctl.data.preflight import interaction_columns
from recctl.data.readers import ROW, detect_format, utf16_mismatch
from recctl.data.timestamps import UTC_DATETIME, parse_timestamp, resolve_auto
from recctl.engine.spark.csv_lines import LineScan, local_rows, scan_lines
from recctl.engine.spark.hadoopfs import hadoop_uri
from recctl.engine.spark.io import Scratch, concat_parts, to_spark_path
from recctl.engine.spark.session import spark_job
from recctl.errors import ConfigError, DataError
from recctl.progress import Progress, report

log = logging.getLogger(__name__)

__all__ = ["SparkFile", "expand_spark_paths", "ingest_interactions_spark", "localise_tables"]

_ENCODINGS = {
    "utf8": "UTF-8",
    "utf8-lossy": "UTF-8",
    "latin1": "ISO-8859-1",
    "cp1252": "windows-1252",
}
_REASON, _COLUMN, _RAW = "__reason", "__column", "__raw_value"
#: what every annotation task returns: accepted rows (reason null) and rejected ones
_TASK_SCHEMA = pa.schema(
    [
        pa.field(Columns.User, pa.string()),
        pa.field(Columns.Item, pa.string()),
        pa.field(Columns.Event, pa.string()),
        pa.field(Columns.Timestamp, pa.timestamp("us", tz="UTC")),
        pa.field(Columns.Value, pa.float64()),
        pa.field(FILE_IDX, pa.int32()),
        pa.field(ROW, pa.int64()),
        pa.field(_REASON, pa.string()),
        pa.field(_COLUMN, pa.string()),
        pa.field(_RAW, pa.string()),
    ]
)
_CANONICAL = pa.schema(
    [
        pa.field(Columns.User, pa.string()),
        pa.field(Columns.Item, pa.string()),
        pa.field(Columns.Event, pa.string()),
        pa.field(Columns.Timestamp, pa.timestamp("us", tz="UTC")),
        pa.field(Columns.Value, pa.float64()),
    ]
)


@dataclass
class SparkFile:
    """One raw interaction file as Spark reads it."""

    location: str  # a URI, or a local path
    src: InteractionSource
    key: str
    file_idx: int
    order: int

    @property
    def name(self) -> str:
        """The file as the user wrote it (manifest, rejected rows)."""
        return self.location


def expand_spark_paths(spark: Any, spec: str | list[str], resolve: Any, key: str) -> list[str]:
    """Expand a source's path(s) into files: local globs as the local engine does, URIs through Hadoop's glob.

    Raises
    ------
    DataError
        A pattern matching nothing.
    """
    out: list[str] = []
    for pattern in [spec] if isinstance(spec, str) else spec:
        if not is_uri(pattern):
            full = str(resolve(pattern))
            matched = sorted(p for p in globlib.glob(full) if Path(p).is_file()) if globlib.has_magic(full) else [full]
            if not matched or not Path(matched[0]).is_file():
                raise DataError(f"{key}: no file matches '{pattern}'; check the path (relative to the config file).")
            out.extend(matched)
            continue
        jvm = spark._jvm  # noqa: SLF001 - Hadoop's FileSystem is only reachable through the gateway
        hpath = jvm.org.apache.hadoop.fs.Path(pattern)
        fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
        statuses = fs.globStatus(hpath) or []
        files = sorted(hadoop_uri(s.getPath()) for s in statuses if s.isFile())
        if not files:
            raise DataError(f"{key}: no file matches '{pattern}' (listed through Spark's Hadoop file system).")
        out.extend(files)
    return out


def localise_tables(spark: Any, cfg: Config, tmp: Path) -> Any:
    """A ``resolve`` for the local table readers that maps remote table / lookup paths to local copies.

    Catalogue, user and lookup tables are read on the driver (they are small next to the event
    log); a URI among their paths is copied once into ``tmp`` through Hadoop's file system.
    """
    copies: dict[str, Path] = {}
    sources: list[FileSource | None] = [cfg.data.items, cfg.data.users]
    sources += [lk for src in cfg.data.interaction_sources() for lk in src.lookups]
    for n, src in enumerate(s for s in sources if s is not None):
        for pattern in [src.path] if isinstance(src.path, str) else src.path:
            if not is_uri(pattern) or pattern in copies:
                continue
            folder = tmp / f"remote-{n}-{len(copies)}"
            folder.mkdir(parents=True)
            for uri in expand_spark_paths(spark, pattern, cfg.resolve, "data"):
                jvm = spark._jvm  # noqa: SLF001
                hpath = jvm.org.apache.hadoop.fs.Path(uri)
                fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
                local = folder / uri.rstrip("/").rsplit("/", 1)[-1]
                fs.copyToLocalFile(False, hpath, jvm.org.apache.hadoop.fs.Path(local.as_uri()), True)
            names = list(folder.iterdir())
            copies[pattern] = folder / "*" if globlib.has_magic(pattern) or len(names) != 1 else names[0]

    def resolve(path: str) -> Path:
        return copies[path] if path in copies else cfg.resolve(path)

    return resolve


def _first_bytes(spark: Any, path: str, n: int) -> bytes:
    """The first ``n`` bytes of a file (decompressed for .gz), through Hadoop's file system."""
    jvm = spark._jvm  # noqa: SLF001 - Hadoop's FileSystem is only reachable through the gateway
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
    stream = fs.open(hpath)
    try:
        if path.lower().endswith(".gz"):
            stream = jvm.java.util.zip.GZIPInputStream(stream)
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream, n) if fs.getFileStatus(hpath).getLen() else b""
    except Exception:  # noqa: BLE001 - shorter than n bytes, or not gzip after all: Spark's reader will say
        return b""
    finally:
        stream.close()
    return bytes(data)


def _utf8_copy(spark: Any, path: str, location: str, out: str) -> str:
    """A UTF-16 text file transcoded to UTF-8 by one executor task, written under ``out``; returns ``out``."""
    lowered = location.lower()

    def decode(pair: tuple[str, bytes]) -> list[str]:
        import bz2
        import gzip

        data = bytes(pair[1])
        if lowered.endswith(".gz"):
            data = gzip.decompress(data)
        elif lowered.endswith(".bz2"):
            data = bz2.decompress(data)
        text = data.decode("utf-16")  # the local engine's codec: the BOM sets the byte order
        return [text.removesuffix("\n")]  # saveAsTextFile ends the record with a line break

    spark.sparkContext.binaryFiles(path, minPartitions=1).flatMap(decode).saveAsTextFile(out)
    return out


def _reader(spark: Any, f: SparkFile, scratch: Scratch) -> tuple[Any, LineScan]:
    """A Spark DataFrame of the raw file (text columns for CSV/TSV) and what its lines hold.

    CSV/TSV files get a line pass first (:func:`recctl.engine.spark.csv_lines.scan_lines`): a file
    with quoted line breaks is read with ``multiLine`` (one task), and the blank records Spark's
    reader drops are returned so the annotation numbers and rejects them as the local engine does.
    """
    src, where = f.src, f.key
    fmt = detect_format(Path(f.location.rsplit("/", 1)[-1]), src.format)
    lowered = f.location.lower()
    if fmt == "excel":
        raise ConfigError(
            f"{where}.format: spreadsheets are not read by engine: spark; export the sheet as CSV, "
            "or use engine: local."
        )
    if lowered.endswith((".zip", ".xz")):
        raise ConfigError(
            f"{where}.path: {f.location}: zip and xz archives are not read by engine: spark (gzip and bz2 are); "
            "recompress, or use engine: local."
        )
    if src.skip_lines:
        raise ConfigError(
            f"{where}.skip_lines: Spark's CSV reader cannot skip preamble lines; remove them, or use engine: local."
        )
    path = to_spark_path(f.location)
    encoding = src.encoding
    if fmt in ("csv", "tsv", "jsonl"):
        if encoding == "utf16":
            path, encoding = _utf8_copy(spark, path, f.location, scratch.path(f"utf8-{f.file_idx}")), "utf8"
        elif (mismatch := utf16_mismatch(f.location, _first_bytes(spark, path, 2), encoding, where)) is not None:
            raise mismatch
    lines = LineScan()
    if fmt in ("csv", "tsv"):
        sep = src.delimiter or ("\t" if fmt == "tsv" else ",")
        # the text pass reads bytes as UTF-8 lines: fine for 8-bit codes (UTF-16 is a UTF-8 copy by now)
        lines = scan_lines(spark, path, quote=src.quote_char, has_header=src.has_header, delimiter=sep)
        if lines.multiline:
            log.info("%s: quoted fields hold line breaks; reading the file as one Spark task", f.location)
        options = {
            "header": str(src.has_header).lower(),
            "sep": sep,
            "quote": src.quote_char if src.quote_char is not None else "\u0000",
            "escape": src.quote_char if src.quote_char is not None else "\\",
            "encoding": _ENCODINGS[encoding],
            "inferSchema": "false",
            "mode": "PERMISSIVE",
            # an empty field is text "" (as polars reads it, and rejected rows show it), not null;
            # Spark turns "" into null unless told another marker means missing
            "nullValue": "\u0000",
            "multiLine": str(lines.multiline).lower(),
        }
        frame = spark.read.options(**options).csv(path)
    elif fmt == "jsonl":
        frame = spark.read.json(path)
    elif fmt == "parquet":
        frame = spark.read.parquet(path)
    else:  # pragma: no cover - detect_format only returns the formats above
        raise ConfigError(f"{where}.format: '{fmt}' is not read by engine: spark")
    if src.column_names is not None:
        if len(src.column_names) != len(frame.columns):
            raise DataError(
                f"{f.location}: {where}.column_names names {len(src.column_names)} columns but the file has "
                f"{len(frame.columns)}; list one name per column."
            )
        frame = frame.toDF(*src.column_names)
    elif not src.has_header:
        frame = frame.toDF(*[f"column_{i + 1}" for i in range(len(frame.columns))])
    return frame, lines


@dataclass
class _Plan:
    """What every annotation task of one file needs (pickled into the task)."""

    file_idx: int
    order: int
    src: InteractionSource
    schema: dict[str, pl.DataType]
    float_ids: tuple[bool, bool]
    time_plan: str | None
    offsets: dict[int, int]
    lookups: list[Any]
    columns: list[str]
    #: local row numbers of the records Spark's reader drops (blank lines), sorted
    skipped: np.ndarray


#: rows read once on the driver for the peeks (float ids, timestamp layout, lookup checks); the
#: local engine looks at the first 1,000 non-empty values of a column, which these rows hold
#: unless a column is empty on more than 9,000 of them
_HEAD_ROWS = 10_000


def _plan_file(
    spark: Any, cfg: Config, f: SparkFile, tmp: Path, resolve: Any, scratch: Scratch
) -> tuple[Any, _Plan, LineScan]:
    frame, lines = _reader(spark, f, scratch)
    src = f.src
    head = pl.from_arrow(frame.limit(_HEAD_ROWS).toArrow())
    assert isinstance(head, pl.DataFrame)
    schema = dict(head.schema)
    missing = {k: c for k, c in interaction_columns(src, f.key).items() if c not in schema and not src.lookups}
    if missing:
        key, column = next(iter(missing.items()))
        raise DataError(
            f"{f.location}: column '{column}' ({key}) not found; the file has: {', '.join(schema) or 'no columns'}."
        )
    lookups: list[Any] = []
    if src.lookups:
        lookups = read_lookups(
            src.lookups,
            head.with_row_index(ROW, offset=1).lazy(),
            Path(f.location),
            key=f.key,
            resolve=resolve,
            tmp_dir=tmp,
        )
        for lookup in lookups:
            schema.update({c: t for c, t in lookup.table.schema.items() if c not in schema and not c.startswith("__")})
    cols = src.columns
    fix = src.normalize_numeric_ids
    ids = tuple(
        float_ids(head.lazy(), c, schema[c], fix) if c in head.columns else False for c in (cols.user_id, cols.item_id)
    )
    time_plan = None
    if src.timestamp_format == "auto" and cols.timestamp is not None and schema.get(cols.timestamp) == pl.String:
        time_plan = resolve_auto(head[cols.timestamp].drop_nulls().head(1_000), src.timezone)
    # rows per input split, splits in byte order: each task's first row number
    from pyspark.sql import functions as F

    counts = (
        frame.select(F.spark_partition_id().alias("p"), F.input_file_block_start().alias("b"))
        .groupBy("p", "b")
        .count()
        .collect()
    )
    offsets, start = {}, 1
    for p, _, n in sorted((r["p"], r["b"], r["count"]) for r in counts):
        offsets[int(p)] = start
        start += int(n)
    if len({r["p"] for r in counts}) != len(counts):  # pragma: no cover - one split per task for one file
        raise DataError(f"{f.location}: Spark packed several splits of the file into one task; report this.")
    plan = _Plan(
        file_idx=f.file_idx,
        order=f.order,
        src=src,
        schema=schema,
        float_ids=(bool(ids[0]), bool(ids[1])),
        time_plan=time_plan,
        offsets=offsets,
        lookups=lookups,
        columns=list(frame.columns),
        skipped=np.array([row for row, _ in lines.skipped], dtype=np.int64),
    )
    return frame, plan, lines


def _annotate_task(plan: _Plan):  # noqa: ANN202 - returns the mapInArrow function
    """The function each Spark task runs: recctl's annotation over its Arrow batches."""

    def run(batches):  # noqa: ANN001, ANN202
        from pyspark import TaskContext

        from recctl.data.lookups import apply_lookups

        first = plan.offsets.get(TaskContext.get().partitionId(), 1)
        nulls = plan.src.null_values
        for batch in batches:
            n = batch.num_rows
            if n == 0:
                continue
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            assert isinstance(frame, pl.DataFrame)
            if nulls:
                frame = frame.with_columns(
                    pl.when(pl.col(c).is_in(nulls)).then(None).otherwise(pl.col(c)).alias(c)
                    for c, t in frame.schema.items()
                    if t == pl.String
                )
            # the file's row numbers: Spark's record numbers, counting the blank records it dropped
            rows = local_rows(np.arange(first, first + n, dtype=np.int64), plan.skipped)
            lf = frame.with_columns(pl.Series(ROW, rows)).lazy()
            if plan.lookups:
                lf = apply_lookups(lf, plan.lookups)
            accepted_lf, rejected_lf = annotate_rows(
                lf, plan.schema, plan.src, plan.float_ids, order=plan.order, time_plan=plan.time_plan
            )
            accepted, rejected = pl.collect_all([accepted_lf, rejected_lf])
            # the annotation keeps row order: accepted rows are the rows not rejected, in order
            kept = np.setdiff1d(rows, rejected["row"].to_numpy(), assume_unique=True)
            first += n
            out = pl.concat(
                [
                    accepted.with_columns(
                        pl.lit(plan.file_idx, pl.Int32).alias(FILE_IDX),
                        pl.Series(ROW, kept),
                        pl.lit(None, pl.String).alias(_REASON),
                        pl.lit(None, pl.String).alias(_COLUMN),
                        pl.lit(None, pl.String).alias(_RAW),
                    ),
                    rejected.select(
                        pl.lit(None, pl.String).alias(Columns.User),
                        pl.lit(None, pl.String).alias(Columns.Item),
                        pl.lit(None, pl.String).alias(Columns.Event),
                        pl.lit(None, UTC_DATETIME).alias(Columns.Timestamp),
                        pl.lit(None, pl.Float64).alias(Columns.Value),
                        pl.lit(plan.file_idx, pl.Int32).alias(FILE_IDX),
                        pl.col("row").cast(pl.Int64).alias(ROW),
                        pl.col("reason").alias(_REASON),
                        pl.col("column").alias(_COLUMN),
                        pl.col("value").alias(_RAW),
                    ),
                ],
                how="vertical_relaxed",
            )
            yield from out.to_arrow().cast(_TASK_SCHEMA).to_batches()

    return run


def _spark_schema() -> Any:
    from pyspark.sql.types import (
        DoubleType,
        IntegerType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    return StructType(
        [
            StructField(Columns.User, StringType()),
            StructField(Columns.Item, StringType()),
            StructField(Columns.Event, StringType()),
            StructField(Columns.Timestamp, TimestampType()),
            StructField(Columns.Value, DoubleType()),
            StructField(FILE_IDX, IntegerType()),
            StructField(ROW, LongType()),
            StructField(_REASON, StringType()),
            StructField(_COLUMN, StringType()),
            StructField(_RAW, StringType()),
        ]
    )


def _lost_to_narrowed_plan(rejected: pl.DataFrame, plan: _Plan) -> bool:
    """Whether the file's one-layout timestamp parse rejected values the full ``auto`` parses (mixed layouts)."""
    if plan.time_plan is None:
        return False
    bad = rejected.filter(pl.col("reason") == "bad_timestamp")
    if bad.height == 0:
        return False
    parsed = bad.select(parse_timestamp(pl.col("value"), "auto", plan.src.timezone).is_not_null().sum()).item()
    return bool(parsed)


def ingest_interactions_spark(
    spark: Any,
    cfg: Config,
    files: list[SparkFile],
    target: Path,
    tmp: Path,
    *,
    resolve: Any = None,
    progress: Progress | None = None,
) -> InteractionsResult:
    """Write ``interactions.parquet`` from raw files read by Spark; the local engine's result shape.

    Parameters
    ----------
    spark
        The session (:func:`recctl.engine.spark.session.get_spark`).
    cfg
        The experiment config (``engine.scratch_dir``).
    files
        The raw files, in ingest order.
    target
        ``interactions.parquet`` in the stage's staging folder.
    tmp
        The stage's local scratch folder: each file's rejected rows go there.
    resolve
        Path resolver for lookup tables (:func:`localise_tables`).
    progress
        Optional progress callback (one step per file, then de-duplication).

    Returns
    -------
    InteractionsResult
        Accepted rows and duplicates per file, and a rejected-rows file per file (``row, reason,
        column, value``), exactly as :func:`recctl.data.ingest.ingest_interactions` returns them.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    resolve = resolve or cfg.resolve
    with spark_job("ingesting the interaction files"), Scratch(cfg, "ingest") as scratch:
        annotated = []
        for step, f in enumerate(files):
            report(progress, "ingest", step, len(files) + 1)
            frame, plan, lines = _plan_file(spark, cfg, f, tmp, resolve, scratch)
            out = scratch.path(f"annotated-{f.file_idx}")
            frame.mapInArrow(_annotate_task(plan), _spark_schema()).write.parquet(out)
            rejected = _collect_rejected(spark, out)
            if _lost_to_narrowed_plan(rejected, plan):
                log.info("%s: timestamps mix layouts past the first rows; parsing with the full `auto`", f.location)
                plan.time_plan = None
                out = scratch.path(f"annotated-{f.file_idx}-auto")
                frame.mapInArrow(_annotate_task(plan), _spark_schema()).write.parquet(out)
                rejected = _collect_rejected(spark, out)
            if lines.skipped:
                rejected = pl.concat([rejected, _annotate_skipped(plan, lines)]).sort("row")
            path = tmp / f"rejected-{f.file_idx}.parquet"
            rejected.sort("row").write_parquet(path)
            annotated.append((out, path))
        report(progress, "ingest", len(files), len(files) + 1)
        rows = spark.read.parquet(*[out for out, _ in annotated])
        accepted = rows.filter(F.col(_REASON).isNull()).drop(_REASON, _COLUMN, _RAW)
        canonical = [Columns.User, Columns.Item, Columns.Event, Columns.Timestamp, Columns.Value]
        first = Window.partitionBy(*canonical).orderBy(FILE_IDX, ROW)
        ranked = accepted.withColumn("__copy", F.row_number().over(first)).persist()
        try:
            counts = ranked.groupBy(FILE_IDX).agg(
                F.count(F.lit(1)).alias("accepted"), F.sum((F.col("__copy") > 1).cast("long")).alias("duplicates")
            )
            by_file = {int(r[FILE_IDX]): (int(r["accepted"]), int(r["duplicates"] or 0)) for r in counts.collect()}
            kept = scratch.path("interactions")
            ranked.filter(F.col("__copy") == 1).orderBy(FILE_IDX, ROW).select(*canonical).write.parquet(kept)
        finally:
            ranked.unpersist()
        written = concat_parts(
            spark,
            kept,
            None if scratch.local is None else scratch.local / "interactions",
            target,
            _CANONICAL,
            compression=PARQUET_WRITE["compression"],
            compression_level=PARQUET_WRITE["compression_level"],
        )
    report(progress, "ingest", len(files) + 1, len(files) + 1)
    return InteractionsResult(
        written=written,
        accepted={f.file_idx: by_file.get(f.file_idx, (0, 0))[0] for f in files},
        duplicates={f.file_idx: by_file.get(f.file_idx, (0, 0))[1] for f in files},
        rejected_files={f.file_idx: p for f, (_, p) in zip(files, annotated, strict=True)},
        method="spark_window",
    )


def _annotate_skipped(plan: _Plan, lines: LineScan) -> pl.DataFrame:
    """The blank records Spark's reader dropped, read and judged as the local engine reads them.

    Each is whitespace only (no quotes), so its fields are its text split on the delimiter, an
    empty field being missing; the same annotation then gives the local engine's reasons
    (``empty_row`` for a blank line) under the same row numbers.
    """
    from recctl.data.lookups import apply_lookups

    sep = lines.delimiter
    nulls = set(plan.src.null_values or ())
    width = len(plan.columns)
    values: list[list[str | None]] = [[] for _ in range(width)]
    for _, text in lines.skipped:
        fields = (text.split(sep) + [""] * width)[:width]
        for column, value in zip(values, fields, strict=True):
            column.append(None if value == "" or value in nulls else value)
    frame = pl.DataFrame(
        {name: pl.Series(name, column, pl.String) for name, column in zip(plan.columns, values, strict=True)}
    ).with_columns(pl.Series(ROW, plan.skipped))
    lf = frame.lazy()
    if plan.lookups:
        lf = apply_lookups(lf, plan.lookups)
    accepted, rejected = pl.collect_all(
        annotate_rows(lf, plan.schema, plan.src, plan.float_ids, order=plan.order, time_plan=plan.time_plan)
    )
    if accepted.height:  # pragma: no cover - a whitespace-only line has no ids to accept
        raise DataError(f"{plan.src}: a blank line was accepted as an interaction; report this.")
    return rejected.select(
        pl.col("row").cast(pl.Int64),
        pl.col("reason").cast(pl.String),
        pl.col("column").cast(pl.String),
        pl.col("value").cast(pl.String),
    )


def _collect_rejected(spark: Any, uri: str) -> pl.DataFrame:
    from pyspark.sql import functions as F

    table = (
        spark.read.parquet(uri)
        .filter(F.col(_REASON).isNotNull())
        .select(
            F.col(ROW).alias("row"),
            F.col(_REASON).alias("reason"),
            F.col(_COLUMN).alias("column"),
            F.col(_RAW).alias("value"),
        )
        .toArrow()
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.cast({"row": pl.Int64, "reason": pl.String, "column": pl.String, "value": pl.String})
