"""SASRec next to popularity, item-item kNN and LightFM on a per-user leave-last-out split.

Run: ``python -m benchmarks.bench_neural [--datasets movielens retail] [--out FILE]``, or
``python -m benchmarks.bench_neural --step-times`` for the cost of one step of each loss
(needs ``pip install 'recctl[neural]'`` and the real data in ``../shared/data``).

The split is built here directly from the raw files with polars (the protocol of
``preprocess.split.strategy: leave_last`` with ``n_last: 1``, written out so the benchmark does
not depend on the pipeline): for every user, the (user, item) pair whose last event is the
latest (ties: the later file row) is the test item and all its events leave training; the
rest is training. Every event counts (no rating threshold, no k-core), users with fewer than
two distinct items are dropped. Evaluation goes through ``recctl.evaluation.evaluate_model``
with training items excluded from the ranking (the test item is never among them).

Epoch counts are chosen without looking at the test split. LightFM: hold out each user's last
*training* pair, fit on the rest epoch by epoch, keep the epoch with the best NDCG@10 on it,
refit on the whole training split for that many epochs (``select_s`` is the search, ``fit_s``
the refit). SASRec: its own ``patience`` does the same inside one ``fit`` (last training event
held out, best epoch kept; ``fit_s`` includes it), which halves its cost on a shared CPU.
Ratios are against popularity measured in the same run; ``p_vs_lightfm`` is a paired Wilcoxon
test of per-user NDCG@10 against LightFM. ``item_knn_last{1,10}`` score each user from only
their 1 or 10 latest training items through item-kNN's ``score_from_items``: a recency
baseline that shows how much of SASRec's gain order-free recency already gives.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.data.dataset import Dataset, interactions_matrix
from recctl.evaluation.comparison import paired_pvalue
from recctl.evaluation.metrics import evaluate_model
from recctl.models.registry import get_model_class

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
METRICS = ("ndcg", "recall", "mrr")
K = 10
ROW = "_row"


# -- data ----------------------------------------------------------------------------------------
def load_movielens(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every rating as an implicit event (MovieLens latest-small), plus genres per movie."""
    ratings = pl.read_csv(root / "ml-latest-small" / "ratings.csv")
    events = ratings.select(
        pl.col("userId").cast(pl.String).alias(Columns.User),
        pl.col("movieId").cast(pl.String).alias(Columns.Item),
        pl.from_epoch("timestamp", time_unit="s").alias(Columns.Timestamp),
    )
    movies = pl.read_csv(root / "ml-latest-small" / "movies.csv").select(
        pl.col("movieId").cast(pl.String).alias(Columns.Item), pl.col("genres").str.split("|").alias("tags")
    )
    return events, movies


def load_retail(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Online Retail invoice lines, cleaned as the data README describes, plus a stock-code prefix."""
    raw = pl.read_parquet(root / "online-retail" / "online_retail.parquet")
    clean = raw.filter(
        pl.col("CustomerID").is_not_null(),
        ~pl.col("InvoiceNo").cast(pl.String).str.starts_with("C"),
        pl.col("Quantity") > 0,
        pl.col("UnitPrice") > 0,
    )
    events = clean.select(
        pl.col("CustomerID").cast(pl.Int64).cast(pl.String).alias(Columns.User),
        pl.col("StockCode").cast(pl.String).str.strip_chars().alias(Columns.Item),
        pl.col("InvoiceDate").cast(pl.Datetime("us")).alias(Columns.Timestamp),
    )
    items = (
        events.select(Columns.Item)
        .unique()
        .with_columns(pl.concat_list(pl.col(Columns.Item).str.slice(0, 3)).alias("tags"))
    )
    return events, items


def leave_last_out(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """Index users/items and hold out each user's latest (user, item) pair.

    Returns
    -------
    (train, test, user_ids, item_ids)
        ``train`` has ``user_idx, item_idx, timestamp, weight, _row`` in time order per user;
        ``test`` one ``user_idx, item_idx`` row per user.
    """
    ev = events.with_row_index(ROW)
    ev = ev.filter(pl.col(Columns.Item).n_unique().over(Columns.User) >= 2)
    user_ids = np.array(sorted(ev[Columns.User].unique().to_list()), dtype=object)
    item_ids = np.array(sorted(ev[Columns.Item].unique().to_list()), dtype=object)
    umap = pl.DataFrame({Columns.User: user_ids.astype(str), Columns.UserIdx: np.arange(len(user_ids))})
    imap = pl.DataFrame({Columns.Item: item_ids.astype(str), Columns.ItemIdx: np.arange(len(item_ids))})
    ev = (
        ev.join(umap, on=Columns.User)
        .join(imap, on=Columns.Item)
        .select(Columns.UserIdx, Columns.ItemIdx, Columns.Timestamp, pl.lit(1.0).alias(Columns.Weight), ROW)
    )
    train, test = split_last_pair(ev)
    return train, test, user_ids, item_ids


def split_last_pair(ev: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per user with 2+ items: the pair whose last event is latest (ties: later file row) is held out.

    All events of the held-out pair leave the training side (as ``preprocess.split.strategy:
    leave_last`` does), so a held-out item is never half-seen in training.
    """
    ev = ev.sort([Columns.UserIdx, Columns.Timestamp, ROW])
    last = ev.group_by(Columns.UserIdx, Columns.ItemIdx).agg(pl.col(Columns.Timestamp).max(), pl.col(ROW).max())
    last = last.filter(pl.len().over(Columns.UserIdx) >= 2)
    held = last.sort([Columns.UserIdx, Columns.Timestamp, ROW]).group_by(Columns.UserIdx).last()
    test = held.select(Columns.UserIdx, Columns.ItemIdx, pl.lit(1.0).alias(Columns.Weight))
    train = ev.join(test.select(Columns.UserIdx, Columns.ItemIdx), on=[Columns.UserIdx, Columns.ItemIdx], how="anti")
    return train.sort([Columns.UserIdx, Columns.Timestamp, ROW]), test


def tag_features(items: pl.DataFrame, item_ids: np.ndarray) -> sp.csr_matrix:
    """Multi-hot (n_items x n_tags) matrix from an ``item_id, tags`` frame."""
    imap = pl.DataFrame({Columns.Item: item_ids.astype(str), Columns.ItemIdx: np.arange(len(item_ids))})
    pairs = items.join(imap, on=Columns.Item).explode("tags").drop_nulls("tags")
    tags = sorted(pairs["tags"].unique().to_list())
    tmap = pl.DataFrame({"tags": tags, "tag_idx": np.arange(len(tags))})
    pairs = pairs.join(tmap, on="tags")
    return sp.csr_matrix(
        (np.ones(pairs.height, np.float32), (pairs[Columns.ItemIdx].to_numpy(), pairs["tag_idx"].to_numpy())),
        shape=(len(item_ids), len(tags)),
    )


def make_dataset(
    train: pl.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray, features: sp.csr_matrix | None
) -> Dataset:
    """A :class:`Dataset` as the preprocess stage would load it."""
    return Dataset(
        user_ids=user_ids,
        item_ids=item_ids,
        interactions=interactions_matrix(train, len(user_ids), len(item_ids)),
        item_features=features,
        events=train,
    )


# -- fitting -------------------------------------------------------------------------------------
def ndcg_at_k(model: Any, target: sp.csr_matrix, exclude: sp.csr_matrix) -> float:
    """NDCG@10 of a fitted model through recctl's evaluation."""
    return evaluate_model(model, target, exclude, ks=(K,), metrics=("ndcg",), n_jobs=1).mean[f"ndcg@{K}"]


def select_epochs(
    make: Callable[[], Any],
    train: pl.DataFrame,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    features: sp.csr_matrix | None,
    max_epochs: int,
    patience: int,
) -> tuple[int, list[float]]:
    """Best epoch count by NDCG@10 on each user's last training event (test never looked at)."""
    inner, valid = split_last_pair(train)
    ds = make_dataset(inner, user_ids, item_ids, features)
    target = interactions_matrix(valid, len(user_ids), len(item_ids))
    model = make()
    curve: list[float] = []
    best, best_epoch = -1.0, 1
    for epoch in model.iter_fit(ds):
        curve.append(ndcg_at_k(model, target, ds.interactions))
        if curve[-1] > best:
            best, best_epoch = curve[-1], epoch
        if epoch - best_epoch >= patience or epoch >= max_epochs:
            break
    return best_epoch, curve


def evaluate_recent(model: Any, train: pl.DataFrame, target: sp.csr_matrix, exclude: sp.csr_matrix, n_last: int):
    """Score each user from their ``n_last`` latest training items only (a recency baseline).

    Uses the model's ``score_from_items`` (item-kNN: summed neighbour similarities), so it
    shows how much of a sequence model's gain plain recency already gives.
    """
    from recctl.evaluation.metrics import evaluate_rankings, relevant_target
    from recctl.ranking import top_k

    users = train[Columns.UserIdx].to_numpy()
    items = train[Columns.ItemIdx].to_numpy()
    all_users = np.arange(target.shape[0])
    starts, ends = np.searchsorted(users, all_users), np.searchsorted(users, all_users, side="right")

    def score(rows: np.ndarray) -> np.ndarray:
        return np.stack([model.score_from_items(items[max(starts[u], ends[u] - n_last) : ends[u]]) for u in rows])

    clean = relevant_target(target, exclude)
    evaluated = np.flatnonzero(np.diff(clean.indptr) > 0)
    top = top_k(score, evaluated, K, exclude=exclude)
    return evaluate_rankings(top.items, clean[evaluated], (K,), METRICS, users=evaluated)


def model_specs(name: str, threads: int, quick: bool) -> dict[str, dict[str, Any]]:
    """The strategies compared, as model configs (``epochs`` is the ceiling of the epoch search)."""
    # one setting for both datasets; only the epoch ceiling differs (a compute cap on a shared
    # 2-core machine: an Online Retail epoch costs ~4x a MovieLens one)
    sasrec = {
        "kind": "sasrec",
        "max_len": 50,
        "hidden_size": 64,
        "n_heads": 2,
        "n_blocks": 2,
        "dropout": 0.2,
        "lr": 2e-3,
        "batch_size": 32,
        "loss": "sampled_softmax",
        "epochs": 40 if name == "movielens" else 15,
        "patience": 5,
        "random_state": 42,
        "num_threads": threads,
    }
    specs = {
        "popularity": {"kind": "popularity"},
        "item_knn": {"kind": "item_knn"},
        "lightfm_warp": {
            "kind": "lightfm",
            "loss": "warp",
            "no_components": 64,
            "learning_rate": 0.05,
            "epochs": 100,
            "random_state": 42,
            "num_threads": 1,
        },
        "sasrec": sasrec,
        "sasrec_features": {**sasrec, "use_item_features": True},
    }
    if quick:
        specs.pop("sasrec_features")
    return specs


def run_dataset(name: str, threads: int, quick: bool) -> list[dict[str, Any]]:
    """Fit and evaluate every strategy on one dataset; return one row per strategy."""
    events, items = (load_movielens if name == "movielens" else load_retail)(DATA)
    train, test, user_ids, item_ids = leave_last_out(events)
    features = tag_features(items, item_ids)
    n_users, n_items = len(user_ids), len(item_ids)
    exclude = interactions_matrix(train, n_users, n_items)
    target = interactions_matrix(test, n_users, n_items)
    logging.info("%s: %d users, %d items, %d train events", name, n_users, n_items, train.height)
    rows = []
    per_user: dict[str, np.ndarray] = {}
    for label, spec in model_specs(name, threads, quick).items():
        cls = get_model_class(spec["kind"])
        use_features = spec.get("use_item_features", False)
        ds = make_dataset(train, user_ids, item_ids, features if use_features else None)
        epochs, select_s, curve = None, 0.0, []
        if cls.supports_epochs and not spec.get("patience"):
            # LightFM: search the epoch count on an inner split, then refit on all of train
            t0 = time.perf_counter()
            epochs, curve = select_epochs(
                lambda s=spec, c=cls: c.from_config(s),
                train,
                user_ids,
                item_ids,
                features if use_features else None,
                max_epochs=spec["epochs"],
                patience=5,
            )
            select_s = time.perf_counter() - t0
            spec = {**spec, "epochs": epochs}
        model = cls.from_config(spec)
        t0 = time.perf_counter()
        model.fit(ds)
        fit_s = time.perf_counter() - t0
        if spec.get("patience"):
            # SASRec stops early inside fit on the same inner split (last training event)
            epochs, curve = model.best_epoch_, model.valid_ndcg_
        result = evaluate_model(model, target, exclude, ks=(K,), metrics=METRICS, n_jobs=1)
        row = {
            "dataset": name,
            "model": label,
            **{k: round(v, 4) for k, v in result.mean.items() if k.endswith(f"@{K}")},
            "n_eval_users": result.n_users,
            "epochs": epochs,
            "fit_s": round(fit_s, 1),
            "select_s": round(select_s, 1),
            "valid_curve": [round(c, 4) for c in curve],
        }
        logging.info("%s %s: %s", name, label, row)
        per_user[label] = result.per_user.sort(Columns.UserIdx)[f"ndcg@{K}"].to_numpy()
        rows.append(row)
        if label == "item_knn":
            for n_last in (1, 10):
                result = evaluate_recent(model, train, target, exclude, n_last)
                extra = f"item_knn_last{n_last}"
                rows.append(
                    {
                        "dataset": name,
                        "model": extra,
                        "epochs": None,
                        "fit_s": row["fit_s"],
                        "select_s": 0.0,
                        **{k: round(v, 4) for k, v in result.mean.items()},
                        "n_eval_users": result.n_users,
                        "valid_curve": [],
                    }
                )
                per_user[extra] = result.per_user.sort(Columns.UserIdx)[f"ndcg@{K}"].to_numpy()
                logging.info("%s %s: %s", name, extra, rows[-1])
    base = next(r for r in rows if r["model"] == "popularity")
    for r in rows:
        r[f"ndcg@{K}_vs_popularity"] = round(r[f"ndcg@{K}"] / base[f"ndcg@{K}"], 2) if base[f"ndcg@{K}"] else None
        # paired Wilcoxon test of per-user NDCG@10 against LightFM (same users for every model)
        r["p_vs_lightfm"] = round(paired_pvalue(per_user[r["model"]] - per_user["lightfm_warp"]), 4)
    return rows


def step_times(threads: int, n_steps: int = 5) -> list[dict[str, Any]]:
    """Seconds per training step of each SASRec loss on MovieLens-sized data (one epoch each).

    Runs the real training loop on the MovieLens training split cut to ``n_steps`` batches of
    32 windows, so the numbers are per step with the catalogue size (9,724 items) that decides
    the cost of a full softmax. Ratios are against ``sampled_softmax`` measured in the same run.
    """
    events, _ = load_movielens(DATA)
    train, _, user_ids, item_ids = leave_last_out(events)
    ds = make_dataset(train, user_ids, item_ids, None)
    rows = []
    for loss in ("sampled_softmax", "bce", "softmax"):
        model = get_model_class("sasrec").from_config(
            {"kind": "sasrec", "batch_size": 32, "epochs": 1, "loss": loss, "num_threads": threads, "random_state": 0}
        )
        model._setup(ds, holdout=False)
        keep = np.random.default_rng(0).choice(len(model._inputs), 32 * n_steps, replace=False)
        model._inputs, model._targets = model._inputs[keep], model._targets[keep]
        t0 = time.perf_counter()
        model._train_epoch()
        rows.append({"loss": loss, "s_per_step": round((time.perf_counter() - t0) / n_steps, 3)})
    base = rows[0]["s_per_step"]
    for r in rows:
        r["vs_sampled_softmax"] = round(r["s_per_step"] / base, 1)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a table (and JSON with ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens", "retail"], choices=["movielens", "retail"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for SASRec (1: on a shared, oversubscribed machine more is slower)",
    )
    parser.add_argument("--quick", action="store_true", help="skip the item-feature SASRec variant")
    parser.add_argument("--step-times", action="store_true", help="only time one step of each SASRec loss")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not DATA.exists():
        print(f"real datasets not found at {DATA.resolve()}; nothing to benchmark", file=sys.stderr)
        return 1
    if args.step_times:
        for row in step_times(args.threads):
            print(row)
        return 0
    rows = [row for name in args.datasets for row in run_dataset(name, args.threads, args.quick)]
    cols = [
        "dataset",
        "model",
        f"ndcg@{K}",
        f"recall@{K}",
        f"mrr@{K}",
        f"ndcg@{K}_vs_popularity",
        "p_vs_lightfm",
        "n_eval_users",
        "epochs",
        "fit_s",
        "select_s",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c)) for c in cols) + " |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
