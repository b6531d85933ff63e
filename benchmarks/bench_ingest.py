"""Benchmark: ``recctl ingest`` on a large events CSV vs a bare polars scan-and-write.

Generates an events CSV in the sample shop's layout (default 20 million rows, about 0.9 GB;
0.01% dirty rows and 0.1% exact duplicates so the accounting has work to do) in a temporary
directory, then, each in a fresh subprocess so peak memory is measured per run:

* **baseline**: ``pl.scan_csv(path).sink_parquet(out, **PARQUET_WRITE)`` — the least any ingest
  must do, written with the same Parquet compression as ``interactions.parquet`` (zstd level 1,
  :data:`recctl.data.ingest.PARQUET_WRITE`) so the comparison is like for like;
* **floor**: the same scan, with only the conversions any ingest into recctl's canonical types
  must make (ids stripped, timestamps parsed to UTC, values to numbers), written the same way:
  no checks, no row accounting, no de-duplication, no hashing. It shows how much of recctl's
  time is the unavoidable type conversion;
* **by hand**: the same job written directly in polars, the way one would without recctl: the
  floor's conversions, rows with a missing id, time or event or a non-numeric value split off
  (row numbers kept), exact duplicates dropped with ``unique(keep="first", maintain_order=True)``,
  both written in one ``collect_all``. No reasons, per-file accounting, hashes or manifest. It
  shows what recctl's framework costs on top of doing the work;
* **recctl**: :func:`recctl.stages.ingest.run_ingest` — parse and validate every row, write
  interactions, rejected rows and the manifest.

Reports rows/s, wall and CPU time, peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the
subprocess) and the ratio recctl / baseline. The issue's aim: within 1.5x of the baseline time
and under 4 GB peak memory.

Run::

    python -m benchmarks.bench_ingest                 # 20M rows
    python -m benchmarks.bench_ingest --rows 2000000  # smaller, on a busy machine
    python -m benchmarks.bench_ingest --csv events.csv --repeat 2  # reuse a generated file
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = "customer_id,product_id,event_type,event_time,quantity\n"
_CHUNK = 1_000_000


def generate_events(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` events (plus header) to ``path`` in chunks, so memory stays small."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "s")
    events = np.array(["view", "add_to_cart", "purchase"])
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(HEADER)
        done = 0
        while done < rows:
            n = min(_CHUNK, rows - done)
            users = rng.integers(0, 2_000_000, n)
            items = (rng.pareto(1.2, n) * 50).astype(np.int64) % 200_000
            seconds = np.sort(rng.integers(0, 120 * 86400, n))
            frame = pl.DataFrame(
                {
                    "customer_id": [f"C{u:07d}" for u in users],
                    "product_id": [f"P{i:06d}" for i in items],
                    "event_type": events[rng.choice(3, n, p=[0.7, 0.2, 0.1])],
                    "event_time": (start + seconds.astype("timedelta64[s]")).astype(str),
                    "quantity": rng.integers(1, 4, n).astype(str),
                }
            ).with_columns(pl.col("event_time").str.replace("T", " "))
            dirty = rng.random(n) < 0.0001
            frame = frame.with_columns(
                pl.when(pl.Series(dirty)).then(pl.lit("")).otherwise(pl.col("customer_id")).alias("customer_id")
            )
            k = max(1, n // 1000)
            dupes = frame.head(n - k).sample(n=k, seed=int(rng.integers(1 << 31)))
            fh.write(pl.concat([frame.head(n - k), dupes]).write_csv(include_header=False))
            done += n


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child_baseline(csv: Path, out: Path) -> dict[str, float]:
    import polars as pl

    from recctl.data.ingest import PARQUET_WRITE

    t0, c0 = time.perf_counter(), _cpu_seconds()
    pl.scan_csv(csv).sink_parquet(out / "events.parquet", **PARQUET_WRITE)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu_seconds() - c0}


def _text(name: str):  # noqa: ANN202  (a polars expression; polars is imported by the children only)
    """A text column stripped, empty meaning missing: the least id handling any ingest does."""
    import polars as pl

    stripped = pl.col(name).str.strip_chars()
    return pl.when(stripped.str.len_bytes() > 0).then(stripped)


def _child_floor(csv: Path, out: Path) -> dict[str, float]:
    import polars as pl

    from recctl.data.ingest import PARQUET_WRITE

    t0, c0 = time.perf_counter(), _cpu_seconds()
    pl.scan_csv(csv, infer_schema=False).select(
        _text("customer_id"),
        _text("product_id"),
        _text("event_type"),
        pl.col("event_time").str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%d %H:%M:%S", strict=False, cache=False),
        pl.col("quantity").cast(pl.Float64, strict=False),
    ).sink_parquet(out / "events.parquet", **PARQUET_WRITE)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu_seconds() - c0}


def _child_by_hand(csv: Path, out: Path) -> dict[str, float]:
    import polars as pl

    from recctl.data.ingest import PARQUET_WRITE

    t0, c0 = time.perf_counter(), _cpu_seconds()
    parsed = pl.scan_csv(csv, infer_schema=False, row_index_name="row", row_index_offset=1).select(
        "row",
        _text("customer_id").alias("user_id"),
        _text("product_id").alias("item_id"),
        _text("event_type").alias("event"),
        pl.col("event_time").str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%d %H:%M:%S", strict=False, cache=False),
        _text("quantity").alias("raw_value"),
        pl.col("quantity").cast(pl.Float64, strict=False).alias("value"),
    )
    ok = (
        pl.all_horizontal(pl.col("user_id", "item_id", "event_time").is_not_null())
        & pl.col("event").is_in(["view", "add_to_cart", "purchase"])
        & (pl.col("raw_value").is_null() | pl.col("value").is_not_null())
    )
    parsed = parsed.with_columns(ok.alias("ok")).cache()
    accepted = (
        parsed.filter("ok")
        .select("user_id", "item_id", "event", "event_time", "value")
        .unique(keep="first", maintain_order=True)
    )
    pl.collect_all(
        [
            accepted.sink_parquet(out / "events.parquet", lazy=True, **PARQUET_WRITE),
            parsed.filter(~pl.col("ok")).select("row").sink_parquet(out / "rejected.parquet", lazy=True),
        ]
    )
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu_seconds() - c0}


def _child_recctl(csv: Path, out: Path) -> dict[str, float]:
    from recctl.config import config_from_dict
    from recctl.data.sample import interactions_source
    from recctl.stages.ingest import run_ingest

    cfg = config_from_dict(
        {
            "workdir": str(out),
            "data": {
                "interactions": interactions_source(str(csv)),
            },
            "models": {"popular": {"kind": "popularity"}},
        }
    )
    t0, c0 = time.perf_counter(), _cpu_seconds()
    manifest = run_ingest(cfg)
    totals = manifest.summary["totals"]
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": _cpu_seconds() - c0,
        **{k: float(v) for k, v in totals.items()},
    }


def _child(kind: str, csv: str, out: str) -> None:
    if kind == "generate":
        generate_events(Path(csv), int(out))
        return
    child = {"baseline": _child_baseline, "floor": _child_floor, "by_hand": _child_by_hand, "recctl": _child_recctl}[
        kind
    ]
    result = child(Path(csv), Path(out))
    # ru_maxrss is in KiB on Linux
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _measure(kind: str, csv: Path, out: Path) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sync"], check=False)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ingest", "--child", kind, str(csv), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ratio(run: dict[str, float], to: dict[str, float]) -> str:
    return f"wall {run['seconds'] / to['seconds']:.2f}x, cpu {run['cpu_seconds'] / to['cpu_seconds']:.2f}x"


def main(argv: list[str] | None = None) -> int:
    """Generate the events file, time both runs, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows to generate (default 20M)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--csv", type=Path, default=None, help="use this events CSV instead of generating one")
    parser.add_argument("--repeat", type=int, default=1, help="measure each run this many times (alternating)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CSV", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="recctl-bench-ingest-", dir=args.dir) as tmp:
        root = Path(tmp)
        csv = args.csv
        if csv is None:
            csv = root / "events.csv"
            t0 = time.perf_counter()
            # generate in a subprocess too: Linux keeps ru_maxrss across exec, so a parent that
            # had grown while generating would inflate the children's peak memory
            subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_ingest", "--child", "generate", str(csv), str(args.rows)],
                check=True,
            )
            print(
                f"generated {args.rows:,} rows ({csv.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f}s"
            )
        kinds = ("baseline", "floor", "by_hand", "recctl")
        runs: list[dict[str, dict[str, float]]] = []
        for k in range(max(1, args.repeat)):
            # alternate the four, so a change in the machine's load hits all alike
            runs.append({kind: _measure(kind, csv, root / f"{kind}-{k}") for kind in kinds})
    rows = int(runs[0]["recctl"]["read"])
    print(f"{rows:,} rows; Parquet written as zstd level 1 by every run")
    print(f"{'run':<12}{'wall s':>10}{'cpu s':>10}{'rows/s':>14}{'peak MB':>10}")
    names = {"baseline": "polars", "floor": "floor", "by_hand": "by hand", "recctl": "recctl"}
    for k, run in enumerate(runs, start=1):
        for kind in kinds:
            r = run[kind]
            print(
                f"{names[kind] + f' #{k}':<12}{r['seconds']:>10.2f}{r['cpu_seconds']:>10.2f}"
                f"{rows / r['seconds']:>14,.0f}{r['peak_mb']:>10,.0f}"
            )
        base, ours = run["baseline"], run["recctl"]
        # on a shared machine wall time includes waiting for a core; CPU time is the steadier figure
        print(
            f"run {k}: recctl / bare polars: {_ratio(ours, base)} (aim <= 1.5x); "
            f"recctl peak {ours['peak_mb'] / 1024:.2f} GB (aim < 4 GB); "
            f"floor / bare polars: {_ratio(run['floor'], base)}; "
            f"by hand / bare polars: {_ratio(run['by_hand'], base)}; "
            f"recctl / by hand: {_ratio(ours, run['by_hand'])}"
        )
    ours = runs[-1]["recctl"]
    print(
        f"accounting: read {ours['read']:,.0f} = accepted {ours['accepted']:,.0f} + rejected "
        f"{ours['rejected']:,.0f}; duplicates dropped {ours['duplicates']:,.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
