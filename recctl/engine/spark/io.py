"""Moving data between Spark jobs and the driver's workdir: scratch Parquet, ordered part files.

Executors write Parquet part files under a scratch location both sides reach; the driver
streams them, in partition order, into the single file a stage publishes (the workdir layout
does not change with the engine). Part files are named ``part-<partition>-...``, so sorting
the names restores the order of a globally sorted or range-partitioned DataFrame.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from recctl.config import Config, is_uri

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

__all__ = ["Scratch", "concat_parts", "iter_part_tables", "to_spark_path"]


def to_spark_path(path: str | Path) -> str:
    """A path as Spark wants it: URIs unchanged, local paths absolute with ``file://``."""
    text = str(path)
    return text if is_uri(text) else Path(text).resolve().as_uri()


class Scratch:
    """A private folder for one stage's intermediate Spark output; removed on exit, whatever happens.

    ``engine.scratch_dir`` when set (a URI or a path executors and driver share), else
    ``<workdir>/.spark-scratch``. Only local scratch folders can be read back by the driver's
    Parquet reader here; a remote one is read through Spark.
    """

    def __init__(self, cfg: Config, stage: str) -> None:
        base = cfg.engine.scratch_dir
        name = f"{stage}-{uuid.uuid4().hex[:12]}"
        if base is not None and is_uri(base):
            self.local: Path | None = None
            self.uri = f"{base.rstrip('/')}/{name}"
        else:
            root = cfg.resolve(base) if base is not None else cfg.workdir_path / ".spark-scratch"
            self.local = root / name
            self.uri = to_spark_path(self.local)

    def path(self, name: str) -> str:
        """URI of a sub-folder for Spark to write to."""
        return f"{self.uri}/{name}"

    def __enter__(self) -> Scratch:
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.local is not None:
            shutil.rmtree(self.local, ignore_errors=True)
            parent = self.local.parent
            if parent.name == ".spark-scratch" and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def _part_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")


def iter_part_tables(spark: Any, uri: str, local: Path | None) -> Iterator[pa.Table]:
    """Yield the Parquet part files Spark wrote to ``uri``, in partition order, one table each.

    A local folder is read directly with pyarrow; a remote one through Spark, partition by
    partition (``toLocalIterator`` keeps the order and holds one partition at a time).
    """
    if local is not None:
        for part in _part_files(local):
            yield pq.read_table(part)
        return
    frame: DataFrame = spark.read.parquet(uri)
    batch: list[Any] = []
    for row in frame.toLocalIterator(prefetchPartitions=False):
        batch.append(row.asDict())
        if len(batch) >= 65_536:
            yield pa.Table.from_pylist(batch)
            batch = []
    if batch:
        yield pa.Table.from_pylist(batch)


def concat_parts(
    spark: Any,
    uri: str,
    local: Path | None,
    target: Path,
    schema: pa.Schema,
    *,
    compression: str = "zstd",
    compression_level: int | None = None,
) -> int:
    """Stream Spark's part files (in order) into one Parquet file ``target`` with ``schema``; return rows."""
    rows = 0
    with pq.ParquetWriter(target, schema, compression=compression, compression_level=compression_level) as writer:
        for table in iter_part_tables(spark, uri, local):
            if table.num_rows == 0:
                continue
            table = table.select(schema.names).cast(schema)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
            rows += table.num_rows
    return rows
