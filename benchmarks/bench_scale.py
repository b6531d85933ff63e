"""Scaling benchmark (issue 18, item 1): every stage from 1M to 20M events on one machine.

Generates shops (an events CSV in the sample shop's layout, with latent tastes and a long
tail, and a catalogue with categories, prices and stock), then runs every pipeline stage
through the CLI, each stage in its own subprocess, and records per stage its CPU seconds
(user + system, all threads) and peak resident memory (``os.wait4`` of that process). From
the runs it fits ``cost = a * size ** b`` by least squares on logs and prints, per stage, the
exponent ``b`` of CPU and of peak memory, and the size at which peak memory would reach
16 GB (extrapolated with the local exponent of the two largest runs: how far one machine
goes).

Two series:

* **events** (``--events``, default 1M, 2M, 5M; the issue's range is 1M..20M) at a fixed
  catalogue (``--items``): exponents vs events for ingest, preprocess, train, evaluate,
  recommend, serve-export;
* **items** (``--item-series``, default 20k, 50k, 100k, at ``--item-series-events``):
  ``serve-export`` with the serving bundle and a stock rule (the default export) and the same
  export with ``bundle: false``, exponents vs items x K, the projected catalogue at 16 GB, and
  the bundle-on / bundle-off ratio (the issue's aim: at most 1.5x). The 20k-item shop also
  trains EASE (float32 above 2,000 items).

Peers, in the same run on the same files (each in its own subprocess too):

* **by hand (polars)**: the preprocess job written directly in polars (event weights, sum
  per user-item pair, min-count filters, a time split, train and test written), against
  ``recctl preprocess``;
* **implicit**: ``implicit``'s ``CosineRecommender`` fit on the same training matrix, against
  recctl's ``item_knn`` fit (``K = neighbors + 1``: implicit keeps the item itself), with the
  lists compared (identical up to ties). Each fit's memory (``fit_extra_mb``) is its own
  high-water mark over what was resident before it (:mod:`benchmarks.fit_memory`, as
  ``bench_knn``), not the process peak, which the shop's loading sets; ``peak_mb`` is that.

implicit is installed with recctl (it backs ``kind: als``); without it its column is skipped.
The machine may be shared: read the ratios and the exponents (measured in the same run), not
the absolute seconds, and use ``nice``.

Run::

    nice -n 10 python -m benchmarks.bench_scale                        # 1M, 2M, 5M events
    nice -n 10 python -m benchmarks.bench_scale --events 1e6,5e6,2e7   # the issue's range
    nice -n 10 python -m benchmarks.bench_scale --events 2e5,5e5 --item-series 5000,10000 --quick
    python -m benchmarks.bench_scale --json                            # machine-readable

A long series can be run one size at a time (e.g. one size per hold of a shared lock): with
``--jsonl FILE`` every finished size is appended to ``FILE`` as one JSON line, sizes already
there are skipped, and the table and fits are printed over every row of the file;
``--render FILE`` prints them without running anything::

    for n in 1e6 2e6 5e6 1e7 2e7; do
        flock bench.lock nice -n 10 python -m benchmarks.bench_scale --events $n --item-series "" --jsonl scale.jsonl
    done
    python -m benchmarks.bench_scale --render scale.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the stages of the pipeline, as CLI commands, and the directory each writes
STAGES = [
    ("ingest", "ingest"),
    ("preprocess", "preprocess"),
    ("train", "train"),
    ("evaluate", "evaluate"),
    ("recommend", "recommend"),
    ("serve-export", "export"),
]
#: memory of the machine the projection is for
LIMIT_MB = 16 * 1024
K = 10
NEIGHBORS = 50
#: the repository root (the kNN peers' working directory: their child imports benchmarks.fit_memory)
_ROOT = Path(__file__).resolve().parents[1]
_CHUNK = 1_000_000


def generate_shop(folder: Path, n_events: int, n_items: int, seed: int = 0) -> None:
    """Write ``events.csv`` and ``products.csv`` for a shop of ``n_events`` events.

    Users (``n_events / 20`` of them) and items belong to one of 50 taste groups; 80% of a
    user's events fall in their group (a power law inside it, so each group has best-sellers),
    20% anywhere (Zipf-like). 70% views, 20% add-to-cart, 10% purchases over 120 days.
    Written in chunks with polars, so memory stays small.
    """
    import polars as pl

    rng = np.random.default_rng(seed)
    n_users = max(100, n_events // 20)
    n_tastes = 50
    item_taste = rng.integers(0, n_tastes, n_items)
    order = np.argsort(item_taste, kind="stable")
    bounds = np.searchsorted(item_taste[order], np.arange(n_tastes + 1))
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    any_cdf = np.cumsum(pop[rng.permutation(n_items)])
    any_cdf /= any_cdf[-1]
    user_taste = rng.integers(0, n_tastes, n_users)
    start = np.datetime64("2026-01-01T00:00:00", "s")
    times = np.sort(rng.integers(0, 120 * 86400, n_events))
    kinds = np.array(["view", "add_to_cart", "purchase"])
    with open(folder / "events.csv", "w", encoding="utf-8") as fh:
        fh.write("customer_id,product_id,event_type,event_time,quantity\n")
        for lo in range(0, n_events, _CHUNK):
            n = min(_CHUNK, n_events - lo)
            users = rng.integers(0, n_users, n)
            in_group = rng.random(n) < 0.8
            items = np.searchsorted(any_cdf, rng.random(n))
            g = user_taste[users[in_group]]
            size = np.maximum(bounds[g + 1] - bounds[g], 1)
            pos = np.minimum((size * rng.random(len(g)) ** 3).astype(np.int64), size - 1)
            items[in_group] = order[np.minimum(bounds[g] + pos, n_items - 1)]
            items = np.minimum(items, n_items - 1)
            frame = pl.DataFrame(
                {
                    "u": users,
                    "i": items,
                    "event_type": kinds[rng.choice(3, n, p=[0.7, 0.2, 0.1])],
                    "t": (start + times[lo : lo + n].astype("timedelta64[s]")).astype("datetime64[ms]"),
                    "quantity": rng.integers(1, 4, n),
                }
            )
            frame = frame.select(
                ("C" + pl.col("u").cast(pl.String).str.zfill(8)).alias("customer_id"),
                ("P" + pl.col("i").cast(pl.String).str.zfill(7)).alias("product_id"),
                "event_type",
                pl.col("t").dt.strftime("%Y-%m-%d %H:%M:%S").alias("event_time"),
                "quantity",
            )
            fh.write(frame.write_csv(include_header=False))
    catalogue = pl.DataFrame(
        {
            "product_id": [f"P{i:07d}" for i in range(n_items)],
            "category": [f"c{t}" for t in item_taste],
            "price": np.round(rng.lognormal(3, 1, n_items), 2),
            "in_stock": np.where(rng.random(n_items) < 0.9, "true", "false"),
        }
    )
    catalogue.write_csv(folder / "products.csv")


def generate_shop_apart(folder: Path, n_events: int, n_items: int, seed: int = 0) -> None:
    """:func:`generate_shop` in a child process, so this process stays small.

    A child's peak resident memory as ``wait4`` reports it includes its parent's peak at the
    fork (Linux carries ``maxrss`` across ``exec``): generating a shop here would floor every
    stage measured afterwards at the generator's peak.
    """
    code = "import sys; from pathlib import Path; from benchmarks.bench_scale import generate_shop as g; "
    code += "g(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))"
    root = str(Path(__file__).resolve().parents[1])
    args = [str(folder), str(n_events), str(n_items), str(seed)]
    subprocess.run([sys.executable, "-c", code, *args], check=True, cwd=root)


def write_config(folder: Path, models: dict[str, Any], *, bundle: bool = True, name: str = "config.yaml") -> Path:
    """A pipeline config for the generated shop in ``folder`` (workdir ``folder/work``)."""
    import yaml

    raw = {
        "name": "scale",
        "workdir": str(folder / "work"),
        "seed": 42,
        "data": {
            "interactions": {
                "path": str(folder / "events.csv"),
                "columns": {
                    "user_id": "customer_id",
                    "item_id": "product_id",
                    "event": "event_type",
                    "timestamp": "event_time",
                    "value": "quantity",
                },
                "timestamp_format": "%Y-%m-%d %H:%M:%S",
                "timezone": "UTC",
            },
            "items": {
                "path": str(folder / "products.csv"),
                "id_column": "product_id",
                "columns": {"category": "category", "price": "price", "in_stock": "in_stock"},
            },
        },
        "preprocess": {
            "event_weights": {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
            "aggregate": "sum",
            "min_user_interactions": 2,
            "min_item_interactions": 2,
            "split": {"strategy": "time", "test_fraction": 0.2},
        },
        "models": models,
        "evaluate": {"k": [K], "metrics": ["precision", "recall", "ndcg"], "n_bootstrap": 200},
        "recommend": {
            "model": next(n for n in models if n != "popular"),
            "k": K,
            "fallback": ["popular"],
            "rules": {"in_stock_column": "in_stock"},
        },
        "export": {"format": "csv", "bundle": bundle},
    }
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def measure(cmd: list[str], cwd: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` to completion: its CPU seconds, wall seconds and peak RSS, from ``os.wait4``.

    ``wait4`` gives the rusage of that one child (``RUSAGE_CHILDREN`` would mix all children
    and keep the largest peak of any); output goes to temporary files (no pipe to fill).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "stdout": stdout,
        "stderr": stderr[-3000:],
    }


def run_stage(command: str, config: Path) -> dict[str, Any]:
    """One CLI stage in its own process."""
    res = measure([sys.executable, "-c", "from recctl.cli.main import app; app()", command, str(config)])
    if res["rc"] != 0:
        raise RuntimeError(f"recctl {command} failed ({res['rc']}):\n{res['stderr']}")
    return res


_BY_HAND = r"""
import json, resource, sys, time
import polars as pl
work, out = sys.argv[1], sys.argv[2]
weights = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
ev = pl.scan_parquet(f"{work}/ingest/interactions.parquet")
pairs = (
    ev.with_columns(pl.col("event").replace_strict(weights, default=0.0).alias("w"))
    .group_by("user_id", "item_id")
    .agg(pl.col("w").sum().alias("weight"), pl.col("timestamp").max().alias("last_ts"))
    .filter(pl.len().over("user_id") >= 2)
    .filter(pl.len().over("item_id") >= 2)
)
pairs = pairs.collect()
cut = pairs["last_ts"].quantile(0.8)
users = pairs.select(pl.col("user_id").unique(maintain_order=True)).with_row_index("user_idx")
items = pairs.select(pl.col("item_id").unique(maintain_order=True)).with_row_index("item_idx")
indexed = pairs.join(users, on="user_id").join(items, on="item_id").drop("user_id", "item_id")
indexed.filter(pl.col("last_ts") < cut).write_parquet(f"{out}/train.parquet")
indexed.filter(pl.col("last_ts") >= cut).write_parquet(f"{out}/test.parquet")
users.write_parquet(f"{out}/users.parquet"); items.write_parquet(f"{out}/items.parquet")
"""

#: the same job producing every file ``recctl preprocess``'s consumers read: ``events.parquet``
#: (each kept event with its weight and split label, by user and time: sequence models, EASE's
#: recency, the bundle's histories, ``update``), ``tune_train`` / ``valid`` (``tune``), ``all``
#: (``train`` with ``recommend.refit_on_all_data``, the default), ids numbered in sorted order
#: (the same input gives the same indices) and the catalogue's columns beside the item ids
#: (the rules); written as a polars user would (defaults, one group-by per (pair, split))
_BY_HAND_FULL = r"""
import sys
import polars as pl
work, out = sys.argv[1], sys.argv[2]
weights = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
ev = (
    pl.scan_parquet(f"{work}/ingest/interactions.parquet")
    .select(
        "user_id", "item_id", "event", "timestamp",
        pl.col("event").replace_strict(weights, default=0.0).alias("weight"),
    )
    .filter(pl.col("weight") > 0)
    .collect()
)
pairs = ev.select("user_id", "item_id").unique()
pairs = pairs.filter(pl.len().over("user_id") >= 2).filter(pl.len().over("item_id") >= 2)
users = pairs.select(pl.col("user_id").unique().sort()).with_row_index("user_idx")
items = pairs.select(pl.col("item_id").unique().sort()).with_row_index("item_idx")
del pairs
# the file's order kept through the joins and the sort: equal timestamps stay in file order, as in recctl
ev = ev.join(users, on="user_id", maintain_order="left").join(items, on="item_id", maintain_order="left")
ev = ev.drop("user_id", "item_id")
cut = ev["timestamp"].quantile(0.8, "lower")
valid_cut = ev.filter(pl.col("timestamp") < cut)["timestamp"].quantile(0.9, "lower")
label = (
    pl.when(pl.col("timestamp") >= cut).then(pl.lit("test"))
    .when(pl.col("timestamp") >= valid_cut).then(pl.lit("valid"))
    .otherwise(pl.lit("tune_train"))
)
ev = ev.with_columns(label.cast(pl.Enum(["tune_train", "valid", "test"])).alias("split"))
ev = ev.sort("user_idx", "timestamp", maintain_order=True)
ev.with_columns(pl.col("split").cast(pl.String)).write_parquet(f"{out}/events.parquet")
part = ev.group_by("user_idx", "item_idx", "split").agg(
    pl.col("weight").sum(), pl.col("timestamp").max().alias("last_ts")
)
del ev
for name in ("test", "tune_train", "valid"):
    part.filter(pl.col("split") == name).drop("split").write_parquet(f"{out}/{name}.parquet")
def pairs_of(frame):
    return frame.group_by("user_idx", "item_idx").agg(pl.col("weight").sum(), pl.col("last_ts").max())
pairs_of(part.filter(pl.col("split") != "test")).write_parquet(f"{out}/train.parquet")
pairs_of(part).write_parquet(f"{out}/all.parquet")
users.write_parquet(f"{out}/users.parquet")
catalogue = pl.read_parquet(f"{work}/ingest/items.parquet")
items.join(catalogue, on="item_id", how="left").write_parquet(f"{out}/items.parquet")
"""

_KNN = r"""
import json, resource, sys, time, warnings
import numpy as np, scipy.sparse as sp
from benchmarks.fit_memory import FitMemory
from recctl.data.dataset import load_dataset
which, pre = sys.argv[1], sys.argv[2]
neighbors = int(sys.argv[3])
ds = load_dataset(pre, "train")
if which == "implicit":  # its float64 0/1 input is made before the fit, as bench_knn does
    from implicit.nearest_neighbours import CosineRecommender
    x64 = sp.csr_matrix(ds.interactions, dtype=np.float64, copy=True)
    x64.data[:] = 1.0
else:
    from recctl.models.item_knn import ItemKNNModel
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
memory = FitMemory()  # the high-water mark from here on is the fit's (benchmarks/fit_memory.py)
c = cpu(); t = time.perf_counter()
if which == "recctl":
    sim = ItemKNNModel(neighbors=neighbors).fit(ds).similarity_
else:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CosineRecommender(K=neighbors + 1)
        model.fit(x64, show_progress=False)
    sim = model.similarity
fit_cpu, fit_wall = cpu() - c, time.perf_counter() - t
fit_extra_mb = memory.extra_mb()
sim = sp.csr_matrix(sim, dtype=np.float32)
sim.setdiag(0)  # implicit keeps each item as its own neighbour; recctl's diagonal is empty
sim.eliminate_zeros()
sim.sort_indices()
np.savez(sys.argv[4], indptr=sim.indptr, indices=sim.indices, data=sim.data)
print(json.dumps({
    "fit_cpu_s": fit_cpu, "fit_wall_s": fit_wall, "fit_extra_mb": fit_extra_mb, "hwm_reset": memory.reset,
}))
"""


def knn_peers(work: Path, scratch: Path) -> dict[str, Any]:
    """recctl's item_knn fit and implicit's CosineRecommender on the same training matrix."""
    out: dict[str, Any] = {}
    files = {}
    for which in ("recctl", "implicit"):
        if which == "implicit":
            try:
                import implicit  # noqa: F401
            except ImportError:
                out["implicit"] = None
                continue
        files[which] = scratch / f"sim_{which}.npz"
        cmd = [sys.executable, "-c", _KNN, which, str(work / "preprocess"), str(NEIGHBORS), str(files[which])]
        res = measure(cmd, cwd=_ROOT)  # the child imports benchmarks.fit_memory
        if res["rc"] != 0:
            raise RuntimeError(f"kNN peer {which} failed:\n{res['stderr']}")
        inner = json.loads(res["stdout"].strip().splitlines()[-1])
        out[which] = {"fit_cpu_s": round(inner["fit_cpu_s"], 2), "fit_wall_s": round(inner["fit_wall_s"], 2)}
        out[which]["peak_mb"] = res["peak_mb"]
        # the fit's own high-water mark over what was resident before it, not the process peak
        # minus that (a fit below the loading's peak showed as nothing): as bench_knn measures
        out[which]["fit_extra_mb"] = round(inner["fit_extra_mb"], 1)
        out[which]["hwm_reset"] = inner["hwm_reset"]
    if len(files) == 2:
        out["lists_tie_equivalent"] = _tie_equivalent(files["recctl"], files["implicit"])
    return out


def _tie_equivalent(a_file: Path, b_file: Path) -> dict[str, Any]:
    """Whether two top-N similarity matrices keep the same values per row (ties may differ)."""
    a, b = np.load(a_file), np.load(b_file)
    n = len(a["indptr"]) - 1

    def row_sorted(m: Any) -> tuple[np.ndarray, np.ndarray]:
        rows = np.repeat(np.arange(n), np.diff(m["indptr"]))
        order = np.lexsort((-m["data"], rows))
        return rows[order], m["data"][order]

    same_lengths = np.diff(a["indptr"]) == np.diff(b["indptr"])
    rows_a, va = row_sorted(a)
    _, vb = row_sorted(b)
    differing = ~same_lengths
    if same_lengths.all():
        close = np.isclose(va, vb, rtol=1e-5, atol=1e-7)
        differing |= np.bincount(rows_a[~close], minlength=n) > 0
    identical = bool(same_lengths.all() and (a["indices"] == b["indices"]).all())
    return {"rows": n, "rows_with_different_values": int(differing.sum()), "identical_entries": identical}


def by_hand_preprocess(work: Path, scratch: Path, script: str = _BY_HAND) -> dict[str, Any]:
    """The preprocess job written directly in polars (``script``: the minimal job by default), in its own process."""
    out = scratch / "by_hand"
    out.mkdir(exist_ok=True)
    res = measure([sys.executable, "-c", script, str(work), str(out)])
    if res["rc"] != 0:
        raise RuntimeError(f"by-hand preprocess failed:\n{res['stderr']}")
    shutil.rmtree(out, ignore_errors=True)
    return {k: res[k] for k in ("cpu_s", "wall_s", "peak_mb")}


def fit_power(sizes: list[float], values: list[float]) -> tuple[float, float] | None:
    """``(a, b)`` of ``value = a * size ** b`` (least squares on logs); None with < 2 sizes."""
    pts = [(s, v) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len(pts) < 2 or len({s for s, _ in pts}) < 2:
        return None
    x = np.log([s for s, _ in pts])
    y = np.log([v for _, v in pts])
    b, log_a = np.polyfit(x, y, 1)
    return float(math.exp(log_a)), float(b)


def projected_size(sizes: list[float], peaks: list[float], limit_mb: float = LIMIT_MB) -> float | None:
    """The size at which peak memory reaches ``limit_mb``, from the two largest runs.

    A process has a fixed floor (interpreter and libraries, ~150-250 MB), so a power law
    fitted over all sizes understates the growth at the top; the local exponent between the
    two largest sizes is the one that decides where memory runs out. None when it does not
    grow.
    """
    pts = sorted((s, m) for s, m in zip(sizes, peaks, strict=True) if s > 0 and m > 0)
    if len(pts) < 2 or pts[-1][0] == pts[-2][0] or pts[-1][1] <= pts[-2][1] * 1.02:
        return None
    (s1, m1), (s2, m2) = pts[-2], pts[-1]
    b = math.log(m2 / m1) / math.log(s2 / s1)
    return float(s2 * (limit_mb / m2) ** (1.0 / b))


def events_series(
    root: Path, sizes: list[int], n_items: int, quick: bool, sink: Path | None = None
) -> list[dict[str, Any]]:
    """Every stage on shops of ``sizes`` events; peers per size.

    With ``sink``, each finished size is appended there as one JSON line (``"series":
    "events"``) as soon as it is measured.
    """
    runs = []
    for n_events in sizes:
        folder = root / f"events_{n_events}"
        folder.mkdir()
        t0 = time.perf_counter()
        generate_shop_apart(folder, n_events, n_items)
        print(f"  generated {n_events:,} events x {n_items:,} items in {time.perf_counter() - t0:.0f} s", flush=True)
        models = {
            "popular": {"kind": "popularity"},
            "knn": {"kind": "item_knn", "neighbors": NEIGHBORS},
            "lightfm": {"kind": "lightfm", "epochs": 2 if quick else 5, "no_components": 32},
        }
        config = write_config(folder, models)
        stages = {}
        for command, _ in STAGES:
            stages[command] = run_stage(command, config)
            s = stages[command]
            print(f"    {command:13s} cpu {s['cpu_s']:8.1f} s  wall {s['wall_s']:7.1f} s  peak {s['peak_mb']:7.0f} MB")
            if command == "preprocess":
                stages["preprocess (by hand, polars)"] = by_hand_preprocess(folder / "work", folder)
                h = stages["preprocess (by hand, polars)"]
                print(
                    f"    {'  by hand':13s} cpu {h['cpu_s']:8.1f} s wall {h['wall_s']:7.1f} s  peak {h['peak_mb']:7.0f}"
                )
        peers = knn_peers(folder / "work", folder)
        manifest = json.loads((folder / "work" / "train" / "manifest.json").read_text())
        runs.append(
            {
                "events": n_events,
                "items": n_items,
                "stages": {k: {m: v[m] for m in ("cpu_s", "wall_s", "peak_mb")} for k, v in stages.items()},
                "fit_seconds": {n: m["fit_seconds"] for n, m in manifest["summary"]["models"].items()},
                "knn_peers": peers,
            }
        )
        print(f"    item_knn fit vs implicit: {json.dumps(peers)}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        _append(sink, "events", runs[-1], quick)
    return runs


def items_series(
    root: Path,
    item_sizes: list[int],
    n_events: int,
    quick: bool,
    sink: Path | None = None,
    export_rounds: int = 3,
    similarity: str = "item_knn",
) -> list[dict[str, Any]]:
    """serve-export with and without the bundle on shops of growing catalogues (appended to ``sink``).

    ``similarity`` is the serving model's kind (``item_knn`` or ``rp3beta``, with
    :data:`NEIGHBORS` neighbours; popularity is its fallback).

    The two exports run ``export_rounds`` times, interleaved (off, on, on, off, ...: neither
    always goes first); the ratio reported is the median of the rounds' on/off CPU ratios, the
    stage figures are each side's median-CPU run (system time from page faults varies a lot
    from run to run on a shared machine).
    """
    runs = []
    for n_items in item_sizes:
        folder = root / f"items_{n_items}"
        folder.mkdir()
        generate_shop_apart(folder, n_events, n_items, seed=1)
        models = {"popular": {"kind": "popularity"}, "knn": {"kind": similarity, "neighbors": NEIGHBORS}}
        with_ease = n_items <= 20_000
        if with_ease:
            models["ease"] = {"kind": "ease", "max_items": 20_000}
        config = write_config(folder, models)
        plain = write_config(folder, models, bundle=False, name="no_bundle.yaml")
        result: dict[str, Any] = {"items": n_items, "events": n_events, "stages": {}}
        for command in ("ingest", "preprocess", "train", "recommend"):
            result["stages"][command] = run_stage(command, config)
        sides = {"serve-export (bundle off)": plain, "serve-export (bundle on)": config}
        side_runs: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
        ratios = []
        for r in range(max(1, export_rounds)):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for label in order:
                side_runs[label].append(run_stage("serve-export", sides[label]))
            on_cpu = side_runs["serve-export (bundle on)"][-1]["cpu_s"]
            off_cpu = side_runs["serve-export (bundle off)"][-1]["cpu_s"]
            ratios.append(round(on_cpu / max(off_cpu, 1e-9), 3))
        for label, measured in side_runs.items():
            result["stages"][label] = sorted(measured, key=lambda m: m["cpu_s"])[len(measured) // 2]
        manifest = json.loads((folder / "work" / "train" / "manifest.json").read_text())
        result["fit_seconds"] = {n: m["fit_seconds"] for n, m in manifest["summary"]["models"].items()}
        result["stages"] = {k: {m: v[m] for m in ("cpu_s", "wall_s", "peak_mb")} for k, v in result["stages"].items()}
        on, off = result["stages"]["serve-export (bundle on)"], result["stages"]["serve-export (bundle off)"]
        result["bundle_on_over_off_cpu"] = round(float(np.median(ratios)), 2)
        result["bundle_on_over_off_rounds"] = ratios
        print(
            f"  {n_items:,} items: serve-export bundle on {on['cpu_s']:.1f} CPU s / {on['peak_mb']:.0f} MB, "
            f"off {off['cpu_s']:.1f} CPU s / {off['peak_mb']:.0f} MB (medians); "
            f"on/off {result['bundle_on_over_off_cpu']}x (median of rounds {ratios}); fit s {result['fit_seconds']}",
            flush=True,
        )
        runs.append(result)
        shutil.rmtree(folder, ignore_errors=True)
        _append(sink, "items", result, quick)
    return runs


def _append(sink: Path | None, series: str, row: dict[str, Any], quick: bool) -> None:
    """Append one measured size to the JSON-lines file ``sink`` (with the load average and the time)."""
    if sink is None:
        return
    record = {
        "series": series,
        "quick": quick,
        "load_average": round(os.getloadavg()[0], 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **row,
    }
    with sink.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of a ``--jsonl`` file by series, sorted by size; the last row of a size wins."""
    rows: dict[str, dict[tuple[int, int], dict[str, Any]]] = {"events": {}, "items": {}}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["series"]][(row["events"], row["items"])] = row
    return {series: [by_size[k] for k in sorted(by_size)] for series, by_size in rows.items()}


def summarise(runs: list[dict[str, Any]], size_key: str, scale: float = 1.0) -> dict[str, Any]:
    """Per stage: exponents of CPU and peak memory vs size, and the projected size at 16 GB."""
    out: dict[str, Any] = {}
    if not runs:
        return out
    sizes = [r[size_key] * scale for r in runs]
    for stage in runs[0]["stages"]:
        cpu = [r["stages"][stage]["cpu_s"] for r in runs]
        mem = [r["stages"][stage]["peak_mb"] for r in runs]
        f_cpu, f_mem = fit_power(sizes, cpu), fit_power(sizes, mem)
        proj = projected_size(sizes, mem)
        out[stage] = {
            "cpu_exponent": None if f_cpu is None else round(f_cpu[1], 2),
            "memory_exponent": None if f_mem is None else round(f_mem[1], 2),
            "projected_size_at_16gb": None if proj is None else float(f"{proj / scale:.3g}"),
        }
    return out


def _sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the series (or read them from ``--jsonl``/``--render``) and print the per-stage table and fits."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=_sizes, default=_sizes("1e6,2e6,5e6"), help="Event counts (comma-separated).")
    ap.add_argument("--items", type=int, default=50_000, help="Catalogue of the events series.")
    ap.add_argument("--item-series", type=_sizes, default=_sizes("20000,50000,100000"), help="Catalogues.")
    ap.add_argument("--item-series-events", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="Fewer LightFM epochs.")
    ap.add_argument(
        "--similarity",
        choices=("item_knn", "rp3beta"),
        default="item_knn",
        help="Items series: the serving model's kind (its similar items feed the bundle's neighbour table).",
    )
    ap.add_argument(
        "--export-rounds", type=int, default=3, help="Interleaved bundle-off / bundle-on exports per catalogue."
    )
    ap.add_argument("--scratch", type=Path, default=None, help="Where shops are generated (default: a temp dir).")
    ap.add_argument("--jsonl", type=Path, default=None, help="Append each size here; skip sizes already there.")
    ap.add_argument("--render", type=Path, default=None, help="Print the table of a --jsonl file; run nothing.")
    ap.add_argument("--markdown", action="store_true", help="Print the events table as Markdown (for docs).")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="Also write the JSON result to this file.")
    args = ap.parse_args(argv)
    if args.render is not None:
        if not args.render.exists():
            ap.error(f"--render {args.render}: no such file")
        rows = read_rows(args.render)
        ev_runs, it_runs = rows["events"], rows["items"]
    else:
        done = read_rows(args.jsonl) if args.jsonl else {"events": [], "items": []}
        have_ev = {r["events"] for r in done["events"] if r["items"] == args.items}
        have_it = {r["items"] for r in done["items"] if r["events"] == args.item_series_events}
        ev_sizes = [n for n in args.events if n not in have_ev]
        it_sizes = [n for n in args.item_series if n not in have_it]
        if args.jsonl and (len(ev_sizes) < len(args.events) or len(it_sizes) < len(args.item_series)):
            print(f"already in {args.jsonl}: events {sorted(have_ev)}, items {sorted(have_it)} (skipped)")
        root = Path(tempfile.mkdtemp(prefix="recctl-scale-", dir=args.scratch))
        print(f"load average {os.getloadavg()[0]:.1f} at start; scratch {root}", flush=True)
        try:
            print("events series", flush=True)
            ev_runs = events_series(root, ev_sizes, args.items, args.quick, args.jsonl)
            print("items series", flush=True)
            it_runs = items_series(
                root,
                it_sizes,
                args.item_series_events,
                args.quick,
                args.jsonl,
                export_rounds=args.export_rounds,
                similarity=args.similarity,
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if args.jsonl:  # the table covers every size measured so far
            rows = read_rows(args.jsonl)
            ev_runs = [r for r in rows["events"] if r["items"] == args.items]
            it_runs = [r for r in rows["items"] if r["events"] == args.item_series_events]
    result = {
        "load_average_end": round(os.getloadavg()[0], 1),
        "events_series": ev_runs,
        "events_fit": summarise(ev_runs, "events"),
        "items_series": it_runs,
        "items_x_k_fit": summarise(it_runs, "items", scale=K),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.markdown:
        print(markdown(result))
        return 0
    render(result)
    return 0


def markdown(result: dict[str, Any]) -> str:
    """The events series as a Markdown table: CPU s / peak MB per stage and size, exponents, 16 GB size."""
    runs, fits = result["events_series"], result["events_fit"]
    if not runs:
        return "(no events series)"
    sizes = [f"{r['events'] / 1e6:g}M" for r in runs]
    lines = [
        "| stage | " + " | ".join(f"{s}: CPU s / peak MB" for s in sizes) + " | CPU exp | mem exp | events at 16 GB |",
        "| --- " * (len(sizes) + 4) + "|",
    ]
    for stage, fit in fits.items():
        cells = [
            f"{r['stages'][stage]['cpu_s']:.1f} / {r['stages'][stage]['peak_mb']:.0f}" if stage in r["stages"] else "-"
            for r in runs
        ]
        proj = fit["projected_size_at_16gb"]
        exps = [("-" if e is None else f"{e:.2f}") for e in (fit["cpu_exponent"], fit["memory_exponent"])]
        lines.append(
            f"| {stage} | "
            + " | ".join(cells)
            + f" | {exps[0]} | {exps[1]} | "
            + ("-" if len(runs) < 2 else "not growing" if proj is None else f"{proj / 1e6:,.0f}M")
            + " |"
        )
    return "\n".join(lines)


def render(result: dict[str, Any]) -> None:
    """Print the per-size table (CPU s / peak MB per stage), the fits and the 16 GB projections."""
    ev_runs, it_runs = result["events_series"], result["items_series"]
    if ev_runs:
        print("\nCPU s / peak MB per stage (events series)")
        header = "".join(f"{r['events']:>16,}" for r in ev_runs)
        print(f"  {'stage':30s}{header}")
        for stage in ev_runs[0]["stages"]:
            cells = "".join(
                f"{r['stages'][stage]['cpu_s']:>8.1f}/{r['stages'][stage]['peak_mb']:<7.0f}"
                if stage in r["stages"]
                else f"{'-':>16s}"
                for r in ev_runs
            )
            print(f"  {stage:30s}{cells}")
        hand = "preprocess (by hand, polars)"
        if all(hand in r["stages"] for r in ev_runs):
            ratios = ", ".join(
                f"{r['events']:,}: CPU {r['stages']['preprocess']['cpu_s'] / r['stages'][hand]['cpu_s']:.2f}x "
                f"peak {r['stages']['preprocess']['peak_mb'] / r['stages'][hand]['peak_mb']:.2f}x"
                for r in ev_runs
            )
            print(f"  preprocess / by hand: {ratios}")
        sizes = ", ".join(f"{r['events']:,}" for r in ev_runs)
        print(f"\nper stage vs events ({sizes}; {ev_runs[0]['items']:,} items)")
        print(f"  {'stage':30s} {'CPU exp':>8s} {'mem exp':>8s} {'events at 16 GB':>16s}")
        for stage, fit in result["events_fit"].items():
            proj = fit["projected_size_at_16gb"]
            cpu_exp, mem_exp = fit["cpu_exponent"], fit["memory_exponent"]
            print(
                f"  {stage:30s} {float('nan') if cpu_exp is None else cpu_exp:8.2f} "
                f"{float('nan') if mem_exp is None else mem_exp:8.2f} "
                f"{'not growing' if proj is None else f'{proj:,.0f}':>16s}"
            )
    if it_runs:
        print(f"\nserve-export vs items x K (K={K}; {it_runs[0]['events']:,} events)")
        for stage, fit in result["items_x_k_fit"].items():
            if not stage.startswith("serve-export"):
                continue
            proj = fit["projected_size_at_16gb"]
            print(
                f"  {stage:30s} CPU exp {fit['cpu_exponent']}, mem exp {fit['memory_exponent']}, "
                f"items at 16 GB: {'not growing' if proj is None else f'{proj:,.0f}'}"
            )
    print(f"load average {result['load_average_end']} at the end")


if __name__ == "__main__":
    raise SystemExit(main())
