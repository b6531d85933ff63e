"""Benchmark: evaluate top-10 lists for 200,000 users against their test items.

Issue 5, item 6. A generated shop (200,000 users, 2,000 items, a long-tail popularity, about
10 training and 3 test items per user, disjoint), one recctl LightFM model (BPR, 16 factors,
1 epoch: the quality does not matter, the work does). Measured in the same run, on the same
model and data, single-threaded on both sides:

* ``recctl evaluate_model``: ranking every user's top 10 with the model through the shared
  top-K kernel (seen items masked) and computing precision, recall, NDCG and MAP at 10;
* ``recctl evaluate_rankings``: the metrics alone, on the lists already ranked;
* ``lightfm.evaluation.precision_at_k`` (with ``train_interactions``), which computes a
  single metric from LightFM's own ranks.

It also checks that the mean precision@10 of the two agree. The machine may be shared and
noisy: compare the ratios, not the absolute seconds.

Run::

    python -m benchmarks.bench_evaluate                # the issue's sizes (~1-2 minutes on 2 cores)
    python -m benchmarks.bench_evaluate --users 20000  # quicker
    python -m benchmarks.bench_evaluate --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import scipy.sparse as sp


def make_data(n_users: int, n_items: int, n_train: int, n_test: int, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Disjoint train / test matrices with a Zipf-like item popularity."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (1.0 + np.arange(n_items)) ** 0.9
    p /= p.sum()
    per_user = n_train + n_test
    # draw with replacement, then drop duplicates per user (vectorised); a few users end
    # with slightly fewer items, as real shops do
    items = rng.choice(n_items, size=(n_users, per_user), p=p)
    users = np.repeat(np.arange(n_users), per_user)
    flat = items.ravel()
    is_test = np.tile(np.arange(per_user) >= n_train, n_users)
    key = users.astype(np.int64) * n_items + flat
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(key), bool)
    keep[first] = True
    ones = np.ones(int(keep.sum()), np.float32)
    train = sp.csr_matrix(
        (ones[~is_test[keep]], (users[keep & ~is_test], flat[keep & ~is_test])),
        shape=(n_users, n_items),
    )
    test = sp.csr_matrix(
        (ones[is_test[keep]], (users[keep & is_test], flat[keep & is_test])),
        shape=(n_users, n_items),
    )
    return train, test


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from lightfm.evaluation import precision_at_k

    from recctl.data.dataset import Dataset
    from recctl.evaluation import evaluate_model, evaluate_rankings, relevant_target
    from recctl.models.lightfm_model import LightFMModel

    t0 = time.perf_counter()
    train, test = make_data(args.users, args.items, 10, 3, args.seed)
    dataset = Dataset(
        np.arange(args.users).astype(str).astype(object),
        np.arange(args.items).astype(str).astype(object),
        train,
    )
    model = LightFMModel(loss="bpr", no_components=16, epochs=1, random_state=args.seed).fit(dataset)
    setup_s = time.perf_counter() - t0
    k = args.k
    metrics = ["precision", "recall", "ndcg", "map"]

    t0 = time.perf_counter()
    ours = evaluate_model(model, test, train, ks=[k], metrics=metrics, n_jobs=1)
    ours_s = time.perf_counter() - t0

    users = ours.per_user["user_idx"].to_numpy()
    clean = relevant_target(test, train)[users]
    t0 = time.perf_counter()
    evaluate_rankings(ours.items, clean, [k], metrics)
    metrics_only_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    theirs = precision_at_k(model.lightfm_, test, train_interactions=train, k=k, num_threads=1)
    lightfm_s = time.perf_counter() - t0

    result = {
        "users_evaluated": int(ours.n_users),
        "n_items": args.items,
        "k": k,
        "setup_seconds": round(setup_s, 2),
        "recctl_evaluate_model_seconds": round(ours_s, 3),
        "recctl_metrics_only_seconds": round(metrics_only_s, 3),
        "lightfm_precision_at_k_seconds": round(lightfm_s, 3),
        "ratio_lightfm_over_recctl_end_to_end": round(lightfm_s / ours_s, 2),
        "ratio_lightfm_over_recctl_metrics_only": round(lightfm_s / metrics_only_s, 2),
        "precision_recctl": ours.mean[f"precision@{k}"],
        "precision_lightfm": float(np.mean(theirs)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    r = result
    print(f"evaluate top-{k} of {r['users_evaluated']:,} users x {args.items:,} items (1 thread)")
    print(f"  recctl evaluate_model (rank + 4 metrics) : {ours_s:8.2f} s")
    print(f"  recctl evaluate_rankings (4 metrics only): {metrics_only_s:8.2f} s")
    print(f"  lightfm precision_at_k (1 metric)        : {lightfm_s:8.2f} s")
    print(f"  ratio lightfm / recctl end to end        : {lightfm_s / ours_s:8.2f}x")
    print(f"  ratio lightfm / recctl metrics only      : {lightfm_s / metrics_only_s:8.2f}x")
    print(f"  mean precision@{k}: recctl {r['precision_recctl']:.6f}  lightfm {r['precision_lightfm']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
