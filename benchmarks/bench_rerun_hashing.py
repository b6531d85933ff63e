"""What a no-change ``recctl preprocess`` re-run hashes, with file identities and without (as before).

On a generated shop (:func:`benchmarks.bench_scale.generate_shop_apart`), ingests and preprocesses
once, then re-runs preprocess in this process twice with every ``recctl.artifacts.sha256_file``
call counted (files, bytes, CPU seconds of hashing): first as recorded (manifests carry each
file's identity, docs/architecture.md "A file's identity"), then after removing the identities
from every manifest, which hashes what recctl hashed before they existed. The counts do not
depend on the machine's load; the CPU seconds do (read them as a ratio).

Run::

    python -m benchmarks.bench_rerun_hashing --events 2e6     # ~1 min, ~1 GB
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_scale import generate_shop_apart, write_config


def rerun_hashing(folder: Path, n_events: int, n_items: int) -> dict[str, dict[str, Any]]:
    """The hashing of a no-change preprocess re-run, ``{"identity": ..., "without": ...}``."""
    from typer.testing import CliRunner

    from recctl import artifacts
    from recctl.cli.main import app

    generate_shop_apart(folder, n_events, n_items)
    config = write_config(folder, {"popular": {"kind": "popularity"}, "top": {"kind": "popularity"}})
    time.sleep(2.5)  # a shop's export is a settled file (recctl.artifacts.RACY_NS)
    runner = CliRunner()
    calls: list[tuple[str, int, float]] = []
    real = artifacts.sha256_file

    def counting(path: Any) -> str:
        start = time.process_time()
        digest = real(path)
        calls.append((str(path), Path(path).stat().st_size, time.process_time() - start))
        return digest

    def invoke(command: str) -> None:
        result = runner.invoke(app, [command, str(config), "-q"])
        if result.exit_code != 0:
            raise RuntimeError(f"recctl {command} failed ({result.exit_code}):\n{result.output}")

    artifacts.sha256_file = counting  # type: ignore[assignment]
    try:
        invoke("ingest")
        invoke("preprocess")
        out = {}
        for label in ("identity", "without"):
            if label == "without":
                for manifest in (folder / "work").glob("*/manifest.json"):
                    data = json.loads(manifest.read_text())
                    for where in ("inputs", "outputs"):
                        for rec in data[where]:
                            rec.pop("identity", None)
                    manifest.write_text(json.dumps(data))
                artifacts._SEEN.clear()
            calls.clear()
            invoke("preprocess")
            biggest = sorted(calls, key=lambda c: -c[1])[:8]
            out[label] = {
                "calls": len(calls),
                "mb": round(sum(c[1] for c in calls) / 1e6, 1),
                "cpu_s": round(sum(c[2] for c in calls), 3),
                "largest": [(p.replace(str(folder), "."), round(b / 1e6, 1)) for p, b, _ in biggest],
            }
    finally:
        artifacts.sha256_file = real  # type: ignore[assignment]
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=float, default=2e6)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--scratch", type=Path, default=None, help="Where the shop is generated (default: a temp dir).")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="recctl-hash-", dir=args.scratch))
    try:
        res = rerun_hashing(root, int(args.events), args.items)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"no-change `recctl preprocess` re-run, {int(args.events):,} events:")
    for label, name in (("identity", "with identities"), ("without", "without (as before)")):
        r = res[label]
        print(f"  {name:20s} {r['calls']:3d} files hashed, {r['mb']:8.1f} MB, {r['cpu_s']:.2f} CPU-s hashing")
        for path, mb in r["largest"]:
            print(f"      {mb:8.1f} MB  {path}")
    a, b = res["identity"], res["without"]
    print(f"  ratio with/without: bytes {a['mb'] / b['mb']:.2f}, hashing CPU {a['cpu_s'] / max(b['cpu_s'], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
