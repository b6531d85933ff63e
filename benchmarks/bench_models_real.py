"""Every recommendation strategy on the real datasets, side by side (issue 4, item 5).

Run: ``python -m benchmarks.bench_models_real [--datasets movielens retail] [--json]``
(needs ``../shared/data``; a few minutes on 2 cores, EASE is the slow one).

Two protocols, both built here from the raw files with polars so the numbers do not depend
on the pipeline's preprocess settings:

* **holdout**: 20% of each dataset's (user, item) pairs, drawn at random with a fixed seed,
  are the test split; the rest is training. Precision, recall, MAP and NDCG at 10 with the
  training items excluded from the ranking, through ``recctl.evaluation.evaluate_model``.
  Ratios are against popularity measured in the same run.
* **new items**: a time split at the 80th percentile of timestamps. Items whose first
  interaction is after the cut are *new*: they are in the catalogue (with their features)
  but have no training interaction. Recall@10 of those new items, for users who
  interacted with one in the test period, compares pure LightFM with the hybrid (item
  features: MovieLens genres, Online Retail description words) and the content model.

MovieLens: every rating is an interaction of weight 1. Online Retail: cleaned as the
dataset README says (customer present, no cancellations, quantity and price > 0); one
interaction per (customer, stock code) weighted by the number of invoice lines.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.data.dataset import Dataset, interactions_matrix
from recctl.evaluation.metrics import evaluate_model
from recctl.models.registry import get_model_class

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
K = 10
SEED = 42

#: the configurations measured (defaults unless a parameter is the point of the row)
STRATEGIES: dict[str, dict[str, Any]] = {
    "popularity": {"kind": "popularity"},
    "item_knn": {"kind": "item_knn"},
    "item_knn_bm25": {"kind": "item_knn", "weighting": "bm25", "bm25_b": 0.0, "normalize": False},
    "user_knn": {"kind": "user_knn"},
    "ease": {"kind": "ease", "l2": 500.0},
    "content": {"kind": "content"},
    "lightfm_warp": {"kind": "lightfm", "loss": "warp", "epochs": 30, "no_components": 64},
    "lightfm_bpr": {"kind": "lightfm", "loss": "bpr", "epochs": 30, "no_components": 64},
    "lightfm_logistic": {"kind": "lightfm", "loss": "logistic", "epochs": 30, "no_components": 64},
    "lightfm_warp_kos": {"kind": "lightfm", "loss": "warp-kos", "epochs": 30, "no_components": 64},
    "lightfm_hybrid": {
        "kind": "lightfm",
        "loss": "warp",
        "epochs": 30,
        "no_components": 64,
        "item_features": True,
    },
    "blend": {
        "kind": "blend",
        "components": [
            {"weight": 0.5, "model": {"kind": "ease", "l2": 500.0}},
            {"weight": 0.5, "model": {"kind": "item_knn"}},
        ],
    },
}


# -- data ------------------------------------------------------------------------------------
def _bag_of_words(item_ids: list[str], texts: dict[str, str], max_words: int = 2000) -> sp.csr_matrix:
    frame = pl.DataFrame({Columns.Item: item_ids, "text": [texts.get(i, "") for i in item_ids]})
    words = (
        frame.with_row_index("row")
        .with_columns(pl.col("text").str.to_lowercase().str.extract_all(r"[a-z]{3,}").alias("w"))
        .explode("w")
        .drop_nulls("w")
        .unique(["row", "w"])
    )
    vocab = words.group_by("w").len().sort(["len", "w"], descending=[True, False]).head(max_words)
    vocab = vocab.with_row_index("col")
    words = words.join(vocab.select("w", "col"), on="w")
    return sp.csr_matrix(
        (np.ones(words.height, np.float32), (words["row"].to_numpy(), words["col"].to_numpy())),
        shape=(len(item_ids), vocab.height),
    )


def load_movielens() -> tuple[pl.DataFrame, dict[str, str]]:
    """Interactions ``user_id, item_id, weight, ts`` and item text (genres)."""
    root = DATA / "ml-latest-small"
    ratings = pl.read_csv(root / "ratings.csv")
    frame = ratings.select(
        pl.col("userId").cast(pl.String).alias(Columns.User),
        pl.col("movieId").cast(pl.String).alias(Columns.Item),
        pl.lit(1.0).alias(Columns.Weight),
        pl.col("timestamp").alias("ts"),
    )
    movies = pl.read_csv(root / "movies.csv")
    genres = {
        str(m): g.replace("|", " ").replace("-", "") for m, g in zip(movies["movieId"], movies["genres"], strict=True)
    }
    return frame, genres


def load_retail() -> tuple[pl.DataFrame, dict[str, str]]:
    """Cleaned Online Retail interactions and item descriptions."""
    raw = pl.read_parquet(DATA / "online-retail" / "online_retail.parquet")
    clean = raw.filter(
        pl.col("CustomerID").is_not_null()
        & ~pl.col("InvoiceNo").str.starts_with("C")
        & (pl.col("Quantity") > 0)
        & (pl.col("UnitPrice") > 0)
    )
    frame = (
        clean.group_by(["CustomerID", "StockCode"])
        .agg(pl.len().cast(pl.Float64).alias(Columns.Weight), pl.col("InvoiceDate").min().dt.epoch("s").alias("ts"))
        .select(
            pl.col("CustomerID").cast(pl.Int64).cast(pl.String).alias(Columns.User),
            pl.col("StockCode").alias(Columns.Item),
            Columns.Weight,
            "ts",
        )
    )
    # group_by does not keep row order: sort, so the seeded holdout draws the same pairs
    frame = frame.sort([Columns.User, Columns.Item])
    desc = clean.group_by("StockCode").agg(pl.col("Description").drop_nulls().first())
    return frame, dict(zip(desc["StockCode"], desc["Description"].fill_null(""), strict=True))


def _dataset(frame: pl.DataFrame, users: list[str], items: list[str], feats: sp.csr_matrix) -> Dataset:
    ds = Dataset.from_frames(frame.select(Columns.User, Columns.Item, Columns.Weight), user_ids=users, item_ids=items)
    ds.item_features = feats
    return ds


def _target(frame: pl.DataFrame, users: list[str], items: list[str]) -> sp.csr_matrix:
    umap = pl.DataFrame({Columns.User: users, Columns.UserIdx: np.arange(len(users))})
    imap = pl.DataFrame({Columns.Item: items, Columns.ItemIdx: np.arange(len(items))})
    idx = frame.join(umap, on=Columns.User).join(imap, on=Columns.Item)
    return interactions_matrix(idx.with_columns(pl.lit(1.0).alias(Columns.Weight)), len(users), len(items))


# -- protocols -------------------------------------------------------------------------------
def holdout(name: str, frame: pl.DataFrame, texts: dict[str, str], only: list[str] | None) -> list[dict[str, Any]]:
    """Random 80/20 holdout: every strategy's metrics at 10."""
    users = sorted(frame[Columns.User].unique().to_list())
    items = sorted(frame[Columns.Item].unique().to_list())
    test_mask = np.random.default_rng(SEED).random(frame.height) < 0.2
    feats = _bag_of_words(items, texts)
    train = _dataset(frame.filter(~pl.Series(test_mask)), users, items, feats)
    target = _target(frame.filter(pl.Series(test_mask)), users, items)
    rows = []
    for label, params in STRATEGIES.items():
        if only and label not in only:
            continue
        model = get_model_class(params["kind"]).from_config({**params, **_seed(params)})
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate_model(
            model, target, exclude=train.interactions, ks=[K], metrics=["precision", "recall", "map", "ndcg"]
        )
        rows.append(
            {
                "dataset": name,
                "model": label,
                "fit_s": round(fit_s, 2),
                "eval_s": round(time.perf_counter() - t0, 2),
                "users": res.n_users,
                **{k: round(v, 4) for k, v in res.mean.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["model"] == "popularity"), None)
    for r in rows:
        if base and base[f"ndcg@{K}"]:
            r["ndcg_vs_popularity"] = round(r[f"ndcg@{K}"] / base[f"ndcg@{K}"], 2)
    return rows


def new_items(name: str, frame: pl.DataFrame, texts: dict[str, str]) -> list[dict[str, Any]]:
    """Time split; recall@10 of items first seen after the cut, pure vs hybrid vs content."""
    cut = frame["ts"].quantile(0.8)
    train_frame, test_frame = frame.filter(pl.col("ts") <= cut), frame.filter(pl.col("ts") > cut)
    users = sorted(train_frame[Columns.User].unique().to_list())
    items = sorted(frame[Columns.Item].unique().to_list())
    feats = _bag_of_words(items, texts)
    train = _dataset(train_frame, users, items, feats)
    warm = np.asarray(train.interactions.sum(axis=0)).ravel() > 0
    target = _target(test_frame, users, items)
    new_only = sp.csr_matrix(target.multiply(sp.csr_matrix((~warm).astype(np.float32))))
    new_only.eliminate_zeros()
    rows = []
    base = {"kind": "lightfm", "loss": "warp", "epochs": 30, "no_components": 64, "random_state": SEED}
    for label, params in [
        ("lightfm_pure", base),
        ("lightfm_hybrid", {**base, "item_features": True}),
        ("content", {"kind": "content"}),
    ]:
        model = get_model_class(params["kind"]).from_config(params).fit(train)
        res = evaluate_model(model, new_only, exclude=train.interactions, ks=[K], metrics=["recall", "ndcg"])
        rows.append(
            {
                "dataset": name,
                "protocol": "new items",
                "model": label,
                "users": res.n_users,
                "new_items": int((~warm).sum()),
                **{k: round(v, 4) for k, v in res.mean.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _seed(params: dict[str, Any]) -> dict[str, Any]:
    cls = get_model_class(params["kind"])
    return {"random_state": SEED} if "random_state" in cls.config_class.model_fields else {}


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens", "retail"], choices=["movielens", "retail"])
    parser.add_argument("--models", nargs="+", default=None, help="Only these strategy labels.")
    parser.add_argument("--skip-new-items", action="store_true")
    parser.add_argument("--json", action="store_true", help="Print all rows as one JSON list at the end.")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"real datasets not found at {DATA.resolve()}")
    loaders = {"movielens": load_movielens, "retail": load_retail}
    rows = []
    for name in args.datasets:
        frame, texts = loaders[name]()
        rows += holdout(name, frame, texts, args.models)
        if not args.skip_new_items:
            rows += new_items(name, frame, texts)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
