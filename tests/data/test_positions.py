"""recctl.data.positions.IdPositions: the one id -> position look-up, against a dict reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.data import positions
from recctl.data.positions import IdPositions

_ids = st.lists(st.text(max_size=6), unique=True, max_size=40)


def _reference(ids: list[str], values: list[object]) -> list[int]:
    """What the former look-ups did: a dict of the ids as text, each value as its str() (None: unknown;
    the former dicts looked up the text "None", which no id map holds)."""
    at = {i: p for p, i in enumerate(ids)}
    return [-1 if v is None else at.get(str(v), -1) for v in values]


@settings(max_examples=60, deadline=None)
@given(ids=_ids, extra=st.lists(st.text(max_size=6), max_size=30), data=st.data())
def test_agrees_with_a_dict_for_every_input_kind_and_path(
    ids: list[str], extra: list[str], data: st.DataObject
) -> None:
    """Known ids, unknown ones and repeats, in any order: the same answer as a dict, whether the
    values come as a list, a numpy array or a polars Series, through the few-values dict, the
    hash tables or the enum cast, in one chunk or many."""
    values = data.draw(st.lists(st.sampled_from([*ids, *extra, None]), max_size=60))
    expected = _reference(ids, values)
    for few, enum_ids in ((0, -1), (10_000, -1), (0, 10**9)):  # hash tables / the dict / the enum casts
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(positions, "_CHUNK", 7)  # several chunks, one of them partial
            mp.setattr(positions, "_FEW", few)
            mp.setattr(positions, "_ENUM_MAX_IDS", enum_ids)
            mp.setattr(positions, "_ENUM_CHUNK", 5)
            look = IdPositions(pl.Series(ids, dtype=pl.String))
            for given_as in (values, np.array(values, dtype=object), pl.Series(values, dtype=pl.String)):
                got = look.lookup(given_as)
                assert got.dtype == np.int64
                assert got.tolist() == expected


@settings(max_examples=30, deadline=None)
@given(
    ids=st.lists(st.integers(0, 10**6), unique=True, max_size=30), values=st.lists(st.integers(0, 10**6), max_size=30)
)
def test_integer_values_find_their_text_and_floats_do_not(ids: list[int], values: list[int]) -> None:
    """``17850`` finds the id ``"17850"`` (list, numpy, polars Int); ``17850.0`` is the text
    ``"17850.0"`` and finds nothing, as the former str() look-ups did."""
    text = [str(i) for i in ids]
    look = IdPositions(np.array(text, dtype=object))
    expected = _reference(text, values)
    assert look.lookup(values).tolist() == expected
    assert look.lookup(np.array(values, dtype=np.int64)).tolist() == expected
    assert look.lookup(pl.Series(values, dtype=pl.Int32)).tolist() == expected
    floats = [float(v) for v in values]
    assert look.lookup(floats).tolist() == _reference(text, floats) == [-1] * len(values)
    assert look.lookup(pl.Series(floats, dtype=pl.Float64)).tolist() == [-1] * len(values)


def test_int_like_ids_in_the_map_are_text_too() -> None:
    look = IdPositions(pl.Series([17850, 12], dtype=pl.Int64))  # an id map read as integers
    assert look.lookup(["17850", "12.0", 12, None]).tolist() == [0, -1, 1, -1]
    assert look.ids.to_list() == ["17850", "12"]


def test_empty_map_and_empty_values() -> None:
    assert IdPositions([]).lookup(["a", "b"]).tolist() == [-1, -1]
    assert IdPositions(["a"]).lookup([]).tolist() == []
    assert IdPositions(["a"]).lookup(pl.Series([], dtype=pl.String), dtype=np.int32).dtype == np.int32
    assert len(IdPositions(np.array([], dtype=object))) == 0


def test_scalar_helpers_and_narrow_dtype() -> None:
    look = IdPositions(["a", "b"])
    assert look.position("b") == 1 and look.position("zz") == -1
    assert "a" in look and "c" not in look and None not in look
    assert look.narrow_dtype is np.int32
    assert look.lookup(pl.Series(["b"] * 40), dtype=look.narrow_dtype).tolist() == [1] * 40


@pytest.mark.parametrize(("few", "enum_ids"), [(0, -1), (10_000, -1), (0, 10**9)])
def test_a_map_with_a_repeated_id_is_refused_naming_it(
    few: int, enum_ids: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision: an id map holds each id once; both positions of a repeated id would claim it."""
    monkeypatch.setattr(positions, "_FEW", few)
    monkeypatch.setattr(positions, "_ENUM_MAX_IDS", enum_ids)
    with pytest.raises(ValueError, match=r"same id at two positions \(e.g. \['b'\]\)"):
        IdPositions(["a", "b", "c", "b"]).lookup(pl.Series(["a"]))


def test_an_unknown_id_sharing_a_known_hash_stays_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash finds a candidate; the text decides. Here every value hashes as ``"a"`` does."""
    monkeypatch.setattr(positions, "_ENUM_MAX_IDS", -1)  # the hash tables, even for two ids
    look = IdPositions(["a", "b"])
    look.lookup(["a"] * 20)  # the tables are built with the real hashes
    real = pl.Series.hash
    monkeypatch.setattr(pl.Series, "hash", lambda s, seed=0, *a, **k: real(pl.Series(["a"] * len(s)), seed))
    assert look.lookup(["a", "zz", "b"] * 8).tolist() == [0, -1, -1] * 8
