"""Assignment: deterministic, salted, proportional, stable across processes, salt-independent."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from recctl.abtest.assign import (
    HOLDOUT,
    assign_variants,
    assignment_frame,
    hash_unit,
    variant_shares,
)
from recctl.config.abtest import ABTestConfig
from recctl.errors import DataError

from .conftest import make_experiment

IDS = [f"user-{i}" for i in range(20_000)]


def test_bucket_is_the_documented_sha256_prefix() -> None:
    # the algorithm is a contract with the shop: pin it independently of the implementation
    exp = make_experiment()
    frame = assignment_frame(["17850", "ü-unicode"], exp)
    for uid, bucket in zip(frame["user_id"], frame["bucket"], strict=True):
        digest = hashlib.sha256(f"salt-1\x1f{uid}".encode()).digest()
        assert bucket == int.from_bytes(digest[:8], "big")
        expected = "control" if int.from_bytes(digest[:8], "big") / 2**64 < 0.5 else "treatment"
        assert frame.filter(frame["user_id"] == uid)["variant"][0] == expected
    # the holdout is decided by bytes 8-15 of the same digest
    held_exp = make_experiment(holdout=0.3)
    ids = [f"id{i}" for i in range(300)]
    held = assign_variants(ids, held_exp) == HOLDOUT
    expected_held = [
        int.from_bytes(hashlib.sha256(f"salt-1\x1f{u}".encode()).digest()[8:16], "big") / 2**64 < 0.3 for u in ids
    ]
    assert held.tolist() == expected_held


def test_same_input_same_output_and_batch_independent() -> None:
    exp = make_experiment(holdout=0.2)
    whole = assign_variants(IDS[:500], exp)
    assert list(whole) == list(assign_variants(IDS[:500], exp))
    # a user's variant does not depend on who else is in the batch (new users are assigned alike)
    alone = [assign_variants([uid], exp)[0] for uid in IDS[:50]]
    assert alone == list(whole[:50])
    assert list(assign_variants(IDS[:500][::-1], exp)) == list(whole[::-1])


def test_ids_of_any_type_are_compared_as_text() -> None:
    exp = make_experiment()
    assert list(assign_variants(np.arange(100), exp)) == list(assign_variants([str(i) for i in range(100)], exp))


def test_missing_user_id_is_refused() -> None:
    with pytest.raises(DataError, match="position 1"):
        assign_variants(["a", None, "b"], make_experiment())


def test_variant_order_in_yaml_does_not_matter() -> None:
    a = make_experiment({"control": 1, "b": 2, "c": 1})
    b = ABTestConfig.model_validate(
        {**a.model_dump(), "variants": dict(reversed(list(a.model_dump()["variants"].items())))}
    )
    assert list(assign_variants(IDS[:2000], a)) == list(assign_variants(IDS[:2000], b))


def test_changing_holdout_does_not_reshuffle_the_rest() -> None:
    small = assign_variants(IDS, make_experiment(holdout=0.05))
    large = assign_variants(IDS, make_experiment(holdout=0.20))
    both_in = (small != HOLDOUT) & (large != HOLDOUT)
    assert both_in.sum() > 10_000
    assert np.array_equal(small[both_in], large[both_in])
    assert not np.any((small == HOLDOUT) & (large != HOLDOUT))  # a larger holdout only adds users


def _check_shares(variants: np.ndarray, exp: ABTestConfig) -> None:
    n = variants.size
    for name, share in variant_shares(exp).items():
        observed = int(np.sum(variants == name))
        sd = np.sqrt(n * share * (1 - share))
        # 5 standard deviations: a false alarm once in ~1.7 million checks
        assert abs(observed - n * share) <= 5 * sd + 1, (name, observed, n * share)
    assert set(np.unique(variants)) <= set(variant_shares(exp))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    weights=st.lists(st.floats(min_value=0.01, max_value=10.0), min_size=2, max_size=5),
    holdout=st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=0.5)),
    salt=st.text(min_size=1, max_size=12),
)
def test_split_proportions_match_any_weights(weights: list[float], holdout: float, salt: str) -> None:
    exp = make_experiment({f"arm{i}": w for i, w in enumerate(weights)}, holdout=holdout, salt=salt)
    _check_shares(assign_variants(IDS, exp), exp)


@settings(max_examples=15, deadline=None)
@given(
    uids=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=50),
    salt=st.text(min_size=1, max_size=10),
)
def test_assignment_is_a_pure_function_of_id_and_salt(uids: list[str], salt: str) -> None:
    exp = make_experiment({"a": 1, "b": 3}, holdout=0.1, salt=salt)
    first = assign_variants(uids, exp)
    again = assign_variants(list(uids), exp)
    assert list(first) == list(again)
    lookup = dict(zip(uids, first, strict=True))
    assert [lookup[u] for u in uids] == list(first)  # duplicates agree


def test_weights_in_extreme_ratios() -> None:
    exp = make_experiment({"control": 999, "rare": 1})
    _check_shares(assign_variants([f"x{i}" for i in range(200_000)], exp), exp)


@settings(max_examples=8, deadline=None)
@given(salt_a=st.text(min_size=1, max_size=8), salt_b=st.text(min_size=1, max_size=8))
def test_different_salts_are_independent(salt_a: str, salt_b: str) -> None:
    if salt_a == salt_b:
        return
    a = assign_variants(IDS, make_experiment({"c": 1, "t": 1, "u": 2}, salt=salt_a))
    b = assign_variants(IDS, make_experiment({"c": 1, "t": 1, "u": 2}, salt=salt_b))
    names = ["c", "t", "u"]
    table = np.array([[np.sum((a == x) & (b == y)) for y in names] for x in names])
    p = stats.chi2_contingency(table).pvalue
    assert p > 1e-6, table


def test_holdout_and_variant_hashes_are_independent() -> None:
    u = hash_unit(IDS, "s", "variant")
    h = hash_unit(IDS, "s", "holdout")
    assert abs(np.corrcoef(u, h)[0, 1]) < 5 / np.sqrt(len(IDS))
    assert stats.kstest(u, "uniform").pvalue > 1e-6


def test_stable_across_python_processes(experiment: ABTestConfig) -> None:
    # Python's hash() is salted per process; the assignment must not depend on it
    code = (
        "import json,sys\n"
        "from recctl.config.abtest import ABTestConfig\n"
        "from recctl.abtest.assign import assign_variants\n"
        "exp = ABTestConfig.model_validate(json.loads(sys.argv[1]))\n"
        "print(json.dumps(list(assign_variants([f'user-{i}' for i in range(300)], exp))))\n"
    )
    expected = list(assign_variants(IDS[:300], experiment))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str-hash salt than this process
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(experiment.model_dump())],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(done.stdout) == expected


def test_assignment_frame_columns(experiment: ABTestConfig) -> None:
    frame = assignment_frame(["a", "b", "a"], experiment)
    assert frame.columns == ["user_id", "variant", "bucket", "experiment", "salt"]
    assert frame.height == 2
    assert frame["experiment"].to_list() == ["exp", "exp"]
    assert frame["salt"].to_list() == ["salt-1", "salt-1"]
