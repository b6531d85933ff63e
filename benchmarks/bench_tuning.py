"""Default vs tuned LightFM and item-item kNN on the real datasets (issue 6, item 6).

Run: ``python -m benchmarks.bench_tuning [--configs configs/movielens.yaml ...] [--trials 8]``
(needs the real data in ``../shared/data``; about 10 minutes for both datasets on 2 cores).

For each config the benchmark works in its own workdir (``runs/bench-tuning/<name>``, never
the config's own), runs ingest and preprocess through the library, then for each model:

1. ``recctl tune`` (random search, ``--trials`` trials, trial 0 = the configured parameters)
   fits on ``tune_train`` and scores NDCG@10 on ``valid``; LightFM stops early per trial
   (cap ``--max-epochs``) and its best epoch goes into the tuned config;
2. the default and the tuned model are both added to ``models:`` and trained on the full
   ``train`` split by the train stage, then scored once on ``test`` by the evaluate stage
   (with popularity, measured in the same run, as the baseline).

So the test split is read once, by ``evaluate``, after tuning chose the parameters. The
"valid" column of the default model is its trial 0 (early-stopped like every trial).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from recctl.config import Config, config_from_dict
from recctl.tuning.best_config import absolute_paths

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
K = 10

#: the space searched for each model kind
SPACES: dict[str, dict[str, Any]] = {
    "lightfm": {
        "no_components": {"type": "choice", "values": [16, 32, 64, 128]},
        "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.2},
        "item_alpha": {"type": "loguniform", "low": 1.0e-9, "high": 1.0e-5},
        "max_sampled": {"type": "int", "low": 5, "high": 50, "log": True},
    },
    "item_knn": {
        "neighbors": {"type": "int", "low": 10, "high": 500, "log": True},
        "shrink": {"type": "float", "low": 0.0, "high": 200.0},
        "weighting": {"type": "choice", "values": ["none", "tfidf", "bm25"]},
    },
}


def _config(raw: dict[str, Any], source: Path) -> Config:
    return config_from_dict(raw, base_dir=source.parent, source=str(source))


def _mean(metrics: dict[str, Any], model: str, key: str) -> float | None:
    entry = metrics["models"].get(model, {})
    return entry.get("mean", {}).get(key)


def bench_config(path: Path, trials: int, max_epochs: int, workdir: Path) -> list[dict[str, Any]]:
    """Tune, train and evaluate the default and tuned models of one config."""
    from recctl.config import load_config
    from recctl.pipeline import why_stale
    from recctl.stages.evaluate import run_evaluate
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.train import run_train
    from recctl.stages.tune import run_tune

    original = load_config(path)
    raw = absolute_paths(original.model_dump(mode="json", exclude_unset=True), original)
    raw["workdir"] = str(workdir / original.name)
    raw.pop("tune", None)
    raw.pop("recommend", None)
    lightfm = next(n for n, p in raw["models"].items() if p.get("kind") == "lightfm")
    raw["models"].setdefault("item_knn", {"kind": "item_knn"})
    raw["evaluate"] = {**raw.get("evaluate", {}), "n_bootstrap": 200, "baseline": "popular"}
    raw["models"].setdefault("popular", {"kind": "popularity"})
    cfg = _config(raw, path)
    for stage, run in (("ingest", run_ingest), ("preprocess", run_preprocess)):
        if why_stale(cfg, stage) is not None:
            run(cfg)

    rows = []
    tuned_models: dict[str, dict[str, Any]] = {}
    for name in (lightfm, "item_knn"):
        kind = raw["models"][name]["kind"]
        tune = {
            "model": name,
            "method": "random",
            "n_trials": trials,
            "objective": f"ndcg@{K}",
            "patience": 3,
            "space": SPACES[kind],
        }
        if kind == "lightfm":
            tune["max_epochs"] = max_epochs
        t0 = time.perf_counter()
        summary = run_tune(_config({**raw, "tune": tune}, path)).summary
        tuned_models[f"{name}_tuned"] = summary["tuned_params"]
        rows.append(
            {
                "dataset": original.name,
                "model": name,
                "kind": kind,
                "tune_s": round(time.perf_counter() - t0, 1),
                "n_trials": summary["n_trials"],
                "n_pruned": summary["n_pruned"],
                "n_failed": summary["n_failed"],
                "valid_default": summary.get("default_value"),
                "valid_tuned": summary["best_value"],
                "tuned_params": summary["tuned_params"],
            }
        )

    final = {**raw, "models": {**raw["models"], **tuned_models}}
    final["evaluate"] = {**final["evaluate"], "models": list(final["models"])}
    final_cfg = _config(final, path)
    run_train(final_cfg)
    run_evaluate(final_cfg)
    metrics = json.loads((final_cfg.stage_dir("evaluate") / "metrics.json").read_text())
    for row in rows:
        for variant, model in (("default", row["model"]), ("tuned", f"{row['model']}_tuned")):
            for metric in ("ndcg", "recall", "precision", "map"):
                row[f"test_{metric}_{variant}"] = _mean(metrics, model, f"{metric}@{K}")
        row["test_ndcg_popular"] = _mean(metrics, "popular", f"ndcg@{K}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per (dataset, model), plus JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        type=Path,
        default=[ROOT / "configs" / "movielens.yaml", ROOT / "configs" / "online_retail.yaml"],
    )
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-tuning")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not DATA.exists():
        print(f"real data not found at {DATA.resolve()}; nothing to benchmark", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    rows = []
    for path in args.configs:
        rows += bench_config(path, args.trials, args.max_epochs, args.workdir)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    header = (
        f"{'dataset':<14} {'model':<13} {'valid nDCG@10 def -> tuned':>27} {'test nDCG@10 def -> tuned':>26} "
        f"{'ratio':>6} {'test recall@10 def -> tuned':>28} {'popular':>8}"
    )
    print(header)
    for r in rows:
        ratio = r["test_ndcg_tuned"] / r["test_ndcg_default"] if r["test_ndcg_default"] else float("nan")
        print(
            f"{r['dataset']:<14} {r['model']:<13} {r['valid_default']:>12.4f} -> {r['valid_tuned']:.4f} "
            f"{r['test_ndcg_default']:>11.4f} -> {r['test_ndcg_tuned']:.4f} {ratio:>6.2f} "
            f"{r['test_recall_default']:>13.4f} -> {r['test_recall_tuned']:.4f} {r['test_ndcg_popular']:>8.4f}"
        )
    for r in rows:
        print(
            f"{r['dataset']} {r['model']} tuned: {r['tuned_params']} ({r['n_trials']} trials, "
            f"{r['n_pruned']} pruned, {r['n_failed']} failed, {r['tune_s']}s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
