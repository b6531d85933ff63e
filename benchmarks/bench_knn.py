"""Benchmark: item_knn's similarity fit against implicit's CosineRecommender (issue 18, item 3).

Both fit cosine item-item top-N similarities on the same user x item matrix, each fit in its
own process: recctl's ``ItemKNNModel`` (0/1 interactions, its default) on one thread and on all
cores, and ``implicit.nearest_neighbours.CosineRecommender(K=neighbors + 1)`` on the 0/1 matrix
as float64 (made before its timer; implicit keeps each item as its own neighbour, dropped before
comparing). Two shops:

* ``--shop models`` (default): ``benchmarks.bench_models.generate`` (latent tastes, a long tail)
  with ``--users`` x ``--items`` and ``--per-user`` interactions;
* ``--shop scale``: ``benchmarks.bench_scale.generate_shop`` with ``--events`` events (20 per
  user) over ``--items`` items, run through ``recctl ingest`` and ``recctl preprocess`` (min
  counts 2, time split): the training matrix bench_scale's kNN peer column uses. Generating
  20M events and preprocessing them takes minutes: ``--cache DIR`` keeps the matrix for the
  next run.

Fits alternate over ``--rounds`` (recctl all cores / implicit / recctl one thread, reversed every
other round) so other load on a shared machine hits them alike; each round's recctl / implicit
ratio is printed. Per fit: CPU seconds (the steady measure; wall printed too) and the fit's
memory: its resident high-water mark above what was resident when it started
(:mod:`benchmarks.fit_memory`: the child resets the kernel's high-water mark just before the
fit, so the shop's loading does not hide the first megabytes of the fit), and the process peak
(``os.wait4``).

The lists are compared: per item, the kept similarity values must be the same as implicit's
(implicit breaks ties between equal similarities its own way, so which of two tied neighbours
is kept may differ: "tie-equivalent"); recctl on one thread, on all cores and through its numpy
fallback (``RECCTL_TOPK_SELECTION=numpy``, fitted once, before the compiled kernel this was the
only path) must be the same matrix entry for entry.

implicit is installed with recctl (it backs ``kind: als``).

Run::

    nice -n 10 python -m benchmarks.bench_knn                                  # 200k users x 50k items
    nice -n 10 python -m benchmarks.bench_knn --users 1000000 --per-user 15    # 1M users
    flock /work/team/bench.lock nice -n 10 python -m benchmarks.bench_knn --shop scale --events 2e7 \\
        --cache /tmp/knn-shop                                                  # bench_scale's 20M-event shop
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.bench_scale import _tie_equivalent, generate_shop_apart, measure, run_stage, write_config

ROOT = Path(__file__).resolve().parents[1]

#: a bench_models shop, written as the user x item matrix (run in a child: the parent stays small)
_GENERATE = r"""
import sys, scipy.sparse as sp
from benchmarks.bench_models import generate
users, items, per_user, out = sys.argv[1:5]
sp.save_npz(out, generate(int(users), int(items), float(per_user)).interactions, compressed=False)
"""

#: the training matrix of a preprocessed workdir (bench_scale's shop)
_TRAIN_MATRIX = r"""
import sys, scipy.sparse as sp
from recctl.data.dataset import load_dataset
sp.save_npz(sys.argv[2], load_dataset(sys.argv[1], "train").interactions.tocsr(), compressed=False)
"""

_CHILD = r"""
import json, os, resource, sys, time, warnings
import numpy as np, scipy.sparse as sp
from benchmarks.fit_memory import FitMemory
which, matrix, neighbors, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if which == "recctl_numpy":  # recctl's numpy path (all cores), the only one before the compiled kernel
    os.environ["RECCTL_TOPK_SELECTION"] = "numpy"
x = sp.load_npz(matrix).tocsr()
if which == "implicit":
    from implicit.nearest_neighbours import CosineRecommender
    x64 = sp.csr_matrix(x, dtype=np.float64, copy=True)
    x64.data[:] = 1.0
else:
    from recctl.data.dataset import Dataset
    from recctl.models.item_knn import ItemKNNModel
    ds = Dataset(user_ids=np.arange(x.shape[0]), item_ids=np.arange(x.shape[1]), interactions=x)

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

memory = FitMemory()  # the high-water mark from here on is the fit's
c, t = cpu(), time.perf_counter()
if which == "implicit":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CosineRecommender(K=neighbors + 1)
        model.fit(x64, show_progress=False)
    sim = model.similarity
else:
    sim = ItemKNNModel(neighbors=neighbors, n_jobs=1 if which == "recctl_1" else -1).fit(ds).similarity_
fit_cpu, fit_wall = cpu() - c, time.perf_counter() - t
fit_extra_mb = memory.extra_mb()
sim = sp.csr_matrix(sim, dtype=np.float32)
sim.setdiag(0)
sim.eliminate_zeros()
sim.sort_indices()
np.savez(out, indptr=sim.indptr, indices=sim.indices, data=sim.data)
print(json.dumps({
    "fit_cpu_s": fit_cpu, "fit_wall_s": fit_wall,
    "fit_extra_mb": fit_extra_mb, "hwm_reset": memory.reset,
}))
"""

#: timed in every round, in this order (reversed every other round)
RUNS = ("recctl_all", "implicit", "recctl_1")


def shop_matrix(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    """The shop's user x item training matrix as an .npz (made, or found in ``--cache``), and its description."""
    if args.shop == "models":
        name = f"models_{args.users}x{args.items}_{args.per_user:g}.npz"
        desc = f"bench_models shop: {args.users:,} users x {args.items:,} items, {args.per_user:g} per user"
    else:
        name = f"scale_{args.events}x{args.items}.npz"
        desc = f"bench_scale shop: {args.events:,} events over {args.items:,} items, training matrix after preprocess"
    cache = Path(args.cache) if args.cache else scratch
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / name
    if path.exists():
        return path, desc
    part = path.with_suffix(".part.npz")
    if args.shop == "models":
        code = [_GENERATE, str(args.users), str(args.items), str(args.per_user), str(part)]
        subprocess.run([sys.executable, "-c", *code], check=True, cwd=ROOT)
    else:
        folder = scratch / "shop"
        folder.mkdir()
        generate_shop_apart(folder, args.events, args.items)
        models = {"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": args.neighbors}}
        config = write_config(folder, models)
        for command in ("ingest", "preprocess"):
            run_stage(command, config)
        cmd = [sys.executable, "-c", _TRAIN_MATRIX, str(folder / "work" / "preprocess"), str(part)]
        subprocess.run(cmd, check=True, cwd=ROOT)
    os.replace(part, path)
    return path, desc


def fit(which: str, matrix: Path, neighbors: int, out: Path) -> dict[str, float]:
    """One fit in its own process: CPU, wall, the fit's added memory and the process peak."""
    res = measure([sys.executable, "-c", _CHILD, which, str(matrix), str(neighbors), str(out)], cwd=ROOT)
    if res["rc"] != 0:
        raise RuntimeError(f"{which} failed:\n{res['stderr']}")
    inner = json.loads(res["stdout"].strip().splitlines()[-1])
    return {
        "fit_cpu_s": inner["fit_cpu_s"],
        "fit_wall_s": inner["fit_wall_s"],
        "fit_extra_mb": inner["fit_extra_mb"],
        "peak_mb": res["peak_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the fits, alternating, and print CPU, wall, memory, the ratios and the list comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shop", choices=("models", "scale"), default="models")
    ap.add_argument("--users", type=int, default=200_000, help="models shop: users.")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--per-user", type=float, default=19.0, help="models shop: mean interactions per user.")
    ap.add_argument("--events", type=float, default=2e7, help="scale shop: events generated (e.g. 2e7).")
    ap.add_argument("--cache", default="", help="Directory keeping the shop's matrix between runs.")
    ap.add_argument("--neighbors", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.events = int(args.events)
    try:
        import implicit  # noqa: F401
    except ImportError:
        print("implicit is not installed: pip install implicit", file=sys.stderr)
        return 2
    rounds: dict[str, list[dict[str, float]]] = {w: [] for w in (*RUNS, "recctl_numpy")}
    with tempfile.TemporaryDirectory(prefix="recctl-knn-") as tmp:
        matrix, desc = shop_matrix(args, Path(tmp))
        with np.load(matrix) as saved:
            desc += f" ({saved['shape'][0]:,} x {saved['shape'][1]:,}, {int(saved['indptr'][-1]):,} pairs)"
        files = {w: Path(tmp) / f"{w}.npz" for w in rounds}
        for r in range(args.rounds):
            for which in RUNS if r % 2 == 0 else RUNS[::-1]:
                rounds[which].append(fit(which, matrix, args.neighbors, files[which]))
        rounds["recctl_numpy"].append(fit("recctl_numpy", matrix, args.neighbors, files["recctl_numpy"]))
        lists = _tie_equivalent(files["recctl_1"], files["implicit"])
        same_threads = _tie_equivalent(files["recctl_1"], files["recctl_all"])["identical_entries"]
        same_numpy = _tie_equivalent(files["recctl_all"], files["recctl_numpy"])["identical_entries"]

    def ratios(metric: str) -> list[float]:
        pairs = zip(rounds["recctl_all"], rounds["implicit"], strict=True)
        return [round(a[metric] / b[metric], 2) for a, b in pairs]

    best = {w: {m: min(run[m] for run in runs) for m in runs[0]} for w, runs in rounds.items()}
    result = {
        "config": vars(args),
        "shop": desc,
        "fits_best_of_rounds": {w: {m: round(v, 2) for m, v in run.items()} for w, run in best.items()},
        "recctl_over_implicit_cpu_by_round": ratios("fit_cpu_s"),
        "recctl_over_implicit_cpu_median": statistics.median(ratios("fit_cpu_s")),
        "recctl_over_implicit_wall_by_round": ratios("fit_wall_s"),
        "recctl_over_implicit_fit_memory_by_round": ratios("fit_extra_mb"),
        "lists_vs_implicit": lists,
        "recctl_one_thread_equals_all_cores": same_threads,
        "recctl_compiled_equals_numpy_path": same_numpy,
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"cosine item-item top-{args.neighbors}: {desc} ({args.rounds} rounds; numpy path once)")
    for which, run in result["fits_best_of_rounds"].items():
        print(
            f"  {which:13s} fit CPU {run['fit_cpu_s']:7.2f} s  wall {run['fit_wall_s']:7.2f} s  "
            f"fit memory +{run['fit_extra_mb']:6.0f} MB  process peak {run['peak_mb']:6.0f} MB  (best of rounds)"
        )
    print(
        f"  recctl (all cores) / implicit, by round: CPU {result['recctl_over_implicit_cpu_by_round']} "
        f"(median {result['recctl_over_implicit_cpu_median']}x), wall {result['recctl_over_implicit_wall_by_round']}, "
        f"fit memory {result['recctl_over_implicit_fit_memory_by_round']} (aim: <= 1)"
    )
    print(
        f"  lists: {lists['rows_with_different_values']} of {lists['rows']} items keep different similarity values "
        f"than implicit (0 = identical up to ties); one thread == all cores: {same_threads}; "
        f"compiled == numpy path: {same_numpy}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
