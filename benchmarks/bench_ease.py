"""EASE fit time: the in-place recursive float32 path against the previous ones, in the same run.

Run: ``python -m benchmarks.bench_ease [--items 20000] [--users 60000] [--compare-items 5000] [--big-previous]``

A synthetic shop with a power-law item popularity (every item has interactions, so EASE
inverts over all of them). At ``--compare-items``, interleaved twice: ``EASEModel``'s fit, the
previous path (LAPACK ``spotrf``, a ``strmm`` recursion for ``L⁻¹`` through scipy's copying
wrappers, ``L⁻ᵀ L⁻¹`` by numpy block products) and the one before it (``cho_factor`` +
``cho_solve`` against an identity matrix), with the ratios and the largest weight differences.
At ``--items``: ``EASEModel``'s fit, and with ``--big-previous`` the previous path's fit too
(its ratio at full size). Absolute seconds drift with other load on a shared machine; the
ratios are the steadier figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

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


def _previous_lower_inverse(low: np.ndarray) -> None:
    n = low.shape[0]
    if n <= 256:
        low[...] = scipy.linalg.lapack.strtri(low, lower=1)[0]
        return
    h = n // 2
    _previous_lower_inverse(low[:h, :h])
    _previous_lower_inverse(low[h:, h:])
    off = scipy.linalg.blas.strmm(1.0, low[:h, :h], low[h:, :h], side=1, lower=1)
    low[h:, :h] = scipy.linalg.blas.strmm(-1.0, low[h:, h:], off, side=0, lower=1)


def previous_fit(data: Dataset, l2: float, block: int = 1024) -> np.ndarray:
    """The previous EASE fit: ``spotrf``, a copying ``strmm`` recursion, numpy block products."""
    x = data.interactions
    n = x.shape[1]
    gram = np.ascontiguousarray((x.T @ x).toarray(), dtype=np.float32)
    gram[np.diag_indices(n)] += np.float32(l2)
    inv, info = scipy.linalg.lapack.spotrf(gram.T, lower=1, clean=1, overwrite_a=1)
    assert info == 0
    _previous_lower_inverse(inv)
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        inv[:j1, j0:j1] = inv[j0:, :j1].T @ inv[j0:, j0:j1]
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        inv[j1:, j0:j1] = inv[j0:j1, j1:].T
    diag = np.diag(inv).copy()
    inv /= -diag[None, :]
    inv[np.diag_indices(n)] = 0.0
    return inv


def _fit_timed(fit: Callable[[Dataset, float], np.ndarray], data: Dataset) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    weights = fit(data, 500.0)
    return weights, time.perf_counter() - t0


def new_fit(data: Dataset, l2: float) -> np.ndarray:
    """``EASEModel``'s fit (every item has interactions: its weights are over all items)."""
    weights: np.ndarray = EASEModel(l2=l2).fit(data).weights_
    return weights


def main(argv: list[str] | None = None) -> int:
    """Time the fits and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--users", type=int, default=60000)
    parser.add_argument("--compare-items", type=int, default=5000)
    parser.add_argument("--big-previous", action="store_true", help="also fit the previous path at --items")
    args = parser.parse_args(argv)
    small = shop(args.users // 4, args.compare_items)
    fits = {"new": new_fit, "previous": previous_fit, "cho_solve": old_fit}
    times: dict[str, list[float]] = {name: [] for name in fits}
    diffs: dict[str, float] = {}
    for _ in range(2):  # interleaved, so other load hits all alike
        reference, seconds = _fit_timed(new_fit, small)
        times["new"].append(seconds)
        for name in ("previous", "cho_solve"):
            weights, seconds = _fit_timed(fits[name], small)
            times[name].append(seconds)
            diffs[name] = float(np.abs(reference - weights).max())
            del weights
    new = min(times["new"])
    print(
        f"{args.compare_items:,} items: new {new:.1f} s; previous (spotrf) {min(times['previous']):.1f} s "
        f"= {min(times['previous']) / new:.2f}x new, max |weight difference| {diffs['previous']:.2e}; "
        f"cho_solve {min(times['cho_solve']):.1f} s = {min(times['cho_solve']) / new:.2f}x new, "
        f"max |weight difference| {diffs['cho_solve']:.2e}"
    )
    del small, reference
    big = shop(args.users, args.items)
    reference, new = _fit_timed(new_fit, big)
    line = f"{args.items:,} items ({args.users:,} users): new EASE fit {new:.1f} s"
    if args.big_previous:
        weights, seconds = _fit_timed(previous_fit, big)
        diff = float(np.abs(reference - weights).max())
        line += f"; previous (spotrf) {seconds:.1f} s = {seconds / new:.2f}x new, max |weight difference| {diff:.2e}"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
