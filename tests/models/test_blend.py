"""Blend: weighted combination, fallback chain, config validation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from recctl.config import config_from_dict
from recctl.errors import ConfigError
from recctl.models._similarity import normalize_scores
from recctl.models.blend import BlendConfig, BlendModel
from recctl.models.item_knn import ItemKNNModel
from recctl.models.popularity import PopularityModel

KNN = {"kind": "item_knn", "neighbors": 5}
POP = {"kind": "popularity"}


def test_weighted_blend_is_the_weighted_sum_of_normalised_scores(planted):
    blend = BlendModel(components=[{"weight": 0.7, "model": KNN}, {"weight": 0.3, "model": POP}]).fit(planted)
    users = np.arange(20)
    knn = ItemKNNModel(neighbors=5).fit(planted).score(users)
    pop = PopularityModel().fit(planted).score(users)
    want = 0.7 * normalize_scores(knn, "minmax") + 0.3 * normalize_scores(pop, "minmax")
    np.testing.assert_allclose(blend.score(users), want, rtol=1e-5, atol=1e-6)


def test_zscore_normalisation_is_used_when_asked(planted):
    blend = BlendModel(normalize="zscore", components=[{"model": KNN}, {"model": POP}]).fit(planted)
    users = np.arange(5)
    knn = ItemKNNModel(neighbors=5).fit(planted).score(users)
    pop = PopularityModel().fit(planted).score(users)
    want = normalize_scores(knn, "zscore") + normalize_scores(pop, "zscore")
    np.testing.assert_allclose(blend.score(users), want, rtol=1e-5, atol=1e-5)


def test_fallback_chain_orders_by_first_opinion_then_fills(planted):
    chain = BlendModel(combine="fallback", components=[{"model": KNN}, {"model": POP}]).fit(planted)
    users = np.arange(planted.n_users)
    knn = ItemKNNModel(neighbors=5).fit(planted)
    top = chain.recommend(users, 20, exclude=planted.interactions)
    knn_scores = knn.score(users)
    for u, row in zip(users, top.items, strict=True):
        assert (row >= 0).all()  # popularity at the end: always K items
        s = knn_scores[u, row]
        opinion = s > knn_scores[u].min()
        # every item kNN has an opinion about comes before every filled-in item
        if opinion.any() and (~opinion).any():
            assert np.nonzero(opinion)[0].max() < np.nonzero(~opinion)[0].min()


def test_min_history_skips_a_component_for_short_histories(planted):
    blend = BlendModel(combine="fallback", components=[{"model": KNN, "min_history": 100}, {"model": POP}]).fit(planted)
    pop = PopularityModel().fit(planted)
    users = np.arange(10)
    np.testing.assert_array_equal(
        blend.recommend(users, 5, exclude=planted.interactions).items,
        pop.recommend(users, 5, exclude=planted.interactions).items,
    )


def test_capabilities_follow_the_components():
    content_and_pop = BlendModel(components=[{"model": {"kind": "content"}}, {"model": POP}])
    assert content_and_pop.needs_item_features and content_and_pop.supports_cold_items
    assert content_and_pop.supports_incremental and content_and_pop.supports_item_history
    with_ease = BlendModel(components=[{"model": {"kind": "ease"}}, {"model": POP}])
    assert not with_ease.supports_incremental and not with_ease.supports_cold_items


def test_component_config_is_validated_and_filled():
    cfg = BlendConfig.model_validate({"kind": "blend", "components": [{"model": {"kind": "lightfm", "epochs": 3}}]})
    assert cfg.components[0].model["no_components"] == 32  # defaults filled for the manifest
    with pytest.raises(ValidationError, match="no_components"):
        BlendConfig.model_validate(
            {"kind": "blend", "components": [{"model": {"kind": "lightfm", "no_components": 0}}]}
        )
    with pytest.raises(ValidationError, match="unknown model kind 'lightfn'.*did you mean 'lightfm'"):
        BlendConfig.model_validate({"kind": "blend", "components": [{"model": {"kind": "lightfn"}}]})
    with pytest.raises(ValidationError, match="at least 1"):
        BlendConfig.model_validate({"kind": "blend", "components": []})


def test_blend_errors_name_the_yaml_key():
    raw = {
        "data": {
            "interactions": {
                "path": "events.csv",
                "columns": {
                    "user_id": "u",
                    "item_id": "i",
                    "event": "e",
                    "timestamp": "t",
                    "value": "v",
                },
            }
        },
        "models": {
            "mix": {
                "kind": "blend",
                "components": [{"weight": 1, "model": {"kind": "item_knn", "neigbors": 5}}],
            }
        },
    }
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, check_files=False)
    message = str(info.value)
    assert "models.mix.components.0.model" in message and "neigbors" in message


def test_blend_seed_reaches_components(planted):
    blend = BlendModel(random_state=11, components=[{"model": {"kind": "lightfm", "epochs": 1}}])
    assert blend.components_[0].config.random_state == 11
    own = BlendModel(random_state=11, components=[{"model": {"kind": "lightfm", "epochs": 1, "random_state": 2}}])
    assert own.components_[0].config.random_state == 2
