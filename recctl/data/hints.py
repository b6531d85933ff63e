"""What to change in the config when rows do not parse: from the rejected values to a fix.

Ingest knows *why* rows were rejected (a reason per row) and keeps sample raw values. This
module turns them into the config change that would most likely fix them, e.g. the strftime
pattern that parses every sampled timestamp, ``decimal_comma: true`` for ``29,41``, the
``encoding`` for text that went through the wrong code page, or the ``event_map`` entries for
unknown events. Used by the reject-rate limit and the whole-column check in
:mod:`recctl.data.ingest`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from recctl.config.data import InteractionSource
from recctl.data.locale import looks_decimal_comma

__all__ = ["TIME_PATTERNS", "fix_for", "guess_time_formats", "looks_mis_decoded"]

#: strftime layouts tried on rejected timestamps (day-first and month-first both, so an
#: ambiguous sample is reported as ambiguous instead of silently guessed)
TIME_PATTERNS = (
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d.%m.%y %H:%M",
    "%d.%m.%y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y",
    "%d/%m/%y %H:%M",
    "%m/%d/%y %H:%M",
    "%d/%m/%y",
    "%m/%d/%y",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d-%m-%Y",
    "%Y%m%d %H%M%S",
    "%Y%m%d%H%M%S",
    "%Y%m%d",
    "%d %b %Y %H:%M",
    "%d %b %Y",
    "%d-%b-%Y %H:%M:%S",
    "%d-%b-%Y",
    "%b %d, %Y",
    "%Y-%m-%d %H:%M:%S,%3f",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d",
)
#: what UTF-8 text looks like when it was decoded as latin1 / cp1252 (ä -> Ã¤, € -> â‚¬)
_MOJIBAKE = ("Ã", "â€", "Â")


def guess_time_formats(values: Sequence[str]) -> list[str]:
    """The :data:`TIME_PATTERNS` that parse every one of ``values`` exactly (best first); may be empty."""
    sample = pl.Series("t", [v.strip() for v in values if v and v.strip()], dtype=pl.String)
    if sample.is_empty():
        return []
    frame = sample.to_frame()
    return [
        pattern
        for pattern in TIME_PATTERNS
        if frame.select(
            pl.col("t").str.strptime(pl.Datetime, pattern, strict=False, exact=True).is_not_null().all()
        ).item()
    ]


def looks_mis_decoded(values: Sequence[str]) -> str | None:
    """``replacement`` when values hold U+FFFD, ``mojibake`` when UTF-8 was decoded as cp1252, else None."""
    text = " ".join(v for v in values if v)
    if "\ufffd" in text:
        return "replacement"
    if any(m in text for m in _MOJIBAKE):
        return "mojibake"
    return None


def fix_for(reason: str, column: str | None, samples: Sequence[str], src: InteractionSource, key: str) -> str:
    """The config change most likely to fix rows rejected for ``reason`` with these raw ``samples``.

    Parameters
    ----------
    reason
        The reject reason (``bad_timestamp``, ``unknown_event``, ...).
    column
        The raw column the reason is about.
    samples
        Distinct raw values of rejected rows.
    src
        The source's config.
    key
        The source's YAML key (``data.interactions``).

    Returns
    -------
    str
        One sentence naming the YAML key and the value to set.
    """
    decoded = looks_mis_decoded(samples)
    if decoded == "replacement":
        return f"the text holds bytes that are not UTF-8: set `{key}.encoding: cp1252` (or latin1, utf16)"
    if decoded == "mojibake" and src.encoding in ("latin1", "cp1252"):
        return f"the text looks like UTF-8 read as {src.encoding}: set `{key}.encoding: utf8`"
    if reason == "bad_timestamp":
        formats = guess_time_formats(samples)
        if len(formats) == 1 or (formats and not _ambiguous(formats)):
            return f'set `{key}.timestamp_format: "{formats[0]}"` (it parses every sampled value)'
        if formats:
            shown = " or ".join(f'"{f}"' for f in formats[:2])
            return (
                f"set `{key}.timestamp_format` to {shown}: the sampled values fit both day-first and month-first; "
                "check a date after the 12th in the export"
            )
        return (
            f"set `{key}.timestamp_format` to a strftime pattern matching these values "
            f"(now '{src.timestamp_format}'), or check `{key}.columns.timestamp`"
        )
    if reason == "non_numeric_value":
        if looks_decimal_comma(pl.Series(list(samples), dtype=pl.String)):
            return f"the numbers use a decimal comma: set `{key}.decimal_comma: true`"
        return f"check `{key}.columns.value`: it must map a numeric column (quantity, rating, revenue)"
    if reason == "unknown_event":
        if src.value_rule is not None:
            return f"check `{key}.value_rule` and `{key}.columns.value`"
        known = src.event_map or {}
        lowered = {k.lower(): t for k, t in known.items()}
        listed = ", ".join(f"{v}: {lowered.get(v.lower(), v)}" for v in list(dict.fromkeys(samples))[:5])
        return (
            f"check {key}.event_map (knows: {', '.join(known) or 'nothing'}) or {key}.columns.event: add the "
            f"values (e.g. {{{listed}}}); to ignore an event type on purpose, map it and give it weight 0 in "
            "preprocess.event_weights"
        )
    if reason in ("missing_user_id", "missing_item_id"):
        name = "user_id" if reason == "missing_user_id" else "item_id"
        return (
            f"check `{key}.columns.{name}` (now '{column}'); if the column is filled in the file, check "
            f"`{key}.delimiter` and `{key}.quote_char`"
        )
    if reason == "empty_row":
        return f"check `{key}.delimiter` (now {src.delimiter or 'by format'!r}) and `{key}.quote_char`"
    return f"check the rule behind '{reason}' under {key}"


def _ambiguous(formats: list[str]) -> bool:
    day_first = any(f.startswith(("%d/", "%d-", "%d.")) for f in formats)
    month_first = any(f.startswith("%m/") for f in formats)
    return day_first and month_first
