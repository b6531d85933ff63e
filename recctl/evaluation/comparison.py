"""Honest model comparison: paired differences, bootstrap intervals, paired tests, Holm.

Every model is evaluated on the same users, so its per-user metric vector is *paired* with
the baseline's. For each (model, reference, metric) we report the mean difference, a
paired bootstrap confidence interval (users resampled with replacement, the experiment seed
fixing the draws), a paired test (Wilcoxon signed-rank by default, or the paired t-test; scipy.stats),
and Holm's step-down correction (:func:`holm`) over the comparisons made on the same metric@k (the
family is "every model compared on ndcg@10", so adding models makes each verdict stricter;
``family="all"`` corrects over the whole table instead). The verdict is in plain
words: ``better`` / ``worse`` when the Holm-adjusted p-value is below ``alpha`` *and* the
bootstrap interval excludes 0 on the same side (the test and the interval must agree),
otherwise ``no detectable difference``; metrics where higher is not simply better (coverage-type
metrics) say ``higher`` / ``lower`` instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "Comparison",
    "NO_DIFFERENCE",
    "bootstrap_mean_ci",
    "compare_models",
    "holm",
    "paired_pvalue",
]

NO_DIFFERENCE = "no detectable difference"
#: metrics where "more" is not "better" (a judgement, not a direction)
_NEUTRAL = ("novelty", "diversity", "popularity_bias", "user_coverage", "coverage")
#: resampled users held in memory at once (counts matrix chunk x n_users)
_CHUNK_CELLS = 4_000_000


@dataclass
class Comparison:
    """One row of the comparison table: ``model`` against ``reference`` on ``metric``."""

    model: str
    reference: str
    role: str  # "baseline" or "best"
    metric: str
    model_mean: float
    reference_mean: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    n_users: int
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (NaN becomes ``None``)."""
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence).

    The i-th smallest p-value is multiplied by ``m - i`` (i from 0), a running maximum keeps
    the adjusted values monotone, and they are capped at 1. NaN p-values stay NaN and do not
    count in ``m``. The one Holm correction in recctl: the evaluation's comparisons and the
    A/B report both use it.

    The arithmetic of ``statsmodels.stats.multitest.multipletests(method="holm")`` (a test
    checks they agree), written out because that function runs a full ``gc.collect()`` on
    every call: 0.5-2.5 s in a process holding many objects (the test suite: ~11 of its 29
    minutes under load), for what is five numpy operations.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
    [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok):
        order = np.argsort(p[ok], kind="stable")
        ranked = p[ok][order] * np.arange(len(ok), 0, -1)
        out[ok[order]] = np.minimum(np.maximum.accumulate(ranked), 1.0)
    return out


def paired_pvalue(diff: np.ndarray, test: Literal["wilcoxon", "t"] = "wilcoxon") -> float:
    """Two-sided p-value of a paired test on per-user differences (NaNs dropped).

    ``wilcoxon``: signed-rank test, zero differences dropped (Wilcoxon's convention), normal
    approximation with tie correction for large samples. ``t``: one-sample t-test of the
    differences. All-zero differences give p = 1; a constant non-zero difference p = 0.
    """
    from scipy import stats

    d = np.asarray(diff, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0 or not np.any(d != 0):
        return 1.0
    if np.all(d == d[0]):
        return 0.0
    with warnings.catch_warnings():
        # scipy notes when it switches from the exact to the approximate distribution
        # (zeros or ties); that switch is the intended behaviour here
        warnings.simplefilter("ignore", category=UserWarning)
        if test == "t":
            result = stats.ttest_1samp(d, 0.0)
        else:
            result = stats.wilcoxon(d, zero_method="wilcox")
    return float(result.pvalue)


def bootstrap_mean_ci(
    diffs: np.ndarray, *, n_bootstrap: int, alpha: float, seed: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean of each column of paired differences.

    Users (rows) are resampled with replacement ``n_bootstrap`` times; all columns share the
    same draws, so the intervals of different metrics come from the same resamples. NaN
    cells are left out of their column's mean in every resample.

    Parameters
    ----------
    diffs
        ``(n_users, n_metrics)`` per-user differences (model minus reference).
    n_bootstrap
        Number of resamples (0 gives NaN intervals).
    alpha
        1 - confidence level (0.05 gives a 95% interval).
    seed
        Seed of the resampling (the experiment seed, plus an index per comparison).

    Returns
    -------
    (low, high)
        One bound per column.
    """
    d = np.atleast_2d(np.asarray(diffs, dtype=np.float64).T).T
    n, m = d.shape
    if n == 0 or n_bootstrap <= 0:
        return np.full(m, np.nan), np.full(m, np.nan)
    valid = ~np.isnan(d)
    filled = np.where(valid, d, 0.0)
    # float operands keep both products on BLAS; without NaN the denominator is just n
    valid_f = None if valid.all() else valid.astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_bootstrap, _CHUNK_CELLS // max(n, 1)))
    means = np.empty((n_bootstrap, m))
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        idx = rng.integers(0, n, size=(b, n), dtype=np.int64)
        # counts[j, u] = how often user u is drawn in resample j; one matmul per chunk
        counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        counts = counts.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start : start + b] = (counts @ filled) / (n if valid_f is None else counts @ valid_f)
    low = np.nanquantile(means, alpha / 2, axis=0) if np.isfinite(means).any() else np.full(m, np.nan)
    high = np.nanquantile(means, 1 - alpha / 2, axis=0) if np.isfinite(means).any() else np.full(m, np.nan)
    return np.asarray(low), np.asarray(high)


def _verdict(metric: str, diff: float, p_adj: float, alpha: float, low: float, high: float) -> str:
    if not np.isfinite(p_adj) or p_adj >= alpha or diff == 0 or not np.isfinite(diff):
        return NO_DIFFERENCE
    # a significant test whose interval still straddles 0 is not a clear direction
    if np.isfinite(low) and np.isfinite(high) and low <= 0 <= high:
        return NO_DIFFERENCE
    neutral = metric.split("@")[0] in _NEUTRAL
    if diff > 0:
        return "higher" if neutral else "better"
    return "lower" if neutral else "worse"


def compare_models(
    per_user: dict[str, np.ndarray],
    metrics: Sequence[str],
    *,
    baseline: str,
    best: str | None = None,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    test: Literal["wilcoxon", "t"] = "wilcoxon",
    seed: int = 0,
    family: Literal["metric", "all"] = "metric",
) -> list[Comparison]:
    """Compare every model with the baseline and with the best model, metric by metric.

    Parameters
    ----------
    per_user
        Model name -> ``(n_users, n_metrics)`` per-user values; rows must be the same users
        in the same order for every model (the paired design).
    metrics
        Column names (``ndcg@10``...), one per column.
    baseline
        Name of the baseline model.
    best
        Name of the best model (by the primary metric); comparisons with it are added for
        every other model that is not the baseline-vs-best pair already covered.
    n_bootstrap, alpha, test, seed
        See :func:`bootstrap_mean_ci` and :func:`paired_pvalue`.
    family
        Holm's family: ``metric`` (default) corrects over all comparisons on the same
        metric@k; ``all`` over every row of the table.

    Returns
    -------
    list[Comparison]
        With Holm-adjusted p-values and verdicts.
    """
    if baseline not in per_user:
        raise ValueError(f"baseline '{baseline}' has no per-user metrics")
    shapes = {name: np.shape(v) for name, v in per_user.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"per-user matrices differ in shape (not the same users?): {shapes}")
    pairs: list[tuple[str, str, str]] = [(name, baseline, "baseline") for name in per_user if name != baseline]
    # when the baseline is itself the best model, the "vs best" pairs would repeat the
    # "vs baseline" ones and double their weight in the Holm correction
    if best is not None and best in per_user and best != baseline:
        pairs += [(name, best, "best") for name in per_user if name not in (best, baseline)]
    rows: list[Comparison] = []
    for i, (name, ref, role) in enumerate(pairs):
        x = np.asarray(per_user[name], dtype=np.float64).reshape(-1, len(metrics))
        y = np.asarray(per_user[ref], dtype=np.float64).reshape(-1, len(metrics))
        d = x - y
        low, high = bootstrap_mean_ci(d, n_bootstrap=n_bootstrap, alpha=alpha, seed=[seed, i])
        for j, metric in enumerate(metrics):
            ok = ~np.isnan(d[:, j])
            rows.append(
                Comparison(
                    model=name,
                    reference=ref,
                    role=role,
                    metric=metric,
                    model_mean=_mean(x[ok, j]),
                    reference_mean=_mean(y[ok, j]),
                    diff=_mean(d[ok, j]),
                    ci_low=float(low[j]),
                    ci_high=float(high[j]),
                    p_value=paired_pvalue(d[:, j], test),
                    p_holm=float("nan"),
                    n_users=int(ok.sum()),
                    verdict=NO_DIFFERENCE,
                )
            )
    groups = (
        [list(range(len(rows)))]
        if family == "all"
        else [[i for i, r in enumerate(rows) if r.metric == metric] for metric in metrics]
    )
    for group in groups:
        adjusted = holm([rows[i].p_value for i in group])
        for i, p_adj in zip(group, adjusted, strict=True):
            rows[i].p_holm = float(p_adj)
            r = rows[i]
            r.verdict = _verdict(r.metric, r.diff, r.p_holm, alpha, r.ci_low, r.ci_high)
    return rows


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")
