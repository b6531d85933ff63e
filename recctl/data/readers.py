"""Open raw files lazily (CSV/TSV, optionally gzip, Parquet, JSON Lines) with clear errors.

Every reader returns a ``polars.LazyFrame`` with a 1-based row number column (:data:`ROW`), so
rejected rows can be traced back to the file. CSV files are read with every column as text:
the ingest step decides how to parse ids, timestamps and values and records the rows it cannot
parse, instead of letting type inference fail (or silently coerce) on row 100,001.

Polars reports broken files tersely (``invalid utf-8 sequence``, ``found more fields than
defined``); :func:`diagnose` re-reads the file only on that error path to find the offending
line and turn the failure into a :class:`~recctl.errors.DataError` that says what to do.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import glob
import gzip
import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl

from recctl.errors import DataError

__all__ = [
    "ROW",
    "detect_format",
    "diagnose",
    "expand_paths",
    "prepare_file",
    "require_columns",
    "scan_file",
]

#: name of the row-number column added to every scan (1-based data row, header excluded)
ROW = "__row"
_POLARS_ERRORS = (pl.exceptions.PolarsError, OSError)
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def expand_paths(spec: str | list[str], resolve: Callable[[str], Path], key: str) -> list[Path]:
    """Expand a path, list of paths or glob(s) from the config into existing files, sorted per pattern.

    Parameters
    ----------
    spec
        ``path`` value of a source.
    resolve
        Resolves a config path against the config file's directory (``cfg.resolve``).
    key
        The YAML key, for error messages (``data.interactions.path``).

    Raises
    ------
    DataError
        If a pattern matches nothing or a file does not exist.
    """
    files: list[Path] = []
    for pattern in [spec] if isinstance(spec, str) else spec:
        full = resolve(pattern)
        if glob.has_magic(str(full)):
            matched = sorted(Path(p) for p in glob.glob(str(full)) if Path(p).is_file())
            if not matched:
                raise DataError(f"{key}: no file matches '{pattern}' (looked in {full.parent}); check the glob.")
            files.extend(matched)
        elif not full.is_file():
            raise DataError(f"{full}: file not found ({key}); check the path, relative to the config file.")
        else:
            files.append(full)
    # the same file named twice (e.g. by a list and a glob) is read once
    return list(dict.fromkeys(files))


def detect_format(path: Path, declared: str = "auto") -> str:
    """Return ``csv``, ``tsv``, ``parquet`` or ``jsonl`` from ``declared`` or the file extension.

    A trailing ``.gz`` is ignored (``events.csv.gz`` is CSV).

    Raises
    ------
    DataError
        If the format is ``auto`` and the extension is not recognised.
    """
    if declared != "auto":
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    if suffixes and suffixes[-1] in (".xlsx", ".xls", ".xlsm", ".ods"):
        raise DataError(
            f"{path}: spreadsheet files are not read; save the sheet as CSV (UTF-8) and point the config at that."
        )
    raise DataError(
        f"{path}: cannot tell the file format from its extension; set `format:` to one of csv, tsv, parquet, jsonl."
    )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def prepare_file(path: Path, fmt: str, encoding: str, tmp_dir: Path) -> Path:
    """Return a path polars can scan with bounded memory: gzip decompressed, text transcoded to UTF-8.

    Decompression and transcoding stream through a temporary file in ``tmp_dir`` (1 MiB at a
    time), so a large ``.csv.gz`` never has to fit in memory.

    Raises
    ------
    DataError
        If the file is empty, or a gzip file is corrupt.
    """
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); export it again or remove it from the config.")
    gz = _is_gzip(path)
    transcode = fmt in ("csv", "tsv", "jsonl") and encoding in ("latin1", "cp1252")
    if not gz and not transcode:
        return path
    tmp_dir.mkdir(parents=True, exist_ok=True)
    target = tmp_dir / f"{len(list(tmp_dir.iterdir()))}-{path.name.removesuffix('.gz')}"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as src, open(target, "wb") as dst:
            if transcode:
                decoder = codecs.getincrementaldecoder(encoding)()
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(decoder.decode(chunk).encode("utf-8"))
                dst.write(decoder.decode(b"", final=True).encode("utf-8"))
            else:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}); check the download or export it again.") from exc
    if target.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty once decompressed; export it again or remove it from the config.")
    return target


def scan_file(
    path: Path,
    *,
    fmt: str,
    delimiter: str | None = None,
    encoding: str = "utf8",
    null_values: Iterable[str] = (),
    skip_rows: int = 0,
    n_rows: int | None = None,
) -> pl.LazyFrame:
    """Scan one (prepared) file lazily with a 1-based :data:`ROW` column.

    Parameters
    ----------
    path
        A file returned by :func:`prepare_file` (plain, UTF-8 unless ``utf8-lossy``).
    fmt
        ``csv``, ``tsv``, ``parquet`` or ``jsonl``.
    delimiter
        CSV delimiter (default ``,`` for csv, tab for tsv).
    encoding
        ``utf8-lossy`` replaces invalid bytes; anything else has been transcoded already.
    null_values
        Extra strings read as missing in CSV files (empty strings always are).
    skip_rows, n_rows
        CSV only: read data rows ``skip_rows + 1 .. skip_rows + n_rows`` (row numbers stay those
        of the whole file), for reading a large file in bounded chunks.

    Raises
    ------
    DataError
        If the file is not of the stated format (checked on the header / footer only).
    """
    if fmt in ("csv", "tsv"):
        sep = delimiter or ("\t" if fmt == "tsv" else ",")
        if len(sep) != 1:
            raise DataError(f"{path}: delimiter must be one character, got {sep!r}.")
        try:
            lf = pl.scan_csv(
                path,
                separator=sep,
                infer_schema=False,
                null_values=list(null_values) or None,
                encoding="utf8-lossy" if encoding == "utf8-lossy" else "utf8",
                row_index_name=ROW,
                row_index_offset=1 + skip_rows,
                skip_rows_after_header=skip_rows,
                n_rows=n_rows,
                glob=False,
                raise_if_empty=True,
            )
            lf.collect_schema()
        except pl.exceptions.NoDataError as exc:
            raise DataError(f"{path}: the file is empty (no header row); export it again with a header.") from exc
        except _POLARS_ERRORS as exc:
            raise diagnose(path, fmt, encoding, exc, delimiter=sep) from exc
        return lf
    if fmt == "parquet":
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4 if path.stat().st_size >= 4 else 0, 2)
            tail = fh.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            raise DataError(
                f"{path}: not a Parquet file (no 'PAR1' magic bytes at its start and end); "
                "check the file, or set `format:` if it is CSV or JSON Lines."
            )
        try:
            lf = pl.scan_parquet(path, row_index_name=ROW, row_index_offset=1, glob=False)
            lf.collect_schema()
        except _POLARS_ERRORS as exc:
            raise DataError(f"{path}: unreadable Parquet file ({_first_line(exc)}); export it again.") from exc
        return lf
    if fmt == "jsonl":
        try:
            lf = pl.scan_ndjson(path, row_index_name=ROW, row_index_offset=1, infer_schema_length=10_000)
            lf.collect_schema()
        except _POLARS_ERRORS as exc:
            raise diagnose(path, fmt, encoding, exc) from exc
        return lf
    raise DataError(f"{path}: unknown format '{fmt}'; use csv, tsv, parquet or jsonl.")


def require_columns(
    lf: pl.LazyFrame, path: Path, wanted: dict[str, str], *, fmt: str, delimiter: str | None
) -> dict[str, pl.DataType]:
    """Check that every mapped raw column exists; return the file's schema.

    Parameters
    ----------
    wanted
        YAML key -> raw column name (``data.interactions.columns.user_id`` -> ``customer_id``).

    Raises
    ------
    DataError
        Naming the missing column, the YAML key that maps it, the columns the file has, the
        closest match and, when the header looks like another delimiter, the delimiter to set.
    """
    schema = dict(lf.collect_schema())
    have = [c for c in schema if c != ROW]
    for key, column in wanted.items():
        if column in schema:
            continue
        close = difflib.get_close_matches(column, have, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        msg = (
            f"{path}: column '{column}' (mapped by {key}) is not in the file{hint}; "
            f"the file has: {', '.join(have[:30])}."
        )
        if fmt in ("csv", "tsv") and len(have) == 1:
            guess = next((d for d in (";", "\t", "|", ",") if d in have[0] and d != (delimiter or ",")), None)
            if guess is not None:
                shown = "\\t" if guess == "\t" else guess
                msg += f" The header looks '{shown}'-delimited: set `delimiter: \"{shown}\"` for this source."
        raise DataError(msg)
    return schema


def diagnose(path: Path, fmt: str, encoding: str, exc: BaseException, *, delimiter: str | None = None) -> DataError:
    """Turn a polars read failure into a :class:`DataError` that names the line and the fix.

    Only runs on the error path: it re-reads the file in Python to locate the first bad line.
    """
    text = _first_line(exc)
    if "utf-8" in text.lower() or "utf8" in text.lower():
        line = _first_bad_utf8_line(path)
        where = f" at line {line}" if line else ""
        return DataError(
            f"{path}: not valid UTF-8{where}; set `encoding:` to latin1 or cp1252 for this source "
            "(or utf8-lossy to replace the bad bytes)."
        )
    if fmt == "jsonl":
        if _starts_with(path, b"["):
            return DataError(
                f"{path}: this is a JSON array, not JSON Lines; write one JSON object per line "
                "(e.g. `jq -c '.[]' file.json > file.jsonl`)."
            )
        line, problem = _first_bad_json_line(path)
        if line:
            return DataError(f"{path}: line {line} is not valid JSON ({problem}); fix or remove that line.")
        return DataError(f"{path}: unreadable JSON Lines file ({text}); one JSON object per line is expected.")
    if fmt in ("csv", "tsv"):
        line, problem = _first_ragged_line(path, delimiter or ",")
        if line:
            return DataError(
                f"{path}: line {line} {problem}; check `delimiter:` and quoting of this source, or fix that line."
            )
    return DataError(f"{path}: cannot read the file as {fmt} ({text}); check `format:`, `delimiter:` and `encoding:`.")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _starts_with(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4096).lstrip().lstrip(b"\xef\xbb\xbf").startswith(prefix)


def _first_bad_utf8_line(path: Path) -> int | None:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _first_bad_json_line(path: Path) -> tuple[int | None, str]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return number, str(exc)
            if not isinstance(obj, dict):
                return number, f"expected a JSON object, got {type(obj).__name__}"
    return None, ""


def _first_ragged_line(path: Path, delimiter: str) -> tuple[int | None, str]:
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None, ""
        for record in reader:
            if record and len(record) != len(header):
                # reader.line_num is the physical line where this record ended
                return reader.line_num, f"has {len(record)} fields but the header has {len(header)}"
    return None, ""
