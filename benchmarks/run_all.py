"""Run every benchmark at a reduced size, one after the other (``make bench``).

The full sizes the issues name (20M ingest rows, 200,000 users x 50,000 items) take tens of
minutes on a 2-core machine; run a benchmark module alone without arguments for those.
Each benchmark prints its own ratios; this script only sequences them and stops on failure.

    python -m benchmarks.run_all            # reduced sizes, about 10 minutes
    python -m benchmarks.run_all --full     # the issues' sizes (an hour or more)
"""

from __future__ import annotations

import argparse
import subprocess
import sys

#: (module, reduced-size arguments)
BENCHMARKS = [
    ("benchmarks.bench_ingest", ["--rows", "2000000"]),
    ("benchmarks.bench_topk", ["--users", "50000", "--items", "20000"]),
    ("benchmarks.bench_evaluate", ["--users", "20000"]),
    ("benchmarks.bench_models", ["--users", "20000", "--items", "5000"]),
    ("benchmarks.bench_update", ["--users", "20000"]),
    ("benchmarks.bench_abtest", ["--users", "200000"]),
]


def main() -> int:
    """Run the benchmarks in order; return the first non-zero exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="use each benchmark's default (issue-sized) run")
    args = parser.parse_args()
    for module, reduced in BENCHMARKS:
        cmd = [sys.executable, "-m", module, *([] if args.full else reduced)]
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)
        code = subprocess.call(cmd)
        if code:
            print(f"{module} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
