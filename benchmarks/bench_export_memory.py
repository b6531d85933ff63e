"""Benchmark: ``serve-export``'s peak memory and CPU against another checkout of recctl, same shop.

Issue 18, item 1: serve-export was the first stage to run out of 16 GB (its peak grew with the
list rows, held 3-4 times at once). This generates :func:`benchmarks.bench_scale.generate_shop`
(``--events``, ``--items``), runs ingest, preprocess, train (item kNN + popularity, as
``bench_scale``'s item series) and recommend once with this checkout, then runs
``recctl serve-export`` with the bundle off and on, ``--rounds`` times, alternating this
checkout and ``--baseline`` (another checkout's root, put first on ``PYTHONPATH`` for its
runs; the order flips every round). Each export is one process: its CPU seconds and peak RSS
come from ``wait4``. Printed: per configuration the median peak and CPU of each side and the
ratios this / baseline measured in the same run; the published files of the last two runs of
each side are compared byte for byte (they must be equal: same inputs, same date).

Run::

    git -C /work/main archive <commit> | tar -x -C /tmp/base   # the baseline tree, e.g. main before a change
    cp recctl/_kernels*.so /tmp/base/recctl/                  # its compiled kernels (or it uses numpy)
    python -m benchmarks.bench_export_memory --events 5e6 --baseline /tmp/base   # ~3 min, ~1 GB
    python -m benchmarks.bench_export_memory --events 2e5 --rounds 1              # quick, this tree only
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_scale import NEIGHBORS, generate_shop_apart, run_stage, write_config

ROOT = Path(__file__).resolve().parents[1]


def export_once(config: Path, tree: Path) -> dict[str, Any]:
    """``recctl serve-export config`` with ``tree`` first on ``PYTHONPATH``: CPU s and peak MB (``wait4``)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = "from recctl.cli.main import app; app()"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve-export", str(config)], stdout=out, stderr=out, env=env, cwd="/"
        )
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            out.seek(0)
            raise SystemExit(f"serve-export failed with {tree}:\n{out.read().decode(errors='replace')[-3000:]}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


def published(directory: Path) -> dict[str, str]:
    """sha256 of each dated file published in ``directory`` (pointers and version ids left out)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.is_symlink() and "_latest" not in p.name
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=5e6)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", type=Path, default=None, help="Another checkout's root to compare with.")
    ap.add_argument("--scratch", type=Path, default=None, help="Where the shop goes (default: a temporary folder).")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench_export_memory.", dir=args.scratch))
    try:
        generate_shop_apart(folder, int(args.events), args.items, seed=1)
        models = {"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": NEIGHBORS}}
        configs = {
            "bundle on": write_config(folder, models),
            "bundle off": write_config(folder, models, bundle=False, name="no_bundle.yaml"),
        }
        for command in ("ingest", "preprocess", "train", "recommend"):
            run_stage(command, configs["bundle on"])
        trees = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        files: dict[str, dict[str, str]] = {}
        for r in range(max(1, args.rounds)):
            for label, config in configs.items():
                for side in list(trees) if r % 2 == 0 else list(reversed(trees)):
                    res = export_once(config, trees[side])
                    runs.setdefault((label, side), []).append(res)
                    files[side] = published(folder / "work" / "exports")
                    print(f"  round {r + 1} {label:10s} {side:8s} {res['cpu_s']:6.2f} CPU s  {res['peak_mb']:7.0f} MB")
        print(f"serve-export, {int(args.events):,} events, {args.items:,} items ({args.rounds} rounds, medians):")
        for label in configs:
            med = {
                side: {m: statistics.median(x[m] for x in runs[(label, side)]) for m in ("cpu_s", "peak_mb")}
                for side in trees
            }
            line = f"  {label}: this {med['this']['peak_mb']:.0f} MB / {med['this']['cpu_s']:.2f} CPU s"
            if "baseline" in trees:
                b = med["baseline"]
                line += (
                    f"; baseline {b['peak_mb']:.0f} MB / {b['cpu_s']:.2f} CPU s; this/baseline peak "
                    f"{med['this']['peak_mb'] / b['peak_mb']:.2f}x, CPU {med['this']['cpu_s'] / b['cpu_s']:.2f}x"
                )
            print(line)
        if "baseline" in trees:
            print(f"  published files identical ({len(files['this'])} files):", files["this"] == files["baseline"])
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
