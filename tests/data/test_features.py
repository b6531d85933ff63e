from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recctl.config.preprocess import FeaturesConfig
from recctl.data.features import build_features, item_feature_spec
from recctl.errors import ConfigError

ITEMS = pl.DataFrame(
    {
        "item_id": ["a", "b", "c", "d"],
        "category": ["x", "y", "x", None],
        "genres": ["Action|Comedy", "Comedy", None, "Drama|Action"],
        "price": [1.0, 2.0, 3.0, 40.0],
        "title": ["Red red mug", "Blue mug", "Red kite", "The tent"],
    }
)


def test_feature_blocks_shapes_and_names() -> None:
    cfg = FeaturesConfig(
        item_categorical=["category"],
        item_multi_valued={"genres": "|"},
        item_numeric_buckets={"price": 2},
        item_text=["title"],
        text_max_vocab=10,
        text_min_df=2,
    )
    matrix, names = build_features(
        ITEMS, item_feature_spec(cfg), key="preprocess.features", max_vocab=cfg.text_max_vocab, min_df=cfg.text_min_df
    )
    feature = names["feature"].to_list()
    assert feature == [
        "category=x",
        "category=y",
        "genres=Action",
        "genres=Comedy",
        "genres=Drama",
        "price:q1of2",
        "price:q2of2",
        "title:mug",
        "title:red",
    ]
    assert names["group"].to_list()[:2] == ["categorical", "categorical"]
    assert matrix.shape == (4, len(feature)) and matrix.dtype == np.float32
    dense = matrix.toarray()
    col = {f: i for i, f in enumerate(feature)}
    assert dense[0, col["genres=Action"]] == dense[0, col["genres=Comedy"]] == 1
    assert dense[3, col["category=x"]] == 0 and dense[3].sum() > 0  # missing category: no feature
    assert dense[:, col["price:q2of2"]].tolist() == [0, 0, 1, 1]
    text = dense[:, [col["title:mug"], col["title:red"]]]
    assert np.linalg.norm(text[0]) == pytest.approx(1.0)  # text block L2-normalised
    assert text[0, 1] > text[0, 0]  # "red" twice in item a
    assert text[3].sum() == 0  # "the" is a stop word, "tent" below min_df


def test_vocab_cap_keeps_most_frequent() -> None:
    matrix, names = build_features(ITEMS, [("text", "title", None)], key="k", max_vocab=1, min_df=1)
    assert names["feature"].to_list() == ["title:mug"] or names["feature"].to_list() == ["title:red"]
    assert matrix.shape == (4, 1)


def test_unknown_column_is_config_error() -> None:
    with pytest.raises(ConfigError, match="'colour' is not in the ingested table"):
        build_features(ITEMS, [("categorical", "colour", None)], key="preprocess.features")
