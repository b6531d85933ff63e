"""Planning an experiment: required sample size and minimum detectable effect (MDE).

Normal-approximation power of a two-sided test at level ``alpha`` with power ``1 - beta``,
``z_a = Φ⁻¹(1 - alpha/2)``, ``z_b = Φ⁻¹(1 - beta)``, and allocation ratio ``k = n1 / n0``
(treatment users per control user), computed by statsmodels:

* proportions (two-proportion z-test, pooled under H0;
  ``statsmodels.stats.proportion.samplesize_proportions_2indep_onetail`` and
  ``power_proportions_2indep``):
  ``n0 = (z_a·sqrt(p̄q̄(1 + 1/k)) + z_b·sqrt(p0q0 + p1q1/k))² / (p1 - p0)²`` with
  ``p̄ = (p0 + k·p1)/(1 + k)``, ``q = 1 - p``;
* means (z-test with a common standard deviation ``σ``;
  ``statsmodels.stats.power.NormalIndPower``): ``n0 ≈ (z_a + z_b)²·σ²·(1 + 1/k) / Δ²``.

statsmodels' power counts both rejection tails where the textbook formulas drop the far one;
the difference is below 1e-6 in power at the usual alpha and power (documented tolerance: the
planned users agree within one user, and tests/abtest/test_power.py pins textbook values).

With several treatments each is compared with control; ``alpha`` is then split with Bonferroni
(``alpha / m``), which is what makes the plan hold under the report's Holm correction (Holm is
never more conservative than Bonferroni).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import optimize
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import power_proportions_2indep, samplesize_proportions_2indep_onetail

__all__ = [
    "PowerPlan",
    "mde_means",
    "mde_proportions",
    "plan_experiment",
    "sample_size_means",
    "sample_size_proportions",
]


def _check_levels(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")


def sample_size_proportions(
    p0: float, p1: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> tuple[int, int]:
    """Users needed in control and treatment to detect a change of a rate from ``p0`` to ``p1``.

    Parameters
    ----------
    p0, p1
        Control and treatment rates, both in (0, 1) and different.
    alpha, power
        Two-sided level and power.
    ratio
        Treatment users per control user (``k``).

    Returns
    -------
    tuple of int
        ``(n_control, n_treatment)``, rounded up.

    Raises
    ------
    ValueError
        If the rates are out of range or equal.
    """
    if not (0 < p0 < 1 and 0 < p1 < 1):
        raise ValueError(f"rates must be in (0, 1); got baseline {p0} and treatment {p1}")
    if p0 == p1:
        raise ValueError("the minimum detectable effect must not be 0")
    _check_levels(alpha, power)
    # statsmodels' sample 1 is the treatment (rate p0 + diff), sample 2 the control (n0 = n1 / k)
    n1 = samplesize_proportions_2indep_onetail(
        p1 - p0, p0, power, ratio=1.0 / ratio, alpha=alpha, alternative="two-sided"
    )
    n0 = float(n1) / ratio
    return math.ceil(n0 - 1e-9), math.ceil(n0 * ratio - 1e-9)


def power_proportions(p0: float, p1: float, n0: float, n1: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-proportion z-test (statsmodels ``power_proportions_2indep``).

    ``power ≈ Φ((|p1 - p0| - z_a·se0) / se1)`` with ``se0 = sqrt(p̄q̄(1/n0 + 1/n1))`` (pooled
    under H0) and ``se1 = sqrt(p0q0/n0 + p1q1/n1)``, plus the (negligible) far tail.

    Parameters
    ----------
    p0, p1
        Control and treatment rates.
    n0, n1
        Users per arm.
    alpha
        Two-sided level.

    Returns
    -------
    float
    """
    res = power_proportions_2indep(p1 - p0, p0, n1, ratio=n0 / n1, alpha=alpha, alternative="two-sided")
    return float(res.power)


def mde_proportions(p0: float, n0: int, n1: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute increase of a rate ``p0`` detectable with ``n0``/``n1`` users.

    Solves ``power_proportions(p0, p0 + Δ, n0, n1) = power`` for ``Δ`` (Brent's method).

    Parameters
    ----------
    p0
        Baseline rate in (0, 1).
    n0, n1
        Users in control and treatment.
    alpha, power
        Two-sided level and power.

    Returns
    -------
    float
        The absolute MDE ``Δ``; ``inf`` if even ``p1 → 1`` is not detectable.
    """
    _check_levels(alpha, power)
    if not 0 < p0 < 1:
        raise ValueError(f"baseline rate must be in (0, 1), got {p0}")
    if n0 < 2 or n1 < 2:
        raise ValueError("each arm needs at least 2 users")
    hi = 1 - p0 - 1e-12
    f = lambda d: power_proportions(p0, p0 + d, n0, n1, alpha) - power  # noqa: E731
    if f(hi) < 0:
        return math.inf
    return float(optimize.brentq(f, 1e-12, hi, xtol=1e-12))


def sample_size_means(
    delta: float, sd: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> tuple[int, int]:
    """Users needed per arm to detect a change ``delta`` of a mean with standard deviation ``sd``.

    Parameters
    ----------
    delta
        Absolute difference of means to detect (non-zero).
    sd
        Per-user standard deviation of the metric (e.g. revenue per user).
    alpha, power
        Two-sided level and power.
    ratio
        Treatment users per control user.

    Returns
    -------
    tuple of int
        ``(n_control, n_treatment)``.
    """
    if delta == 0 or sd <= 0:
        raise ValueError("delta must be non-zero and sd positive")
    _check_levels(alpha, power)
    n0 = NormalIndPower().solve_power(effect_size=abs(delta) / sd, alpha=alpha, power=power, ratio=ratio)
    return math.ceil(n0 - 1e-9), math.ceil(n0 * ratio - 1e-9)


def mde_means(sd: float, n0: int, n1: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute difference of means detectable, ``≈ (z_a + z_b)·σ·sqrt(1/n0 + 1/n1)`` (statsmodels).

    Parameters
    ----------
    sd
        Per-user standard deviation.
    n0, n1
        Users in control and treatment.
    alpha, power
        Two-sided level and power.

    Returns
    -------
    float
    """
    _check_levels(alpha, power)
    effect = NormalIndPower().solve_power(nobs1=n0, alpha=alpha, power=power, ratio=n1 / n0)
    return float(effect) * sd


@dataclass
class PowerPlan:
    """The answer of ``recctl ab plan``."""

    metric: Literal["rate", "mean"]
    baseline: float
    alpha: float
    alpha_per_comparison: float
    power: float
    shares: dict[str, float]
    #: absolute effect (given or solved for)
    mde_absolute: float
    mde_relative: float | None
    users_per_arm: dict[str, int]
    total_users: int
    sd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def plan_experiment(
    *,
    baseline: float,
    weights: list[float],
    mde: float | None = None,
    relative: bool = True,
    users: int | None = None,
    sd: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    holdout: float = 0.0,
    names: list[str] | None = None,
) -> PowerPlan:
    """Plan an experiment: users needed for an MDE, or the MDE for a number of users.

    Parameters
    ----------
    baseline
        Control conversion rate (``metric = rate``) or control mean (with ``sd``:
        ``metric = mean``).
    weights
        Traffic weights, control first; ``len(weights) - 1`` treatments.
    mde
        Effect to detect (relative to ``baseline`` when ``relative``); give this or ``users``.
    relative
        Whether ``mde`` is a relative lift (0.1 = +10 %) or absolute.
    users
        Total users available (including holdout): solve for the MDE instead.
    sd
        Per-user standard deviation; switches to the means formulas.
    alpha, power
        Family-wise two-sided level (split by Bonferroni over treatments) and power.
    holdout
        Share of users held out (they count in ``total_users`` but not in any arm).
    names
        Arm names, control first (default ``control, treatment_1, ...``).

    Returns
    -------
    PowerPlan

    Raises
    ------
    ValueError
        Inconsistent inputs (both or neither of ``mde``/``users``, bad weights, rates out of range).
    """
    if len(weights) < 2 or any(w <= 0 for w in weights):
        raise ValueError(f"weights must be at least two positive numbers, control first; got {weights}")
    if (mde is None) == (users is None):
        raise ValueError("give either the effect to detect (mde) or the number of users, not both or neither")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    names = names or ["control"] + [f"treatment_{i}" for i in range(1, len(weights))]
    if len(names) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(names)} arms")
    total_w = sum(weights)
    shares = {n: (1 - holdout) * w / total_w for n, w in zip(names, weights, strict=True)}
    m = len(weights) - 1
    a = alpha / m
    control = names[0]
    metric: Literal["rate", "mean"] = "mean" if sd is not None else "rate"
    if mde is not None:
        delta = mde * baseline if relative else mde
        if delta == 0:
            raise ValueError("mde must not be 0")
        need: dict[str, int] = {}
        for n in names[1:]:
            k = shares[n] / shares[control]
            if metric == "rate":
                n0, n1 = sample_size_proportions(baseline, baseline + delta, alpha=a, power=power, ratio=k)
            else:
                n0, n1 = sample_size_means(delta, sd, alpha=a, power=power, ratio=k)  # type: ignore[arg-type]
            need[control] = max(need.get(control, 0), n0)
            need[n] = n1
        # enough total traffic that every arm reaches its requirement at the configured shares
        total = max(math.ceil(need[n] / shares[n]) for n in names)
        per_arm = {n: math.floor(total * shares[n]) for n in names}
        return PowerPlan(
            metric,
            baseline,
            alpha,
            a,
            power,
            shares,
            abs(delta),
            abs(delta) / baseline if baseline else None,
            per_arm,
            total,
            sd,
        )
    assert users is not None
    per_arm = {n: math.floor(users * shares[n]) for n in names}
    deltas = []
    for n in names[1:]:
        if metric == "rate":
            deltas.append(mde_proportions(baseline, per_arm[control], per_arm[n], alpha=a, power=power))
        else:
            deltas.append(mde_means(sd, per_arm[control], per_arm[n], alpha=a, power=power))  # type: ignore[arg-type]
    delta = max(deltas)
    return PowerPlan(
        metric,
        baseline,
        alpha,
        a,
        power,
        shares,
        delta,
        delta / baseline if baseline else None,
        per_arm,
        users,
        sd,
    )
