"""Preprocess against the hand-written polars job (issue 18, item 2), optionally before/after a change.

On generated shops (:func:`benchmarks.bench_scale.generate_shop`, the scaling benchmark's
shop and config), ingests once, then runs in turn, each in its own process and measured by
``os.wait4`` (CPU = user + system of all threads, peak resident memory):

* ``recctl preprocess`` of this checkout;
* with ``--baseline DIR``: ``recctl preprocess`` of the recctl source tree in ``DIR`` (e.g.
  ``git archive main | tar -x -C DIR``), on a copy of the same ingested files in a workdir of its
  own (manifests without the records' ``identity``, which a recctl older than it cannot read), and
  its outputs compared with this checkout's, file by file (rows equal; weights to 1e-12 relative);

Every round after the first re-runs preprocess over its previous outputs, as a nightly run does.
* the preprocess job written directly in polars, twice: ``by_hand`` (``bench_scale``'s job:
  weights, pair sums, min counts, a time cut, ``train`` / ``test`` and the id maps written)
  and ``by_hand_full`` (the same job writing every file ``recctl preprocess``'s consumers
  read: ``events.parquet`` by user and time with split labels, ``tune_train`` / ``valid``,
  ``all``, ids in sorted order, catalogue columns with the item ids).

It prints per size each run's CPU and peak and the ratios to both hand-written jobs measured
in the same round; with ``--repeats`` the rounds are interleaved and the median ratio is shown.
The machine may be shared: read the ratios, and use ``nice``.

With ``--steps`` the stage also runs once more with each of its steps timed (CPU seconds of
the stage module's calls: reading, filtering, sorting, each file written...), which shows what
the extra files cost.

Run::

    nice -n 10 python -m benchmarks.bench_preprocess                      # 0.5M, 1M, 2M events
    nice -n 10 python -m benchmarks.bench_preprocess --events 2e7 --steps
    git archive main | tar -x -C /tmp/base
    nice -n 10 python -m benchmarks.bench_preprocess --baseline /tmp/base --repeats 2
    nice -n 10 python -m benchmarks.bench_preprocess --events 2e6 --half-life-days 30 --aggregate last \\
        --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_scale import _BY_HAND, _BY_HAND_FULL, _sizes, generate_shop_apart, measure, write_config

_HERE = Path(__file__).resolve().parents[1]
_CLI = "from recctl.cli.main import app; app()"
_FILES = ("users", "items", "events", "train", "test", "tune_train", "valid", "all")


def _preprocess(config: Path, source: Path | None) -> dict[str, Any]:
    """``recctl preprocess CONFIG`` in its own process, from ``source`` (a recctl tree; default: this one)."""
    # env execs python in place (wait4 still measures the python process); the working
    # directory is outside any checkout, since `python -c` puts it first on sys.path
    cmd = ["env", f"PYTHONPATH={source or _HERE}", sys.executable, "-c", _CLI, "preprocess", str(config)]
    res = measure(cmd, cwd=config.parent)
    if res["rc"] != 0:
        raise RuntimeError(f"preprocess ({source or 'this checkout'}) failed ({res['rc']}):\n{res['stderr']}")
    return {k: res[k] for k in ("cpu_s", "wall_s", "peak_mb")}


#: the hand-written polars jobs the stage is measured against
_PEERS = {"by_hand": _BY_HAND, "by_hand_full": _BY_HAND_FULL}


def _by_hand(work: Path, scratch: Path, script: str) -> dict[str, Any]:
    out = scratch / "by_hand"
    out.mkdir(exist_ok=True)
    res = measure([sys.executable, "-c", script, str(work), str(out)], cwd=scratch)
    shutil.rmtree(out, ignore_errors=True)
    if res["rc"] != 0:
        raise RuntimeError(f"by-hand preprocess failed:\n{res['stderr']}")
    return {k: res[k] for k in ("cpu_s", "wall_s", "peak_mb")}


#: the functions of ``recctl.stages.preprocess`` timed by ``--steps``
_STEPS = (
    "read_weighted_events",
    "filter_min_counts",
    "index_events",
    "sort_events",
    "assign_splits",
    "LabelledEvents",
    "check_weights",
    "_write",
)


def step_times(config: Path) -> dict[str, float]:
    """Run the stage in this process with each call of :data:`_STEPS` timed (CPU seconds).

    ``_write`` is counted per file (``write <name>``, hashing for the manifest included),
    ``aggregate`` is ``LabelledEvents.aggregate`` (the five split files' rows);
    ``(rest)`` is everything else from the stage's start.
    """
    import functools
    import resource

    import recctl.stages.preprocess as stage
    from recctl.config import load_config

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    spent: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            start = cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                key = f"write {Path(args[2]).stem}" if name == "_write" else name
                spent[key] = spent.get(key, 0.0) + cpu() - start

        return inner

    for name in _STEPS:
        setattr(stage, name, timed(name, getattr(stage, name)))
    # the split files' aggregation is a method of the object LabelledEvents builds
    from recctl.data.preprocess import LabelledEvents

    LabelledEvents.aggregate = timed("aggregate", LabelledEvents.aggregate)  # type: ignore[method-assign]
    cfg = load_config(config)
    start = cpu()
    stage.run_preprocess(cfg)
    total = cpu() - start
    spent["(rest)"] = total - sum(spent.values())
    spent["total"] = total
    return {k: round(v, 2) for k, v in spent.items()}


def _steps_apart(config: Path) -> dict[str, float]:
    """:func:`step_times` in its own process (from this checkout)."""
    code = "import json, sys; from pathlib import Path; from benchmarks.bench_preprocess import step_times; "
    code += "print(json.dumps(step_times(Path(sys.argv[1]))))"
    cmd = [sys.executable, "-c", code, str(config)]
    out = subprocess.run(cmd, check=True, cwd=_HERE, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def compare_outputs(a: Path, b: Path) -> list[str]:
    """Differences between two preprocess output folders (empty when every file holds the same rows)."""
    import numpy as np
    import polars as pl

    problems = []
    for name in _FILES:
        x, y = pl.read_parquet(a / f"{name}.parquet"), pl.read_parquet(b / f"{name}.parquet")
        if x.schema != y.schema or x.height != y.height:
            problems.append(f"{name}: schema/rows {x.schema}/{x.height} vs {y.schema}/{y.height}")
            continue
        exact = [c for c in x.columns if c != "weight"]
        if not x.select(exact).equals(y.select(exact)):
            problems.append(f"{name}: rows differ")
        elif "weight" in x.columns and not np.allclose(x["weight"].to_numpy(), y["weight"].to_numpy(), rtol=1e-12):
            problems.append(f"{name}: weights differ")
    return problems


def _compare_apart(a: Path, b: Path) -> list[str]:
    """:func:`compare_outputs` in a child process (reading the files here would raise this
    process's peak memory, which every later child's ``wait4`` peak includes)."""
    code = "import json, sys; from pathlib import Path; from benchmarks.bench_preprocess import compare_outputs as c; "
    code += "print(json.dumps(c(Path(sys.argv[1]), Path(sys.argv[2]))))"
    out = subprocess.run([sys.executable, "-c", code, str(a), str(b)], check=True, cwd=_HERE, capture_output=True)
    return list(json.loads(out.stdout))


def _baseline_workdir(config: Path, work: Path, dest: Path) -> Path:
    """A copy of the ingested workdir for the baseline tree, and its config (returned).

    Manifests lose their records' ``identity`` (a recctl before it refuses the key); the copy's
    files have new identities anyway, so this checkout would hash them too.
    """
    import yaml

    shutil.copytree(work, dest, symlinks=True)
    for manifest in dest.glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        for where in ("inputs", "outputs"):
            for rec in data.get(where, []):
                rec.pop("identity", None)
        manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    raw = yaml.safe_load(config.read_text())
    raw["workdir"] = str(dest)
    out = config.with_name("config_base.yaml")
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def run_size(
    root: Path,
    n_events: int,
    n_items: int,
    baseline: Path | None,
    repeats: int,
    steps: bool = False,
    preprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every variant on one generated shop, ``repeats`` interleaved rounds.

    ``preprocess``: keys set in the config's ``preprocess`` section (e.g. ``half_life_days``,
    ``aggregate``) for recctl and the baseline; the polars jobs stay as they are.
    """
    folder = root / f"events_{n_events}"
    folder.mkdir()
    generate_shop_apart(folder, n_events, n_items)
    config = write_config(folder, {"popular": {"kind": "popularity"}, "top": {"kind": "popularity"}})
    if preprocess:
        import yaml

        raw = yaml.safe_load(config.read_text())
        raw["preprocess"].update(preprocess)
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
    # a shop's raw export is a settled file: recctl records no identity for a file changed within
    # the last 2 s (recctl.artifacts.RACY_NS), which a just-generated one would be
    time.sleep(2.5)
    ingest = measure([sys.executable, "-c", _CLI, "ingest", str(config)], cwd=folder)
    if ingest["rc"] != 0:
        raise RuntimeError(f"ingest failed:\n{ingest['stderr']}")
    work = folder / "work"
    base_config = _baseline_workdir(config, work, folder / "work_base") if baseline is not None else None
    rounds: list[dict[str, Any]] = []
    differences: list[str] = []
    for _ in range(repeats):
        row = {"recctl": _preprocess(config, None)}
        if baseline is not None and base_config is not None:
            row["baseline"] = _preprocess(base_config, baseline)
            differences = _compare_apart(work / "preprocess", folder / "work_base" / "preprocess")
        for peer, script in _PEERS.items():
            row[peer] = _by_hand(work, folder, script)
        rounds.append(row)
        line = "  ".join(f"{k} cpu {v['cpu_s']:6.1f} s peak {v['peak_mb']:6.0f} MB" for k, v in row.items())
        print(f"  {n_events:>11,}  {line}", flush=True)
    step_cpu = _steps_apart(config) if steps else None
    shutil.rmtree(folder, ignore_errors=True)
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for peer in _PEERS:
        for name in rounds[0]:
            if name in _PEERS:
                continue
            ratios.setdefault(peer, {})[name] = {
                m: round(statistics.median(r[name][m] / r[peer][m] for r in rounds), 2) for m in ("cpu_s", "peak_mb")
            }
    return {
        "events": n_events,
        "items": n_items,
        "rounds": rounds,
        "ratios": ratios,
        "differences": differences,
        "steps_cpu_s": step_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the sizes and print the ratios to the hand-written polars job."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=_sizes, default=_sizes("5e5,1e6,2e6"), help="Event counts (comma-separated).")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--baseline", type=Path, default=None, help="A recctl source tree to compare with.")
    ap.add_argument("--repeats", type=int, default=1, help="Interleaved rounds per size (median ratio).")
    ap.add_argument("--scratch", type=Path, default=None, help="Where shops are generated (default: a temp dir).")
    ap.add_argument("--steps", action="store_true", help="Also time the stage's steps (one more run per size).")
    ap.add_argument("--half-life-days", type=float, default=None, help="preprocess.half_life_days (recctl only).")
    ap.add_argument("--aggregate", choices=("sum", "max", "last"), default=None, help="preprocess.aggregate.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    baseline = args.baseline.resolve() if args.baseline else None
    if baseline is not None and not (baseline / "recctl" / "__init__.py").exists():
        ap.error(f"--baseline {baseline}: no recctl/__init__.py there")
    root = Path(tempfile.mkdtemp(prefix="recctl-pre-", dir=args.scratch))
    print(f"load average {os.getloadavg()[0]:.1f} at start; scratch {root}", flush=True)
    try:
        settings = {k: v for k, v in (("half_life_days", args.half_life_days), ("aggregate", args.aggregate)) if v}
        runs = [run_size(root, n, args.items, baseline, args.repeats, args.steps, settings) for n in args.events]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        json.dump(runs, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"\nratio to the hand-written polars jobs (median of {args.repeats}; {args.items:,} items)")
    print(f"  {'events':>11s}  {'variant':9s} {'vs':12s} {'CPU':>6s} {'peak':>6s}")
    for run in runs:
        for peer, by_variant in run["ratios"].items():
            for name, r in by_variant.items():
                print(f"  {run['events']:>11,}  {name:9s} {peer:12s} {r['cpu_s']:6.2f} {r['peak_mb']:6.2f}")
        if baseline is not None:
            print(f"  {'':>11s}  outputs vs baseline: {'; '.join(run['differences']) or 'identical'}")
        if run["steps_cpu_s"]:
            cells = ", ".join(f"{k} {v:.2f}" for k, v in run["steps_cpu_s"].items())
            print(f"  {'':>11s}  steps (CPU s, one run): {cells}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
