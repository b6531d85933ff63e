"""Benchmark: the A/B tooling at shop scale (assignment, bootstrap, whole analysis).

Measured in one run, each against a baseline timed in the same run:

(a) ``assign_variants`` on N user ids vs. the plainest correct implementation (a per-user Python
    loop: sha256, then ``bisect`` into the cumulative weights);
(b) the revenue bootstrap of ``recctl.abtest.stats.bootstrap_mean_diff`` (resamples only the
    non-zero users, exact in distribution) vs. the textbook bootstrap that resamples all n users,
    on zero-inflated revenue (5 % of users buy);
(c) ``analyze`` (per-user aggregation, every test, SRM, bootstrap) vs. its floor, the bare polars
    join + group-by that computes the per-arm means.

The machine may be shared and noisy: compare the ratios, not the absolute seconds.

Run::

    python -m benchmarks.bench_abtest                    # 1,000,000 users (about a minute on 2 cores)
    python -m benchmarks.bench_abtest --users 200000     # quicker
    python -m benchmarks.bench_abtest --json
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import time

import numpy as np
import polars as pl

from recctl.abtest.analysis import analyze
from recctl.abtest.assign import assign_variants, assignment_frame
from recctl.abtest.simulate import simulate_outcomes
from recctl.abtest.stats import bootstrap_mean_diff
from recctl.config.abtest import ABTestConfig


def _experiment(n_bootstrap: int) -> ABTestConfig:
    return ABTestConfig.model_validate(
        {
            "name": "bench",
            "salt": "bench-salt",
            "control": "control",
            "holdout": 0.05,
            "n_bootstrap": n_bootstrap,
            "variants": {"control": {"model": "a", "weight": 1}, "treatment": {"model": "b", "weight": 1}},
        }
    )


def _naive_assign(ids: list[str], exp: ABTestConfig) -> list[str]:
    names = sorted(exp.variants)
    total = sum(exp.variants[n].weight for n in names)
    cum, acc = [], 0.0
    for n in names:
        acc += exp.variants[n].weight / total
        cum.append(acc)
    out = []
    for uid in ids:
        d = hashlib.sha256(f"{exp.salt}\x1f{uid}".encode()).digest()
        if int.from_bytes(d[8:16], "big") / 2**64 < exp.holdout:
            out.append("holdout")
        else:
            out.append(names[min(bisect.bisect_right(cum, int.from_bytes(d[:8], "big") / 2**64), len(names) - 1)])
    return out


def _naive_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    d = np.empty(n_boot)
    for i in range(n_boot):
        d[i] = a[rng.integers(0, a.size, a.size)].mean() - b[rng.integers(0, b.size, b.size)].mean()
    lo, hi = np.quantile(d, [0.025, 0.975])
    return float(lo), float(hi)


def _timed(fn, *args):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main() -> None:
    """Run the three measurements and print seconds and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for (b) and (c)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exp = _experiment(args.bootstrap)
    ids = [f"U{i:08d}" for i in range(args.users)]
    results: dict[str, dict[str, float]] = {}

    ours, t_ours = _timed(assign_variants, ids, exp)
    naive, t_naive = _timed(_naive_assign, ids, exp)
    assert list(ours) == naive, "the vectorised assignment must equal the reference loop"
    results["assign"] = {"recctl_s": t_ours, "naive_loop_s": t_naive, "speedup": t_naive / t_ours}

    rng = np.random.default_rng(0)
    n = args.users // 2
    a = rng.exponential(40, n) * (rng.random(n) < 0.05)
    b = rng.exponential(40, n) * (rng.random(n) < 0.05)
    n_naive = max(20, args.bootstrap // 20)  # the textbook bootstrap is too slow for all resamples
    _, t_ours = _timed(bootstrap_mean_diff, a, b, args.bootstrap, 0.05, 0)
    _, t_naive = _timed(_naive_bootstrap, a, b, n_naive, 0)
    t_naive_full = t_naive * args.bootstrap / n_naive
    results["bootstrap"] = {
        "recctl_s": t_ours,
        "textbook_s_extrapolated": t_naive_full,
        "speedup": t_naive_full / t_ours,
    }

    assignments = assignment_frame(ids, exp)
    outcomes = simulate_outcomes(assignments, {"control": 0.05, "treatment": 0.055, "holdout": 0.045}, seed=1)
    canonical = outcomes.select(
        "user_id",
        pl.when(pl.col("event") == "purchase").then(pl.lit("conversion")).otherwise(pl.lit("click")).alias("kind"),
        "revenue",
    )

    def floor() -> pl.DataFrame:
        per_user = canonical.group_by("user_id").agg(pl.col("revenue").sum())
        joined = assignments.join(per_user, on="user_id", how="left").with_columns(pl.col("revenue").fill_null(0.0))
        return joined.group_by("variant").agg(
            pl.col("revenue").mean().alias("mean"), pl.col("revenue").var().alias("var")
        )

    _, t_ours = _timed(analyze, assignments, canonical, exp)
    _, t_floor = _timed(floor)
    results["analyze"] = {"recctl_s": t_ours, "groupby_floor_s": t_floor, "ratio_to_floor": t_ours / t_floor}

    if args.json:
        print(json.dumps({"users": args.users, "n_bootstrap": args.bootstrap, **results}, indent=2))
        return
    print(f"{args.users:,} users, {args.bootstrap} bootstrap resamples")
    for name, row in results.items():
        print(f"  {name:10s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
