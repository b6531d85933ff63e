"""SASRec scoring: torch vs numpy on the same weights, and one training epoch for scale.

Scores every user of MovieLens latest-small (per-user temporal split, as in
``benchmarks/quality_table.py``) three ways with one trained model: the numpy forward pass over
every position (what recctl ran before), the numpy pass that computes only the latest position
in the last block (today's torch-free fallback), and torch (today's path when torch is
installed). Prints the seconds of each, the ratios and the largest score difference.

    nice -n 10 python -m benchmarks.bench_sasrec_scoring [--threads 1] [--epochs 1]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)

    from benchmarks.quality_table import load_events, make_fold, per_user_split, recctl_dataset
    from recctl.models import _sasrec_numpy as npnet
    from recctl.models.sasrec import SASRecModel, _pad_rows

    events = load_events("ml-latest-small")
    if events is None:
        return 0
    train, test = per_user_split(events)
    fold = make_fold(train, test)
    dataset = recctl_dataset(fold)
    model = SASRecModel(epochs=args.epochs, num_threads=args.threads, random_state=0)
    t0 = time.perf_counter()
    model.fit(dataset)
    epoch_s = (time.perf_counter() - t0) / args.epochs
    import torch

    torch.set_num_threads(args.threads)
    users = np.arange(fold.n_users)
    seq = _pad_rows(model.hist_indptr_, model.hist_items_, users, model.config.max_len)
    w, heads = model.weights_, model.config.n_heads
    items = w["item_table"][1:].T

    batches = np.array_split(np.arange(len(users)), max(1, len(users) // 512))
    paths = {
        "numpy, every position (before)": lambda b: npnet.encode(seq[b], w, heads)[:, -1] @ items,
        "numpy, latest position only (fallback now)": lambda b: npnet.sequence_vectors(seq[b], w, heads) @ items,
        "torch (now, when installed)": lambda b: model._scores_for(seq[b]),
    }
    seconds = dict.fromkeys(paths, np.inf)
    scores: dict[str, np.ndarray] = {}
    for _ in range(3):  # interleaved repeats, best of three: the machine is shared
        for label, fn in paths.items():
            t = time.perf_counter()
            scores[label] = np.concatenate([fn(b) for b in batches])
            seconds[label] = min(seconds[label], time.perf_counter() - t)
    full_s, last_s, torch_s = seconds.values()
    full, last, via_torch = scores.values()
    print(
        f"{fold.n_users} users x {fold.n_items} items, max_len {model.config.max_len}, "
        f"{args.threads} thread(s); one training epoch {epoch_s:.1f} s",
        file=sys.stderr,
    )
    print("| scoring path | seconds | vs torch |\n| --- | --- | --- |")
    for label, secs in (
        ("numpy, every position (before)", full_s),
        ("numpy, latest position only (fallback now)", last_s),
        ("torch (now, when installed)", torch_s),
    ):
        print(f"| {label} | {secs:.2f} | {secs / torch_s:.1f}x |")
    print(
        f"\nlargest |difference|: numpy-full vs torch {np.abs(full - via_torch).max():.2e}, "
        f"numpy-latest vs torch {np.abs(last - via_torch).max():.2e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
