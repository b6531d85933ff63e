"""Time to equal quality: today's sasrec against an older recctl's, on MovieLens 100K.

The older recctl (a folder holding its ``recctl`` package, e.g. made with
``git archive d11d211 recctl | tar -x -C /tmp/old``) trains with its own defaults and
``patience: 5`` (its early stopping, validation scored in numpy), as in issue 16. Today's
sasrec then trains with its defaults, epoch by epoch; after each epoch its test NDCG@10 is
measured (for this timing only: nothing is chosen by it), and the run stops at the first epoch
that reaches the older model's test NDCG@10. Printed: both fit times, both NDCG@10 and the
ratio. Split and metric as in ``benchmarks/quality_table.py`` (each user's last 20% by time).

    nice -n 10 python -m benchmarks.bench_sasrec_speed --old-src /tmp/old [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, sys, time
sys.path.append({root!r})  # for benchmarks/; the recctl under test comes first (PYTHONPATH)
import recctl
assert recctl.__file__.startswith({src!r}), recctl.__file__
from benchmarks.quality_table import load_events, make_fold, ndcg_at_k, per_user_split, recctl_dataset
from recctl.models.sasrec import SASRecModel
events = load_events("ml-100k")
train, test = per_user_split(events)
fold = make_fold(train, test)
data = recctl_dataset(fold)
mode, target = {mode!r}, {target!r}
if mode == "old":
    t0 = time.perf_counter()
    model = SASRecModel(patience=5, num_threads={threads}, random_state=0).fit(data)
    fit_s = time.perf_counter() - t0
    print(json.dumps({{"fit_s": fit_s, "ndcg": ndcg_at_k(model.score, fold), "epochs": len(model.epoch_losses_)}}))
else:
    model = SASRecModel(num_threads={threads}, random_state=0)
    fit_s, value, epochs = 0.0, 0.0, 0
    t0 = time.perf_counter()
    for epochs in model.iter_fit(data):
        fit_s += time.perf_counter() - t0
        value = ndcg_at_k(model.score, fold)
        if value >= target:
            break
        t0 = time.perf_counter()
    print(json.dumps({{"fit_s": fit_s, "ndcg": value, "epochs": epochs}}))
"""


def _run(src: str, mode: str, target: float, threads: int) -> dict[str, float]:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    code = _CHILD.format(root=root, src=str(Path(src).resolve()), mode=mode, target=target, threads=threads)
    # run outside the checkout: `python -c` puts the working directory first on sys.path
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-src", required=True, help="folder holding the older recctl package")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    root = str(Path(__file__).resolve().parents[1])
    t0 = time.perf_counter()
    old = _run(args.old_src, "old", 0.0, args.threads)
    new = _run(root, "new", old["ndcg"], args.threads)
    print("| recctl | epochs | fit s | NDCG@10 test |\n| --- | --- | --- | --- |")
    print(f"| older (defaults, patience 5) | {old['epochs']:.0f} | {old['fit_s']:.1f} | {old['ndcg']:.4f} |")
    print(f"| today (defaults, to equal quality) | {new['epochs']:.0f} | {new['fit_s']:.1f} | {new['ndcg']:.4f} |")
    print(f"\ntime to equal quality: {old['fit_s'] / max(new['fit_s'], 1e-9):.1f}x faster")
    print(f"(whole run {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
