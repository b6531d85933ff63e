"""The one list builder: per-request latency (the HTTP path) and batch cost against the bare kernel.

Runs the pipeline up to ``serve-export`` for a config in a temporary workdir (default: the
shipped quickstart shop), then measures in one process:

* **batch**: the builder over every customer (``iter_blocks``, all rules and fallbacks) against
  the floor, the main model's bare top-K kernel over the users it knows (``iter_recommend``,
  no rules, no fallback, no history); both wall and CPU seconds, ratio printed;
* **single requests**: ``builder.build(Request.for_user(...))`` for every customer one at a
  time (what an HTTP handler does), and ``bundle.recommend(user)``: p50 / p99 / max in ms.

    python -m benchmarks.bench_lists                                # sample shop
    python -m benchmarks.bench_lists --config configs/online_retail.yaml
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def _config(src: Path, workdir: Path) -> Path:
    raw = yaml.safe_load(src.read_text())
    base = src.resolve().parent

    def absolute(path: str) -> str:
        return str((base / path).resolve())

    data = raw["data"]
    sources = data["interactions"] if isinstance(data["interactions"], list) else [data["interactions"]]
    for s in sources:
        s["path"] = absolute(s["path"])
    for key in ("items", "users"):
        if data.get(key):
            data[key]["path"] = absolute(data[key]["path"])
    raw["workdir"] = str(workdir)
    raw.pop("tune", None)
    raw.pop("evaluate", None)
    out = workdir.parent / "bench.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _percentiles(ms: np.ndarray) -> str:
    return f"p50 {np.percentile(ms, 50):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms, max {ms.max():.2f} ms"


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--requests", type=int, default=3000, help="single requests timed (spread over users)")
    args = parser.parse_args()

    from recctl.config import load_config
    from recctl.lists import Request
    from recctl.lists.builder import iter_blocks
    from recctl.pipeline import run_all
    from recctl.ranking import block_rows_for
    from recctl.serving import load
    from recctl.stages.recommend import load_audience, load_serving

    with tempfile.TemporaryDirectory(prefix="bench_lists_") as tmp:
        config = _config(Path(args.config), Path(tmp) / "work")
        cfg = load_config(config)
        t0 = time.perf_counter()
        run_all(cfg)
        print(f"pipeline ({args.config}) in {time.perf_counter() - t0:.1f}s")
        serving = load_serving(cfg)
        audience = load_audience(cfg, serving)
        builder = serving.builder()
        rc = serving.rc
        rows = block_rows_for(serving.n_items, rc.batch_size, int(rc.max_block_mb * 2**20))
        known = audience.rows[audience.rows >= 0]
        main = serving.models[rc.model]
        print(f"{len(audience):,} customers ({len(known):,} known to the models), {serving.n_items:,} items, k={rc.k}")

        def timed(fn) -> tuple[float, float]:  # noqa: ANN001
            w, c = time.perf_counter(), time.process_time()
            fn()
            return time.perf_counter() - w, time.process_time() - c

        floor = timed(
            lambda: [None for _ in main.iter_recommend(known, rc.k, n_jobs=rc.n_jobs, n_items=serving.n_items)]
        )
        batch = timed(
            lambda: [
                None
                for _ in iter_blocks(lambda a, b: builder.build(audience.request(a, b)), len(audience), rows, rc.n_jobs)
            ]
        )
        print(f"bare kernel (known users, no rules): {floor[0]:.2f}s wall, {floor[1]:.2f} CPU-s")
        print(f"list builder (everyone, rules, fallbacks, history): {batch[0]:.2f}s wall, {batch[1]:.2f} CPU-s")
        print(f"ratio builder / kernel: {batch[0] / floor[0]:.2f}x wall, {batch[1] / max(floor[1], 1e-9):.2f}x CPU")

        positions = np.linspace(0, len(audience) - 1, min(args.requests, len(audience))).astype(np.int64)
        ms = []
        for pos in positions:
            req = audience.request(int(pos), int(pos) + 1)
            basket = req.basket.indices.tolist()
            exclude = [] if req.exclude is None else req.exclude.indices.tolist()
            t = time.perf_counter()
            builder.build(Request.for_user(int(req.rows[0]), serving.n_items, basket=basket, exclude=exclude))
            ms.append((time.perf_counter() - t) * 1000)
        print(f"builder, one request per call ({len(ms)} requests): {_percentiles(np.array(ms))}")
        bundle = load(cfg.stage_dir("export") / "bundle")
        ids = audience.user_ids.to_list()
        ms = []
        for pos in positions:
            t = time.perf_counter()
            bundle.recommend(ids[int(pos)])
            ms.append((time.perf_counter() - t) * 1000)
        print(f"serving bundle, one request per call: {_percentiles(np.array(ms))}")


if __name__ == "__main__":
    main()
