"""Benchmark: one id -> position look-up (:class:`recctl.data.positions.IdPositions`) against the ways it replaced.

Until IdPositions, recctl looked ids up four ways: a Python dict per id (``IdIndex.item_index``,
``Serving.item_index``, the serving bundle), a polars left join with a row index in chunks
(``export._positions``) and a polars inner join (``incremental.changes._positions_of``). This
builds an id map of ``--ids`` ids (``u0000123``-like text, shuffled) and asks each way for the
positions of ``--values`` values (a share ``--unknown`` of them not in the map, repeats
allowed), ``--repeats`` times, interleaved. Printed per size: CPU seconds of the first call
(which builds the look-up) and the median of the later calls, and the ratio IdPositions / each
former way measured in the same run. The answers are checked equal (the inner join drops
unknown values: compared on the known ones).

Run::

    python -m benchmarks.bench_positions                       # 100k ids; 1k and 1M values (~20 s)
    python -m benchmarks.bench_positions --ids 1e6 --values 1e3,1e7
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import polars as pl

from recctl.data.positions import IdPositions

_CHUNK = 1 << 18  # export._positions' chunk (_PAIR_CHUNK) before IdPositions


def former_dict(ids: pl.Series) -> Callable[[pl.Series], np.ndarray]:
    """IdIndex.item_index / Serving.item_index: a dict built on the first call, a Python loop per call."""
    table: dict[str, int] = {}

    def lookup(values: pl.Series) -> np.ndarray:
        if not table:
            table.update({str(u): i for i, u in enumerate(ids.to_list())})
        return np.array([table.get(str(u), -1) for u in values.to_list()], dtype=np.int64)

    return lookup


def former_left_join(ids: pl.Series) -> Callable[[pl.Series], np.ndarray]:
    """export._positions: a left join with a row index, ``_CHUNK`` values at a time, -1 when absent."""
    index = pl.DataFrame({"_id": ids}).with_row_index("_at")

    def lookup(values: pl.Series) -> np.ndarray:
        out = np.empty(len(values), dtype=np.int32)
        for lo in range(0, len(values), _CHUNK):
            part = pl.DataFrame({"_id": values.slice(lo, _CHUNK)})
            found = part.join(index, on="_id", how="left", maintain_order="left")["_at"]
            out[lo : lo + part.height] = found.cast(pl.Int32).fill_null(-1).to_numpy()
        return out

    return lookup


def former_inner_join(ids: pl.Series) -> Callable[[pl.Series], np.ndarray]:
    """incremental.changes._positions_of: an inner join (unknown values dropped)."""

    def lookup(values: pl.Series) -> np.ndarray:
        known = pl.DataFrame({"user_id": ids}).with_row_index("__pos")
        found = pl.DataFrame({"user_id": values}).join(known, on="user_id", how="inner", maintain_order="left")
        return found["__pos"].to_numpy().astype(np.int64)

    return lookup


def positions_now(ids: pl.Series) -> Callable[[pl.Series], np.ndarray]:
    """IdPositions, built on the first call."""
    look = IdPositions(ids)
    return look.lookup


WAYS = {
    "IdPositions": positions_now,
    "dict (IdIndex, Serving, bundle)": former_dict,
    "left join (export._positions)": former_left_join,
    "inner join (changes._positions_of)": former_inner_join,
}


def _timed(fn: Callable[[pl.Series], np.ndarray], values: pl.Series) -> tuple[tuple[float, float], np.ndarray]:
    """``((CPU s, wall s), answer)``: CPU counts polars' threads (and their spin after other calls)."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(values)
    return (time.process_time() - cpu, time.perf_counter() - wall), out


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print per-call CPU seconds and ratios (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ids", type=float, default=1e5)
    ap.add_argument("--values", default="1e3,1e6", help="Comma-separated numbers of values to look up.")
    ap.add_argument("--unknown", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n_ids = int(args.ids)
    ids = pl.Series("id", [f"u{i:08d}" for i in rng.permutation(n_ids)], dtype=pl.String)
    for n in (int(float(v)) for v in args.values.split(",")):
        span = int(n_ids / (1 - args.unknown))
        values = pl.Series("v", [f"u{i:08d}" for i in rng.integers(0, span, n)], dtype=pl.String)
        ways = {name: make(ids) for name, make in WAYS.items()}
        first: dict[str, tuple[float, float]] = {}
        later: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        answers: dict[str, np.ndarray] = {}
        for r in range(args.repeats + 1):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))  # interleaved, order flips
            for name in order:
                seconds, answers[name] = _timed(ways[name], values)
                if r == 0:
                    first[name] = seconds
                else:
                    later[name].append(seconds)
        ref = answers["IdPositions"]
        assert np.array_equal(ref, answers["dict (IdIndex, Serving, bundle)"])
        assert np.array_equal(ref, answers["left join (export._positions)"])
        assert np.array_equal(ref[ref >= 0], answers["inner join (changes._positions_of)"])

        def med(name: str, j: int, later: dict[str, list[tuple[float, float]]] = later) -> float:
            return statistics.median(t[j] for t in later[name])

        print(f"\n{n_ids:,} ids, {n:,} values ({args.unknown:.0%} unknown), medians of {args.repeats} calls")
        head = ("first call CPU s", "per call CPU s", "wall s", "IdPositions/this CPU", "wall")
        print(
            f"{'way':36s} " + " ".join(f"{h:>16s}" if i < 3 else f"{h:>20s}" for i, h in enumerate(head[:4])), head[4]
        )
        for name in ways:
            cpu, wall = med(name, 0), med(name, 1)
            ratio_cpu, ratio_wall = med("IdPositions", 0) / cpu, med("IdPositions", 1) / wall
            print(f"{name:36s} {first[name][0]:16.5f} {cpu:16.5f} {wall:16.5f} {ratio_cpu:20.3f} {ratio_wall:6.3f}")


if __name__ == "__main__":
    main()
