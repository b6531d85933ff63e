"""Benchmark: the CLI path (``recctl recommend`` + ``recctl serve-export``) vs a plain implicit + polars script.

Issue 18, item 4: the nightly file through recctl's CLI should cost at most 1.1x an equivalent
script written by hand against ``implicit`` and ``polars`` that produces the same file.

On a generated shop (:func:`benchmarks.bench_scale.generate_shop`; every user and item kept,
no item rules) an ALS model (recctl's ``als`` kind, which trains with ``implicit``) is trained
once through the CLI. Then, alternating over ``--rounds``:

* **CLI**: ``recctl recommend CONFIG`` and ``recctl serve-export CONFIG`` (``bundle: false``,
  since the script writes no serving bundle), each in its own process;
* **script**: one process that reads the same preprocessed interactions and the same factors
  (saved once as ``.npy`` from the trained model), asks implicit's
  ``AlternatingLeastSquares.recommend(..., filter_already_liked_items=True)`` for every user
  (BLAS on one thread, as implicit asks: with a threaded BLAS under its own threads it is about
  3x slower), and writes the same CSV columns with polars.

CPU seconds (``wait4`` rusage of the child: robust to others' load), wall seconds and peak RSS
are printed per side, with the ratios CLI / script. The two files are then compared: the same
users, per user the same items with the same scores (to the CSV's 6 decimals, 1e-5 apart at
most) and the same ranks except among tied scores (ties compared as sets, also a tie at the
K-th item, where either file may keep either item); recctl's file also
serves customers the model was not trained on (from their history), counted apart.

Run::

    python -m benchmarks.bench_cli_vs_script                  # 2M events, 20k items (a few minutes)
    python -m benchmarks.bench_cli_vs_script --events 2e5 --items 5000 --rounds 1   # quick
    python -m benchmarks.bench_cli_vs_script --bundle         # the default export (with the bundle), for information
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_scale import generate_shop_apart, measure, write_config

K = 10
GENERATED_AT = "2026-01-01T00:00:00Z"

#: the hand-written peer: implicit's recommend + polars, the same columns as recctl's CSV export
SCRIPT = r"""
import sys
import numpy as np
import polars as pl
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

threadpool_limits(1, "blas")  # implicit's own advice: its threads, one BLAS thread each
pre, factors, out, k, generated_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
users = pl.read_parquet(f"{pre}/users.parquet").sort("user_idx")
items = pl.read_parquet(f"{pre}/items.parquet", columns=["item_id", "item_idx"]).sort("item_idx")
pairs = pl.read_parquet(f"{pre}/all.parquet", columns=["user_idx", "item_idx"])
user_items = sp.csr_matrix(
    (np.ones(pairs.height, np.float32), (pairs["user_idx"].to_numpy(), pairs["item_idx"].to_numpy())),
    shape=(users.height, items.height),
)
model = AlternatingLeastSquares(factors=int(np.load(f"{factors}/item_factors.npy", mmap_mode="r").shape[1]))
model.user_factors = np.load(f"{factors}/user_factors.npy")
model.item_factors = np.load(f"{factors}/item_factors.npy")
ids, scores = model.recommend(np.arange(users.height), user_items, N=k, filter_already_liked_items=True)
n = users.height
frame = pl.DataFrame(
    {
        "user_idx": np.repeat(np.arange(n, dtype=np.int32), k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
        "item_idx": ids.ravel().astype(np.int32),
        "score": scores.ravel(),
    }
).filter(pl.col("item_idx") >= 0)
frame = (
    frame.join(users, on="user_idx")
    .join(items, on="item_idx")
    .select(
        "user_id",
        "rank",
        "item_id",
        "score",
        pl.lit("als").alias("model"),
        pl.lit(generated_at).alias("generated_at"),
        pl.lit("als").alias("source"),
    )
    .sort("user_id", "rank")
)
frame.write_csv(out, float_precision=6)
"""


def recctl_cmd(command: str, config: Path) -> list[str]:
    """``recctl COMMAND CONFIG`` through the installed console script (as a user runs it)."""
    exe = Path(sys.executable).with_name("recctl")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "recctl"]
    return [*head, command, str(config), "-q"]


def run(cmd: list[str]) -> dict[str, Any]:
    """:func:`benchmarks.bench_scale.measure`, failing loudly."""
    res = measure(cmd)
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res['rc']}):\n{res['stderr']}")
    return res


def prepare(folder: Path, n_events: int, n_items: int, factors: int, bundle: bool) -> Path:
    """Generate the shop, train ALS through the CLI; returns the config (``export.bundle`` as asked)."""
    import yaml

    generate_shop_apart(folder, n_events, n_items, seed=3)
    models = {"als": {"kind": "als", "factors": factors, "iterations": 5}, "popular": {"kind": "popularity"}}
    config = write_config(folder, models, bundle=bundle)
    raw = yaml.safe_load(config.read_text())
    # every user and item kept, no item rules, seen items excluded: what the script does (the
    # popularity fallback recctl requires for customers without history serves nobody here)
    raw["preprocess"].update(min_user_interactions=1, min_item_interactions=1)
    raw["recommend"] = {"model": "als", "k": K, "fallback": ["popular"], "exclude_seen": True}
    raw.pop("evaluate", None)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    for command in ("ingest", "preprocess", "train"):
        run(recctl_cmd(command, config))
    return config


def export_factors(config: Path, out: Path) -> None:
    """The serving ALS model's factors as ``.npy`` (what the script starts from, untimed)."""
    from recctl.config import load_config
    from recctl.model_store import load_trained_model

    cfg = load_config(config)
    model = load_trained_model(cfg, "als", for_serving=True)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "user_factors.npy", model.user_factors_)
    np.save(out / "item_factors.npy", model.item_factors_)


def compare(cli_file: Path, script_file: Path) -> dict[str, Any]:
    """Per user of the script's file, the same (item, score) rows in the CLI's; ranks equal up to ties.

    The CLI's file may hold more users: customers the model was not trained on (e.g. every
    event after the split's cut), whom recctl still serves from their history; the script
    cannot. They are counted, not compared.
    """
    import polars as pl

    cols = ["user_id", "rank", "item_id", "score", "model", "source"]
    ids = {"user_id": pl.String, "item_id": pl.String}
    a = pl.read_csv(cli_file, columns=cols, schema_overrides=ids)
    b = pl.read_csv(script_file, columns=cols, schema_overrides=ids)
    extra = a.join(b.select("user_id").unique(), on="user_id", how="anti")
    a = a.join(b.select("user_id").unique(), on="user_id", how="semi")
    joined = a.join(b, on=["user_id", "item_id"], how="full", suffix="_script", coalesce=True)
    one_side = joined.filter(pl.col("rank").is_null() | pl.col("rank_script").is_null())
    # a tie at the cut: the K-th and (K+1)-th items score the same, and either file may keep
    # either; such a row scores exactly the user's lowest kept score in both files
    cut = (
        a.group_by("user_id")
        .agg(pl.col("score").min().alias("cut"))
        .join(b.group_by("user_id").agg(pl.col("score").min().alias("cut_script")), on="user_id")
    )
    one_side = one_side.join(cut, on="user_id", how="left").with_columns(
        pl.coalesce("score", "score_script").alias("_score")
    )
    at_cut = (pl.col("_score") == pl.col("cut")) & (pl.col("_score") == pl.col("cut_script"))
    boundary_ties = one_side.filter(at_cut).height
    missing = one_side.height - boundary_ties
    close = joined.drop_nulls(["rank", "rank_script"])
    score_gap = float((close["score"] - close["score_script"]).abs().max() or 0.0)
    # a rank may differ only between items whose scores tie (as printed)
    moved = close.filter(pl.col("rank") != pl.col("rank_script"))
    tie_keys = a.group_by("user_id", "score").len().filter(pl.col("len") > 1).select("user_id", "score")
    untied = moved.join(tie_keys, on=["user_id", "score"], how="anti").height
    return {
        "users_compared": b["user_id"].n_unique(),
        "rows_compared": b.height,
        "rows_in_one_file_only": missing,
        "tied_at_the_cut": boundary_ties,
        "max_score_gap": score_gap,
        "rank_moves_outside_ties": untied,
        "cli_only_users": extra["user_id"].n_unique(),
        "same": a.height == b.height and missing == 0 and score_gap <= 1e-5 and untied == 0 and boundary_ties % 2 == 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Prepare once, alternate CLI and script over the rounds, print the ratios and the file check."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=lambda s: int(float(s)), default=2_000_000)
    ap.add_argument("--items", type=lambda s: int(float(s)), default=20_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bundle", action="store_true", help="Export with the serving bundle (not what the script does).")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="recctl-cli-vs-script-", dir=args.scratch))
    try:
        print(
            f"load average {os.getloadavg()[0]:.1f}; preparing {args.events:,} events x {args.items:,} items",
            flush=True,
        )
        config = prepare(root, args.events, args.items, args.factors, args.bundle)
        export_factors(config, root / "factors")
        script = root / "script.py"
        script.write_text(SCRIPT)
        script_out = root / "script.csv"
        pre = root / "work" / "preprocess"
        rounds = []
        for r in range(args.rounds):
            rec = run(recctl_cmd("recommend", config))
            exp = run(recctl_cmd("serve-export", config))
            scr = run(
                [sys.executable, str(script), str(pre), str(root / "factors"), str(script_out), str(K), GENERATED_AT]
            )
            cli = {m: round(rec[m] + exp[m], 3) for m in ("cpu_s", "wall_s")}
            cli["peak_mb"] = max(rec["peak_mb"], exp["peak_mb"])
            rounds.append({"recommend": rec, "serve_export": exp, "cli": cli, "script": scr})
            print(
                f"  round {r}: CLI {cli['cpu_s']:.2f} CPU s / {cli['wall_s']:.2f} s wall "
                f"(recommend {rec['cpu_s']:.2f}, serve-export {exp['cpu_s']:.2f} CPU s), peak {cli['peak_mb']:.0f} MB; "
                f"script {scr['cpu_s']:.2f} CPU s / {scr['wall_s']:.2f} s wall, peak {scr['peak_mb']:.0f} MB; "
                f"CLI/script CPU {cli['cpu_s'] / scr['cpu_s']:.2f}x wall {cli['wall_s'] / scr['wall_s']:.2f}x",
                flush=True,
            )
        published = sorted((root / "work" / "exports").glob("recommendations_2*.csv"))
        check = compare(published[-1], script_out)
        cpu = [x["cli"]["cpu_s"] / x["script"]["cpu_s"] for x in rounds]
        wall = [x["cli"]["wall_s"] / x["script"]["wall_s"] for x in rounds]
        result = {
            "events": args.events,
            "items": args.items,
            "bundle": args.bundle,
            "rounds": [
                {side: {m: v[m] for m in ("cpu_s", "wall_s", "peak_mb")} for side, v in x.items()} for x in rounds
            ],
            "cli_over_script_cpu": round(min(cpu), 3),
            "cli_over_script_wall": round(min(wall), 3),
            "files": check,
            "load_average_end": round(os.getloadavg()[0], 1),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if check["same"] else 1
    print(
        f"CLI / script (best round): CPU {result['cli_over_script_cpu']}x, wall {result['cli_over_script_wall']}x "
        "(aim: <= 1.1)"
    )
    print(f"files: {json.dumps(check)}")
    print(f"load average {result['load_average_end']} at the end")
    return 0 if check["same"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
