"""Benchmark: a day of new events — incremental update + delta export vs full retrain + full export.

Issue 9, item 5: a generated shop of 200,000 users (and 50,000 items: users / 4), a day's
batch touching 1% of the users (a tenth of them new) with 0.5% new items. Both paths run in
the same process on the same files, through the real stages:

* **incremental**: ``recctl update`` (grow, fold in, continue training LightFM on the new
  events + replay; popularity and item-kNN refreshed exactly), ``recctl recommend
  --changed-since last-update`` and ``recctl serve-export`` with the delta file;
* **full**: ``recctl preprocess`` + ``recctl train`` + ``recctl recommend`` + ``recctl
  serve-export`` on the appended data.

``ingest --append`` is common to both and reported apart. Quality: the updated LightFM model
against a LightFM retrained from scratch *on the same grown data* (the full path's preprocess
re-splits by time, so its model sees different training data): NDCG@10 on the test split and
the top-10 overlap, next to the overlap of two retrains with different seeds.

The machine may be shared and noisy: compare the ratios, not the absolute seconds.

Run::

    python -m benchmarks.bench_update                  # the issue's sizes (several minutes)
    python -m benchmarks.bench_update --users 50000    # quicker
    python -m benchmarks.bench_update --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml


def generate(
    root: Path,
    n_users: int,
    n_items: int,
    seed: int,
    day_share: float = 0.01,
    new_item_share: float = 0.005,
    events_per_user: float = 8.0,
) -> dict[str, Any]:
    """Write ``base.csv``, ``day.csv`` and ``products.csv`` of a shop with clustered tastes."""
    rng = np.random.default_rng(seed)
    n_cats = 50
    n_new_items = max(1, int(n_items * new_item_share))
    n_old_items = n_items - n_new_items
    item_cat = rng.integers(0, n_cats, n_items)
    order = np.argsort(item_cat, kind="stable")  # items grouped by category for sampling
    starts = np.searchsorted(item_cat[order], np.arange(n_cats))
    sizes = np.bincount(item_cat, minlength=n_cats)

    def pick(cats: np.ndarray, allowed_new: bool) -> np.ndarray:
        # Zipf-like popularity inside a category: low ranks are picked much more often
        pos = (rng.random(len(cats)) ** 3 * sizes[cats]).astype(np.int64)
        items = order[starts[cats] + np.minimum(pos, sizes[cats] - 1)]
        if not allowed_new:
            bad = items >= n_old_items
            items[bad] = rng.integers(0, n_old_items, int(bad.sum()))
        return items

    n_day_users = max(1, int(n_users * day_share))
    n_new_users = max(1, n_day_users // 10)
    n_old_users = n_users - n_new_users
    user_cat = rng.integers(0, n_cats, n_users)
    counts = rng.poisson(events_per_user, n_old_users) + 1
    users = np.repeat(np.arange(n_old_users), counts)
    own = rng.random(len(users)) < 0.8
    cats = np.where(own, user_cat[users], rng.integers(0, n_cats, len(users)))
    items = pick(cats, allowed_new=False)
    start = dt.datetime(2026, 4, 1)
    seconds = rng.integers(0, 30 * 86400, len(users))
    base = _frame(users, items, seconds, start, rng)

    day_users = np.concatenate(
        [
            rng.choice(n_old_users, n_day_users - n_new_users, replace=False),
            np.arange(n_old_users, n_users),
        ]
    )
    d_counts = rng.poisson(3, len(day_users)) + 1
    d_users = np.repeat(day_users, d_counts)
    d_own = rng.random(len(d_users)) < 0.8
    d_cats = np.where(d_own, user_cat[d_users], rng.integers(0, n_cats, len(d_users)))
    d_items = pick(d_cats, allowed_new=True)
    # the launch: every new item gets a few views from users who like its category
    launch_users = rng.choice(day_users, n_new_items * 3)
    launch_items = np.repeat(np.arange(n_old_items, n_items), 3)
    d_users = np.concatenate([d_users, launch_users])
    d_items = np.concatenate([d_items, launch_items])
    d_seconds = 30 * 86400 + rng.integers(0, 86400, len(d_users))
    day = _frame(d_users, d_items, d_seconds, start, rng)
    base.write_csv(root / "base.csv")
    day.write_csv(root / "day.csv")
    products = pl.DataFrame(
        {
            "product_id": [f"P{i:06d}" for i in range(n_old_items)],
            "category": [f"cat{c}" for c in item_cat[:n_old_items]],
            "brand": [f"brand{b}" for b in rng.integers(0, 300, n_old_items)],
        }
    )
    products.write_csv(root / "products.csv")
    return {
        "base_events": base.height,
        "day_events": day.height,
        "day_users": int(len(day_users)),
        "new_users": n_new_users,
        "new_items": n_new_items,
    }


def _frame(
    users: np.ndarray,
    items: np.ndarray,
    seconds: np.ndarray,
    start: dt.datetime,
    rng: np.random.Generator,
) -> pl.DataFrame:
    events = rng.choice(np.array(["view", "add_to_cart", "purchase"]), len(users), p=[0.7, 0.2, 0.1])
    return pl.DataFrame(
        {
            "customer_id": [f"C{u:07d}" for u in users],
            "product_id": [f"P{i:06d}" for i in items],
            "event_type": events,
            "event_time": pl.Series([start + dt.timedelta(seconds=int(s)) for s in seconds]).dt.strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
        }
    )


def write_config(root: Path, components: int, epochs: int) -> Path:
    """The benchmark's experiment config (popularity, item-kNN, LightFM WARP)."""
    cfg = {
        "name": "bench-update",
        "workdir": str(root / "work"),
        "seed": 7,
        "data": {
            "interactions": {
                "path": str(root / "base.csv"),
                "columns": {
                    "user_id": "customer_id",
                    "item_id": "product_id",
                    "event": "event_type",
                    "timestamp": "event_time",
                },
                "timestamp_format": "%Y-%m-%d %H:%M:%S",
            },
            "items": {
                "path": str(root / "products.csv"),
                "id_column": "product_id",
                "columns": {"category": "category", "brand": "brand"},
            },
        },
        "preprocess": {
            "event_weights": {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
            "split": {"strategy": "time", "test_fraction": 0.1, "valid_fraction": 0.05},
        },
        "models": {
            "popular": {"kind": "popularity"},
            "knn": {"kind": "item_knn", "neighbors": 50},
            "lfm": {
                "kind": "lightfm",
                "loss": "warp",
                "no_components": components,
                "epochs": epochs,
                "num_threads": 2,
            },
        },
        "recommend": {"model": "lfm", "k": 10, "fallback": ["popular"], "n_jobs": 2},
        "export": {"format": "csv", "delta": True},
    }
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def quality(cfg: Any) -> dict[str, Any]:
    """Updated LightFM vs retrained on the same grown data (and the seed-to-seed yardstick)."""
    from recctl.data.dataset import load_dataset, load_split_matrix
    from recctl.incremental.current import load_serving_model
    from recctl.incremental.drift import DriftRule, compare_models
    from recctl.incremental.update import fresh_model

    upd_dir = cfg.workdir_path / "update"
    ds = load_dataset(upd_dir, "train")
    target = load_split_matrix(upd_dir, "test", ds.n_users, ds.n_items)
    updated = load_serving_model(cfg, "lfm")
    retrained, retrain_s = _timed(fresh_model(cfg, "lfm").fit, ds)
    reference = fresh_model(cfg, "lfm")
    reference.config = reference.config.model_copy(update={"random_state": cfg.seed + 1})
    reference.fit(ds)
    changes = __import__("polars").read_parquet(upd_dir / "changes.parquet")["user_idx"].to_numpy()
    rng = np.random.default_rng(0)
    users = np.union1d(changes, rng.choice(ds.n_users, min(20000, ds.n_users), replace=False))
    rep = compare_models(
        "lfm",
        updated,
        retrained,
        exclude=ds.interactions,
        target=target,
        rule=DriftRule(),
        users=users,
        reference=reference,
        n_jobs=2,
    )
    return {**rep.to_dict(), "retrain_same_data_s": round(retrain_s, 2)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a report (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=None, help="default: users / 4")
    ap.add_argument("--components", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from recctl.config import load_config
    from recctl.stages.export import run_serve_export
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.recommend import run_recommend
    from recctl.stages.train import run_train
    from recctl.stages.update import run_update

    n_items = args.items or args.users // 4
    with tempfile.TemporaryDirectory(prefix="recctl-bench-update-") as tmp:
        root = Path(tmp)
        sizes, gen_s = _timed(generate, root, args.users, n_items, args.seed)
        cfg = load_config(write_config(root, args.components, args.epochs))
        setup = {}
        for name, fn, kw in (
            ("ingest", run_ingest, {}),
            ("preprocess", run_preprocess, {}),
            ("train", run_train, {}),
            ("recommend", run_recommend, {}),
            ("serve-export", run_serve_export, {"date": "2026-05-01"}),
        ):
            _, setup[name] = _timed(fn, cfg, **kw)
        _, append_s = _timed(run_ingest, cfg, append=[root / "day.csv"])

        inc: dict[str, float] = {}
        upd, inc["update"] = _timed(run_update, cfg)
        rec, inc["recommend --changed-since"] = _timed(run_recommend, cfg, changed_since="last-update")
        exp, inc["serve-export (+delta)"] = _timed(run_serve_export, cfg, date="2026-05-02")
        q = quality(cfg)

        full: dict[str, float] = {}
        _, full["preprocess"] = _timed(run_preprocess, cfg)
        _, full["train"] = _timed(run_train, cfg)
        _, full["recommend"] = _timed(run_recommend, cfg)
        _, full["serve-export"] = _timed(run_serve_export, cfg, date="2026-05-03")

    t_inc, t_full = sum(inc.values()), sum(full.values())
    report = {
        "sizes": {
            "users": args.users,
            "items": n_items,
            **sizes,
            "components": args.components,
            "epochs": args.epochs,
        },
        "generate_s": round(gen_s, 2),
        "initial_pipeline_s": {k: round(v, 2) for k, v in setup.items()},
        "ingest_append_s": round(append_s, 2),
        "incremental_s": {k: round(v, 2) for k, v in inc.items()},
        "incremental_total_s": round(t_inc, 2),
        "full_s": {k: round(v, 2) for k, v in full.items()},
        "full_total_s": round(t_full, 2),
        "speedup_full_over_incremental": round(t_full / t_inc, 2) if t_inc else None,
        "update_models": {
            n: {"how": m["how"], "exact": m["exact"], "seconds": m["seconds"], "info": m["info"]}
            for n, m in upd.summary["models"].items()
        },
        "rescored_users": rec.summary.get("n_rescored"),
        "delta": exp.summary.get("delta"),
        "quality_lightfm": q,
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        print()
        return 0
    print(
        f"shop: {args.users:,} users, {n_items:,} items; day: {sizes['day_events']:,} events from "
        f"{sizes['day_users']:,} users ({sizes['new_users']:,} new), {sizes['new_items']:,} new items"
    )
    print(f"ingest --append (both paths): {append_s:.1f}s")
    print("incremental: " + ", ".join(f"{k} {v:.1f}s" for k, v in inc.items()) + f"  = {t_inc:.1f}s")
    print("full:        " + ", ".join(f"{k} {v:.1f}s" for k, v in full.items()) + f"  = {t_full:.1f}s")
    print(
        f"full / incremental: {t_full / t_inc:.1f}x; re-scored users: {rec.summary.get('n_rescored'):,}; "
        f"delta file: {exp.summary['delta']['users']:,} users"
    )
    print(
        f"LightFM quality on the test split, {q['metric']}: updated {q['updated']:.4f}, retrained on the same "
        f"data {q['retrained']:.4f} (relative drop {q['relative_drop']:+.1%}); top-10 Jaccard {q['jaccard']:.3f}, "
        f"seed-to-seed {q['reference_jaccard']:.3f} (ratio {q['overlap_ratio']:.2f})"
    )
    for name, m in report["update_models"].items():
        print(f"  {name}: {m['how']} ({'exact' if m['exact'] else 'approximate'}) in {m['seconds']:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
