"""Item embeddings as features: the two file layouts, their checks, and the models that use them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recctl.columns import Columns
from recctl.config.preprocess import ItemEmbeddingsConfig
from recctl.data.dataset import load_dataset
from recctl.data.embeddings import load_item_embeddings
from recctl.errors import ConfigError, DataError
from recctl.models.content import ContentModel
from recctl.models.lightfm_model import LightFMModel
from recctl.stages.ingest import run_ingest
from recctl.stages.preprocess import run_preprocess
from tests.data.conftest import make_config, shop_source

CATALOGUE = pl.Series(["a", "b", "c"])


def _parquet(tmp_path: Path, ids: list[str], vectors: list[list[float] | None], name: str = "v.parquet") -> Path:
    path = tmp_path / name
    pl.DataFrame(
        {"item_id": ids, "embedding": vectors}, schema_overrides={"embedding": pl.List(pl.Float32)}
    ).write_parquet(path)
    return path


def test_parquet_vectors_align_with_the_catalogue(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _parquet(tmp_path, ["c", "a", "zz"], [[3.0, 4.0], [1.0, 0.0], [0.0, 1.0]])
    with caplog.at_level(logging.WARNING):
        block, info = load_item_embeddings(ItemEmbeddingsConfig(path=str(path), weight=2.0), path, None, CATALOGUE)
    np.testing.assert_allclose(block, [[2.0, 0.0], [0.0, 0.0], [1.2, 1.6]], atol=1e-6)
    assert info == {"dim": 2, "n_vectors": 3, "n_items_with_vector": 2, "n_items_without_vector": 1, "n_unknown_ids": 1}
    assert "1 of 3 catalogue items have no vector" in caplog.text


def test_npy_with_an_id_file(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 5.0]], dtype=np.float64))
    (tmp_path / "ids.txt").write_text("b\na\n", encoding="utf-8")
    cfg = ItemEmbeddingsConfig(path="v.npy", ids="ids.txt", normalise=False)
    block, info = load_item_embeddings(cfg, tmp_path / "v.npy", tmp_path / "ids.txt", CATALOGUE)
    assert block.dtype == np.float32 and block.shape == (3, 3)
    np.testing.assert_array_equal(block, [[0, 0, 5], [1, 2, 2], [0, 0, 0]])
    assert info["n_items_with_vector"] == 2


@pytest.mark.parametrize(
    ("ids", "vectors", "error", "message"),
    [
        (["a", "b", "c"], [[1.0, 2.0], [1.0], [3.0, 4.0]], DataError, r"row 1 \(id 'b'\) has 1 value"),
        (["a", "b", "c"], [[1.0, 2.0], None, [3.0, 4.0]], DataError, r"row 1 \(id 'b'\) has 0 value"),
        (["a", "a"], [[1.0, 2.0], [1.0, 3.0]], DataError, r"'a' at rows 0, 1"),
        (["a", "b"], [[1.0, float("nan")], [1.0, 3.0]], DataError, r"NaN or infinite.*row 0, id 'a'"),
        (["x", "y"], [[1.0, 2.0], [1.0, 3.0]], DataError, r"none of its 2 ids is a catalogue item id"),
    ],
)
def test_bad_parquet_files_name_the_row(tmp_path: Path, ids, vectors, error, message) -> None:  # noqa: ANN001
    path = _parquet(tmp_path, ids, vectors)
    with pytest.raises(error, match=message) as info:
        load_item_embeddings(ItemEmbeddingsConfig(path=str(path)), path, None, CATALOGUE)
    assert str(path) in str(info.value)


def test_bad_layouts_say_what_to_do(tmp_path: Path) -> None:
    path = _parquet(tmp_path, ["a"], [[1.0]])
    with pytest.raises(ConfigError, match=r"vector_column: column 'vec' is not in v.parquet"):
        load_item_embeddings(ItemEmbeddingsConfig(path="v.parquet", vector_column="vec"), path, None, CATALOGUE)
    pl.DataFrame({"item_id": ["a"], "embedding": ["1,2"]}).write_parquet(tmp_path / "s.parquet")
    with pytest.raises(DataError, match="not a list of floats"):
        load_item_embeddings(ItemEmbeddingsConfig(path="s.parquet"), tmp_path / "s.parquet", None, CATALOGUE)
    np.save(tmp_path / "v.npy", np.ones((3, 4), np.float32))
    with pytest.raises(ConfigError, match=r"item_embeddings.ids: an .npy array needs an id file"):
        load_item_embeddings(ItemEmbeddingsConfig(path="v.npy"), tmp_path / "v.npy", None, CATALOGUE)
    (tmp_path / "ids.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"2 id\(s\) for the 3 rows of v.npy"):
        load_item_embeddings(
            ItemEmbeddingsConfig(path="v.npy", ids="ids.txt"), tmp_path / "v.npy", tmp_path / "ids.txt", CATALOGUE
        )
    np.save(tmp_path / "flat.npy", np.ones(3, np.float32))
    with pytest.raises(DataError, match=r"expected a 2-D array .* shape \(3,\)"):
        load_item_embeddings(
            ItemEmbeddingsConfig(path="f.npy", ids="ids.txt"), tmp_path / "flat.npy", tmp_path / "ids.txt", CATALOGUE
        )
    (tmp_path / "v.csv").write_text("x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unsupported format '.csv'"):
        load_item_embeddings(ItemEmbeddingsConfig(path="v.csv"), tmp_path / "v.csv", None, CATALOGUE)


def test_preprocess_adds_the_block_and_models_use_it(tmp_path: Path, small_shop: Path) -> None:
    products = pl.read_csv(small_shop / "products.csv")
    # a "text embedding": the category, one-hot, plus noise; one item left without a vector
    cats = sorted(products["category"].unique().to_list())
    rng = np.random.default_rng(0)
    onehot = np.eye(len(cats), dtype=np.float32)[[cats.index(c) for c in products["category"]]]
    vectors = onehot + 0.01 * rng.standard_normal(onehot.shape).astype(np.float32)
    ids = products["product_id"].to_list()
    _parquet(tmp_path, ids[1:], [list(map(float, v)) for v in vectors[1:]], name="vectors.parquet")
    cfg = make_config(
        tmp_path,
        shop_source(str(small_shop / "events.csv")),
        items={"path": str(small_shop / "products.csv"), "id_column": "product_id"},
        preprocess={
            "event_weights": {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
            "features": {"item_categorical": ["brand"], "item_embeddings": {"path": "vectors.parquet", "weight": 3.0}},
        },
    )
    run_ingest(cfg)
    manifest = run_preprocess(cfg)
    info = manifest.summary["features"]["item_embeddings"]
    assert info["dim"] == len(cats) and info["n_items_without_vector"] >= 0
    assert any(rec.path.endswith("vectors.parquet") for rec in manifest.inputs)
    data = load_dataset(cfg.stage_dir("preprocess"))
    names = data.item_feature_names
    emb_cols = [i for i, n in enumerate(names) if n.startswith("embedding:")]
    assert len(emb_cols) == len(cats) and any(n.startswith("brand=") for n in names)
    items = pl.read_parquet(cfg.stage_dir("preprocess") / "items.parquet")
    block = data.item_features[:, emb_cols].toarray()
    # an item of the largest category (its neighbours can all share it)
    pick = products["category"].to_list().index(products["category"].mode().sort()[0], 1)
    row = items.filter(pl.col(Columns.Item) == ids[pick])[Columns.ItemIdx][0]
    np.testing.assert_allclose(block[row], 3 * vectors[pick] / np.linalg.norm(vectors[pick]), atol=1e-5)
    # content: an item's nearest neighbours share its category (what the vectors encode)
    content = ContentModel().fit(data)
    sims = content._similar_items(np.array([row]))[0]
    sims[row] = -np.inf
    cat_of = dict(zip(items[Columns.Item].to_list(), items["category"].to_list(), strict=True))
    by_idx = items.sort(Columns.ItemIdx)[Columns.Item].to_list()
    top = np.argsort(-sims)[:3]
    assert all(cat_of[by_idx[t]] == cat_of[ids[pick]] for t in top)
    lightfm = LightFMModel(item_features=True, epochs=2, no_components=8, random_state=0).fit(data)
    assert lightfm.score(np.array([0])).shape == (1, data.n_items)


def test_missing_embedding_file_is_a_config_error(tmp_path: Path, small_shop: Path) -> None:
    cfg = make_config(
        tmp_path,
        shop_source(str(small_shop / "events.csv")),
        items={"path": str(small_shop / "products.csv"), "id_column": "product_id"},
        preprocess={
            "event_weights": {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
            "features": {"item_embeddings": {"path": "nowhere.npy", "ids": "ids.txt"}},
        },
    )
    run_ingest(cfg)
    with pytest.raises(ConfigError, match=r"item_embeddings.path: file not found: .*nowhere.npy"):
        run_preprocess(cfg)
