"""Benchmark: the local engine vs Spark (``engine: spark``) on one generated shop, stage by stage.

Generates an events CSV in the sample shop's layout (``--events`` rows, ``--users`` customers,
``--items`` products with Zipf-like popularity, 0.01% rows without a customer id and 0.1% exact
duplicates, so the accounting has work to do), then runs ingest, preprocess, evaluate and
recommend with the same config on both engines, each engine in a fresh process (so one engine's
caches do not help the other), and prints seconds per stage and the Spark / local ratio, measured
in the same run. Spark's session start (JVM, Python workers) is reported on its own line, since a
real cluster pays it once per run, not per stage. Outputs are compared row by row at the end.

Run::

    nice -n 10 python -m benchmarks.bench_spark                       # 5M and 20M events
    python -m benchmarks.bench_spark --events 1000000 --master 'local[2]'
    python -m benchmarks.bench_spark --master 'local-cluster[2,1,2048]'

Long runs in pieces (one engine per invocation, e.g. under a lock held for a limited time):
``--keep DIR`` keeps the generated CSV and both workdirs there, ``--jsonl FILE`` appends one
record per (size, engine) with the seconds, the load average and the peak RSS, and skips what
it already holds; an engine stopped mid-way (``timeout`` sends SIGTERM: its processes are
stopped too) resumes after its last finished stage, whose time comes from its manifest; the
table and the comparison are printed once both engines of a size are in::

    python -m benchmarks.bench_spark --events 20000000 --engines local --keep /tmp/b --jsonl /tmp/b/r.jsonl
    python -m benchmarks.bench_spark --events 20000000 --engines spark --keep /tmp/b --jsonl /tmp/b/r.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = ("ingest", "preprocess", "evaluate", "recommend")
HEADER = "customer_id,product_id,event_type,event_time,quantity\n"
_CHUNK = 1_000_000


def generate(path: Path, rows: int, users: int, items: int, seed: int = 0) -> None:
    """Write ``rows`` events (plus header) to ``path`` in chunks of a million."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "s")
    kinds = np.array(["view", "add_to_cart", "purchase"])
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(HEADER)
        done = 0
        while done < rows:
            n = min(_CHUNK, rows - done)
            user = rng.integers(0, users, n)
            item = (rng.pareto(1.2, n) * items / 40).astype(np.int64) % items
            seconds = np.sort(rng.integers(0, 120 * 86400, n))
            frame = pl.DataFrame(
                {
                    "customer_id": [f"C{u:07d}" for u in user],
                    "product_id": [f"P{i:06d}" for i in item],
                    "event_type": kinds[rng.choice(3, n, p=[0.7, 0.2, 0.1])],
                    "event_time": (start + seconds.astype("timedelta64[s]")).astype(str),
                    "quantity": rng.integers(1, 4, n).astype(str),
                }
            ).with_columns(pl.col("event_time").str.replace("T", " "))
            dirty = pl.Series(rng.random(n) < 0.0001)
            frame = frame.with_columns(
                pl.when(dirty).then(pl.lit("")).otherwise(pl.col("customer_id")).alias("customer_id")
            )
            k = max(1, n // 1000)
            dupes = frame.head(n - k).sample(n=k, seed=int(rng.integers(1 << 31)))
            fh.write(pl.concat([frame.head(n - k), dupes]).write_csv(include_header=False))
            done += n


def config(csv: Path, workdir: Path, engine: dict[str, Any] | None) -> dict[str, Any]:
    """The benchmark's experiment: popularity served and evaluated, a time split, rules off."""
    from recctl.data.sample import interactions_source

    raw: dict[str, Any] = {
        "name": "bench_spark",
        "workdir": str(workdir),
        "data": {"interactions": interactions_source(str(csv), on_error="quarantine")},
        "preprocess": {
            "event_weights": {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
            "min_user_interactions": 2,
            "min_item_interactions": 5,
            "kcore": True,
            "split": {"strategy": "time", "test_fraction": 0.2, "valid_fraction": 0.1},
        },
        "models": {"popular": {"kind": "popularity"}},
        "evaluate": {"k": [10], "metrics": ["precision", "recall", "ndcg"], "n_bootstrap": 10, "report": False},
        "recommend": {"model": "popular", "k": 10, "fallback": []},
    }
    if engine is not None:
        raw["engine"] = engine
    return raw


def _child(config_path: Path, engine: str, resume: bool = False) -> dict[str, float]:
    """Run the stages in this process; seconds per stage (and Spark's start).

    With ``resume``, a stage already fresh in the workdir (an earlier invocation stopped after
    it) is not run again: its time is the manifest's ``duration_s`` (the same clock), and the
    result marks it ``resumed <stage>``.
    """
    from recctl.config import load_config
    from recctl.stages.evaluate import run_evaluate
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.recommend import run_recommend
    from recctl.stages.train import run_train

    cfg = load_config(config_path)
    out: dict[str, float] = {}
    if engine == "spark":
        from recctl.engine.spark.session import get_spark, stop_spark

        t0 = time.perf_counter()
        spark = get_spark(cfg.engine)
        spark.range(4).count()  # the first job starts the executors and a Python worker
        out["session start"] = time.perf_counter() - t0
    from recctl.artifacts import read_manifest
    from recctl.graph import why_stale

    stages = (
        ("ingest", run_ingest),
        ("preprocess", run_preprocess),
        ("train", run_train),
        ("evaluate", run_evaluate),
        ("recommend", run_recommend),
    )
    for stage, fn in stages:
        if resume and why_stale(cfg, stage) is None:
            # finished by an earlier, interrupted invocation: its own timing (timed_stage) from the manifest
            manifest = read_manifest(cfg.stage_dir(stage))
            out[stage] = float(manifest.duration_s or 0.0)
            out[f"resumed {stage}"] = 1.0
            continue
        t0 = time.perf_counter()
        fn(cfg)
        out[stage] = time.perf_counter() - t0
    if engine == "spark":
        stop_spark()
    return out


def _compare(local: Path, spark: Path) -> dict[str, bool]:
    import polars as pl

    same = {}
    for rel in (
        "ingest/interactions.parquet",
        "ingest/rejected.parquet",
        "preprocess/events.parquet",
        "preprocess/test.parquet",
        "evaluate/per_user.parquet",
        "recommend/recommendations.parquet",
    ):
        same[rel] = pl.read_parquet(local / rel).equals(pl.read_parquet(spark / rel))
    return same


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.bench_spark``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[5_000_000, 20_000_000])
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--executor-memory", default="2g")
    parser.add_argument("--engines", nargs="+", choices=["local", "spark"], default=["local", "spark"])
    parser.add_argument("--keep", type=Path, help="keep the CSV and workdirs in this folder (resumable runs)")
    parser.add_argument("--jsonl", type=Path, help="append one record per (size, engine); skip recorded ones")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fit", action="store_true", help="print the fitted trend of a --jsonl file and exit")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(Path(args.child[0]), args.child[1], args.resume)))
        return 0
    if args.fit:
        if args.jsonl is None:
            parser.error("--fit reads --jsonl FILE")
        print(fit(args.jsonl))
        return 0
    engine = {
        "kind": "spark",
        "master": args.master,
        "conf": {
            "spark.driver.memory": args.driver_memory,
            "spark.executor.memory": args.executor_memory,
            "spark.sql.shuffle.partitions": "16",
        },
    }
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return _run(args, engine, args.keep)
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        return _run(args, engine, Path(tmp))


STAGE_ROWS = ("ingest", "preprocess", "train", "evaluate", "recommend")


def fit(jsonl: Path) -> str:
    """Per stage, a least-squares line ``seconds = a + b x events`` per engine over the recorded sizes.

    Returns the table as text: the fitted per-million-event cost of each engine, their ratio,
    and the size where the lines cross (Spark cheaper beyond it), or why they do not. An
    extrapolation from the sizes measured, on this machine's cores: labelled as such.
    """
    import numpy as np

    records = _recorded(jsonl)
    sizes = sorted({n for n, e in records if (n, "local") in records and (n, "spark") in records})
    lines = [f"fitted over {', '.join(f'{n / 1e6:g}M' for n in sizes)} events (both engines at each size)"]
    if len(sizes) < 2:
        return lines[0] + ": need two sizes or more"
    lines.append(
        f"{'stage':<12}{'local s/M':>10}{'spark s/M':>10}{'ratio':>8}{'spark fixed s':>15}  Spark cheaper from"
    )
    for stage in (*STAGE_ROWS, "total"):

        def secs(engine: str, n: int, stage: str = stage) -> float:
            got = records[(n, engine)]["seconds"]
            return sum(got.get(s, 0.0) for s in STAGE_ROWS) if stage == "total" else float(got.get(stage, 0.0))

        x = np.array(sizes, float) / 1e6
        (bl, al), (bs, as_) = (np.polyfit(x, [secs(e, n) for n in sizes], 1) for e in ("local", "spark"))
        if bs < bl:
            cross = (as_ - al) / (bl - bs)
            verdict = "always" if cross <= 0 else f"~{cross:.0f}M events (extrapolated)"
        else:
            verdict = "never on this machine (Spark's per-event cost is higher)"
        lines.append(
            f"{stage:<12}{bl:>10.2f}{bs:>10.2f}{bs / bl if bl > 0 else float('nan'):>7.1f}x{as_:>15.1f}  {verdict}"
        )
    return "\n".join(lines)


def _run_child(cmd: list[str], args: argparse.Namespace) -> subprocess.CompletedProcess[str]:
    """Run one engine's child in its own process group; a SIGTERM (e.g. ``timeout``) stops it and its JVM too."""
    if args.keep is not None:
        cmd = [*cmd, "--resume"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def stop(signum: int, frame: Any) -> None:
        os.killpg(child.pid, signal.SIGTERM)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        out, err = child.communicate()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)


def _recorded(jsonl: Path | None) -> dict[tuple[int, str], dict[str, Any]]:
    if jsonl is None or not jsonl.exists():
        return {}
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {(r["events"], r["engine"]): r for r in records}


def _run(args: argparse.Namespace, engine: dict[str, Any], root: Path) -> int:
    import yaml

    for n in args.events:
        csv = root / f"events_{n}.csv"
        done_before = _recorded(args.jsonl)
        todo = [name for name in args.engines if (n, name) not in done_before]
        if todo and not csv.exists():
            t0 = time.perf_counter()
            generate(csv, n, args.users, args.items)
            size = csv.stat().st_size / 1e9
            print(f"generated {csv} ({size:.2f} GB) in {time.perf_counter() - t0:.0f} s", flush=True)
        print(f"\n{n:,} events, {args.users:,} users, {args.items:,} items; Spark master {args.master}", flush=True)
        times: dict[str, dict[str, float]] = {k[1]: v["seconds"] for k, v in done_before.items() if k[0] == n}
        for name in todo:
            eng = engine if name == "spark" else None
            path = root / f"{name}_{n}.yaml"
            path.write_text(yaml.safe_dump(config(csv, root / f"work_{name}_{n}", eng)))
            load_before = os.getloadavg()[0]
            done = _run_child([sys.executable, "-m", "benchmarks.bench_spark", "--child", str(path), name], args)
            if done.returncode:
                print(done.stderr[-4000:])
                return done.returncode
            times[name] = json.loads(done.stdout.strip().splitlines()[-1])
            record = {
                "events": n,
                "engine": name,
                "seconds": times[name],
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
                # peak RSS of the largest finished descendant so far (Python driver or a JVM): an upper bound
                "max_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            print(json.dumps(record), flush=True)
            if args.jsonl is not None:
                with open(args.jsonl, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
        if not {"local", "spark"} <= times.keys():
            print(f"waiting for the other engine ({', '.join(sorted(times))} done)", flush=True)
            continue
        print(f"{'stage':<16}{'local s':>10}{'spark s':>10}{'spark/local':>13}")
        for stage in ("session start", "ingest", "preprocess", "train", "evaluate", "recommend"):
            a, b = times["local"].get(stage), times["spark"].get(stage)
            ratio = f"{b / a:.2f}x" if a and b else "-"
            print(f"{stage:<16}{a if a is not None else 0:>10.1f}{b if b is not None else 0:>10.1f}{ratio:>13}")
        if (root / f"work_local_{n}").is_dir() and (root / f"work_spark_{n}").is_dir():
            same = _compare(root / f"work_local_{n}", root / f"work_spark_{n}")
            print("identical outputs:", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in same.items()), flush=True)
        if args.keep is None:
            for p in root.glob(f"*_{n}*"):
                if p.is_file():
                    p.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
