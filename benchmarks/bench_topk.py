"""Benchmark: top-K for every user at shop scale through recctl's ranking kernel.

Issue 7, item 2: a generated catalogue of 50,000 items, 200,000 users, 64 factors, K=10,
seen items excluded. Reports wall time and peak memory of ``recctl.ranking.iter_top_k``
(blocks on all cores, seen items masked, grouped top-K selection, results collected as the
recommend stage streams them), and, measured in the same run on the same embeddings:

(a) the plain per-user LightFM loop (``model.predict(user, all_items)``, mask seen items,
    ``argsort``), timed on a sample of users and extrapolated to all users;
(b) the floor: the bare blocked matrix multiplication ``U[block] @ V.T`` with no masking and
    no selection, the best of two ways of running it (a thread pool with one BLAS thread per
    worker, and one caller with multi-threaded BLAS);
(c) for information, recctl's LightFM model path (``iter_recommend`` -> ``_score``), which
    folds the user and item biases into the one product per block (``--no-model`` skips it);
(d) with ``--numpy-kernel``, the same kernel with the numpy selection
    (``RECCTL_TOPK_SELECTION=numpy``; what runs where ``recctl._kernels`` is not built), checked to
    return the same lists.

Kernel, floor and model path alternate over ``--rounds`` slices of users, and CPU seconds are
reported next to wall time, so load from other processes hits all of them alike.

The machine may be shared and noisy: compare the ratios, not the absolute seconds.

Run::

    python -m benchmarks.bench_topk                 # the issue's sizes (about 2 minutes on 2 cores)
    python -m benchmarks.bench_topk --users 20000   # quicker
    python -m benchmarks.bench_topk --json          # machine-readable
    python -m benchmarks.bench_topk --users 20000 --no-model --numpy-kernel   # compiled vs numpy selection
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_topk --n-jobs 1 ...      # one core
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from recctl.ranking import (
    DEFAULT_BLOCK_BYTES,
    SELECTION_ENV,
    block_rows_for,
    iter_top_k,
    resolve_n_jobs,
    selection_backend,
)


def make_data(n_users: int, n_items: int, n_factors: int, seen_per_user: int, seed: int):
    """Random embeddings and a long-tailed seen-items matrix (CSR, ``seen_per_user`` on average)."""
    rng = np.random.default_rng(seed)
    user_f = (rng.standard_normal((n_users, n_factors)) / np.sqrt(n_factors)).astype(np.float32)
    item_f = (rng.standard_normal((n_items, n_factors)) / np.sqrt(n_factors)).astype(np.float32)
    counts = rng.poisson(seen_per_user, n_users)
    # Zipf-like popularity: a few items are seen by many users, most by few
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    cols = rng.choice(n_items, size=int(counts.sum()), p=popularity)
    rows = np.repeat(np.arange(n_users), counts)
    seen = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_users, n_items))
    seen.sum_duplicates()
    return user_f, item_f, seen


def cpu_s() -> float:
    """CPU seconds used by this process so far (all threads, user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_peak_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_kernel(user_f, item_f, seen, k: int, n_jobs: int, max_block_bytes: int, trace: bool = False) -> dict:
    """All users through ``iter_top_k``; results kept in memory as the stage would stream them.

    With ``trace`` the run is under ``tracemalloc`` (for the allocation peak; not timed).
    """
    item_t = np.ascontiguousarray(item_f.T)
    n_users = len(user_f)
    items_out = np.empty((n_users, k), np.int64)
    scores_out = np.empty((n_users, k), np.float32)

    def score(users: np.ndarray) -> np.ndarray:
        return user_f[users] @ item_t

    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    pos = 0
    for block in iter_top_k(
        score,
        np.arange(n_users),
        k,
        exclude=seen,
        batch_size=1 << 20,
        n_jobs=n_jobs,
        n_items=len(item_f),
        max_block_bytes=max_block_bytes,
    ):
        items_out[pos : pos + len(block)] = block.items
        scores_out[pos : pos + len(block)] = block.scores
        pos += len(block)
    wall = time.perf_counter() - t0
    traced_peak = 0
    if trace:
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # sanity: no seen item came back, lists are full
    probe = np.arange(0, n_users, max(1, n_users // 2000))
    hits = (
        seen[probe]
        .multiply(
            sp.csr_matrix(
                (np.ones(len(probe) * k), (np.repeat(np.arange(len(probe)), k), items_out[probe].ravel())),
                shape=(len(probe), seen.shape[1]),
            )
        )
        .nnz
    )
    return {
        "wall_s": wall,
        "traced_peak_mb": traced_peak / 2**20,
        "seen_items_returned": int(hits),
        "min_list_length": int((items_out >= 0).sum(axis=1).min()),
        "items": items_out,
        "scores": scores_out,
    }


def lightfm_model(user_f, item_f):  # noqa: ANN001, ANN201
    """A fitted-looking ``recctl`` LightFM model holding the benchmark embeddings (zero biases).

    Scoring then goes through the real model path (``iter_recommend`` -> ``_score``: matmul plus
    the two bias additions), which is what ``recctl recommend`` runs.
    """
    from recctl.models.lightfm_model import LightFMModel

    model = LightFMModel(no_components=user_f.shape[1])
    model.user_repr_, model.item_repr_ = user_f, item_f
    model.user_bias_ = np.zeros(len(user_f), np.float32)
    model.item_bias_ = np.zeros(len(item_f), np.float32)
    model.n_users, model.n_items, model.is_fitted = len(user_f), len(item_f), True
    return model


def run_model(model, users: np.ndarray, seen, k: int, n_jobs: int, max_block_bytes: int) -> float:  # noqa: ANN001
    """Wall seconds of ``model.iter_recommend`` over ``users`` (results discarded)."""
    t0 = time.perf_counter()
    for _ in model.iter_recommend(
        users, k, exclude=seen, batch_size=1 << 20, n_jobs=n_jobs, max_block_bytes=max_block_bytes
    ):
        pass
    return time.perf_counter() - t0


def run_floor(user_f, item_f, n_jobs: int, max_block_bytes: int) -> dict:
    """Bare blocked matmul, no masking or selection: best of pool/1-thread BLAS and multi-thread BLAS."""
    from threadpoolctl import threadpool_limits

    item_t = np.ascontiguousarray(item_f.T)
    n_users = len(user_f)
    rows = block_rows_for(len(item_f), 1 << 20, max_block_bytes)
    blocks = [np.arange(i, min(i + rows, n_users)) for i in range(0, n_users, rows)]
    workers = resolve_n_jobs(n_jobs)

    def one(users: np.ndarray) -> float:
        return float((user_f[users] @ item_t)[0, 0])  # keep the product alive until computed

    t0, c0 = time.perf_counter(), cpu_s()
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, blocks):
            pass
    pooled, pooled_cpu = time.perf_counter() - t0, cpu_s() - c0
    # one caller, BLAS using every core, on larger blocks (what BLAS likes best)
    big = block_rows_for(len(item_f), 1 << 20, max_block_bytes * workers)
    t0 = time.perf_counter()
    for i in range(0, n_users, big):
        one(np.arange(i, min(i + big, n_users)))
    blas_threaded = time.perf_counter() - t0
    return {
        "pooled_s": pooled,
        "pooled_cpu_s": pooled_cpu,
        "blas_threaded_s": blas_threaded,
        "wall_s": min(pooled, blas_threaded),
    }


def run_lightfm_loop(
    user_f, item_f, seen, k: int, sample: int, n_jobs: int, seed: int, check: tuple[np.ndarray, np.ndarray] | None
) -> dict:
    """Per-user ``LightFM.predict`` on a sample of users, extrapolated to all users."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "compiled without OpenMP" on some builds
        from lightfm import LightFM

    n_users, n_factors = user_f.shape
    n_items = len(item_f)
    model = LightFM(no_components=n_factors, random_state=seed)
    # one tiny fit so that LightFM allocates its state, then install the benchmark embeddings
    tiny = sp.coo_matrix((np.ones(2, np.float32), ([0, n_users - 1], [0, n_items - 1])), shape=(n_users, n_items))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(tiny, epochs=1)
    model.user_embeddings = user_f.copy()
    model.item_embeddings = item_f.copy()
    model.user_biases = np.zeros(n_users, np.float32)
    model.item_biases = np.zeros(n_items, np.float32)
    rng = np.random.default_rng(seed + 1)
    users = np.sort(rng.choice(n_users, size=min(sample, n_users), replace=False))
    all_items = np.arange(n_items, dtype=np.int32)
    threads = resolve_n_jobs(n_jobs)
    mismatches = 0
    t0 = time.perf_counter()
    for u in users:
        scores = model.predict(int(u), all_items, num_threads=threads)
        scores[seen.indices[seen.indptr[u] : seen.indptr[u + 1]]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        if check is not None and not np.array_equal(np.sort(top), np.sort(check[0][u])):
            # float64 (LightFM) vs float32 (BLAS) sums may swap near-equal neighbours
            mismatches += 1
    per_user = (time.perf_counter() - t0) / len(users)
    return {
        "sample_users": int(len(users)),
        "per_user_ms": per_user * 1000,
        "extrapolated_s": per_user * n_users,
        "lists_differing_from_kernel": mismatches,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a report (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seen", type=int, default=20, help="Average seen items per user.")
    ap.add_argument("--sample", type=int, default=300, help="Users timed in the LightFM loop.")
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--block-mb", type=float, default=DEFAULT_BLOCK_BYTES / 2**20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-model",
        dest="with_model",
        action="store_false",
        help="Skip timing recctl's LightFM model path (matmul + biases through iter_recommend).",
    )
    ap.add_argument(
        "--numpy-kernel",
        action="store_true",
        help=f"Also time the kernel with the numpy selection ({SELECTION_ENV}=numpy) in the same rounds.",
    )
    ap.add_argument("--rounds", type=int, default=4, help="Kernel and floor alternate over this many slices of users.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    block_bytes = int(args.block_mb * 2**20)

    user_f, item_f, seen = make_data(args.users, args.items, args.factors, args.seen, args.seed)
    data_mb = (user_f.nbytes + item_f.nbytes + seen.data.nbytes + seen.indices.nbytes + seen.indptr.nbytes) / 2**20
    rss_before = rss_peak_mb()
    # kernel and floor alternate over rounds of users (order flipped every round), so that load
    # from other processes on a shared machine hits both alike
    bounds = np.linspace(0, args.users, args.rounds + 1).astype(int)
    kernel = {"wall_s": 0.0, "cpu_s": 0.0, "seen_items_returned": 0, "min_list_length": args.k}
    floor = {"wall_s": 0.0, "pooled_s": 0.0, "blas_threaded_s": 0.0, "pooled_cpu_s": 0.0}
    items_all = np.empty((args.users, args.k), np.int64)
    scores_all = np.empty((args.users, args.k), np.float32)
    model = lightfm_model(user_f, item_f) if args.with_model else None
    model_s = {"wall_s": 0.0, "cpu_s": 0.0}
    numpy_kernel = {"wall_s": 0.0, "cpu_s": 0.0, "lists_differing": 0}
    backend = selection_backend()
    for r in range(args.rounds):
        lo, hi = bounds[r], bounds[r + 1]
        order = ("kernel", "floor", "model", "numpy") if r % 2 == 0 else ("numpy", "model", "floor", "kernel")
        for what in order:
            c0 = cpu_s()
            if what == "numpy":
                if not args.numpy_kernel:
                    continue
                os.environ[SELECTION_ENV] = "numpy"
                try:
                    part = run_kernel(user_f[lo:hi], item_f, seen[lo:hi], args.k, args.n_jobs, block_bytes)
                finally:
                    del os.environ[SELECTION_ENV]
                numpy_kernel["cpu_s"] += cpu_s() - c0
                numpy_kernel["wall_s"] += part["wall_s"]
                numpy_part = part["items"]
            elif what == "kernel":
                part = run_kernel(user_f[lo:hi], item_f, seen[lo:hi], args.k, args.n_jobs, block_bytes)
                kernel["cpu_s"] += cpu_s() - c0
                kernel["wall_s"] += part["wall_s"]
                kernel["seen_items_returned"] += part["seen_items_returned"]
                kernel["min_list_length"] = min(kernel["min_list_length"], part["min_list_length"])
                items_all[lo:hi], scores_all[lo:hi] = part["items"], part["scores"]
            elif what == "model":
                if model is not None:
                    model_s["wall_s"] += run_model(model, np.arange(lo, hi), seen, args.k, args.n_jobs, block_bytes)
                    model_s["cpu_s"] += cpu_s() - c0
            else:
                part = run_floor(user_f[lo:hi], item_f, args.n_jobs, block_bytes)
                floor["pooled_cpu_s"] += part["pooled_cpu_s"]
                for key in ("wall_s", "pooled_s", "blas_threaded_s"):
                    floor[key] += part[key]
        if args.numpy_kernel:
            numpy_kernel["lists_differing"] += int((numpy_part != items_all[lo:hi]).any(axis=1).sum())
    kernel["items"], kernel["scores"] = items_all, scores_all
    floor["wall_s"] = min(floor["pooled_s"], floor["blas_threaded_s"])
    rss_after_kernel = rss_peak_mb()
    # allocation peak of the kernel (block-bounded, so a slice of the users shows it)
    n_trace = min(args.users, 20_000)
    traced = run_kernel(user_f[:n_trace], item_f, seen[:n_trace], args.k, args.n_jobs, block_bytes, trace=True)
    loop = run_lightfm_loop(
        user_f, item_f, seen, args.k, args.sample, args.n_jobs, args.seed, (kernel["items"], kernel["scores"])
    )
    result = {
        "config": {
            "users": args.users,
            "items": args.items,
            "factors": args.factors,
            "k": args.k,
            "avg_seen_per_user": args.seen,
            "seen_nnz": int(seen.nnz),
            "n_jobs": resolve_n_jobs(args.n_jobs),
            "block_rows": block_rows_for(args.items, 1 << 20, block_bytes),
            "cpus": os.cpu_count(),
            "selection": backend,
        },
        "kernel_wall_s": round(kernel["wall_s"], 3),
        "kernel_users_per_s": round(args.users / kernel["wall_s"]),
        "kernel_traced_peak_mb": round(traced["traced_peak_mb"], 1),
        "input_data_mb": round(data_mb, 1),
        "process_peak_rss_mb_after_kernel": round(rss_after_kernel, 1),
        "rounds": args.rounds,
        "process_peak_rss_mb_before_kernel": round(rss_before, 1),
        "seen_items_returned": kernel["seen_items_returned"],
        "min_list_length": kernel["min_list_length"],
        "floor_wall_s": round(floor["wall_s"], 3),
        "floor_pooled_s": round(floor["pooled_s"], 3),
        "floor_blas_threaded_s": round(floor["blas_threaded_s"], 3),
        "lightfm_loop_per_user_ms": round(loop["per_user_ms"], 3),
        "lightfm_loop_extrapolated_s": round(loop["extrapolated_s"], 1),
        "lightfm_loop_sample_users": loop["sample_users"],
        "lightfm_lists_differing_from_kernel": loop["lists_differing_from_kernel"],
        "ratio_kernel_to_floor": round(kernel["wall_s"] / floor["wall_s"], 3),
        "kernel_cpu_s": round(kernel["cpu_s"], 3),
        "lightfm_model_path_wall_s": round(model_s["wall_s"], 3) if model is not None else None,
        "lightfm_model_path_cpu_s": round(model_s["cpu_s"], 3) if model is not None else None,
        "floor_pooled_cpu_s": round(floor["pooled_cpu_s"], 3),
        "ratio_kernel_to_floor_cpu": round(kernel["cpu_s"] / floor["pooled_cpu_s"], 3),
        "speedup_vs_lightfm_loop": round(loop["extrapolated_s"] / kernel["wall_s"], 1),
    }
    if args.numpy_kernel:
        result.update(
            numpy_kernel_wall_s=round(numpy_kernel["wall_s"], 3),
            numpy_kernel_cpu_s=round(numpy_kernel["cpu_s"], 3),
            ratio_numpy_kernel_to_floor=round(numpy_kernel["wall_s"] / floor["wall_s"], 3),
            ratio_numpy_kernel_to_floor_cpu=round(numpy_kernel["cpu_s"] / floor["pooled_cpu_s"], 3),
            numpy_kernel_lists_differing=numpy_kernel["lists_differing"],
        )
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        c = result["config"]
        print(
            f"top-{c['k']} for {c['users']:,} users x {c['items']:,} items, {c['factors']} factors, "
            f"{c['seen_nnz']:,} seen items masked, {c['n_jobs']} workers, {c['block_rows']} users/block, "
            f"selection: {c['selection']}"
        )
        print(f"  recctl kernel        {result['kernel_wall_s']:9.2f} s  ({result['kernel_users_per_s']:,} users/s)")
        print(
            f"  (b) matmul floor     {result['floor_wall_s']:9.2f} s  (pool {result['floor_pooled_s']:.2f} s, "
            f"threaded BLAS {result['floor_blas_threaded_s']:.2f} s)"
        )
        print(
            f"  (a) LightFM loop     {result['lightfm_loop_extrapolated_s']:9.1f} s  extrapolated from "
            f"{result['lightfm_loop_sample_users']} users at {result['lightfm_loop_per_user_ms']:.2f} ms/user"
        )
        print(
            f"  kernel / floor       {result['ratio_kernel_to_floor']:9.2f} x   "
            "(aim: <= 1.3 on an idle machine; wall clock)"
        )
        print(
            f"  kernel / floor CPU   {result['ratio_kernel_to_floor_cpu']:9.2f} x   "
            f"(CPU seconds {result['kernel_cpu_s']:.1f} "
            f"vs {result['floor_pooled_cpu_s']:.1f}: robust to other load on a shared machine)"
        )
        if args.numpy_kernel:
            print(
                f"  (d) numpy selection  {result['numpy_kernel_wall_s']:9.2f} s  = "
                f"{result['ratio_numpy_kernel_to_floor']:.2f}x the floor in wall time, "
                f"{result['ratio_numpy_kernel_to_floor_cpu']:.2f}x in CPU ({result['numpy_kernel_cpu_s']:.1f} CPU s); "
                f"lists differing from the kernel's: {result['numpy_kernel_lists_differing']}"
            )
        print(f"  LightFM loop / kernel{result['speedup_vs_lightfm_loop']:9.1f} x")
        if model is not None:
            print(
                f"  recctl LightFM model path (matmul + 2 bias passes + kernel): "
                f"{result['lightfm_model_path_wall_s']:.2f} s wall, {result['lightfm_model_path_cpu_s']:.1f} CPU s "
                f"= {result['lightfm_model_path_cpu_s'] / result['floor_pooled_cpu_s']:.2f}x the floor in CPU time"
            )
        print(
            f"  memory: kernel allocations peak {result['kernel_traced_peak_mb']:.0f} MB (tracemalloc, incl. "
            f"the result arrays of {min(c['users'], 20_000):,} users), "
            f"inputs {result['input_data_mb']:.0f} MB, "
            f"process peak RSS {result['process_peak_rss_mb_after_kernel']:.0f} MB "
            f"(aim: < 2048)"
        )
        print(
            f"  checks: seen items returned {result['seen_items_returned']}, shortest list "
            f"{result['min_list_length']}, LightFM lists differing {result['lightfm_lists_differing_from_kernel']}"
            f"/{result['lightfm_loop_sample_users']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
