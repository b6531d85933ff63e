"""Open raw files lazily (CSV/TSV, Parquet, JSON Lines, spreadsheets; gzip, bz2, xz or zip) with clear errors.

Every reader returns a ``polars.LazyFrame`` with a 1-based row number column (:data:`ROW`), so
rejected rows can be traced back to the file. CSV files are read with every column as text:
the ingest step decides how to parse ids, timestamps and values and records the rows it cannot
parse, instead of letting type inference fail (or silently coerce) on row 100,001.

Polars reports broken files tersely (``invalid utf-8 sequence``, ``found more fields than
defined``); :func:`diagnose` re-reads the file only on that error path to find the offending
line and turn the failure into a :class:`~recctl.errors.DataError` that says what to do.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import difflib
import glob
import gzip
import json
import lzma
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

import polars as pl

from recctl.errors import DataError

__all__ = [
    "ROW",
    "delimiter_hint",
    "detect_format",
    "diagnose",
    "diagnose_source",
    "expand_paths",
    "utf16_mismatch",
    "prepare_file",
    "require_columns",
    "scan_delimiter",
    "scan_file",
]

#: name of the row-number column added to every scan (1-based data row, header excluded)
ROW = "__row"
_POLARS_ERRORS = (pl.exceptions.PolarsError, OSError)
#: what a several-character delimiter (MovieLens' ``::``) becomes in the prepared copy: the
#: ASCII unit separator, which no export uses as data
_UNIT_SEPARATOR = "\x1f"
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip")
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip"}
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".dat": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xlsb": "excel",
    ".xls": "excel",
    ".ods": "excel",
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
    """Return ``csv``, ``tsv``, ``parquet``, ``jsonl`` or ``excel`` from ``declared`` or the file extension.

    A trailing compression suffix is ignored (``events.csv.gz`` and ``ratings.dat.zip`` are CSV).

    Raises
    ------
    DataError
        If the format is ``auto`` and the extension is not recognised.
    """
    if declared != "auto":
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise DataError(
        f"{path}: cannot tell the file format from its extension; "
        "set `format:` to one of csv, tsv, parquet, jsonl, excel."
    )


def _compression(path: Path) -> str | None:
    """``gzip``, ``bz2``, ``xz`` or ``zip`` from the file's first bytes (not its name), else None."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def scan_delimiter(delimiter: str | None, fmt: str) -> str:
    """The one-character separator polars scans the prepared copy with (see :func:`prepare_file`)."""
    sep = delimiter or ("\t" if fmt == "tsv" else ",")
    return sep if len(sep) == 1 else _UNIT_SEPARATOR


def _open_decompressed(path: Path, kind: str | None):  # noqa: ANN202
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        if len(members) != 1:
            names = ", ".join(m.filename for m in members[:10]) or "nothing"
            raise DataError(
                f"{path}: a zip archive must hold exactly one file to read, it holds {len(members)} ({names}); "
                "unzip it and point the config at the file you mean."
            )
        return archive.open(members[0])
    return open(path, "rb")


def _replace_delimiter(chunks: Iterable[bytes], delimiter: bytes, replacement: bytes) -> Iterator[bytes]:
    """Stream ``chunks`` with every ``delimiter`` replaced, including one split across two chunks."""
    pending = b""
    for chunk in chunks:
        data = (pending + chunk).replace(delimiter, replacement)
        # no whole delimiter is left; a tail that starts one waits for the next chunk
        hold = next((k for k in range(len(delimiter) - 1, 0, -1) if data.endswith(delimiter[:k])), 0)
        pending = data[len(data) - hold :]
        yield data[: len(data) - hold]
    if pending:
        yield pending


def _spreadsheet_to_parquet(path: Path, sheet: str | int | None, target: Path) -> Path:
    """Read one sheet, every cell as text (dates as ISO text), into a Parquet copy polars can scan."""
    try:
        import fastexcel  # noqa: F401  (polars' calamine engine)
    except ImportError:
        from recctl.errors import MissingExtraError

        raise MissingExtraError(f"Reading the spreadsheet {path.name}", "excel", "fastexcel") from None
    try:
        if isinstance(sheet, str):
            frame = pl.read_excel(path, engine="calamine", infer_schema_length=0, sheet_name=sheet)
        else:
            frame = pl.read_excel(path, engine="calamine", infer_schema_length=0, sheet_id=sheet or 1)
    except Exception as exc:  # fastexcel raises its own error types for a bad file or sheet
        sheets = _sheet_names(path)
        if sheets and sheet is not None:
            raise DataError(
                f"{path}: no sheet {sheet!r} ({exc.__class__.__name__}); the file has: {', '.join(sheets)}. "
                "Set `sheet:` to a name or a 1-based position."
            ) from exc
        raise DataError(f"{path}: not a readable spreadsheet ({_first_line(exc)}); export it again.") from exc
    if frame.width == 0:
        raise DataError(f"{path}: the sheet is empty; check `sheet:` or export it again.")
    frame.write_parquet(target, compression="zstd", compression_level=1)
    return target


def _json_array_to_lines(path: Path, tmp_dir: Path, shown: Path) -> Path:
    """A JSON file holding one array of objects, rewritten as JSON Lines (read whole: such files are small)."""
    try:
        frame = pl.read_json(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise DataError(
            f"{shown}: not valid JSON ({_first_line(exc)}); give an array of objects, or one object per line."
        ) from exc
    target = _scratch_path(tmp_dir, f"{path.stem}.jsonl")
    frame.write_ndjson(target)
    return target


def _sheet_names(path: Path) -> list[str]:
    try:
        import fastexcel

        return list(fastexcel.read_excel(str(path)).sheet_names)
    except Exception:  # an unreadable file: the caller reports it
        return []


def prepare_file(
    path: Path,
    fmt: str,
    encoding: str,
    tmp_dir: Path,
    *,
    delimiter: str | None = None,
    sheet: str | int | None = None,
) -> Path:
    """Return a path polars can scan with bounded memory: decompressed, UTF-8, one-character delimiter.

    gzip, bz2, xz and single-file zip archives (recognised by their first bytes) are
    decompressed, latin1/cp1252 text is transcoded, and a delimiter of several characters
    (``::``) becomes :func:`scan_delimiter`'s one character. A spreadsheet's ``sheet`` is
    read whole (the ``excel`` extra), every cell as text, into a Parquet copy, and a JSON file
    holding one array of objects is rewritten as JSON Lines. All of it streams through a
    temporary file in ``tmp_dir`` (1 MiB at a time), so a large archive never has to fit in memory.

    Raises
    ------
    DataError
        If the file is empty, an archive is corrupt, or a zip holds several files.
    """
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); export it again or remove it from the config.")
    if fmt == "excel":
        return _spreadsheet_to_parquet(path, sheet, _scratch_path(tmp_dir, f"{path.stem}.parquet"))
    kind = _compression(path)
    text = fmt in ("csv", "tsv", "jsonl")
    transcode = text and encoding in ("latin1", "cp1252", "utf16")
    multi = fmt in ("csv", "tsv") and delimiter is not None and len(delimiter) > 1
    if kind is None and not transcode and not multi:
        return _json_array_to_lines(path, tmp_dir, path) if _is_json_array(path, fmt) else path
    name = path.name
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    target = _scratch_path(tmp_dir, name)
    try:
        with _open_decompressed(path, kind) as src, open(target, "wb") as dst:
            chunks: Iterable[bytes] = iter(lambda: src.read(1 << 20), b"")
            if transcode:
                decoder = codecs.getincrementaldecoder("utf-16" if encoding == "utf16" else encoding)()
                decoded = (decoder.decode(chunk).encode("utf-8") for chunk in chunks)
                chunks = _chain(decoded, lambda: decoder.decode(b"", final=True).encode("utf-8"))
            if multi and delimiter is not None:
                chunks = _replace_delimiter(chunks, delimiter.encode("utf-8"), _UNIT_SEPARATOR.encode())
            for chunk in chunks:
                dst.write(chunk)
    except (OSError, EOFError, gzip.BadGzipFile, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: not a readable {kind or 'text'} file ({exc}); check the download or export it again."
        ) from exc
    if target.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty once decompressed; export it again or remove it from the config.")
    return _json_array_to_lines(target, tmp_dir, path) if _is_json_array(target, fmt) else target


def _scratch_path(tmp_dir: Path, name: str) -> Path:
    """A new file name in ``tmp_dir`` (numbered: two sources may share a file name)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return tmp_dir / f"{len(list(tmp_dir.iterdir()))}-{name}"


def _is_json_array(path: Path, fmt: str) -> bool:
    return fmt == "jsonl" and _starts_with(path, b"[")


def _chain(chunks: Iterable[bytes], last: Callable[[], bytes]) -> Iterator[bytes]:
    yield from chunks
    tail = last()
    if tail:
        yield tail


def scan_file(
    path: Path,
    *,
    fmt: str,
    delimiter: str | None = None,
    encoding: str = "utf8",
    null_values: Iterable[str] = (),
    has_header: bool = True,
    column_names: list[str] | None = None,
    skip_lines: int = 0,
    quote_char: str | None = '"',
    shown: Path | None = None,
) -> pl.LazyFrame:
    """Scan one (prepared) file lazily with a 1-based :data:`ROW` column.

    Parameters
    ----------
    path
        A file returned by :func:`prepare_file` (plain, UTF-8 unless ``utf8-lossy``).
    fmt
        ``csv``, ``tsv``, ``parquet`` or ``jsonl``.
    delimiter
        CSV delimiter as configured (default ``,`` for csv, tab for tsv); one of several
        characters was replaced in the prepared copy (:func:`scan_delimiter`).
    encoding
        ``utf8-lossy`` replaces invalid bytes; anything else has been transcoded already.
    null_values
        Extra strings read as missing in CSV files (empty strings always are).
    has_header, column_names, skip_lines, quote_char
        CSV layout: a headerless file's columns are ``column_1``, ... unless ``column_names``
        names them; ``skip_lines`` lines come before the header; ``quote_char`` None for files
        without quoting (always so with a several-character delimiter).
    shown
        The user's file, named in messages when ``path`` is a prepared copy.

    Raises
    ------
    DataError
        If the file is not of the stated format (checked on the header / footer only).
    """
    name = shown or path
    if fmt in ("csv", "tsv"):
        sep = scan_delimiter(delimiter, fmt)
        try:
            lf = pl.scan_csv(
                path,
                separator=sep,
                has_header=has_header,
                skip_lines=skip_lines,
                quote_char=None if sep == _UNIT_SEPARATOR else quote_char,
                infer_schema=False,
                null_values=list(null_values) or None,
                encoding="utf8-lossy" if encoding == "utf8-lossy" else "utf8",
                row_index_name=ROW,
                row_index_offset=1,
                glob=False,
                raise_if_empty=True,
            )
            found = [c for c in lf.collect_schema() if c != ROW]
        except pl.exceptions.NoDataError as exc:
            raise DataError(f"{name}: the file is empty (no header row); export it again with a header.") from exc
        except _POLARS_ERRORS as exc:
            raise diagnose(name, fmt, encoding, exc, delimiter=sep, read_from=path) from exc
        if column_names is not None:
            if len(column_names) != len(found):
                raise DataError(
                    f"{name}: column_names gives {len(column_names)} names but the file has {len(found)} columns "
                    f"(split on {delimiter or sep!r}); give one name per column, in order."
                )
            lf = lf.rename(dict(zip(found, column_names, strict=True)))
        return lf
    if fmt in ("parquet", "excel"):  # a spreadsheet was copied to Parquet by prepare_file
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4 if path.stat().st_size >= 4 else 0, 2)
            tail = fh.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            raise DataError(
                f"{name}: not a Parquet file (no 'PAR1' magic bytes at its start and end); "
                "check the file, or set `format:` if it is CSV or JSON Lines."
            )
        try:
            lf = pl.scan_parquet(path, row_index_name=ROW, row_index_offset=1, glob=False)
            lf.collect_schema()
        except _POLARS_ERRORS as exc:
            raise DataError(f"{name}: unreadable Parquet file ({_first_line(exc)}); export it again.") from exc
        return lf
    if fmt == "jsonl":
        try:
            lf = pl.scan_ndjson(path, row_index_name=ROW, row_index_offset=1, infer_schema_length=10_000)
            lf.collect_schema()
        except _POLARS_ERRORS as exc:
            raise diagnose(name, fmt, encoding, exc, read_from=path) from exc
        return lf
    raise DataError(f"{name}: unknown format '{fmt}'; use csv, tsv, parquet, jsonl or excel.")


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
        msg += delimiter_hint(have, delimiter, fmt, key)
        raise DataError(msg)
    return schema


def delimiter_hint(have: list[str], delimiter: str | None, fmt: str, key: str) -> str:
    """`` Set `<source>.delimiter: ";"`.`` when a one-column header looks split by another delimiter, else ``""``.

    ``key`` is the YAML key of the mapped column (``data.items.columns.price``); the hint names
    the source's own ``delimiter`` key.
    """
    if fmt not in ("csv", "tsv") or len(have) != 1:
        return ""
    guess = next((d for d in ("::", ";", "\t", "|", ",") if d in have[0] and d != (delimiter or ",")), None)
    if guess is None:
        return ""
    shown = "\\t" if guess == "\t" else guess
    source = re.split(r"\.(columns|id_column|long_format|lookups|cancellations|require)\b", key)[0]
    return f" The header looks '{shown}'-delimited: set `{source}.delimiter: \"{shown}\"`."


#: the byte-order marks a UTF-16 file (Excel's "Unicode text" export) starts with
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def utf16_mismatch(location: str | Path, first_bytes: bytes, encoding: str, key: str) -> DataError | None:
    """The error for a UTF-16 file configured under another encoding; None when they agree.

    Read as UTF-8 such a file shows every character with a NUL byte beside it, and the
    symptoms (columns that are "not in the file" yet look the same) hide the cause; both
    engines check the first bytes and name the setting instead.
    """
    if encoding == "utf16" or first_bytes[:2] not in UTF16_BOMS:
        return None
    return DataError(
        f"{location}: the file is UTF-16 (it starts with a UTF-16 byte-order mark) but {key}.encoding is "
        f"{encoding}; set `{key}.encoding: utf16` (Excel's 'Unicode text'), or export the file as UTF-8."
    )


class ReadSettings(Protocol):
    """A configured source's reading settings (interaction, item, user and lookup sources)."""

    @property
    def encoding(self) -> str: ...
    @property
    def delimiter(self) -> str | None: ...
    @property
    def quote_char(self) -> str | None: ...


def diagnose_source(
    path: Path, fmt: str, source: ReadSettings, exc: BaseException, *, read_from: Path | None, key: str | None
) -> DataError:
    """:func:`diagnose` for a configured source: its encoding, delimiter and quote character."""
    return diagnose(
        path,
        fmt,
        source.encoding,
        exc,
        delimiter=scan_delimiter(source.delimiter, fmt),
        read_from=read_from,
        key=key,
        quote_char=source.quote_char,
    )


def diagnose(
    path: Path,
    fmt: str,
    encoding: str,
    exc: BaseException,
    *,
    delimiter: str | None = None,
    read_from: Path | None = None,
    key: str | None = None,
    quote_char: str | None = '"',
) -> DataError:
    """Turn a polars read failure into a :class:`DataError` that names the line and the fix.

    Only runs on the error path: it re-reads the file in Python to locate the first bad line.
    Messages name ``path`` (the user's file) and, when given, the source's YAML ``key``
    (``data.items``) whose setting to change; ``read_from`` is the copy polars actually read
    (decompressed, transcoded, delimiter replaced; see :func:`prepare_file`) and ``delimiter``
    the one-character separator of that copy.
    """
    inspected = read_from or path
    text = _first_line(exc)
    setting = f"{key}." if key else ""
    if "utf-8" in text.lower() or "utf8" in text.lower():
        line = _first_bad_utf8_line(inspected)
        where = f" at line {line}" if line else ""
        sample = _bad_bytes_sample(inspected, line)
        return DataError(
            f"{path}: not valid UTF-8{where}{sample}; set `{setting}encoding: cp1252` (Windows and Excel exports; "
            "or latin1, or utf16 for Excel's 'Unicode text'), or utf8-lossy to replace the bad bytes."
        )
    unquoted = _unquoted_field(str(exc), quote_char)
    if unquoted is not None and fmt in ("csv", "tsv"):
        value, column = unquoted
        line = _first_line_containing(inspected, value)
        where = f" at line {line}" if line else ""
        return DataError(
            f"{path}{where}: column '{column}' holds {value!r}, which starts with the quote character "
            f"{quote_char!r} but is not one quoted field (a quoted field ends at its closing quote; quotes inside "
            f"it are doubled). If the file does not quote fields, set `{setting}quote_char: null`; otherwise "
            "export it again with proper quoting."
        )
    if fmt == "jsonl":
        if _starts_with(inspected, b"["):
            return DataError(
                f"{path}: this is a JSON array, not JSON Lines; write one JSON object per line "
                "(e.g. `jq -c '.[]' file.json > file.jsonl`)."
            )
        line, problem = _first_bad_json_line(inspected)
        if line:
            return DataError(f"{path}: line {line} is not valid JSON ({problem}); fix or remove that line.")
        return DataError(f"{path}: unreadable JSON Lines file ({text}); one JSON object per line is expected.")
    if fmt in ("csv", "tsv"):
        line, problem = _first_ragged_line(inspected, delimiter or ",")
        if line:
            return DataError(
                f"{path}: line {line} {problem}; check `{setting}delimiter` and `{setting}quote_char`, "
                "or fix that line."
            )
    return DataError(
        f"{path}: cannot read the file as {fmt} ({text}); check `{setting}format`, `{setting}delimiter` and "
        f"`{setting}encoding`."
    )


def _unquoted_field(message: str, quote_char: str | None) -> tuple[str, str] | None:
    """``(value, column)`` when polars failed on a field that opens a quote it does not close properly."""
    if not quote_char:
        return None
    match = re.search(r"could not parse `(.*?)` as dtype \S+ at column '([^']*)'", message, re.S)
    if match and match.group(1).startswith(quote_char) and "not properly escaped" in message:
        return match.group(1), match.group(2)
    return None


def _first_line_containing(path: Path, value: str) -> int | None:
    needle = value.encode("utf-8")
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if needle in raw:
                return number
    return None


def _bad_bytes_sample(path: Path, line: int | None) -> str:
    """``: 'Gr\\xf6\\xdfe'`` for the first undecodable word of ``line``, shown as cp1252 would read it."""
    if not line:
        return ""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == line:
                for word in raw.split():
                    try:
                        word.decode("utf-8")
                    except UnicodeDecodeError:
                        raw_text = word[:40].decode("utf-8", "backslashreplace")
                        return f" ({raw_text!r} reads as {word[:40].decode('cp1252', 'replace')!r} in cp1252)"
                return ""
    return ""


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
