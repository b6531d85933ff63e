"""The contract every registered model kind must keep (run once per kind).

A new model registered with ``@register`` is picked up here automatically; give it fast
test parameters in ``FAST_PARAMS`` if its defaults are slow.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from recctl.errors import ArtifactError
from recctl.models import model_kinds
from recctl.models.base import NotFittedError, Recommender, UnsupportedError
from recctl.models.registry import get_model_class

K = 5

#: parameters that keep each kind fast on the tiny fixture (defaults otherwise); LightFM on one
#: thread, which is what makes a fit repeatable (all cores is the default)
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "lightfm": {"epochs": 5, "no_components": 8, "num_threads": 1},
    "als": {"factors": 8, "iterations": 3, "num_threads": 1},
    "rp3beta": {"neighbors": 20},
    "spark_als": {"factors": 4, "iterations": 2, "blocks": 1},
    "blend": {
        "components": [
            {"weight": 0.6, "model": {"kind": "lightfm", "epochs": 3, "no_components": 8, "num_threads": 1}},
            {"weight": 0.4, "model": {"kind": "item_knn", "neighbors": 10}},
        ]
    },
    "sasrec": {
        "epochs": 1,
        "hidden_size": 8,
        "n_heads": 1,
        "n_blocks": 1,
        "max_len": 8,
        "batch_size": 32,
    },
}

#: kinds whose optional extra must be importable to fit
EXTRAS = {"sasrec": "torch", "spark_als": "pyspark"}


def _kinds() -> list[Any]:
    from recctl.engine.spark.session import java_problem

    params = []
    for kind in model_kinds():
        extra = EXTRAS.get(kind)
        missing = extra is not None and importlib.util.find_spec(extra) is None
        marks = [pytest.mark.skip(reason=f"optional extra '{extra}' not installed")] if missing else []
        if kind == "spark_als" and not missing and java_problem():  # Spark also needs a Java runtime
            marks = [pytest.mark.skip(reason=f"spark_als needs Java: {java_problem()}")]
        params.append(pytest.param(kind, marks=marks, id=kind))
    return params


def build(kind: str, seed: int = 7) -> Recommender:
    cls = get_model_class(kind)
    params = {k: v for k, v in FAST_PARAMS.get(kind, {}).items() if k in cls.config_class.model_fields}
    if "random_state" in cls.config_class.model_fields:
        params["random_state"] = seed
    return cls.from_config({"kind": kind, **params})


@pytest.fixture(autouse=True)
def _shared_spark(request):
    """spark_als trains in the test session's one SparkSession (tests/spark_session.py), not a session of its own."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("kind") == "spark_als":
        request.getfixturevalue("spark")


@pytest.fixture(scope="module")
def fitted(planted):
    cache: dict[str, Recommender] = {}

    def get(kind: str) -> Recommender:
        if kind not in cache:
            cache[kind] = build(kind).fit(planted)
        return cache[kind]

    return get


def test_every_expected_kind_is_registered():
    expected = {"popularity", "lightfm", "item_knn", "user_knn", "ease", "content", "blend"}
    assert expected <= set(model_kinds())


@pytest.mark.parametrize("kind", _kinds())
def test_recommendations_unique_at_most_k_and_exclude_seen(kind, planted, fitted):
    model = fitted(kind)
    users = np.arange(planted.n_users)
    top = model.recommend(users, K, exclude=planted.interactions)
    assert top.items.shape == (planted.n_users, K)
    for row, u in zip(top.items, users, strict=True):
        real = row[row >= 0]
        assert len(real) == len(set(real.tolist())) <= K
        seen = set(planted.interactions[u].indices.tolist())
        assert not seen & set(real.tolist()), f"user {u} got a seen item"
    # scores are sorted best first
    finite = np.where(np.isfinite(top.scores), top.scores, -np.inf)
    assert (np.diff(finite, axis=1) <= 0).all()


@pytest.mark.parametrize("kind", _kinds())
def test_score_block_shape_and_dtype(kind, planted, fitted):
    scores = fitted(kind).score(np.array([0, 5, 7]))
    assert scores.shape == (3, planted.n_items)
    assert scores.dtype == np.float32
    assert not np.isnan(scores).any()


@pytest.mark.parametrize("kind", _kinds())
def test_identical_after_save_and_load(kind, planted, fitted, tmp_path):
    model = fitted(kind)
    record = model.save(tmp_path / "m.pkl")
    loaded = Recommender.load(tmp_path / "m.pkl", record.sha256)
    assert type(loaded) is type(model)
    users = np.arange(planted.n_users)
    a = model.recommend(users, K, exclude=planted.interactions)
    b = loaded.recommend(users, K, exclude=planted.interactions)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    # the class-specific loader accepts its own class too
    assert type(model).load(tmp_path / "m.pkl", record.sha256).kind == kind


@pytest.mark.parametrize("kind", _kinds())
def test_wrong_class_load_refused(kind, fitted, tmp_path):
    model = fitted(kind)
    record = model.save(tmp_path / "m.pkl")
    other = get_model_class("item_knn" if kind != "item_knn" else "popularity")
    with pytest.raises(ArtifactError, match="expected"):
        other.load(tmp_path / "m.pkl", record.sha256)


@pytest.mark.parametrize("kind", _kinds())
def test_refit_is_idempotent_with_fixed_seed(kind, planted, fitted):
    users = np.arange(planted.n_users)
    again = build(kind).fit(planted)
    np.testing.assert_array_equal(fitted(kind).score(users), again.score(users))
    # fitting the same object twice gives the same model too (no state carried over)
    again.fit(planted)
    np.testing.assert_array_equal(fitted(kind).score(users), again.score(users))


@pytest.mark.parametrize("kind", _kinds())
def test_config_round_trips(kind):
    model = build(kind)
    config = model.get_config()
    assert config["kind"] == kind
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert type(model).from_config(model.config).get_config() == config
    assert repr(clone).startswith(type(model).__name__)


@pytest.mark.parametrize("kind", _kinds())
def test_unfitted_model_says_fit_first(kind):
    with pytest.raises(NotFittedError, match="fit"):
        build(kind).score(np.array([0]))


@pytest.mark.parametrize("kind", _kinds())
def test_item_history_capability_is_honest(kind, planted, fitted):
    model = fitted(kind)
    items = planted.interactions[0].indices
    if model.supports_item_history:
        scores = model.score_from_items(items)
        assert scores.shape == (planted.n_items,)
        assert np.isfinite(scores).all()
        # an empty list (a visitor with no events yet) must not fail either
        empty = model.score_from_items(np.empty(0, np.int64))
        assert empty.shape == (planted.n_items,)
        assert np.isfinite(empty).all()
    else:
        with pytest.raises(UnsupportedError):
            model.score_from_items(items)


@pytest.mark.parametrize("kind", _kinds())
def test_similar_items_capability_is_honest(kind, planted, fitted):
    model = fitted(kind)
    if model.supports_similar_items:
        top = model.similar_items(np.array([0, 20]), K)
        assert top.items.shape == (2, K)
        assert 0 not in top.items[0] and 20 not in top.items[1]
    else:
        with pytest.raises(UnsupportedError):
            model.similar_items(np.array([0]), K)


def test_each_built_in_kind_is_looked_up_in_its_own_module():
    # get_model_class imports only the kind's module: the table must name where each kind lives
    from recctl.models import registry

    assert sorted(registry._KIND_MODULE) == model_kinds()
    for kind, module in registry._KIND_MODULE.items():
        assert get_model_class(kind).__module__ == module
