"""Default vs tuned, every model, one `recctl tune` run, under a per-user temporal split (issue 16).

Run: ``python -m benchmarks.bench_tune_all [--config configs/movielens.yaml] [--trials 8]
[--timeout 900] [--models popularity,item_knn,ease,rp3beta,als,lightfm]``

Works in ``runs/bench-tune-all/<name>`` (never the config's own workdir). Takes the config's
data and preprocess sections, replaces the split with ``user_time`` (each user's latest 20% of
items by time held out; validation: the latest 20% of the rest, the same rule), puts one model of
each kind at its defaults under ``models:``, and runs ingest, preprocess, tune (every model in
its default space, shared time budget, blend included, ``apply: true``), train and evaluate
through the library. Prints, per model: NDCG@10 on validation (configured, kept) and on test
(configured = ``<name>@default`` when tuning changed it, tuned), whether the tuned value was kept
and the evidence, and the times. The test split is read once, by ``evaluate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from recctl.config import config_from_dict
from recctl.tuning.best_config import absolute_paths

ROOT = Path(__file__).resolve().parents[1]

#: one model of each non-sequential kind, at recctl's defaults
MODELS: dict[str, dict[str, Any]] = {
    "popularity": {"kind": "popularity"},
    "item_knn": {"kind": "item_knn"},
    "ease": {"kind": "ease"},
    "rp3beta": {"kind": "rp3beta"},
    "als": {"kind": "als"},
    "lightfm": {"kind": "lightfm", "loss": "warp"},
}


def build_config(path: Path, trials: int, timeout: float, models: list[str]) -> Any:
    """The benchmark's config: the file's data and weights, a per-user temporal split, every model."""
    raw = yaml.safe_load(path.read_text())
    base = config_from_dict(raw, base_dir=path.resolve().parent, source=str(path))
    raw = absolute_paths(base.model_dump(mode="json", exclude_unset=True), base)
    pre = raw.get("preprocess", {})
    pre["split"] = {"strategy": "user_time", "test_fraction": 0.2, "valid_fraction": 0.2}
    pre.pop("features", None)
    raw["preprocess"] = pre
    raw["workdir"] = str(ROOT / "runs" / "bench-tune-all" / raw.get("name", path.stem))
    raw["models"] = {name: MODELS[name] for name in models}
    raw["evaluate"] = {"k": [10], "metrics": ["ndcg", "recall", "precision"], "n_bootstrap": 200}
    raw["tune"] = {
        "models": "all",
        "n_trials": trials,
        "timeout_s": timeout,
        "objective": "ndcg@10",
        "max_epochs": 40,
        "apply": True,
    }
    for key in ("recommend", "export", "experiment"):
        raw.pop(key, None)
    return config_from_dict(raw, base_dir=ROOT, source=f"{path} (bench_tune_all)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (and ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "movielens.yaml")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from recctl.stages.evaluate import read_metrics, run_evaluate
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.train import run_train
    from recctl.stages.tune import read_tuned, run_tune

    if not args.config.exists():
        print(f"skipped: {args.config} not found", file=sys.stderr)
        return 0
    cfg = build_config(args.config, args.trials, args.timeout, args.models.split(","))
    times = {}
    for name, stage in (
        ("ingest", run_ingest),
        ("preprocess", run_preprocess),
        ("tune", run_tune),
        ("train", run_train),
        ("evaluate", run_evaluate),
    ):
        t0 = time.perf_counter()
        manifest = stage(cfg)
        times[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {times[name]} s (manifest duration_s {manifest.duration_s})", file=sys.stderr)
    _, tuned = read_tuned(cfg)
    metrics = read_metrics(cfg)
    test = {n: m["mean"].get("ndcg@10") for n, m in metrics["models"].items()}
    rows = []
    for name, m in tuned["models"].items():
        default_name = f"{name}@default" if m["changed"] else name
        rows.append(
            {
                "model": name,
                "valid_default": m["default_value"],
                "valid_kept": m["value"],
                "kept_tuned": m["changed"],
                "p_value": m["p_value"],
                "test_default": test.get(default_name),
                "test_tuned": test.get(name),
                "params": {k: v for k, v in m["params"].items() if k in m["space"]},
                "tune_seconds": m["seconds"],
            }
        )
    result = {
        "config": str(args.config),
        "split": metrics["protocol"].get("splits", {}),
        "winner": tuned["winner"]["name"],
        "test_tuned_pick": test.get("tuned"),
        "blend": tuned["blend"],
        "rows": rows,
        "stage_seconds": times,
    }
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    print(f"{args.config.name}: {result['split'].get('test_rule')}")
    head = ("model", "valid cfg", "valid kept", "kept", "p", "test cfg", "test tuned")
    print(f"{head[0]:<12} {head[1]:>9} {head[2]:>10} {head[3]:>5} {head[4]:>8} {head[5]:>9} {head[6]:>10}  params")
    for r in rows:
        p = "" if r["p_value"] is None else f"{r['p_value']:.2g}"
        print(
            f"{r['model']:<12} {r['valid_default']:>9.4f} {r['valid_kept']:>10.4f} {str(r['kept_tuned']):>5} {p:>8} "
            f"{r['test_default']:>9.4f} {r['test_tuned']:>10.4f}  {r['params']}"
        )
    print(f"picked on validation: {result['winner']}; its test NDCG@10: {result['test_tuned_pick']:.4f}")
    blend = tuned["blend"]
    print(f"blend: {json.dumps({k: blend[k] for k in ('components', 'weights', 'accepted')}) if blend else None}")
    print(f"stage seconds: {times}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
