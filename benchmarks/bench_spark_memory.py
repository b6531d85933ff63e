"""Benchmark: what each Spark executor's Python worker holds for recommend, by catalogue size.

``recommend`` on Spark broadcasts one payload (the plan: the serving model, the rules, the
audience with every user's history) that each Python worker unpickles; its size decides
``spark.executor.memoryOverhead``. This generates shops (``--users`` customers, catalogues of
``--items`` sizes, ``--events`` each), runs ingest, preprocess and train on the local engine,
builds the recommend plan for each model exactly as ``recommend`` does on Spark, and measures
the pickled payload (what ``SparkContext.broadcast`` writes, with PySpark's own serializer) and
its parts, next to the estimate of docs/spark.md: the audience ``8 H + 30 U`` (H user-item
pairs of history, U users), plus the model: ``4 f (U + I)`` for f factors, ``8 H + 8 N I`` for
item_knn with N neighbours (an upper bound: items with fewer co-occurring items hold fewer),
``8 I`` for popularity. No Spark job runs: the payload is the same object.

Run::

    python -m benchmarks.bench_spark_memory
    python -m benchmarks.bench_spark_memory --users 200000 --items 5000 20000 100000 --events 2000000
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_spark import config, generate

FACTORS = 64
NEIGHBOURS = 50


def _size(obj: Any) -> int:
    try:
        from pyspark.serializers import CloudPickleSerializer

        return len(CloudPickleSerializer().dumps(obj))
    except ImportError:  # the same bytes up to cloudpickle's handling of functions (none here)
        return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def measure(root: Path, events: int, users: int, items: int) -> list[dict[str, Any]]:
    """Pipeline a generated shop on the local engine; the broadcast payload per serving model."""
    import yaml

    from recctl.config import load_config
    from recctl.ranking import block_rows_for
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.recommend import _plan, load_audience, load_serving, recommendation_schema
    from recctl.stages.train import run_train

    csv = root / f"events_{items}.csv"
    generate(csv, events, users, items)
    raw = config(csv, root / f"work_{items}", None)
    raw["models"] = {
        "als": {"kind": "als", "factors": FACTORS, "iterations": 2},
        "knn": {"kind": "item_knn", "neighbors": NEIGHBOURS},
        "popular": {"kind": "popularity"},
    }
    path = root / f"shop_{items}.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    run_ingest(cfg)
    run_preprocess(cfg)
    run_train(cfg)
    out = []
    for model in ("als", "knn", "popular"):
        raw["recommend"] = {"model": model, "k": 10, "fallback": []}
        path.write_text(yaml.safe_dump(raw))
        cfg = load_config(path)
        serving = load_serving(cfg)
        audience = load_audience(cfg, serving)
        plan = _plan(serving, audience, None)
        rc = serving.rc
        rows = block_rows_for(serving.n_items, rc.batch_size, int(rc.max_block_mb * 2**20))
        payload = (plan, serving.item_ids.to_arrow(), recommendation_schema(False), rows)
        pairs = int(audience.history.nnz)
        out.append(
            {
                "items": serving.n_items,
                "users": len(audience),
                "pairs": pairs,
                "model": model,
                "payload_mb": _size(payload) / 1e6,
                "model_mb": _size(serving.models[model]) / 1e6,
                "audience_mb": _size(audience) / 1e6,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.bench_spark_memory``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, nargs="+", default=[5_000, 20_000, 100_000])
    parser.add_argument("--events", type=int, default=2_000_000)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-spark-memory-") as tmp:
        for items in args.items:
            t0 = time.perf_counter()
            rows += measure(Path(tmp), args.events, args.users, items)
            print(f"catalogue {items:,}: measured in {time.perf_counter() - t0:.0f} s", flush=True)
    print(
        f"\n{'items I':>9}{'users U':>9}{'pairs H':>11}  {'model':<8}{'payload MB':>11}{'model MB':>10}"
        f"{'audience MB':>12}{'estimate MB':>12}"
    )
    for r in rows:
        model_estimate = {
            "als": 4 * FACTORS * (r["users"] + r["items"]),
            "knn": 8 * r["pairs"] + 8 * NEIGHBOURS * r["items"],
            "popular": 8 * r["items"],
        }[r["model"]]
        estimate = (model_estimate + 8 * r["pairs"] + 30 * r["users"]) / 1e6
        print(
            f"{r['items']:>9,}{r['users']:>9,}{r['pairs']:>11,}  {r['model']:<8}{r['payload_mb']:>11.1f}"
            f"{r['model_mb']:>10.1f}{r['audience_mb']:>12.1f}{estimate:>12.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
