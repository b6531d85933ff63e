"""recctl.data.idcodes: hash -> code look-ups (exact for distinct keys; compiled and numpy) and the second hash."""

from __future__ import annotations

import numpy as np
import pytest

from recctl.data.idcodes import HashCodes, verify_codes


@pytest.mark.parametrize("n", [0, 1, 7, 5_000])
def test_every_key_finds_its_code_and_others_are_missing(kernel_path: str, n: int) -> None:
    rng = np.random.default_rng(n)
    keys = np.unique(rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2))
    if n:
        keys[0] = 0  # hash 0 is a key like any other (empty slots must not match it)
    keys = rng.permutation(keys)
    absent = np.array([1, 3, 2**63 + 1], dtype=np.uint64)  # odd: not keys
    query = np.concatenate([keys, absent, keys[::-1]])
    codes = HashCodes(keys).lookup(query)
    expected = np.concatenate([np.arange(len(keys)), np.full(3, len(keys)), np.arange(len(keys))[::-1]])
    assert codes.dtype == np.uint32
    assert codes.tolist() == expected.tolist()


def test_keys_sharing_slots_are_all_found(kernel_path: str) -> None:
    # multiples of the multiplier: their products are small, so they crowd the first slots (long
    # linear-probing runs in the compiled table, several levels in the numpy one)
    keys = np.random.default_rng(1).permutation(np.arange(5_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    table = HashCodes(keys)
    assert table.lookup(keys).tolist() == list(range(5_000))
    assert table.lookup(keys + np.uint64(1)).tolist() == [5_000] * 5_000
    if kernel_path == "numpy":
        assert table._levels is not None and len(table._levels) > 1  # ~12% of keys share a first-level slot


def test_repeated_keys_are_refused(kernel_path: str) -> None:  # compiled: when the table is built
    with pytest.raises(ValueError, match="repeat|not distinct"):
        HashCodes(np.array([5, 9, 5], dtype=np.uint64)).lookup(np.array([9], dtype=np.uint64))


def test_second_hash_catches_two_ids_given_one_code() -> None:
    check_of_code = np.array([10, 20], dtype=np.uint64)
    codes = np.array([0, 1, 1], dtype=np.uint32)
    assert verify_codes(codes, np.array([10, 20, 20], dtype=np.uint64), check_of_code)
    assert not verify_codes(codes, np.array([10, 20, 21], dtype=np.uint64), check_of_code)
