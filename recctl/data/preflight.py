"""Check the whole config against the inputs' headers before any work starts.

A column named in the config but absent from the files used to fail late: a typo in
``recommend.rules.in_stock_column`` surfaced only after ingest, preprocess, train and evaluate
had run. :func:`check_inputs` reads the *header* of every input (the first line of a text
file, decompressed on the fly; the schema of a Parquet file) and checks, in one go:

* every raw column the ``data`` section maps (``columns``, ``id_column``, cancellation and
  ``require`` columns, long-format columns) is in its file (a source with ``lookups`` is left
  to ingest, which checks the joined tables as it opens them, also before any row is read);
* every catalogue (user-table) column that another section names exists after ingest's
  mapping: ``preprocess.features.*``, ``recommend.rules`` (``in_stock_column``, the price
  column under ``require_price``, ``category_cap.column``, ``diversity_column``) and the
  ``category_column`` of popularity models in ``category`` mode;
* the outcome log's mapped columns (``experiment.outcomes``), when that file exists already.

Every problem is reported at once, each as ``<config>: <yaml.key>: ...`` naming the file, the
column, the columns it has and the closest match. A raw column missing from a file is a
:class:`~recctl.errors.DataError` (exit 4, as when ingest finds it); a key naming a catalogue
column that no mapping provides is a :class:`~recctl.errors.ConfigError` (exit 3).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recctl.columns import Columns
from recctl.config import Config, TableSource, is_uri
from recctl.config.data import FileSource, InteractionSource
from recctl.data.readers import delimiter_hint, detect_format, expand_paths, utf16_mismatch
from recctl.errors import ConfigError, DataError, RecctlError

__all__ = ["check_inputs", "interaction_columns", "read_header"]

log = logging.getLogger(__name__)

#: bytes read from the start of a text file to find its header (preamble lines included)
_HEAD_BYTES = 1 << 16


def read_header(path: Path, src: FileSource, key: str = "the source") -> list[str] | None:
    """The column names ingest will see in ``path``, from its first bytes only; None when unknown.

    Text files (CSV/TSV, compressed or not, any configured encoding) are decoded as ingest
    decodes them and their header split with the configured delimiter and quote character;
    Parquet headers come from the file's metadata; JSON Lines from the first object. Layouts
    whose header costs a full read (spreadsheets, a JSON array) give None: ingest checks them.
    """
    from recctl.data.readers import _compression, _open_decompressed

    fmt = detect_format(path, src.format)
    if fmt == "parquet":
        return list(pl.read_parquet_schema(path))
    if fmt == "excel":
        return None
    with _open_decompressed(path, _compression(path)) as fh:
        raw = fh.read(_HEAD_BYTES)
    if (mismatch := utf16_mismatch(path, raw, src.encoding, key)) is not None:
        raise mismatch
    codec = {"utf8": "utf-8-sig", "utf8-lossy": "utf-8-sig", "utf16": "utf-16"}.get(src.encoding, src.encoding)
    text = codecs.getincrementaldecoder(codec)(errors="replace").decode(raw)
    lines = text.splitlines()
    if fmt == "jsonl":
        first = next((line for line in lines if line.strip()), "")
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            return None  # a JSON array or a broken line: ingest reads and diagnoses it
        return list(obj) if isinstance(obj, dict) else None
    lines = lines[src.skip_lines :]
    if not lines:
        return None
    delimiter = src.delimiter or ("\t" if fmt == "tsv" else ",")
    first = lines[0]
    if len(delimiter) > 1:
        first, delimiter = first.replace(delimiter, "\x1f"), "\x1f"
    quoting = {"quotechar": src.quote_char} if src.quote_char else {"quoting": csv.QUOTE_NONE}
    fields = next(csv.reader([first], delimiter=delimiter, **quoting), [])
    if src.column_names is not None:
        if len(src.column_names) != len(fields):
            raise DataError(
                f"{path}: column_names gives {len(src.column_names)} names but the file has {len(fields)} columns "
                f"(split on {src.delimiter or delimiter!r}); give one name per column, in order."
            )
        return list(src.column_names)
    if not src.has_header:
        return [f"column_{i}" for i in range(1, len(fields) + 1)]
    return fields


@dataclass
class _Problems:
    source: str
    data: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    hinted: set[str] = field(default_factory=set)

    def missing(
        self, key: str, column: str, where: str, have: list[str], *, raw: bool, src: FileSource | None = None
    ) -> None:
        close = difflib.get_close_matches(column, have, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        shown = ", ".join(have[:30]) + (", ..." if len(have) > 30 else "")
        if raw:  # the words ingest uses when it finds the column missing
            line = (
                f"{where}: column '{column}' (mapped by {key}) is not in the file{hint}; the file has: "
                f"{shown or 'no columns'}."
            )
        else:
            line = f"{self.source}: {key}: column '{column}' is not in {where}{hint}; it has: {shown or 'no columns'}."
        if src is not None and where not in self.hinted:  # one delimiter hint per file is enough
            self.hinted.add(where)
            line += delimiter_hint(have, src.delimiter, detect_format(Path(where), src.format), key)
        (self.data if raw else self.config).append(line)


def _local_files(cfg: Config, spec: str | list[str], key: str) -> list[Path]:
    """The local files a path spec names; URIs (engine: spark) are checked by Spark as it lists and reads them."""
    patterns = [p for p in ([spec] if isinstance(spec, str) else spec) if not is_uri(p)]
    return expand_paths(patterns, cfg.resolve, key) if patterns else []


def _headers(paths: list[Path], src: FileSource, key: str, problems: _Problems) -> dict[Path, list[str] | None]:
    out: dict[Path, list[str] | None] = {}
    for path in paths:
        try:
            out[path] = read_header(path, src, key)
        except DataError as exc:  # the header itself contradicts the config
            problems.data.append(str(exc))
            out[path] = None
        except (OSError, UnicodeError, RecctlError, EOFError, ValueError, pl.exceptions.PolarsError) as exc:
            # an unreadable file is ingest's to diagnose (with the line and the fix)
            log.debug("preflight: cannot read the header of %s (%s); ingest will check it", path, exc)
            out[path] = None
    return out


def _check_interactions(cfg: Config, problems: _Problems) -> None:
    sources = cfg.data.interaction_sources()
    for i, src in enumerate(sources):
        key = "data.interactions" if not isinstance(cfg.data.interactions, list) else f"data.interactions.{i}"
        if src.lookups:
            # columns then come from the joined tables: ingest checks keys and columns as it opens
            # them, also before any row is read, with messages about the lookup that is wrong
            continue
        for path, header in _headers(_local_files(cfg, src.path, f"{key}.path"), src, key, problems).items():
            if header is None:
                continue
            for k, column in interaction_columns(src, key).items():
                if column not in header:
                    problems.missing(k, column, str(path), header, raw=True, src=src)


def interaction_columns(src: InteractionSource, key: str) -> dict[str, str]:
    """The raw columns an interaction source names, by the config key that names each.

    Parameters
    ----------
    src
        The interaction source.
    key
        Its config key, e.g. ``data.interactions`` or ``data.interactions.1``.

    Returns
    -------
    dict
        ``{"<key>.columns.user_id": "customer", "<key>.cancellations.column": ..., ...}``: the
        mapped columns, the cancellation column and every ``require`` check's column. The local
        preflight and the Spark engine's ingest check a file's header against the same list.
    """
    wanted = {f"{key}.columns.{name}": raw for name, raw in src.columns.model_dump().items() if raw is not None}
    if src.cancellations is not None and src.cancellations.column:
        wanted[f"{key}.cancellations.column"] = src.cancellations.column
    for i, check in enumerate(src.require):
        wanted[f"{key}.require.{i}.column"] = check.column
    return wanted


def _table_columns(
    cfg: Config, key: str, src: TableSource | None, id_name: str, problems: _Problems
) -> set[str] | None:
    """The columns the ingested table will have (canonical names), checking the raw mapping on the way."""
    if src is None:
        return {id_name}
    canonical: set[str] | None = {id_name, *src.columns} if (src.columns or src.long_format) else None
    for path, header in _headers(_local_files(cfg, src.path, f"{key}.path"), src, key, problems).items():
        if header is None:
            return canonical  # unknown header: only the explicit mapping is known
        wanted = {f"{key}.id_column": src.id_column}
        if src.long_format is not None:
            wanted.update({f"{key}.long_format.{k}": v for k, v in src.long_format.model_dump().items() if v})
        else:
            wanted.update({f"{key}.columns.{name}": raw for name, raw in src.columns.items()})
        for k, column in wanted.items():
            if column not in header:
                problems.missing(k, column, str(path), header, raw=True, src=src)
        if canonical is None:  # no mapping: every column but the id is kept under its own name
            canonical = {id_name, *(c for c in header if c != src.id_column)}
    return canonical


def _referenced_item_columns(cfg: Config) -> dict[str, str]:
    """YAML key -> catalogue column, for every catalogue column another section relies on."""
    refs: dict[str, str] = {}
    feats = cfg.preprocess.features
    refs.update({f"preprocess.features.item_categorical.{i}": c for i, c in enumerate(feats.item_categorical)})
    refs.update({f"preprocess.features.item_multi_valued.{c}": c for c in feats.item_multi_valued})
    refs.update({f"preprocess.features.item_numeric_buckets.{c}": c for c in feats.item_numeric_buckets})
    refs.update({f"preprocess.features.item_text.{i}": c for i, c in enumerate(feats.item_text)})
    rules = cfg.recommend.rules if cfg.recommend is not None else None
    if rules is not None:
        if rules.in_stock_column:
            refs["recommend.rules.in_stock_column"] = rules.in_stock_column
        if rules.require_price:
            refs["recommend.rules.price_column"] = rules.price_column
        if rules.category_cap is not None:
            refs["recommend.rules.category_cap.column"] = rules.category_cap.column
        if rules.diversity_column:
            refs["recommend.rules.diversity_column"] = rules.diversity_column
    for name, model in cfg.model_configs.items():
        if getattr(model, "kind", None) == "popularity" and getattr(model, "mode", None) == "category":
            refs[f"models.{name}.category_column"] = model.category_column
    return refs


def _check_outcomes(cfg: Config, problems: _Problems) -> None:
    exp = cfg.experiment
    if exp is None or exp.outcomes.path is None:
        return
    path = cfg.resolve(exp.outcomes.path)
    if not path.is_file():
        return  # the shop returns it after the experiment; `ab report` checks it then
    src = FileSource(path=str(path))
    header = _headers([path], src, "experiment.outcomes", problems).get(path)
    if header is None:
        return
    for name, column in exp.outcomes.columns.model_dump().items():
        if column is not None and column not in header:
            problems.missing(f"experiment.outcomes.columns.{name}", column, str(path), header, raw=True)


def check_inputs(cfg: Config) -> None:
    """Check every column the config names against the inputs' headers; raise listing every problem.

    Reads only the first bytes of each input, so it costs milliseconds even for multi-GB
    exports, and runs before ingest (and before ``recctl run``'s first stage).

    Parameters
    ----------
    cfg
        The loaded config.

    Raises
    ------
    DataError
        A mapped raw column is missing from a file (exit 4); config-reference problems found at
        the same time are listed too.
    ConfigError
        A section names a catalogue or user column that the ``data`` mapping does not provide
        (exit 3).
    """
    problems = _Problems(str(cfg.source_path or "config"))
    _check_interactions(cfg, problems)
    items = _table_columns(cfg, "data.items", cfg.data.items, Columns.Item, problems)
    users = _table_columns(cfg, "data.users", cfg.data.users, Columns.User, problems)
    for kind, available, key, refs in (
        ("catalogue", items, "data.items", _referenced_item_columns(cfg)),
        (
            "user table",
            users,
            "data.users",
            {
                f"preprocess.features.user_categorical.{i}": c
                for i, c in enumerate(cfg.preprocess.features.user_categorical)
            },
        ),
    ):
        if available is None:
            continue
        for ref_key, column in refs.items():
            if column not in available:
                table = getattr(cfg.data, key.split(".")[1])
                made_by = f"made from {key}" if table is not None else f"no {key} is configured"
                where = f"the ingested {kind} ({made_by})"
                problems.missing(ref_key, column, where, sorted(available), raw=False)
    _check_outcomes(cfg, problems)
    if problems.data:
        raise DataError("\n".join(problems.data + problems.config))
    if problems.config:
        raise ConfigError("\n".join(problems.config))
