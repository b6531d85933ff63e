"""Test statistics for A/B analysis, delegated to scipy.stats and statsmodels.

Each function is a thin, documented wrapper over a kept library call, so the formulas are the
libraries' (tested there) and recctl only fixes conventions: two-sided tests, ``1 - alpha``
intervals, treatment minus control, and what happens in degenerate cases (no conversions in
either arm, zero variance). The wrappers accept scalars or numpy arrays (broadcast), so the
same code serves one experiment report and thousands of simulated experiments in the tests.

| quantity | library call |
| --- | --- |
| Wilson interval of a rate | ``statsmodels.stats.proportion.proportion_confint(method="wilson")`` |
| two-proportion z-test (pooled) | ``statsmodels.stats.proportion.test_proportions_2indep(method="score")`` |
| its interval (unpooled Wald) | ``statsmodels.stats.proportion.confint_proportions_2indep(method="wald")`` |
| Welch t-test and interval | ``scipy.stats.ttest_ind(equal_var=False)`` and its ``confidence_interval`` |
| Student-t interval of a mean | ``scipy.stats.t.interval`` |
| sample ratio mismatch | ``scipy.stats.chisquare`` |
| Holm's correction | ``recctl.evaluation.comparison.holm`` (statsmodels ``multipletests``' arithmetic, tested) |

The sparse revenue bootstrap (:func:`bootstrap_mean_diff`) stays here: it is an exact
``O(B·k)`` shortcut for mostly-zero data that ``scipy.stats.bootstrap`` (``O(B·n)``) lacks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, test_proportions_2indep

from recctl.evaluation.comparison import holm

__all__ = [
    "TestResult",
    "bootstrap_mean_diff",
    "holm",
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


def wilson_interval(successes, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (statsmodels ``proportion_confint``).

    Unlike the Wald interval it stays inside [0, 1] and keeps its coverage for rare
    conversions.

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
    x, n = np.broadcast_arrays(x, n)
    empty = n <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = proportion_confint(np.where(empty, 0, x), np.where(empty, 1, n), alpha=alpha, method="wilson")
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


def mean_interval(mean, var, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of a mean, ``scipy.stats.t.interval`` at ``n - 1`` degrees of freedom.

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
        df = np.where(n > 1, n - 1, np.nan)
        # scipy refuses a zero scale; a zero-variance mean has a zero-width interval
        lo, hi = stats.t.interval(1.0 - alpha, df, loc=mean, scale=np.where(se > 0, se, 1.0))
    return np.where(se > 0, lo, mean + 0 * df), np.where(se > 0, hi, mean + 0 * df)


def two_proportion_ztest(x1, n1, x0, n0, alpha: float = 0.05) -> TestResult:
    """Two-proportion z-test of ``p1 - p0`` (treatment 1 vs control 0).

    The test is statsmodels' score test of two independent proportions without correction,
    which for ``H0: p1 = p0`` is the classic pooled z-test
    ``z = (p1 - p0) / sqrt(p̄(1-p̄)(1/n1 + 1/n0))``; the interval is the unpooled Wald interval
    ``p1 - p0 ± z_{1-alpha/2} sqrt(p1(1-p1)/n1 + p0(1-p0)/n0)``. Assumes independent users and
    enough conversions per arm (≳ 10) for the normal approximation.

    Parameters
    ----------
    x1, n1, x0, n0
        Conversions and users of treatment and control (scalars or arrays).
    alpha
        1 - confidence level of the interval.

    Returns
    -------
    TestResult
        When nobody (or everybody) converted in both arms the statistic is 0 and the p-value 1.
    """
    x1, n1, x0, n0 = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x1, n1, x0, n0)))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # statsmodels warns about the degenerate all-or-nothing tables handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        res = test_proportions_2indep(x1, n1, x0, n0, method="score", compare="diff", correction=False)
        low, high = confint_proportions_2indep(x1, n1, x0, n0, method="wald", compare="diff", alpha=alpha)
        diff = x1 / n1 - x0 / n0
    pooled = (x1 + x0) / (n1 + n0)
    degenerate = (pooled <= 0) | (pooled >= 1)
    z = np.where(degenerate, 0.0, res.statistic)
    p = np.where(degenerate, 1.0, res.pvalue)
    return TestResult(diff, low, high, z, p)


def welch_ttest(values1, values0, alpha: float = 0.05, axis: int = -1) -> TestResult:
    """Welch's unequal-variance t-test of ``mean(values1) - mean(values0)`` (``scipy.stats.ttest_ind``).

    Degrees of freedom by Welch–Satterthwaite, two-sided p from Student's t, and scipy's
    ``confidence_interval`` of the difference. Assumes independent users; per-user revenue is
    heavily skewed, so the normal approximation of the mean needs a few hundred users per arm
    (the bootstrap interval is reported beside it as a check).

    Parameters
    ----------
    values1, values0
        Per-user values of treatment and control (zeros included); 2-D arrays test each row
        (``axis``) as one experiment.
    alpha
        1 - confidence level of the interval.
    axis
        Axis holding the users.

    Returns
    -------
    TestResult
        Zero variance in both arms gives ``p = 1`` if the means agree, else ``p = 0`` (scipy
        returns NaN there).
    """
    a = np.asarray(values1, dtype=np.float64)
    b = np.asarray(values0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # scipy warns that a zero-variance sample makes the statistic degenerate; handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False, axis=axis)
        ci = res.confidence_interval(1.0 - alpha)
        diff = a.mean(axis=axis) - b.mean(axis=axis)
    flat = np.isnan(res.statistic) & (a.var(axis=axis) == 0) & (b.var(axis=axis) == 0)
    with np.errstate(invalid="ignore"):
        t = np.where(flat, np.where(diff == 0, 0.0, np.inf * np.sign(diff)), res.statistic)
    p = np.where(flat, np.where(diff == 0, 1.0, 0.0), res.pvalue)
    low = np.where(flat, diff, ci.low)
    high = np.where(flat, diff, ci.high)
    return TestResult(diff, low, high, t, p)


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
    zero, so this costs ``O(B·k)`` instead of ``O(B·n)`` (``scipy.stats.bootstrap`` resamples
    all ``n``).

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
    """Sample ratio mismatch: Pearson chi-square goodness of fit of arm sizes (``scipy.stats.chisquare``).

    ``E_i = N · share_i``, ``df = arms - 1``. A tiny p (the usual threshold is 0.001) means the
    split is not what was configured: assignment, logging or filtering is broken and every
    other number in the report is suspect. Arms expected to be empty (share 0) are left out.

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
    df = max(len(o) - 1, 1)
    keep = e > 0
    if o.sum() == 0 or keep.sum() < 2:
        return 0.0, df, 1.0
    # ddof keeps the degrees of freedom at arms - 1 even when an arm with share 0 is left out
    expected = o[keep].sum() * s[keep] / s[keep].sum()
    res = stats.chisquare(o[keep], expected, ddof=df - (int(keep.sum()) - 1))
    return float(res.statistic), df, float(res.pvalue)
