"""Write events in the shop's own export layout, so ``recctl ingest --append`` reads them unchanged.

The event log is read back by ingest with the *first interaction source's* mapping (the same
rule ``--append`` uses for any file), so each event becomes one row in that layout: the raw
column names of ``data.interactions.columns``, the raw event value (``event_map`` inverted),
the time rendered with ``timestamp_format`` in the source's ``timezone``, the source's
delimiter and encoding. One extra column, ``recctl_received_at`` (when the service accepted the
event, UTC), follows when the layout has a header; ingest ignores columns it does not map.

Layouts the log cannot be written in are refused when the service starts (``ConfigError``,
exit 3, naming the key): ``lookups`` (the rows hold keys into other tables, not user ids),
spreadsheet and Parquet sources (not appendable line by line), UTF-16 text, and ``require``
checks on columns the service does not write.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

from recctl.config.data import InteractionSource
from recctl.errors import ConfigError

__all__ = ["RECEIVED_COLUMN", "EventLayout", "RawEvent"]

#: extra column holding the time the service accepted the event (ignored by ingest)
RECEIVED_COLUMN = "recctl_received_at"


@dataclass(frozen=True)
class RawEvent:
    """One accepted event as the log stores it (canonical event name, raw text fields)."""

    user_id: str
    item_id: str
    event: str
    #: the row's fields in the source layout, without the received-at column: the identity of the
    #: event (ingest de-duplicates rows whose parsed fields are equal, and equal text parses equal)
    fields: tuple[str, ...]


class EventLayout:
    """Render and parse event rows in one interaction source's raw layout.

    Parameters
    ----------
    src
        The first interaction source of the config (``data.interactions``).
    key
        Its YAML key, for messages (``data.interactions`` or ``data.interactions.0``).
    """

    def __init__(self, src: InteractionSource, key: str = "data.interactions") -> None:
        fmt = src.format
        if src.lookups:
            raise ConfigError(
                f"{key}.lookups: the service cannot write events in a layout that joins other tables; "
                "give recctl serve a config whose first interaction source maps user and item columns directly."
            )
        if fmt in ("parquet", "excel"):
            raise ConfigError(
                f"{key}.format: {fmt} files cannot be appended line by line; the service writes its event log as "
                "CSV, TSV or JSON Lines only. Use a config whose first interaction source is one of those."
            )
        if src.encoding == "utf16":
            raise ConfigError(f"{key}.encoding: utf16 is not written by the service; use utf8, latin1 or cp1252.")
        cols = src.columns
        written = {cols.user_id, cols.item_id, cols.event, cols.timestamp, cols.value} - {None}
        for i, check in enumerate(src.require):
            if check.column not in written:
                raise ConfigError(
                    f"{key}.require.{i}.column: '{check.column}' is not a column the service writes "
                    f"({', '.join(sorted(c for c in written if c))}); its events would all be rejected by ingest."
                )
        self.src = src
        self.format = "jsonl" if fmt == "jsonl" else ("tsv" if fmt == "tsv" else "csv")
        self.suffix = {"jsonl": ".jsonl", "tsv": ".tsv", "csv": ".csv"}[self.format]
        self.delimiter = src.delimiter or ("\t" if self.format == "tsv" else ",")
        self.encoding = "utf-8" if src.encoding in ("utf8", "utf8-lossy") else src.encoding
        self.tz = zoneinfo.ZoneInfo(src.timezone)
        names: list[str] = [cols.user_id, cols.item_id]
        for extra in (cols.event, cols.timestamp, cols.value):
            if extra is not None:
                names.append(extra)
        if src.column_names is not None:
            # a headerless file read with column_names: write exactly those columns, in that order
            missing = [n for n in names if n not in src.column_names]
            if missing:
                raise ConfigError(f"{key}.column_names: does not list mapped column(s) {', '.join(missing)}.")
            names = list(src.column_names)
        self.columns = names
        self.with_received = src.has_header and src.column_names is None and self.format != "jsonl"
        if self.format == "jsonl":
            self.with_received = True
        # canonical -> raw event value (the first raw value mapping to it)
        self._raw_event: dict[str, str] = {}
        if src.event_map is not None:
            for raw, canonical in src.event_map.items():
                self._raw_event.setdefault(canonical, raw)
        self._canonical_event = dict(src.event_map or {})

    # -- what the service accepts ------------------------------------------------------------
    def events(self) -> list[str] | None:
        """Canonical event names the layout can express (``None``: any name)."""
        if self.src.columns.event is None:
            return [self.src.default_event]
        if self.src.event_map is not None:
            return sorted(self._raw_event)
        return None

    def render(self, user_id: str, item_id: str, event: str, when: dt.datetime, value: float | None) -> RawEvent:
        """One event as fields of the source layout.

        Raises
        ------
        ValueError
            The event name is not one the layout can express, or an id cannot be written
            (encoding, or a delimiter in a file without quoting).
        """
        allowed = self.events()
        if allowed is not None and event not in allowed:
            raise ValueError(f"unknown event '{event}'; this shop's events are: {', '.join(allowed)}")
        cols = self.src.columns
        by_name: dict[str, str] = {cols.user_id: user_id, cols.item_id: item_id}
        if cols.event is not None:
            by_name[cols.event] = self._raw_event.get(event, event)
        if cols.timestamp is not None:
            by_name[cols.timestamp] = self._time(when)
        if cols.value is not None:
            by_name[cols.value] = "1" if value is None else repr(float(value)).removesuffix(".0")
        fields = tuple(by_name.get(name, "") for name in self.columns)
        for f in fields:
            try:
                f.encode(self.encoding)
            except UnicodeEncodeError:
                raise ValueError(f"'{f}' cannot be written in the shop's encoding ({self.src.encoding})") from None
            if self.src.quote_char is None and (self.delimiter in f or "\n" in f or "\r" in f):
                raise ValueError(f"'{f}' holds the delimiter or a line break and the shop's file has no quoting")
        return RawEvent(user_id, item_id, event, fields)

    def _time(self, when: dt.datetime) -> str:
        fmt = self.src.timestamp_format
        utc = when.astimezone(dt.timezone.utc)
        if fmt == "epoch_s":
            return str(int(utc.timestamp())) if utc.microsecond == 0 else f"{utc.timestamp():.6f}"
        if fmt == "epoch_ms":
            return str(int(round(utc.timestamp() * 1000)))
        if fmt in ("auto", "iso"):
            return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return utc.astimezone(self.tz).strftime(fmt)

    # -- bytes on disk ---------------------------------------------------------------------------
    def file_header(self) -> bytes:
        """What a new segment starts with (preamble lines and the header row)."""
        lines = "".join("# recctl serve event log\n" for _ in range(self.src.skip_lines))
        if self.format != "jsonl" and self.src.has_header:
            names = [*self.columns, RECEIVED_COLUMN] if self.with_received else self.columns
            lines += self._row(names)
        return lines.encode(self.encoding)

    def line(self, event: RawEvent, received_at: dt.datetime) -> bytes:
        """One event as a line of the segment (ends with a newline)."""
        received = received_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if self.format == "jsonl":
            obj = dict(zip(self.columns, event.fields, strict=True))
            obj[RECEIVED_COLUMN] = received
            return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode(self.encoding)
        values = [*event.fields, received] if self.with_received else list(event.fields)
        return self._row(values).encode(self.encoding)

    def _row(self, values: list[str]) -> str:
        if self.src.quote_char is None:
            return self.delimiter.join(values) + "\n"
        if len(self.delimiter) == 1:
            buf = io.StringIO()
            csv.writer(buf, delimiter=self.delimiter, quotechar=self.src.quote_char, lineterminator="\n").writerow(
                values
            )
            return buf.getvalue()
        # several-character delimiters (MovieLens' ::) are read without quoting
        return self.delimiter.join(values) + "\n"

    def parse(self, data: bytes) -> Iterator[RawEvent]:
        """The events in a segment's bytes (complete lines only; the header skipped)."""
        text = data.decode(self.encoding, errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lines = lines[self.src.skip_lines :]
        if self.format != "jsonl" and self.src.has_header:
            lines = lines[1:]
        cols = self.src.columns
        index = {name: i for i, name in enumerate(self.columns)}
        for raw in lines:
            if not raw:
                continue
            if self.format == "jsonl":
                obj = json.loads(raw)
                fields = tuple(str(obj.get(n, "")) for n in self.columns)
            elif self.src.quote_char is None or len(self.delimiter) > 1:
                fields = tuple(raw.split(self.delimiter))[: len(self.columns)]
            else:
                row = next(csv.reader([raw], delimiter=self.delimiter, quotechar=self.src.quote_char))
                fields = tuple(row[: len(self.columns)])
            raw_event = fields[index[cols.event]] if cols.event is not None else self.src.default_event
            event = self._canonical_event.get(raw_event, raw_event) if self.src.event_map else raw_event
            yield RawEvent(fields[index[cols.user_id]], fields[index[cols.item_id]], event, fields)
