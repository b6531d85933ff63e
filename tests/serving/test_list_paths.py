"""Every path to a list gives the same list, and none repeats what the user had (issue 15, items 1, 2, 5).

The shipped sample shop goes through the real ingest / preprocess / train, with a customer file
that names customers without events and a crawler who saw almost everything. Paths compared
for **every** customer: the nightly file (and ``recommendations.parquet``), ``recommend
--users``, the serving bundle, the list builder called one user at a time (the HTTP service's
call) and on a pickled copy (a Spark task's), plus ``--similar-to`` against the bundle for every
item. Each list is checked against the user's full history, recomputed here from the raw CSV.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.columns import Columns
from recctl.config import load_config
from recctl.lists import Request
from recctl.serving import load
from recctl.stages.recommend import load_audience, load_serving, similar_items
from tests.conftest import write_config

pytestmark = pytest.mark.slow
runner = CliRunner()

K = 6
NEW_CUSTOMERS = ["C90001", "C90002", "-5", "=1+1"]


def ok(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    tmp = tmp_path_factory.mktemp("paths")
    sample = repo_root / "sample_data"
    events = pl.read_csv(sample / "events.csv", infer_schema=False)
    products = pl.read_csv(sample / "products.csv", infer_schema=False)
    # a staff account that bought every product but three (purchases are what is excluded)
    keep = products["product_id"].sort().to_list()[-3:]
    crawl = pl.DataFrame(
        {
            "customer_id": "CRAWLER",
            "product_id": [p for p in products["product_id"].to_list() if p not in keep],
            "event_type": "purchase",
            "event_time": "2026-03-01 10:00:00",
            "quantity": "1",
        }
    )
    pl.concat([events, crawl.select(events.columns)]).write_csv(tmp / "events.csv")
    customers = pl.read_csv(sample / "customers.csv", infer_schema=False)
    extra = pl.DataFrame({"customer_id": NEW_CUSTOMERS, "country": "France", "segment": "new"})
    pl.concat([customers, extra]).write_csv(tmp / "customers.csv")
    config = write_config(
        tmp,
        models={"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 30}},
        recommend={
            "model": "knn",
            "k": K,
            "fallback": ["popular"],
            "min_score": 0.0,  # weak kNN evidence goes to the fallback: both sources fill lists
            "rules": {
                "exclude_events": ["purchase"],
                "in_stock_column": "in_stock",
                "category_cap": {"column": "category", "max_per_list": 3},
            },
        },
        evaluate=None,
        tune=None,
    )
    text = config.read_text()
    text = text.replace(str((sample / "events.csv").resolve()), str(tmp / "events.csv"))
    text = text.replace(str((sample / "customers.csv").resolve()), str(tmp / "customers.csv"))
    config.write_text(text)
    for command in ("ingest", "preprocess", "train", "recommend"):
        ok(command, config, "-q")
    ok("serve-export", config, "--date", "2026-06-01", "-q")
    cfg = load_config(config)
    history = pl.concat([events, crawl.select(events.columns)])
    in_stock = products.filter(pl.col("product_id").is_in(keep) & (pl.col("in_stock") == "true"))
    return {
        "config": config,
        "cfg": cfg,
        "history": history,
        "customers": pl.concat([customers, extra]),
        "crawler_can_get": sorted(in_stock["product_id"].to_list()),
    }


def _lists(frame: pl.DataFrame) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for user, item, source in (
        frame.sort(Columns.User, Columns.Rank).select(Columns.User, Columns.Item, Columns.Source).iter_rows()
    ):
        out.setdefault(user, []).append((item, source))
    return out


def test_every_customer_is_in_the_file(shop: dict) -> None:
    cfg = shop["cfg"]
    published = pl.read_csv(cfg.workdir_path / "exports" / "recommendations_2026-06-01.csv", infer_schema=False)
    unquoted = published[Columns.User].str.replace(r"^'([=+\-@\t\r])", "$1")
    named = pl.concat([shop["history"]["customer_id"], shop["customers"]["customer_id"]]).drop_nulls()
    everyone = set(named.str.strip_chars().filter(named.str.strip_chars() != "").to_list())
    assert set(unquoted.to_list()) == everyone
    per_user = published.group_by(Columns.User).len()
    assert per_user.filter(pl.col("len") != K)[Columns.User].to_list() == ["CRAWLER"]
    crawler = published.filter(pl.col(Columns.User) == "CRAWLER")[Columns.Item].sort().to_list()
    assert crawler == shop["crawler_can_get"]  # every eligible item, nothing else
    short = pl.read_csv(cfg.workdir_path / "exports" / "recommendations_short_lists_2026-06-01.csv")
    assert short.rows() == [("CRAWLER", len(crawler), len(crawler))]


def test_no_list_repeats_a_purchase_on_any_path(shop: dict) -> None:
    cfg = shop["cfg"]
    bought = shop["history"].filter(pl.col("event_type") == "purchase")
    bought_pairs = set(bought.select("customer_id", "product_id").iter_rows())
    recs = pl.read_parquet(cfg.stage_dir("recommend") / "recommendations.parquet")
    assert not set(recs.select(Columns.User, Columns.Item).iter_rows()) & bought_pairs
    users_path = (
        pl.read_parquet(cfg.stage_dir("recommend-users") / "recommendations.parquet")
        if (cfg.stage_dir("recommend-users") / "recommendations.parquet").exists()
        else recs
    )
    assert not set(users_path.select(Columns.User, Columns.Item).iter_rows()) & bought_pairs
    # C12277's events all fall in the test window (dropped from training): served from their
    # history, and P0925, which they bought, never comes back (the example)
    assert ("C12277", "P0925") in bought_pairs
    assert "P0925" not in recs.filter(pl.col(Columns.User) == "C12277")[Columns.Item].to_list()
    # anonymous baskets: the basket's items never come back
    for user in bought["customer_id"].unique().sort().to_list()[:20]:
        basket = sorted({p for u, p in bought_pairs if u == user})
        result = runner.invoke(app, ["recommend", str(shop["config"]), "--items", ",".join(basket), "--json"])
        assert result.exit_code == 0, result.output
        assert not {r["item_id"] for r in json.loads(result.stdout)["items"]} & set(basket)
    bundle = load(cfg.stage_dir("export") / "bundle")
    buyers = bought["customer_id"].unique().sort().to_list()[:300]
    for user in buyers:
        mine = {p for u, p in bought_pairs if u == user}
        answer = bundle.recommend(user, K, exclude=[r["item_id"] for r in bundle.recommend(user)[:3]])
        assert not {r["item_id"] for r in answer} & mine, user


def test_all_paths_give_the_same_list_for_every_customer(shop: dict) -> None:
    cfg, config = shop["cfg"], shop["config"]
    nightly = _lists(pl.read_parquet(cfg.stage_dir("recommend") / "recommendations.parquet"))
    assert len(nightly) == shop["customers"].height + 1  # + the crawler, who is no customer-file row
    # --users for everyone, through the CLI's library call
    users = sorted(nightly)
    ok("recommend", config, "--users", ",".join(users), "-q")
    assert _lists(pl.read_parquet(cfg.stage_dir("recommend-users") / "recommendations.parquet")) == nightly
    # the serving bundle
    bundle = load(cfg.stage_dir("export") / "bundle")
    for user in users:
        assert [(r["item_id"], r["source"]) for r in bundle.recommend(user)] == nightly[user], user
    # the builder one user at a time (an HTTP handler) and on a pickled copy (a Spark task)
    serving = load_serving(cfg)
    audience = load_audience(cfg, serving)
    builder = serving.builder()
    shipped = pickle.loads(pickle.dumps(builder))
    ids = serving.item_ids.to_list()
    for pos, user in enumerate(audience.user_ids.to_list()):
        request = audience.request(pos, pos + 1)
        single = builder.build(
            Request.for_user(
                int(request.rows[0]),
                serving.n_items,
                basket=request.basket.indices.tolist(),
                exclude=request.exclude.indices.tolist(),
            )
        )
        got = [
            (ids[i], single.source_names[s]) for i, s in zip(single.items[0], single.sources[0], strict=True) if i >= 0
        ]
        assert got == nightly[user], user
    block = shipped.build(audience.request(0, 500))
    for row, user in enumerate(audience.user_ids.to_list()[:500]):
        got = [
            (ids[i], block.source_names[s]) for i, s in zip(block.items[row], block.sources[row], strict=True) if i >= 0
        ]
        assert got == nightly[user], user


def test_new_ids_and_customer_file_only_customers_get_the_no_history_list(shop: dict) -> None:
    cfg = shop["cfg"]
    nightly = _lists(pl.read_parquet(cfg.stage_dir("recommend") / "recommendations.parquet"))
    bundle = load(cfg.stage_dir("export") / "bundle")
    cold = nightly["C90001"]
    assert {s for _, s in cold} == {"popular"} and len(cold) == K
    assert all(nightly[u] == cold for u in NEW_CUSTOMERS)
    assert [(r["item_id"], r["source"]) for r in bundle.recommend("SOMEONE-NEW")] == cold


def test_similar_to_equals_the_bundle_for_every_item(shop: dict) -> None:
    cfg = shop["cfg"]
    bundle = load(cfg.stage_dir("export") / "bundle")
    items = bundle.item_ids
    rng = np.random.default_rng(0)
    for item in rng.choice(items, size=60, replace=False):
        frame = similar_items(cfg, str(item))
        assert list(zip(frame[Columns.Item], frame[Columns.Source], strict=True)) == [
            (r["item_id"], r["source"]) for r in bundle.similar(str(item))
        ]
        assert str(item) not in frame[Columns.Item].to_list()


def test_the_cached_audience_is_the_one_built_from_the_inputs(shop: dict) -> None:
    """recommend leaves the audience for serve-export; read back it equals a fresh build, and a
    cache whose key no longer matches its inputs is rebuilt, never used."""
    from recctl.stages.recommend import _audience_cache_path

    cfg = shop["cfg"]
    path = _audience_cache_path(cfg)
    assert path.exists()
    serving = load_serving(cfg)
    built = load_audience(cfg, serving)
    cached = load_audience(cfg, serving, cache=True)
    assert cached.user_ids.to_list() == built.user_ids.to_list()
    assert "=1+1" in cached.user_ids.to_list()  # customer-file-only ids too
    np.testing.assert_array_equal(cached.rows, built.rows)
    np.testing.assert_array_equal(cached.has_events, built.has_events)
    assert built.exclude is not None and cached.exclude is not None  # purchases only: not the history
    for a, b in ((cached.history, built.history), (cached.exclude, built.exclude)):
        assert a.shape == b.shape and (a != b).nnz == 0
    # a stale key (as after a new ingest) is not trusted: rebuilt and written again
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["key"] = np.array("0" * 64)
    arrays["rows"] = np.full_like(arrays["rows"], -1)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    again = load_audience(cfg, serving, cache=True)
    np.testing.assert_array_equal(again.rows, built.rows)
    with np.load(path) as data:
        assert str(data["key"]) != "0" * 64


def test_a_damaged_audience_cache_is_rebuilt_not_trusted(shop: dict, caplog: pytest.LogCaptureFixture) -> None:
    """A cache file cut short (a truncated zip) or not an npz at all is rebuilt with a warning."""
    from recctl.stages.recommend import _audience_cache_path

    cfg = shop["cfg"]
    path = _audience_cache_path(cfg)
    serving = load_serving(cfg)
    built = load_audience(cfg, serving)
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not a cache"):
        path.write_bytes(damaged)
        with caplog.at_level("WARNING"):
            again = load_audience(cfg, serving, cache=True)
        np.testing.assert_array_equal(again.rows, built.rows)
        assert "unreadable audience cache" in caplog.text
        caplog.clear()
        assert path.read_bytes() != damaged  # replaced by a good one
