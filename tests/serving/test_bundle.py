"""The serving bundle: plain arrays + JSON, answers equal to the nightly lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recctl.columns import Columns
from recctl.config import load_config
from recctl.errors import ArtifactError, DataError
from recctl.serving import load
from recctl.stages.export import run_serve_export
from recctl.stages.recommend import run_recommend
from tests.serving.conftest import build_workdir, make_config


@pytest.fixture
def bundle_config(shop_config: Path) -> Path:
    cfg = load_config(shop_config)
    run_recommend(cfg)
    run_serve_export(cfg, date="2026-04-01")
    return shop_config


def test_bundle_is_plain_files_and_matches_the_export(bundle_config: Path, shop: dict[str, pl.DataFrame]) -> None:
    cfg = load_config(bundle_config)
    directory = cfg.stage_dir("export") / "bundle"
    assert not [p for p in directory.iterdir() if p.suffix not in (".json", ".npy")]
    for npy in directory.glob("*.npy"):
        np.load(npy, allow_pickle=False)  # no object arrays anywhere
    bundle = load(directory)
    recs = pl.read_parquet(cfg.stage_dir("recommend") / "recommendations.parquet")
    for user, group in recs.group_by(Columns.User, maintain_order=True):
        got = bundle.recommend(user[0])
        assert [r["item_id"] for r in got] == group[Columns.Item].to_list()
        assert [r["source"] for r in got] == group[Columns.Source].to_list()
    meta = json.loads((directory / "bundle.json").read_text())
    assert meta["model"] == "knn" and meta["k"] == 5 and meta["fallback_from"] == "popular"
    assert meta["neighbors_from"] == "knn"


def test_bundle_answers_exclusions_unknown_users_and_items(bundle_config: Path, shop: dict[str, pl.DataFrame]) -> None:
    cfg = load_config(bundle_config)
    bundle = load(cfg.stage_dir("export") / "bundle")
    first = [r["item_id"] for r in bundle.recommend("U001")]
    again = bundle.recommend("U001", 5, exclude=first[:2])
    assert len(again) == 5 and not set(first[:2]) & {r["item_id"] for r in again}
    history = shop["events"].filter(pl.col(Columns.UserIdx) == 1).join(shop["items"], on=Columns.ItemIdx)
    assert not set(history[Columns.Item].to_list()) & {r["item_id"] for r in again}  # backfill skips history
    new = bundle.recommend("NOBODY", 4)
    assert [r["source"] for r in new] == ["popular"] * 4
    visitor = bundle.recommend(None, 4, items=["P001", "P002"])
    assert len(visitor) == 4 and not {"P001", "P002"} & {r["item_id"] for r in visitor}
    sim = bundle.similar("P001", 3)
    assert len(sim) == 3 and "P001" not in [r["item_id"] for r in sim]
    with pytest.raises(DataError, match="unknown item id 'NOPE'"):
        bundle.similar("NOPE")


def test_tampered_bundle_is_refused(bundle_config: Path) -> None:
    directory = load_config(bundle_config).stage_dir("export") / "bundle"
    np.save(directory / "user_items.npy", np.zeros((1, 1), np.int32))
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        load(directory)
    with pytest.raises(ArtifactError, match="no serving bundle here"):
        load(directory.parent / "nothing")


def test_holdout_users_get_nothing(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        experiment={
            "name": "e",
            "salt": "s",
            "control": "a",
            "holdout": 0.3,
            "variants": {"a": {"model": "popular", "weight": 1}, "b": {"model": "knn", "weight": 1}},
        },
    )
    build_workdir(config)
    cfg = load_config(config)
    run_recommend(cfg)
    run_serve_export(cfg, date="2026-04-01")
    bundle = load(cfg.stage_dir("export") / "bundle")
    assign = pl.read_parquet(cfg.stage_dir("recommend") / "assignments.parquet")
    held = assign.filter(pl.col(Columns.Variant) == "holdout")[Columns.User].to_list()
    assert held and all(bundle.recommend(u) == [] for u in held)


def test_neighbours_masked_first_equal_the_old_over_fetch(tmp_path: Path) -> None:
    """Issue 18's finding: masking before selection and asking for L gives the lists the bundle
    used to get by asking for L + (number of masked items) and dropping the masked ones."""
    from recctl.stages.bundle import item_neighbors
    from recctl.stages.recommend import load_serving

    config = make_config(tmp_path, recommend={"rules": {"in_stock_column": "in_stock", "require_price": True}})
    build_workdir(config)
    serving = load_serving(load_config(config))
    builder = serving.builder()
    (items, scores), name = item_neighbors(builder, 6, n_jobs=1)
    assert name == "knn"
    mask = serving.rules.item_mask
    model = serving.models["knn"]
    wide = model.similar_items(np.arange(serving.n_items), 6 + int((~mask).sum()))
    for row in range(serving.n_items):
        keep = [(i, s) for i, s in zip(wide.items[row], wide.scores[row], strict=True) if i >= 0 and mask[i]][:6]
        assert items[row].tolist() == [i for i, _ in keep]
        np.testing.assert_allclose(scores[row], [s for _, s in keep], rtol=1e-6)


def test_lists_from_frame_places_rows_and_drops_unknown_ids() -> None:
    """The nightly rows land at their user's row and rank, the same whether users are found by
    their runs (every user, in order) or looked up; rows of unknown users, items or sources are
    dropped."""
    from recctl.stages.bundle import lists_from_frame

    users = pl.Series(["a", "b", "c", "d"])
    items = pl.Series(["p2", "p0", "p1"])  # catalogue order is not id order
    recs = pl.DataFrame(
        {
            Columns.User: ["a", "a", "c", "d", "d"],
            Columns.Rank: [1, 2, 1, 1, 2],
            Columns.Item: ["p1", "p2", "p0", "p2", "p1"],
            Columns.Score: [0.9, 0.5, 0.7, 0.3, 0.2],
            Columns.Source: ["knn", "popular", "knn", "popular", "popular"],
        }
    ).with_columns(pl.col(Columns.Rank).cast(pl.Int32), pl.col(Columns.Score).cast(pl.Float32))
    fast = lists_from_frame(recs, users, items, 2, ["knn", "popular"])
    assert fast.items.tolist() == [[2, 0], [-1, -1], [1, -1], [0, 2]]
    # every user has rows (each id looked up once, by position): the same as without user "b"
    every = lists_from_frame(
        recs.filter(pl.col(Columns.User) != "b"), users.filter(users != "b"), items, 2, ["knn", "popular"]
    )
    np.testing.assert_array_equal(every.items, fast.items[[0, 2, 3]])
    assert fast.sources.tolist() == [[0, 1], [-1, -1], [0, -1], [1, 1]]
    np.testing.assert_allclose(fast.scores[0], [0.9, 0.5])
    for extra in (
        {Columns.User: "zz", Columns.Item: "p0", Columns.Source: "knn"},  # unknown user
        {Columns.User: "b", Columns.Item: "GHOST", Columns.Source: "knn"},  # unknown item
        {Columns.User: "b", Columns.Item: "p0", Columns.Source: "other"},  # unknown source
    ):
        row = pl.DataFrame({**extra, Columns.Rank: 1, Columns.Score: 1.0}).select(recs.columns).cast(recs.schema)
        joined = lists_from_frame(pl.concat([recs, row]).sort(Columns.User), users, items, 2, ["knn", "popular"])
        np.testing.assert_array_equal(joined.items, fast.items)
        np.testing.assert_array_equal(joined.sources, fast.sources)
        np.testing.assert_array_equal(joined.scores, fast.scores)


def test_similar_lists_equal_to_the_neighbours_head_are_stored_once(bundle_config: Path) -> None:
    """Without list rules that re-rank, each item's similar list is its first K neighbours: the
    bundle stores them once and answers exactly what ``--similar-to`` does, for every item."""
    from recctl.stages.recommend import similar_items

    cfg = load_config(bundle_config)
    directory = cfg.stage_dir("export") / "bundle"
    meta = json.loads((directory / "bundle.json").read_text())
    assert meta["similar"] == "neighbors" and meta["similar_k"] == meta["k"]
    assert not any(name.startswith("similar_") for name in meta["files"])
    bundle = load(directory)
    assert bundle.similar_items is not None and bundle.neighbors is not None
    np.testing.assert_array_equal(bundle.similar_items, bundle.neighbors[:, : meta["k"]])
    for item in bundle.item_ids:
        frame = similar_items(cfg, item)
        assert list(zip(frame[Columns.Item], frame[Columns.Source], strict=True)) == [
            (r["item_id"], r["source"]) for r in bundle.similar(item)
        ], item


def test_neighbour_table_derived_at_load_equals_the_stored_one(tmp_path: Path) -> None:
    """The kNN's neighbour table is not written: ``load`` derives it from the live similarity the
    bundle holds, and it equals the table the bundle used to store (masked by the item rules)."""
    from recctl.stages.bundle import NEIGHBORS_PER_ITEM, item_neighbors
    from recctl.stages.recommend import load_serving

    config = make_config(tmp_path, recommend={"rules": {"in_stock_column": "in_stock", "require_price": True}})
    build_workdir(config)
    cfg = load_config(config)
    run_recommend(cfg)
    run_serve_export(cfg, date="2026-04-01")
    directory = cfg.stage_dir("export") / "bundle"
    meta = json.loads((directory / "bundle.json").read_text())
    serving = load_serving(cfg)
    length = min(serving.n_items, NEIGHBORS_PER_ITEM)
    assert meta["version"] == 3 and meta["neighbors"] == {"live": "knn", "length": length}
    assert "item_neighbors.npy" not in meta["files"] and not (directory / "item_neighbors.npy").exists()
    (items, scores), _ = item_neighbors(serving.builder(), length, n_jobs=1)
    assert serving.rules.item_mask is not None and not serving.rules.item_mask.all()
    bundle = load(directory)
    assert bundle.neighbors is not None and bundle.neighbor_scores is not None
    np.testing.assert_array_equal(bundle.neighbors, items.astype(np.int32))
    np.testing.assert_array_equal(bundle.neighbor_scores, scores.astype(np.float32))

    # a version-2 bundle (the table stored, no "neighbors" entry) still loads, to the same answers
    old = tmp_path / "v2"
    old.mkdir()
    for path in directory.iterdir():
        (old / path.name).write_bytes(path.read_bytes())
    np.save(old / "item_neighbors.npy", items.astype(np.int32))
    np.save(old / "item_neighbor_scores.npy", scores.astype(np.float32))
    from recctl.artifacts import sha256_file

    files = {**meta["files"], **{n: sha256_file(old / n) for n in ("item_neighbors.npy", "item_neighbor_scores.npy")}}
    v2 = {key: value for key, value in meta.items() if key != "neighbors"}
    (old / "bundle.json").write_text(json.dumps({**v2, "version": 2, "files": files}))
    before = load(old)
    np.testing.assert_array_equal(before.neighbors, bundle.neighbors)
    for item in bundle.item_ids[:20]:
        assert before.similar(item) == bundle.similar(item)
        assert before.recommend(None, 4, items=[item]) == bundle.recommend(None, 4, items=[item])
    (old / "bundle.json").write_text(json.dumps({**v2, "version": 1, "files": files}))
    with pytest.raises(ArtifactError, match="reads recctl-serving-bundle versions 2, 3"):
        load(old)


def test_which_neighbour_tables_are_derived_at_load() -> None:
    """Only an item kNN's table (the chain's first model with similarity, its rows in the bundle)
    is left to ``load``; the similar lists are its head unless list rules re-rank them or a
    list could be short while another model could fill it."""
    from types import SimpleNamespace

    import scipy.sparse as sp

    from recctl.lists.live import LiveState
    from recctl.stages.bundle import derived_neighbors

    sim = sp.csr_matrix(np.array([[0, 0.5, 0], [0.5, 0, 0.2], [0, 0.2, 0]], np.float32))
    state = LiveState("similarity", {}, {"sim_data": sim.data})

    def model(kind: str, similar: bool = True, stored: bool = True) -> SimpleNamespace:
        return SimpleNamespace(
            kind=kind, supports_similar_items=similar, stored_similarity=lambda: sim if stored else None
        )

    def builder(chain: list, mask: np.ndarray | None = None, reranks: bool = False) -> SimpleNamespace:
        return SimpleNamespace(chain=chain, n_items=3, item_mask=mask, rules=SimpleNamespace(reranks=reranks))

    knn, rp3, als = model("item_knn"), model("rp3beta"), model("als", similar=False)
    ease = model("ease", stored=False)  # similar items from dense rows: nothing stored to derive from
    live = {"knn": state, "rp3": state, "ease": LiveState("ease", {}, {})}
    got = derived_neighbors(builder([("als", als), ("knn", knn)]), live, 3, 2)
    assert got is not None and (got.live, got.length, got.similar_k, got.similar_sources) == ("knn", 3, 2, ["knn"])
    walk = derived_neighbors(builder([("rp3", rp3), ("knn", knn)]), live, 3, 2)  # RP3beta's stored top-N rows
    assert walk is not None and (walk.live, walk.similar_sources) == ("rp3", ["rp3", "knn"])
    assert derived_neighbors(builder([("ease", ease), ("knn", knn)]), live, 3, 2) is None
    assert derived_neighbors(builder([("knn", knn)]), {}, 3, 2) is None  # no live rows to derive from
    reranked = derived_neighbors(builder([("knn", knn)], reranks=True), live, 3, 2)
    assert reranked is not None and reranked.similar_k is None
    short = builder([("knn", knn), ("rp3", rp3)], mask=np.array([True, True, False]))  # 1 allowed neighbour < k
    cut = derived_neighbors(short, live, 3, 2)
    assert cut is not None and cut.similar_k is None
    alone = builder([("knn", knn)], mask=np.array([True, True, False]))
    single = derived_neighbors(alone, live, 3, 2)
    assert single is not None and single.similar_k == 2
