"""The test statistics against scipy, and their error rates over many simulated experiments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recctl.abtest.power import power_proportions
from recctl.abtest.stats import (
    bootstrap_mean_diff,
    holm,
    mean_interval,
    srm_test,
    two_proportion_ztest,
    welch_ttest,
    wilson_interval,
)

ALPHA = 0.05


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.exponential(3, 300), rng.exponential(2.5, 450)
    ours = welch_ttest(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ci.low, ci.high))


def test_ztest_matches_chi_square_of_the_2x2_table() -> None:
    # the pooled two-proportion z-test is the uncorrected chi-square test of the 2x2 table
    res = two_proportion_ztest(130, 2000, 100, 2100)
    chi = stats.chi2_contingency([[130, 1870], [100, 2000]], correction=False)
    assert float(res.statistic) ** 2 == pytest.approx(chi.statistic)
    assert float(res.p_value) == pytest.approx(chi.pvalue)


def test_srm_matches_scipy_chisquare() -> None:
    chi2, df, p = srm_test([5200, 4700, 1100], [0.45, 0.45, 0.10])
    ref = stats.chisquare([5200, 4700, 1100], np.array([0.45, 0.45, 0.10]) * 11000)
    assert (chi2, p) == pytest.approx((ref.statistic, ref.pvalue))
    assert df == 2


def test_wilson_known_value_and_bounds() -> None:
    lo, hi = wilson_interval(5, 100)
    assert (float(lo), float(hi)) == pytest.approx((0.02154, 0.11175), abs=1e-4)
    lo, hi = wilson_interval(0, 50)
    assert float(lo) == pytest.approx(0.0, abs=1e-12) and 0 < float(hi) < 0.1


def test_mean_interval_matches_scipy() -> None:
    x = np.random.default_rng(2).normal(5, 2, 40)
    lo, hi = mean_interval(x.mean(), x.var(ddof=1), x.size)
    ref = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert (float(lo), float(hi)) == pytest.approx(ref)


def test_holm_adjust() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]).round(3).tolist() == [0.03, 0.06, 0.06, 0.02]
    assert holm([0.2]).tolist() == [0.2]


def test_one_holm_for_evaluation_and_ab() -> None:
    from recctl.evaluation.comparison import holm as evaluation_holm

    assert holm is evaluation_holm


def test_degenerate_cases_keep_their_documented_answers() -> None:
    none = two_proportion_ztest(0, 100, 0, 120)
    assert float(none.p_value) == 1.0 and float(none.statistic) == 0.0
    same = welch_ttest(np.ones(30), np.ones(40))
    assert float(same.p_value) == 1.0 and float(same.ci_low) == float(same.ci_high) == 0.0
    apart = welch_ttest(np.ones(30), np.zeros(40))
    assert float(apart.p_value) == 0.0 and float(apart.diff) == 1.0
    lo, hi = wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_bootstrap_agrees_with_welch_on_sparse_revenue() -> None:
    rng = np.random.default_rng(3)
    a = rng.exponential(40, 3000) * (rng.random(3000) < 0.06)
    b = rng.exponential(40, 3000) * (rng.random(3000) < 0.05)
    lo, hi, p = bootstrap_mean_diff(a, b, n_boot=3000, seed=1)
    w = welch_ttest(a, b)
    width = float(w.ci_high - w.ci_low)
    assert lo == pytest.approx(float(w.ci_low), abs=0.1 * width)
    assert hi == pytest.approx(float(w.ci_high), abs=0.1 * width)
    assert p == pytest.approx(float(w.p_value), abs=0.05)
    assert bootstrap_mean_diff(a, b, n_boot=500, seed=9) == bootstrap_mean_diff(a, b, n_boot=500, seed=9)


# ---- simulated experiments (vectorised: one array row per experiment) -----------------------

N_SIMS = 4000


def _rate_band(n: int, rate: float) -> tuple[float, float]:
    sd = np.sqrt(rate * (1 - rate) / n)
    return rate - 4 * sd, rate + 4 * sd


def test_aa_conversion_false_positive_rate_is_alpha() -> None:
    rng = np.random.default_rng(10)
    n0, n1 = 3000, 3000
    x0 = rng.binomial(n0, 0.04, N_SIMS)
    x1 = rng.binomial(n1, 0.04, N_SIMS)
    fpr = float(np.mean(two_proportion_ztest(x1, n1, x0, n0).p_value < ALPHA))
    lo, hi = _rate_band(N_SIMS, ALPHA)
    assert lo <= fpr <= hi, fpr


def test_aa_revenue_false_positive_rate_is_alpha() -> None:
    # skewed, zero-inflated revenue per user, unequal arm sizes: Welch must still hold its level
    rng = np.random.default_rng(11)
    n0, n1, sims = 600, 400, 2000
    r0 = rng.exponential(40, (sims, n0)) * (rng.random((sims, n0)) < 0.2)
    r1 = rng.exponential(40, (sims, n1)) * (rng.random((sims, n1)) < 0.2)
    res = welch_ttest(r1, r0, axis=1)
    fpr = float(np.mean(res.p_value < ALPHA))
    lo, hi = _rate_band(sims, ALPHA)
    assert lo <= fpr <= hi, fpr


def test_real_effect_found_with_the_planned_power() -> None:
    rng = np.random.default_rng(12)
    p0, p1, n = 0.05, 0.06, 8000
    x0, x1 = rng.binomial(n, p0, N_SIMS), rng.binomial(n, p1, N_SIMS)
    rejected = two_proportion_ztest(x1, n, x0, n).p_value < ALPHA
    found = float(np.mean(rejected))
    expected = power_proportions(p0, p1, n, n)
    assert found == pytest.approx(expected, abs=0.03)
    assert found > 0.7


def test_interval_coverage() -> None:
    rng = np.random.default_rng(13)
    n0, n1 = 2000, 2500
    x0, x1 = rng.binomial(n0, 0.1, N_SIMS), rng.binomial(n1, 0.12, N_SIMS)
    res = two_proportion_ztest(x1, n1, x0, n0)
    covered = float(np.mean((res.ci_low <= 0.02) & (0.02 <= res.ci_high)))
    assert covered == pytest.approx(0.95, abs=0.015)


def test_srm_rarely_fires_on_correct_allocations_and_flags_injected_mismatch() -> None:
    rng = np.random.default_rng(14)
    shares = np.array([0.45, 0.45, 0.10])
    counts = rng.multinomial(20_000, shares, size=2000)
    pvals = np.array([srm_test(c, shares)[2] for c in counts])
    assert np.mean(pvals < 0.001) < 0.005
    # 10 % of the treatment's users lost (e.g. a variant whose page crashes before logging)
    broken = counts.copy()
    broken[:, 1] = (broken[:, 1] * 0.90).astype(int)
    flagged = np.mean([srm_test(c, shares)[2] < 0.001 for c in broken])
    assert flagged > 0.95


def test_aa_bootstrap_revenue_false_positive_rate() -> None:
    rng = np.random.default_rng(15)
    sims, n = 200, 1000
    hits = 0
    for s in range(sims):
        a = rng.exponential(40, n) * (rng.random(n) < 0.1)
        b = rng.exponential(40, n) * (rng.random(n) < 0.1)
        hits += bootstrap_mean_diff(a, b, n_boot=400, seed=s)[2] < ALPHA
    # binomial(200, 0.05): 10 expected, sd 3.1; beyond 4 sd means the bootstrap p-value is off
    assert 1 <= hits <= 22, hits
