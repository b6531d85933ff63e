"""Compare two top-K results that may break exact score ties differently.

Two computations of the same scores (an incremental update and a full rebuild, a batch and a
single-user path) can differ in the last bits, and where several items tie, which of them
lands at a rank is then arbitrary. Two lists are the same up to ties when the score at every
rank agrees within ``atol`` and every item that is placed differently has, in the other list,
a score within ``atol`` of its own (or ties with the other list's last score when the other
list left it out).
"""

from __future__ import annotations

import numpy as np

from recctl.ranking import TopK


def assert_same_top_k_up_to_ties(got: TopK, want: TopK, *, atol: float) -> None:
    """Fail unless ``got`` and ``want`` are the same lists up to ties within ``atol``."""
    np.testing.assert_array_equal(got.users, want.users)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=atol)
    for row in range(len(got.users)):
        _check_row(got, want, row, atol)
        _check_row(want, got, row, atol)


def _check_row(a: TopK, b: TopK, row: int, atol: float) -> None:
    b_rank = {int(item): r for r, item in enumerate(b.items[row]) if item >= 0}
    real = b.scores[row][b.items[row] >= 0]
    last = float(real[-1]) if real.size else -np.inf
    for r, item in enumerate(a.items[row]):
        if item < 0 or b_rank.get(int(item)) == r:
            continue
        score = float(a.scores[row, r])
        other = float(b.scores[row, b_rank[int(item)]]) if int(item) in b_rank else last
        assert abs(score - other) <= atol, (
            f"user row {a.users[row]}: item {item} at rank {r + 1} scores {score}, "
            f"but the other list places it with {other}: not a tie within {atol}"
        )
