"""EASE fit time: the float32 LAPACK path against the previous one, measured in the same run.

Run: ``python -m benchmarks.bench_ease [--items 20000] [--users 60000] [--compare-items 5000]``

A synthetic shop with a power-law item popularity (every item has interactions, so EASE
inverts over all of them). Prints the fit time of ``EASEModel`` at ``--items`` and, at
``--compare-items`` (the old path is too slow to run at 20,000 on a shared machine), both the
new fit and the previous algorithm (float32 Gram, ``cho_factor`` + ``cho_solve`` against an
identity matrix), interleaved, with their ratio and the largest difference of the weights.
Absolute seconds drift with other load on a shared machine; the ratio is the steadier figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recctl.data.dataset import Dataset
from recctl.models.ease import EASEModel


def shop(n_users: int, n_items: int, per_user: int = 30, seed: int = 0) -> Dataset:
    """Users with ``per_user`` items each, drawn from a Zipf-like popularity; every item used."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / (1 + np.arange(n_items)) ** 0.8
    pop /= pop.sum()
    cols = rng.choice(n_items, size=n_users * per_user, p=pop)
    cols[:n_items] = np.arange(n_items)  # every item has at least one interaction
    rows = np.repeat(np.arange(n_users), per_user)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    x.data[:] = 1.0
    return Dataset(np.arange(n_users).astype(str), np.arange(n_items).astype(str), x)


def old_fit(data: Dataset, l2: float) -> np.ndarray:
    """The previous EASE fit (float32 above 2,000 items): cho_solve against an identity."""
    x = data.interactions
    n = x.shape[1]
    gram = (x.T @ x).toarray().astype(np.float32)
    gram[np.diag_indices(n)] += l2
    factor = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
    precision = scipy.linalg.cho_solve(factor, np.eye(n, dtype=np.float32), overwrite_b=True, check_finite=False)
    weights = precision / (-np.diag(precision))[None, :]
    weights[np.diag_indices(n)] = 0.0
    return weights


def main(argv: list[str] | None = None) -> int:
    """Time the fits and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--users", type=int, default=60000)
    parser.add_argument("--compare-items", type=int, default=5000)
    args = parser.parse_args(argv)
    small = shop(args.users // 4, args.compare_items)
    new_s, old_s, diff = [], [], 0.0
    for _ in range(2):  # interleaved, so other load hits both alike
        t0 = time.perf_counter()
        model = EASEModel(l2=500.0).fit(small)
        new_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        weights = old_fit(small, 500.0)
        old_s.append(time.perf_counter() - t0)
        diff = float(np.abs(model.weights_ - weights).max())
    print(
        f"{args.compare_items:,} items: new {min(new_s):.1f} s, previous {min(old_s):.1f} s "
        f"(previous / new = {min(old_s) / min(new_s):.2f}x); max |weight difference| {diff:.2e}"
    )
    big = shop(args.users, args.items)
    t0 = time.perf_counter()
    EASEModel(l2=500.0).fit(big)
    print(f"{args.items:,} items ({args.users:,} users): new EASE fit {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
