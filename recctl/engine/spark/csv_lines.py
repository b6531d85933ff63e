"""What Spark's CSV reader does differently from the local engine's, found by one pass over the lines.

Two differences between Spark's CSV reader and polars' (the local engine) change rows:

* **Blank lines.** Spark's line reader drops every line that is empty or only whitespace (its
  ``multiLine`` parser only the empty ones); polars reads each as a row (rejected as
  ``empty_row``, or as whatever its one field is), and numbers the rows after it accordingly.
* **Quoted line breaks.** A quoted field holding a line break is one record for polars; Spark's
  line-split reader cuts it in two unless ``multiLine`` is on, and ``multiLine`` makes a file one
  task. So it is turned on only for files that need it.

A cheap JVM-only job reads the file as text lines (splittable, no Python) and keeps, per line,
whether it is blank (Java's ``trim``, as Spark's filter) and whether it holds an odd number of
quote characters (a quoted field opens or closes a line break there: with the quote doubled as
its own escape, balanced quoting is even on every line). Only those lines come to the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LineScan", "local_rows", "scan_lines"]


@dataclass
class LineScan:
    """What the line pass found in one CSV/TSV file.

    Attributes
    ----------
    multiline
        Some quoted field holds a line break: read the file with ``multiLine``.
    delimiter
        The file's field delimiter.
    skipped
        The records Spark's reader drops (blank lines outside quotes): their 1-based row number
        in the local engine's numbering and their text, in file order.
    """

    delimiter: str = ","
    multiline: bool = False
    skipped: list[tuple[int, str]] = field(default_factory=list)


def scan_lines(spark: Any, path: str, *, quote: str | None, has_header: bool, delimiter: str) -> LineScan:
    """Find blank records and quoted line breaks in one CSV/TSV file.

    Parameters
    ----------
    spark
        The session.
    path
        The file as Spark reads it (:func:`recctl.engine.spark.io.to_spark_path`).
    quote
        The quote character, or None for files without quoting.
    has_header
        Whether the first line is the header (not a record).
    delimiter
        The field delimiter (kept in the result, to split the dropped lines into fields).

    Returns
    -------
    LineScan
        Whether the file needs ``multiLine`` and the records Spark's reader drops.
    """
    from pyspark.sql import functions as F

    lines = spark.read.text(path)
    # Spark's CSV filter drops lines whose Java trim is empty (every character <= U+0020)
    blank = F.col("value").rlike("^[\\x00-\\x20]*$")
    # an odd count of quote characters: a quoted field opens or closes a line break on this line
    quotes = F.length("value") - F.length(F.replace("value", F.lit(quote or ""), F.lit("")))
    odd = (quotes % 2 == 1) if quote else F.lit(False)
    marked = lines.select(
        F.spark_partition_id().alias("p"),
        F.monotonically_increasing_id().bitwiseAND((1 << 33) - 1).alias("i"),
        blank.alias("blank"),
        odd.alias("odd"),
        F.col("value"),
    )
    counts = {int(r["p"]): int(r["count"]) for r in marked.groupBy("p").count().collect()}
    flagged = marked.filter(F.col("blank") | F.col("odd")).collect()
    if not flagged:
        return LineScan(delimiter)
    offsets, start = {}, 1
    for p in sorted(counts):  # one file: partitions in byte order
        offsets[p] = start
        start += counts[p]
    found = sorted((offsets[int(r["p"])] + int(r["i"]), bool(r["odd"]), str(r["value"])) for r in flagged)
    header = 1 if has_header else 0
    scan = LineScan(delimiter)
    inside, opened, continued = False, 0, 0
    for line, opens_or_closes, text in found:
        if opens_or_closes:
            scan.multiline = True
            if inside:  # the lines after the opening one up to this one continue one record
                continued += line - opened
            else:
                opened = line
            inside = not inside
        elif not inside and line > header:
            scan.skipped.append((line - header - continued, text.rstrip("\r")))
    if scan.multiline:  # the multiLine parser drops only empty lines: whitespace is a record there
        scan.skipped = [(row, text) for row, text in scan.skipped if text == ""]
    return scan


def local_rows(spark_rows: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """Map Spark's record numbers (blank records dropped) to the local engine's (blank records counted).

    Parameters
    ----------
    spark_rows
        1-based record numbers among the records Spark reads.
    skipped
        Sorted 1-based local row numbers of the records Spark dropped.

    Returns
    -------
    numpy.ndarray
        The local row number of each record: the ``r``-th integer not in ``skipped``.
    """
    if skipped.size == 0:
        return spark_rows
    # skipped[j] - j = how many kept records come before the j-th skipped one
    before = skipped - np.arange(skipped.size, dtype=skipped.dtype)
    return spark_rows + np.searchsorted(before, spark_rows, side="right")
