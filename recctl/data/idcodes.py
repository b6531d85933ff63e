"""Integer codes for id strings, looked up by 64-bit hash in numpy tables.

Preprocess gives every user and item id a code (its position among the sorted distinct ids)
without holding the id strings per event: each event carries a 64-bit hash of its id, and
:class:`HashCodes` maps hashes to codes. A polars join of 20M event hashes to 1M distinct ones
cost 3.4 CPU-s at 20M events (most of the stage's read step); these tables answer the same in
about 0.7 s: a few levels of direct-address tables (multiplicative hashing, one key per slot,
keys that share a slot go to the next level), each queried with one gather and one compare,
in chunks that keep the temporaries in cache. With recctl's compiled kernels built
(:mod:`recctl.kernels`) the table is one open-addressing table built once and probed with
prefetching (``build_code_table`` / ``lookup_codes``; 20M events into 1M users: 0.4 against
3.1 CPU-s here), the same codes.

A hash identifies an id only when no two distinct ids share it: :func:`verify_codes` checks each
event's second, independent hash against its code's, so two ids merged by the first hash are
caught (both 64-bit hashes would have to collide, about ``n**2 / 2**129`` for ``n`` ids).
"""

from __future__ import annotations

import numpy as np

from recctl.kernels import compiled, wanted

__all__ = ["HashCodes", "verify_codes"]

#: odd 64-bit multipliers, one per level (multiplicative hashing: the slot is the product's top bits)
_MULTIPLIERS = (
    0x9E3779B97F4A7C15,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0xD6E8FEB86659FD93,
    0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53,
)
#: by default a level has 8 slots per key left to place: ~88% of them get a slot of their own
_LOAD_BITS = 3
#: events looked up at a time (their temporaries stay in cache)
_CHUNK = 1 << 20
#: the compiled table and look-up (None when recctl._kernels is not built)
_BUILD_CODE_TABLE = compiled("build_code_table")
_LOOKUP_CODES = compiled("lookup_codes")


class HashCodes:
    """Hash -> code look-up for a set of distinct 64-bit keys (a key's code is its position).

    Parameters
    ----------
    keys
        Distinct ``uint64`` hashes; ``keys[c]`` gets code ``c``.
    load_bits
        The numpy path's tables: a level has ``2**load_bits`` slots per key left to place. 3 (the
        default) places ~88% of them at each level (fewest levels, ~115-145 bytes per key); 1
        places ~61% (~45 bytes per key, a few more levels to query).

    With recctl's compiled kernels built (and wanted: :mod:`recctl.kernels`), one
    open-addressing table of 16-byte slots, at most half full (32-64 bytes per key), is built
    here (``build_code_table``: repeated keys raise ``ValueError`` now) and every look-up probes
    it (``lookup_codes``, a batch of probes prefetched at a time); the numpy levels are built only
    if a look-up takes the fallback.
    """

    def __init__(self, keys: np.ndarray, *, load_bits: int = _LOAD_BITS) -> None:
        self._keys = np.ascontiguousarray(keys, dtype=np.uint64)
        self.missing = len(self._keys)
        self._levels: list[tuple[np.uint64, np.uint64, np.ndarray, np.ndarray]] | None = None
        self._load_bits = load_bits
        self._table: np.ndarray | None = None
        if _BUILD_CODE_TABLE is not None and wanted():
            slots = max(16, 1 << (2 * len(self._keys) - 1).bit_length())  # a power of two >= 2 keys each
            table = np.empty(2 * slots, dtype=np.uint64)
            _BUILD_CODE_TABLE(self._keys, table)
            self._table = table

    def _build_levels(self) -> list[tuple[np.uint64, np.uint64, np.ndarray, np.ndarray]]:
        """The numpy path's tables (built on its first look-up)."""
        keys = self._keys
        levels: list[tuple[np.uint64, np.uint64, np.ndarray, np.ndarray]] = []
        left = np.arange(len(keys), dtype=np.uint32)
        while left.size:
            level = len(levels)
            if level >= 64:  # equal keys never separate; the caller passes distinct ones
                raise ValueError("HashCodes: the keys are not distinct")
            bits = max(int(left.size).bit_length() + self._load_bits, 4)
            mult = np.uint64(_MULTIPLIERS[level % len(_MULTIPLIERS)] + 2 * (level // len(_MULTIPLIERS)))
            shift = np.uint64(64 - bits)
            k = keys[left]
            slots = (k * mult) >> shift
            # numpy < 2 refuses to bincount uint64 ("cannot cast safely"): slots fit in intp
            alone = np.bincount(slots.astype(np.intp), minlength=1 << bits)[slots] == 1
            table_key = np.zeros(1 << bits, dtype=np.uint64)
            table_code = np.full(1 << bits, self.missing, dtype=np.uint32)
            table_key[slots[alone]] = k[alone]
            table_code[slots[alone]] = left[alone]
            # an empty slot must match no query: key 0 can only land in slot 0 (0 x mult = 0), so
            # an empty slot 0 holds 1, whose slot (the multiplier's top bits) is not 0
            if table_code[0] == self.missing:
                table_key[0] = 1
            levels.append((mult, shift, table_key, table_code))
            left = left[~alone]
        return levels

    def lookup(self, query: np.ndarray) -> np.ndarray:
        """The code of every hash in ``query`` (``uint32``); :attr:`missing` (the key count) when absent."""
        query = np.ascontiguousarray(query, dtype=np.uint64)
        out = np.empty(len(query), dtype=np.uint32)
        if self._table is not None and _LOOKUP_CODES is not None and wanted():
            _LOOKUP_CODES(self._table, query, out, self.missing)
            return out
        if self._levels is None:
            self._levels = self._build_levels()
        for lo in range(0, len(query), _CHUNK):
            out[lo : lo + _CHUNK] = self._lookup(query[lo : lo + _CHUNK])
        return out

    def _lookup(self, query: np.ndarray) -> np.ndarray:
        out = np.full(len(query), self.missing, dtype=np.uint32)
        pending: np.ndarray | None = None
        assert self._levels is not None
        for mult, shift, table_key, table_code in self._levels:
            q = query if pending is None else query[pending]
            slots = (q * mult) >> shift
            hit = table_key[slots] == q
            if pending is None:
                np.copyto(out, table_code[slots], where=hit)
                pending = np.flatnonzero(~hit)
            else:
                out[pending[hit]] = table_code[slots[hit]]
                pending = pending[~hit]
            if pending.size == 0:
                break
        return out


def verify_codes(codes: np.ndarray, check: np.ndarray, check_of_code: np.ndarray) -> bool:
    """Whether every event's second hash ``check`` equals the second hash of the id its code names.

    ``check_of_code[c]`` is the second hash of the id with code ``c``. False means two distinct
    ids share a first hash (their events were given one code): the caller codes the strings
    another way.
    """
    for lo in range(0, len(codes), _CHUNK):
        if not np.array_equal(check_of_code[codes[lo : lo + _CHUNK]], check[lo : lo + _CHUNK]):
            return False
    return True
