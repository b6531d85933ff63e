"""Vectorised test statistics for A/B analysis (numpy + scipy.stats, formulas in docstrings).

Every function accepts scalars or numpy arrays (broadcast), so the same code serves one
experiment report and ten thousand simulated experiments in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "TestResult",
    "bootstrap_mean_diff",
    "holm_adjust",
    "mean_interval",
    "srm_test",
    "two_proportion_ztest",
    "welch_ttest",
    "wilson_interval",
]


@dataclass(frozen=True)
class TestResult:
    """A difference ``treatment - control`` with its confidence interval and p-value.

    Attributes
    ----------
    diff
        Absolute difference of the estimates.
    ci_low, ci_high
        Two-sided ``1 - alpha`` confidence interval of ``diff``.
    statistic
        The test statistic (z or t).
    p_value
        Two-sided p-value of ``H0: diff = 0``.
    """

    diff: np.ndarray | float
    ci_low: np.ndarray | float
    ci_high: np.ndarray | float
    statistic: np.ndarray | float
    p_value: np.ndarray | float


def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def wilson_interval(successes, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion.

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = x/n`` and
    ``z = Φ⁻¹(1 - alpha/2)``. Unlike the Wald interval it stays inside [0, 1] and keeps its
    coverage for rare conversions.

    Parameters
    ----------
    successes, n
        Counts (scalars or arrays); ``n = 0`` gives ``nan``.
    alpha
        1 - confidence level.

    Returns
    -------
    tuple of np.ndarray
        Lower and upper bounds.
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = _z(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def mean_interval(mean, var, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of a mean: ``mean ± t_{1-alpha/2, n-1} · sqrt(var / n)``.

    By the central limit theorem this holds for skewed per-user values (revenue) once ``n``
    is in the hundreds; ``var`` is the unbiased sample variance (ddof=1).

    Parameters
    ----------
    mean, var, n
        Sample mean, sample variance and size (scalars or arrays).
    alpha
        1 - confidence level.

    Returns
    -------
    tuple of np.ndarray
        Lower and upper bounds (``nan`` when ``n < 2``).
    """
    mean = np.asarray(mean, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.asarray(var, dtype=np.float64) / n)
        t = stats.t.ppf(1.0 - alpha / 2.0, np.where(n > 1, n - 1, np.nan))
    return mean - t * se, mean + t * se


def two_proportion_ztest(x1, n1, x0, n0, alpha: float = 0.05) -> TestResult:
    """Two-proportion z-test of ``p1 - p0`` (treatment 1 vs control 0).

    Test: ``z = (p1 - p0) / sqrt(p̄(1-p̄)(1/n1 + 1/n0))`` with the pooled
    ``p̄ = (x1 + x0)/(n1 + n0)``, two-sided ``p = 2(1 - Φ(|z|))``.
    Interval (unpooled Wald): ``p1 - p0 ± z_{1-alpha/2} sqrt(p1(1-p1)/n1 + p0(1-p0)/n0)``.
    Assumes independent users and enough conversions per arm (≳ 10) for the normal
    approximation.

    Parameters
    ----------
    x1, n1, x0, n0
        Conversions and users of treatment and control (scalars or arrays).
    alpha
        1 - confidence level of the interval.

    Returns
    -------
    TestResult
        When nobody (or everybody) converted in both arms the p-value is 1.
    """
    x1, n1, x0, n0 = (np.asarray(a, dtype=np.float64) for a in (x1, n1, x0, n0))
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p0 = x1 / n1, x0 / n0
        pooled = (x1 + x0) / (n1 + n0)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        diff = p1 - p0
        z = np.where(se0 > 0, diff / se0, 0.0)
        p = 2.0 * stats.norm.sf(np.abs(z))
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    zc = _z(alpha)
    return TestResult(diff, diff - zc * se, diff + zc * se, z, p)


def welch_ttest(m1, v1, n1, m0, v0, n0, alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t-test of ``mean1 - mean0`` from summary statistics.

    ``t = (m1 - m0) / sqrt(v1/n1 + v0/n0)``; degrees of freedom by Welch–Satterthwaite
    ``df = (v1/n1 + v0/n0)² / ((v1/n1)²/(n1-1) + (v0/n0)²/(n0-1))``; two-sided p from Student's t;
    interval ``m1 - m0 ± t_{1-alpha/2, df} · se``. Assumes independent users; per-user revenue is
    heavily skewed, so the normal approximation of the mean needs a few hundred users per arm
    (the bootstrap interval is reported beside it as a check).

    Parameters
    ----------
    m1, v1, n1, m0, v0, n0
        Means, unbiased variances and sizes of treatment and control.
    alpha
        1 - confidence level of the interval.

    Returns
    -------
    TestResult
        Zero variance in both arms gives ``p = 1`` if the means agree, else ``p = 0``.
    """
    m1, v1, n1, m0, v0, n0 = (np.asarray(a, dtype=np.float64) for a in (m1, v1, n1, m0, v0, n0))
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = v1 / n1, v0 / n0
        se = np.sqrt(a + b)
        diff = m1 - m0
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1))
        t = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.inf * np.sign(diff)))
        df_safe = np.where(np.isfinite(df) & (df > 0), df, 1.0)
        p = np.where(se > 0, 2.0 * stats.t.sf(np.abs(t), df_safe), np.where(diff == 0, 1.0, 0.0))
        tc = stats.t.ppf(1.0 - alpha / 2.0, df_safe)
    return TestResult(diff, diff - tc * se, diff + tc * se, t, p)


def bootstrap_mean_diff(
    values1: np.ndarray,
    values0: np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap of ``mean(values1) - mean(values0)``, exact and fast for sparse values.

    Resampling ``n`` users with replacement from an arm where only ``k`` users have a non-zero
    value is the same, in distribution, as drawing ``m ~ Binomial(n, k/n)`` non-zero users and
    then ``m`` values with replacement from the ``k`` non-zero ones. Revenue per user is mostly
    zero, so this costs ``O(B·k)`` instead of ``O(B·n)``.

    The p-value is the two-sided bootstrap p of ``H0: diff = 0``,
    ``min(1, 2·min(P*(d ≤ 0), P*(d ≥ 0)))``, from the same resamples.

    Parameters
    ----------
    values1, values0
        Per-user values of treatment and control (e.g. revenue, zeros included).
    n_boot
        Number of resamples.
    alpha
        1 - confidence level.
    seed
        Seed of the resampling (the report is reproducible).

    Returns
    -------
    tuple of float
        ``(ci_low, ci_high, p_value)``.
    """
    rng = np.random.default_rng(seed)
    means = []
    for values in (np.asarray(values1, np.float64), np.asarray(values0, np.float64)):
        n = values.size
        nonzero = values[values != 0]
        k = nonzero.size
        if n == 0:
            means.append(np.full(n_boot, np.nan))
            continue
        if k == 0:
            means.append(np.zeros(n_boot))
            continue
        m = rng.binomial(n, k / n, size=n_boot)
        sums = np.empty(n_boot)
        # chunk so at most ~4M values are drawn at once whatever n is
        chunk = max(1, 4_000_000 // max(int(m.max()), 1))
        for start in range(0, n_boot, chunk):
            mm = m[start : start + chunk]
            draws = nonzero[rng.integers(0, k, size=int(mm.sum()))]
            # resample j owns draws[ends[j] - mm[j] : ends[j]]; a running sum gives every
            # resample's total in one pass (empty resamples come out as 0)
            running = np.concatenate(([0.0], np.cumsum(draws)))
            ends = np.cumsum(mm)
            sums[start : start + chunk] = running[ends] - running[ends - mm]
        means.append(sums / n)
    d = means[0] - means[1]
    lo, hi = np.quantile(d, [alpha / 2.0, 1.0 - alpha / 2.0])
    p = min(1.0, 2.0 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
    return float(lo), float(hi), p


def srm_test(observed, expected_shares) -> tuple[float, int, float]:
    """Sample ratio mismatch: Pearson chi-square goodness of fit of arm sizes to their weights.

    ``χ² = Σ (O_i - E_i)² / E_i`` with ``E_i = N · share_i``, ``df = arms - 1``,
    ``p = P(χ²_df ≥ χ²)``. A tiny p (the usual threshold is 0.001) means the split is not what
    was configured: assignment, logging or filtering is broken and every other number in the
    report is suspect.

    Parameters
    ----------
    observed
        Users per arm.
    expected_shares
        Configured share per arm (normalised here).

    Returns
    -------
    tuple
        ``(chi2, df, p_value)``.
    """
    o = np.asarray(observed, dtype=np.float64)
    s = np.asarray(expected_shares, dtype=np.float64)
    e = o.sum() * s / s.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = float(np.sum(np.where(e > 0, (o - e) ** 2 / e, 0.0)))
    df = max(len(o) - 1, 1)
    return chi2, df, float(stats.chi2.sf(chi2, df))


def holm_adjust(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (control the family-wise error over comparisons).

    Sorted ascending, ``p̃_(i) = max_{j ≤ i} min(1, (m - j + 1) p_(j))``.

    Parameters
    ----------
    p_values
        Raw p-values of the m comparisons.

    Returns
    -------
    np.ndarray
        Adjusted p-values in the original order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m <= 1:
        return p.copy()
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out
