"""Memory of ``recommend`` and ``serve-export`` does not grow with the longest id (issue 15, item 6).

Runs the shipped sample shop twice in temporary workdirs: as shipped, and with one customer's
id replaced by a 20,000-character id (``--id-length``). Each stage runs in its own process and
its peak RSS (``wait4`` rusage) is printed, with the ratio long-id / as-shipped. Ids kept as
Arrow strings cost their total length (one 20 kB id adds about 20 kB per copy); ids widened
to fixed-width numpy strings cost ``n_ids x longest`` (3,000 users x 20,000 characters x 4
bytes = 240 MB per copy).

    python -m benchmarks.bench_ids
    python -m benchmarks.bench_ids --id-length 200000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
_RUN = "from recctl.cli.main import app; app()"


def _shop(root: Path, long_id: str | None) -> Path:
    """The sample shop under ``root`` (one customer renamed to ``long_id``) and its config."""
    import polars as pl

    sample = REPO / "sample_data"
    events = pl.read_csv(sample / "events.csv", infer_schema=False)
    customers = pl.read_csv(sample / "customers.csv", infer_schema=False)
    if long_id is not None:
        rename = pl.when(pl.col("customer_id") == "C10001").then(pl.lit(long_id)).otherwise(pl.col("customer_id"))
        events = events.with_columns(rename.alias("customer_id"))
        customers = customers.with_columns(rename.alias("customer_id"))
    root.mkdir(parents=True)
    events.write_csv(root / "events.csv")
    customers.write_csv(root / "customers.csv")
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    raw["workdir"] = str(root / "work")
    raw["data"]["interactions"]["path"] = str(root / "events.csv")
    raw["data"]["items"]["path"] = str(sample / "products.csv")
    raw["data"]["users"]["path"] = str(root / "customers.csv")
    raw["models"] = {"popular": raw["models"]["popular"], "lightfm_warp": raw["models"]["lightfm_warp"]}
    raw.pop("tune", None)
    raw.pop("evaluate", None)
    config = root / "shop.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def _peak_mb(command: str, config: Path) -> float:
    """Run one recctl command in a fresh process; its peak RSS in MB."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, command, str(config), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"recctl {command} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return usage.ru_maxrss / 1024


def main() -> None:
    """Run both shops and print peak RSS per stage."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id-length", type=int, default=20_000)
    args = parser.parse_args()
    long_id = "C" + "x" * (args.id_length - 1)
    with tempfile.TemporaryDirectory(prefix="bench_ids_") as tmp:
        peaks: dict[str, dict[str, float]] = {}
        for name, identifier in (("as shipped", None), (f"{args.id_length:,}-char id", long_id)):
            config = _shop(Path(tmp) / name.replace(" ", "_"), identifier)
            peaks[name] = {}
            for command in ("ingest", "preprocess", "train", "recommend", "serve-export"):
                peaks[name][command] = _peak_mb(command, config)
        base, long = peaks.values()
        print(f"{'stage':<14}{'as shipped':>14}{'long id':>14}{'ratio':>8}")
        for command in base:
            print(
                f"{command:<14}{base[command]:>11.0f} MB{long[command]:>11.0f} MB{long[command] / base[command]:>7.2f}x"
            )


if __name__ == "__main__":
    main()
