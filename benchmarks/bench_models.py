"""Fit and recommend-all times per strategy on a generated shop (issue 4, item 6).

Run::

    python -m benchmarks.bench_models                          # 200,000 users x 50,000 items
    python -m benchmarks.bench_models --users 20000 --items 5000   # quicker
    python -m benchmarks.bench_models --models popularity item_knn --json

The catalogue is generated with a fixed seed: users belong to one of ``n_tastes`` latent
taste groups, items to one group each, a user's interactions are drawn mostly from their
group with a Zipf-like item popularity (long tail), ``--per-user`` interactions on average.
Items get a category one-hot plus a few tag features (for content / hybrid).

For every strategy: fit time, and the time to recommend top-10 (seen items excluded) for
every user through the shared batched kernel. Ratios are against popularity measured in the
same run. EASE above its ``max_items`` is reported as refused (that is its documented
behaviour), not timed. The machine may be shared: compare ratios, not absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from recctl.data.dataset import Dataset
from recctl.errors import RecctlError
from recctl.models.registry import get_model_class

K = 10

STRATEGIES: dict[str, dict[str, Any]] = {
    "popularity": {"kind": "popularity"},
    "item_knn": {"kind": "item_knn", "neighbors": 100},
    "user_knn": {"kind": "user_knn", "neighbors": 50},
    "ease": {"kind": "ease"},
    "content": {"kind": "content"},
    "lightfm": {"kind": "lightfm", "epochs": 10, "no_components": 64, "random_state": 0},
    "lightfm_hybrid": {
        "kind": "lightfm",
        "epochs": 10,
        "no_components": 64,
        "random_state": 0,
        "item_features": True,
    },
}


def generate(n_users: int, n_items: int, per_user: float, n_tastes: int = 50, seed: int = 0) -> Dataset:
    """A shop with latent tastes and a long tail, vectorised (no loop over users)."""
    rng = np.random.default_rng(seed)
    item_taste = rng.integers(0, n_tastes, n_items)
    user_taste = rng.integers(0, n_tastes, n_users)
    counts = np.maximum(1, rng.poisson(per_user, n_users))
    rows = np.repeat(np.arange(n_users), counts)
    # 80% of draws from the user's taste group, 20% anywhere; Zipf-ish popularity in both
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop = pop[rng.permutation(n_items)]
    order = np.argsort(item_taste, kind="stable")
    bounds = np.searchsorted(item_taste[order], np.arange(n_tastes + 1))
    in_group = rng.random(len(rows)) < 0.8
    cols = np.empty(len(rows), np.int64)
    any_cdf = np.cumsum(pop) / pop.sum()
    cols[~in_group] = np.searchsorted(any_cdf, rng.random((~in_group).sum()))
    g = user_taste[rows[in_group]]
    start, size = bounds[g], np.maximum(bounds[g + 1] - bounds[g], 1)
    # within a group: a power-law position, so each group has its own best-sellers
    pos = np.minimum((size * rng.random(len(g)) ** 3).astype(np.int64), size - 1)
    cols[in_group] = order[np.minimum(start + pos, n_items - 1)]
    cols = np.minimum(cols, n_items - 1)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    x.sum_duplicates()
    n_tags = 20
    feat = sp.csr_matrix(
        (
            np.ones(2 * n_items, np.float32),
            (np.tile(np.arange(n_items), 2), np.concatenate([item_taste, n_tastes + rng.integers(0, n_tags, n_items)])),
        ),
        shape=(n_items, n_tastes + n_tags),
    )
    return Dataset(
        user_ids=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        interactions=x,
        item_features=feat,
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--per-user", type=float, default=20.0)
    parser.add_argument("--models", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--n-jobs", type=int, default=-1, help="Threads for recommend-all.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = generate(args.users, args.items, args.per_user)
    print(
        f"generated {data.n_users} users x {data.n_items} items, {data.interactions.nnz} interactions "
        f"in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    users = np.arange(data.n_users)
    rows = []
    for label in args.models:
        params = STRATEGIES[label]
        model = get_model_class(params["kind"]).from_config(params)
        row: dict[str, Any] = {"model": label}
        t0 = time.perf_counter()
        try:
            model.fit(data)
        except RecctlError as exc:
            row["refused"] = str(exc).split(";")[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        row["fit_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        top = model.recommend(users, K, exclude=data.interactions, n_jobs=args.n_jobs)
        row["recommend_all_s"] = round(time.perf_counter() - t0, 2)
        row["users_per_s"] = int(len(users) / max(row["recommend_all_s"], 1e-9))
        row["full_lists"] = float((top.lengths == K).mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["model"] == "popularity" and "fit_s" in r), None)
    if base:
        for r in rows:
            if "fit_s" in r:
                r["recommend_vs_popularity"] = round(r["recommend_all_s"] / max(base["recommend_all_s"], 1e-9), 1)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'model':16} {'fit_s':>8} {'recommend_s':>12} {'x popularity':>13}")
        for r in rows:
            if "fit_s" in r:
                ratio = r["recommend_vs_popularity"]
                print(f"{r['model']:16} {r['fit_s']:8.2f} {r['recommend_all_s']:12.2f} {ratio:13.1f}")
            else:
                print(f"{r['model']:16} refused: {r['refused']}")


if __name__ == "__main__":
    main()
