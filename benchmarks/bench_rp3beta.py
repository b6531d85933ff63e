"""RP3beta's fit against the dense-block computation it replaced (same run, same matrix).

``recctl.models.rp3beta.rp3beta_similarity`` folds the popularity penalty into the walk's second
step and computes the rows as sparse products with ``topn_similarity`` (compiled ``knn_rows``
when built). Before, the rows were dense blocks of the item x item product, then cut to the
top N (kept here as :func:`dense_block_similarity`, the reference). This benchmark fits both on
one shop's training matrix (``bench_knn``'s shops), alternating their order, and prints each
round's CPU seconds, the ratio, and how the two matrices agree: the largest relative difference
over the entries both keep, and the rows whose neighbour sets differ (float32 rounding of
``a(bp)`` against ``(ab)p`` can swap a neighbour tied at the cut). It also times the similar
items of every item from the stored rows against the dense catalogue rows other models use.

Run::

    nice -n 10 python -m benchmarks.bench_rp3beta                          # 100k users x 20k items
    nice -n 10 python -m benchmarks.bench_rp3beta --users 200000 --items 50000
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.bench_knn import shop_matrix
from benchmarks.bench_topk import cpu_s
from recctl.data.dataset import Dataset
from recctl.models._similarity import binarize
from recctl.models.rp3beta import RP3betaModel, _row_normalize, rp3beta_similarity

#: dense entries per block of the reference's item-item product (16M float32 = 64 MB)
_BLOCK_ENTRIES = 1 << 24


def dense_block_similarity(x: sp.csr_matrix, alpha: float, beta: float, neighbors: int) -> sp.csr_matrix:
    """The reference: RP3beta's rows as dense blocks of ``P_iu @ P_ui``, penalised, cut to the top N."""
    x = sp.csr_matrix(x, dtype=np.float32)
    n_items = x.shape[1]
    p_ui, p_iu = _row_normalize(x), _row_normalize(x.T.tocsr())
    if alpha != 1.0:
        p_ui.data **= alpha
        p_iu.data **= alpha
    popularity = np.asarray((x > 0).sum(axis=0)).ravel().astype(np.float64)
    penalty = np.divide(1.0, popularity**beta, out=np.zeros(n_items), where=popularity > 0).astype(np.float32)
    k = min(neighbors, max(n_items - 1, 1))
    block = max(1, _BLOCK_ENTRIES // max(n_items, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block):
        stop = min(n_items, start + block)
        dense = (p_iu[start:stop] @ p_ui).toarray()
        dense *= penalty[None, :]
        dense[np.arange(stop - start), np.arange(start, stop)] = 0.0
        kth = -np.partition(-dense, k - 1, axis=1)[:, k - 1 : k] if k < n_items else np.full((stop - start, 1), -1.0)
        above, tied = dense > kth, dense == kth
        room = k - above.sum(axis=1, keepdims=True)
        keep = (above | (tied & (np.cumsum(tied, axis=1) <= room))) & (dense > 0)
        r, c = np.nonzero(keep)
        rows.append(r + start)
        cols.append(c)
        vals.append(dense[keep])
    sim = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items))
    sim.sort_indices()
    return sim


def agreement(a: sp.csr_matrix, b: sp.csr_matrix) -> dict[str, Any]:
    """How two top-N matrices agree: entries both keep, and rows whose neighbour sets differ."""
    pattern = (a != 0).astype(np.int8) - (b != 0).astype(np.int8)
    differing_rows = int(len(np.unique(pattern.nonzero()[0])))
    both_a, both_b = a.multiply(b != 0).tocsr(), b.multiply(a != 0).tocsr()
    scale = float(abs(both_a).max()) if both_a.nnz else 1.0
    return {
        "nnz": [int(a.nnz), int(b.nnz)],
        "common_max_rel_diff": float(abs(both_a - both_b).max()) / scale if both_a.nnz else 0.0,
        "rows_with_other_neighbours": differing_rows,
        "rows": int(a.shape[0]),
    }


def similar_items_cost(x: sp.csr_matrix, args: argparse.Namespace, sample: int) -> dict[str, Any]:
    """CPU of 20 similar items for every item from the stored rows, against dense catalogue rows.

    The dense path (what every model without a stored top-N similarity does) runs on the first
    ``sample`` items only and is scaled to the catalogue; the lists of those items are compared.
    """
    n_users, n_items = x.shape
    data = Dataset(np.arange(n_users).astype(str), np.arange(n_items).astype(str), x)
    model = RP3betaModel(alpha=args.alpha, beta=args.beta, neighbors=args.neighbors).fit(data)
    dense = copy.copy(model)
    dense.stored_similarity = lambda: None  # type: ignore[method-assign]
    start = cpu_s()
    stored = model.similar_items(np.arange(n_items), 20)
    stored_s = cpu_s() - start
    start = cpu_s()
    rows = dense.similar_items(np.arange(sample), 20)
    dense_s = (cpu_s() - start) * n_items / sample
    same = bool(
        np.array_equal(stored.items[:sample], rows.items) and np.array_equal(stored.scores[:sample], rows.scores)
    )
    return {"stored_rows_cpu_s": round(stored_s, 3), "dense_rows_cpu_s_scaled": round(dense_s, 2), "same_lists": same}


def main(argv: list[str] | None = None) -> int:
    """Fit both ways in alternating rounds and print the CPU ratio and the agreement."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--per-user", type=float, default=19.0)
    ap.add_argument("--neighbors", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recctl-rp3-") as scratch:
        shop = argparse.Namespace(shop="models", users=args.users, items=args.items, per_user=args.per_user, cache="")
        path, desc = shop_matrix(shop, Path(scratch))
        x = binarize(sp.load_npz(path).tocsr())
    fits = {
        "recctl": lambda: rp3beta_similarity(x, args.alpha, args.beta, args.neighbors),
        "dense blocks": lambda: dense_block_similarity(x, args.alpha, args.beta, args.neighbors),
    }
    rounds: list[dict[str, float]] = []
    results: dict[str, sp.csr_matrix] = {}
    for r in range(args.rounds):
        row = {}
        for name in list(fits) if r % 2 == 0 else list(fits)[::-1]:
            start = cpu_s()
            results[name] = fits[name]()
            row[name] = cpu_s() - start
        rounds.append(row)
        print(f"  round {r + 1}: " + "  ".join(f"{k} {v:7.2f} CPU-s" for k, v in row.items()), flush=True)
    out = {
        "shop": desc,
        "rounds": rounds,
        "cpu_ratio": round(statistics.median(r["recctl"] / r["dense blocks"] for r in rounds), 3),
        "agreement": agreement(results["recctl"], results["dense blocks"]),
        "similar_items": similar_items_cost(x, args, sample=min(5_000, x.shape[1])),
    }
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{desc}; neighbors {args.neighbors}, alpha {args.alpha}, beta {args.beta}")
        print(f"recctl / dense blocks CPU: {out['cpu_ratio']:.3f} (median of {args.rounds})")
        print(f"agreement: {out['agreement']}")
        print(f"similar items, 20 per item: {out['similar_items']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
