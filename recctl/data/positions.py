"""Id -> position look-ups: where each of many ids sits in an id map (index -> id).

Every artifact that names users or items by position keeps an id map: ``user_ids`` /
``item_ids`` (``ids[i]`` is the id at row / column ``i``). :class:`IdPositions` answers the
inverse question for any number of ids at once: the position of each, ``-1`` for an id the map
does not hold. It is the one way recctl does this (datasets, serving, the bundle, exports,
incremental updates, the service), so its rules hold everywhere:

* **Ids compare as text.** A value is turned into its ``str()`` (an integer ``17850`` finds the
  id ``"17850"``; a float ``17850.0`` is the text ``"17850.0"`` and finds only that), polars
  String / integer columns as the same text without a Python loop. A null (``None``) is unknown.
* **An id map holds each id once.** A map with a repeated id is refused (``ValueError`` naming
  it) when the look-up is built: both positions would claim the id and any answer would be
  wrong for one of them. Preprocess writes every id map from distinct ids.
* **A handful of values through a dict.** Asked about at most ``_FEW`` values (a service
  request's user and items), the look-up answers from a ``str -> position`` dict built on the
  first such call (polars' fixed cost, ~0.3 ms a call, would dominate a request; the dict costs
  ~100-150 bytes per id, so it is built only for maps that are asked such questions).
* **Many values at once, in chunks.** Values are hashed (polars' 64-bit hash), found in
  :class:`~recctl.data.idcodes.HashCodes` tables built once per map (32-64 bytes per id), and the
  hit is checked equal as text (an unknown id whose hash equals a known one's stays unknown).
  ``_CHUNK`` values at a time, so a huge input is never held twice; the answer is the only
  array of the input's length.
* **Small maps through an enum.** A map of at most ``_ENUM_MAX_IDS`` ids (the list sources, the
  model names) answers any number of values by casts to an enum of the ids, whose codes are the
  positions: polars rebuilds the enum's map on every cast (~150 ns an id), which is nothing for a
  small map, and then costs ~25 ns a value against the tables' ~50-60.

Built lazily: constructing an :class:`IdPositions` costs nothing until the first look-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from recctl.data.idcodes import HashCodes

__all__ = ["IdPositions"]

#: values looked up at a time (their text, hashes and temporaries stay small)
_CHUNK = 1 << 16
#: at most this many values are answered from the dict (built on first use), not the hash tables
_FEW = 16
#: maps of at most this many ids are looked up by casts to an enum of the ids (see the module docstring)
_ENUM_MAX_IDS = 1 << 12
#: values cast at a time (~15 bytes of temporaries a value)
_ENUM_CHUNK = 1 << 17
#: polars hash seeds; a clash of two distinct ids' hashes while building moves to the next seed
_SEEDS = (0x5EED, 0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35)


def _as_text(values: Any) -> pl.Series:
    """``values`` (polars Series, numpy array or sequence) as a String Series, compared like ``str()``."""
    if isinstance(values, pl.Series):
        dtype = values.dtype
        if dtype == pl.String:
            return values
        if dtype.is_integer() or dtype in (pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum):
            return values.cast(pl.String)  # the same text as str() of each value
        values = values.to_list()
    elif isinstance(values, np.ndarray):
        if values.dtype.kind == "U":
            return pl.Series(values, dtype=pl.String)
        if values.dtype.kind in "iu":
            return pl.Series(values).cast(pl.String)
        values = values.tolist()
    try:  # a list of str (the common case): no per-value Python call
        return pl.Series(values, dtype=pl.String, strict=True)
    except (TypeError, pl.exceptions.PolarsError):
        return pl.Series([None if v is None else str(v) for v in values], dtype=pl.String)


def _chunks(values: Any) -> tuple[int, Any]:
    """``(length, slicer)``: ``slicer(lo, hi)`` gives the values from ``lo`` to ``hi`` without copying the rest."""
    if isinstance(values, pl.Series):
        return len(values), lambda lo, hi: values.slice(lo, hi - lo)
    if not isinstance(values, (np.ndarray, list, tuple)):
        values = list(values)
    return len(values), lambda lo, hi: values[lo:hi]


class IdPositions:
    """The position of ids in an id map; ``-1`` for ids it does not hold.

    Parameters
    ----------
    ids
        The id map: ``ids[i]`` is the id at position ``i`` (a polars Series, a numpy array or a
        sequence; compared as text, see the module docstring). Each id at most once.
    """

    def __init__(self, ids: pl.Series | np.ndarray | Sequence[Any]) -> None:
        self._source = ids
        self._ids: pl.Series | None = None
        self._table: HashCodes | None = None
        self._seed = _SEEDS[0]
        self._dict: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._source)

    @property
    def narrow_dtype(self) -> type[np.signedinteger[Any]]:
        """``int32`` when every position (and ``-1``) fits it, else ``int64``: for answers held per row."""
        return np.int32 if len(self) < 2**31 - 1 else np.int64

    @property
    def ids(self) -> pl.Series:
        """The id map as text (String Series)."""
        if self._ids is None:
            self._ids = _as_text(self._source).rename("id")
        return self._ids

    def _refuse_repeats(self) -> None:
        """Raise ``ValueError`` naming a repeated id, if the map holds one."""
        ids = self.ids
        repeated = ids.filter(ids.is_duplicated())
        if len(repeated):
            shown = repeated.unique(maintain_order=True).head(3).to_list()
            raise ValueError(
                f"an id map holds the same id at two positions (e.g. {shown}): the positions cannot be "
                "told apart; the map was written from ids that are not distinct"
            )

    def _built(self) -> HashCodes:
        if self._table is None:
            for seed in _SEEDS:
                try:
                    # the compiled table (32-64 bytes per id), or numpy levels of 2 slots per key
                    # (~45 bytes per id): the default 8 (~145) put serve-export's peak up
                    table = HashCodes(self.ids.hash(seed).to_numpy(), load_bits=1)
                    table.lookup(np.empty(0, np.uint64))  # builds the tables now: equal keys raise here
                    self._table = table
                except ValueError:  # two equal hashes: a repeated id, or (~n**2 / 2**65) a clash
                    self._refuse_repeats()
                    continue
                self._seed = seed
                break
            else:  # pragma: no cover - four independent 64-bit clashes
                raise ValueError("IdPositions: the ids' hashes clash under every seed")
        assert self._table is not None
        return self._table

    def warm(self) -> None:
        """Build the dict for a handful of ids now (a service does it at load, not in its first request)."""
        self._positions_dict()

    def _positions_dict(self) -> dict[str, int]:
        if self._dict is None:
            ids = self.ids.to_list()
            found = {i: p for p, i in enumerate(ids) if i is not None}
            if len(found) < len(ids) - self.ids.null_count():
                self._refuse_repeats()
            self._dict = found
        return self._dict

    def _few(self, values: Sequence[Any]) -> list[int]:
        get = self._positions_dict().get
        return [-1 if v is None else get(str(v), -1) for v in values]

    def lookup(self, values: pl.Series | np.ndarray | Sequence[Any], *, dtype: Any = np.int64) -> np.ndarray:
        """The position of every value (``-1`` when the map does not hold it), in input order.

        Parameters
        ----------
        values
            Ids to find: a polars Series, a numpy array or a sequence (any length, repeats fine).
        dtype
            Integer dtype of the answer (``np.int32`` halves it when the map has < 2**31 ids).
        """
        if isinstance(values, (list, tuple)) and len(values) <= _FEW:  # a request's few ids: no polars
            return np.array(self._few(values), dtype=dtype)
        n, part = _chunks(values)
        out = np.empty(n, dtype=dtype)
        if n == 0:
            return out
        if len(self) == 0:
            out.fill(-1)
            return out
        if n <= _FEW:
            out[:] = self._few(list(part(0, n)))
            return out
        if len(self) <= _ENUM_MAX_IDS and not self.ids.null_count():  # an enum's categories are not null
            return self._by_enum(n, part, out)
        table, ids = self._built(), self.ids
        for lo in range(0, n, _CHUNK):
            text = _as_text(part(lo, min(lo + _CHUNK, n)))
            codes = table.lookup(text.hash(self._seed).to_numpy())
            hit = codes < table.missing
            # equal text, not only an equal hash: an unknown id sharing a known id's hash stays unknown
            # (every value compared with the id its hash names, the id at 0 standing in for a miss)
            same = (text == ids.gather(np.where(hit, codes, np.uint32(0)))).fill_null(False).to_numpy()
            dest = out[lo : lo + len(text)]
            dest.fill(-1)
            np.copyto(dest, codes, casting="unsafe", where=hit & same)
        return out

    def _by_enum(self, n: int, part: Any, out: np.ndarray) -> np.ndarray:
        """A small map: casts of ``_ENUM_CHUNK`` values at a time to an enum of the ids (code = position)."""
        try:
            enum = pl.Enum(self.ids)
        except (ValueError, pl.exceptions.PolarsError):  # a repeated id: refused, as by the tables
            self._refuse_repeats()
            raise
        for lo in range(0, n, _ENUM_CHUNK):
            codes = _as_text(part(lo, min(lo + _ENUM_CHUNK, n))).cast(enum, strict=False).to_physical()
            dest = out[lo : lo + len(codes)]
            dest.fill(-1)  # null codes: values the map does not hold
            np.copyto(dest, codes.fill_null(0).to_numpy(), casting="unsafe", where=codes.is_not_null().to_numpy())
        return out

    def position(self, value: Any) -> int:
        """The position of one id (``-1`` when absent): a service's per-request question, from the dict."""
        if value is None:
            return -1
        return (self._dict if self._dict is not None else self._positions_dict()).get(str(value), -1)

    def __contains__(self, value: Any) -> bool:
        return self.position(value) >= 0
