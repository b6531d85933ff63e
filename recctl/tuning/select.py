"""Deciding what a search found: a real improvement or noise, values at a space's edge, blends.

A tuned value replaces the configured one only when it is a **real** improvement on the
validation split: the per-user objective of the best trial is compared with that of the
configured-parameters trial (trial 0) on the same users by a one-sided Wilcoxon signed-rank
test, and the p-value is multiplied by the number of trials the best was picked from
(Bonferroni: the best of many noisy trials beats the default by chance more often than a
single one would). Only below ``tune.alpha`` is the change kept. That is what stops tuning
from making models worse on test: a gain of 0.001 NDCG on 600 validation users is noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recctl.tuning.trial import TrialResult

__all__ = ["Decision", "blend_weight_vectors", "paired_gain", "decide"]


@dataclass
class Decision:
    """Whether the best trial replaces the configured parameters, and why."""

    chosen: TrialResult
    best: TrialResult
    default: TrialResult | None
    accepted: bool
    p_value: float | None
    n_compared: int
    reason: str
    hints: list[str] = field(default_factory=list)


def paired_gain(candidate: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """Mean per-user gain of ``candidate`` over ``base`` and the one-sided Wilcoxon p-value.

    Users where both are equal carry no evidence and are dropped (Wilcoxon's ``wilcox``
    zero method); with no difference at all the p-value is 1.
    """
    from scipy.stats import wilcoxon

    diff = np.asarray(candidate, np.float64) - np.asarray(base, np.float64)
    gain = float(diff.mean()) if len(diff) else 0.0
    if not np.any(diff != 0):
        return gain, 1.0
    result = wilcoxon(diff, zero_method="wilcox", alternative="greater")
    p = float(result.pvalue)
    return gain, p if math.isfinite(p) else 1.0


def decide(results: list[TrialResult], alpha: float, *, label: str = "the configured parameters") -> Decision | None:
    """Pick the best complete trial and keep it only when it beats trial 0 for real.

    Returns ``None`` when no trial completed. Without a complete trial 0 (``include_default``
    off, or the configured parameters failed) the best trial is taken as is.
    """
    complete = [r for r in results if r.status == "complete" and r.value is not None]
    if not complete:
        return None
    best = max(complete, key=lambda r: (r.value, -r.number))
    default = next((r for r in complete if r.number == 0), None)
    if default is None:
        return Decision(best, best, None, True, None, len(complete), f"no complete trial of {label} to compare with")
    if best.number == 0:
        return Decision(default, best, default, False, None, len(complete) - 1, f"no trial beat {label}")
    n_compared = max(1, len(complete) - 1)
    if best.per_user is None or default.per_user is None or len(best.per_user) != len(default.per_user):
        return Decision(best, best, default, True, None, n_compared, "no per-user values to test (kept the best)")
    gain, p = paired_gain(best.per_user, default.per_user)
    p_adj = min(1.0, p * n_compared)
    if gain > 0 and p_adj < alpha:
        reason = f"beats {label} by {gain:+.4f} per user (Wilcoxon p = {p_adj:.2g} after x{n_compared} Bonferroni)"
        return Decision(best, best, default, True, p_adj, n_compared, reason)
    reason = (
        f"best trial {best.number} ({best.value:.4f}) is not a real improvement on {label} ({default.value:.4f}): "
        f"Wilcoxon p = {p_adj:.2g} after x{n_compared} Bonferroni >= alpha {alpha}; kept {label}"
    )
    return Decision(default, best, default, False, p_adj, n_compared, reason)


def blend_weight_vectors(n_components: int, n_vectors: int, seed: int) -> list[list[float]]:
    """Weight vectors to try for a blend: equal weights first, then seeded draws on the simplex.

    Two components get an even grid of shares (0.1 .. 0.9 for the first), more components
    Dirichlet(1) draws; weights are rounded to 3 decimals (they end up in YAML).
    """
    vectors = [[round(1.0 / n_components, 3)] * n_components]
    if n_components == 2:
        grid = [round(w, 3) for w in np.linspace(0.1, 0.9, max(2, n_vectors - 1))]
        vectors += [[w, round(1.0 - w, 3)] for w in grid if abs(w - 0.5) > 1e-9]
    else:
        rng = np.random.default_rng([seed, 0xB1E])
        for _ in range(n_vectors - 1):
            w = rng.dirichlet(np.ones(n_components))
            vectors.append([round(float(x), 3) for x in w])
    return vectors[:n_vectors]


def describe_params(params: dict[str, Any]) -> str:
    """``l2=120, neighbors=80`` (3 significant digits for floats)."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))
