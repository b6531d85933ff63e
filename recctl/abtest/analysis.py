"""Analysis of a finished experiment: per-variant metrics, differences to control, SRM.

Per arm (every variant and the holdout): users, conversion rate (share of users with at least
one conversion event, Wilson interval), clicks per user and revenue per user (Student-t
intervals). Per non-control arm and metric: the difference to control with its interval and
two-sided p-value (two-proportion z-test for the conversion rate, Welch's t-test for the
per-user means, plus a percentile bootstrap interval for revenue), and Holm-adjusted p-values
over the arms so that several treatments do not inflate false positives. A sample ratio
mismatch chi-square test compares the arm sizes with the configured weights.

The unit of analysis is the user (the unit of randomisation), so the tests' independence
assumption holds; per-event ratios such as clicks/impressions would not satisfy it and are not
reported.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl.abtest.assign import HOLDOUT, assign_variants, variant_shares
from recctl.abtest.outcomes import Revenue, per_user_outcomes, read_assignments, read_outcomes
from recctl.abtest.stats import (
    bootstrap_mean_diff,
    holm,
    mean_interval,
    srm_test,
    two_proportion_ztest,
    welch_ttest,
    wilson_interval,
)
from recctl.columns import Columns
from recctl.config.abtest import ABTestConfig, parse_instant
from recctl.errors import DataError

__all__ = [
    "METRICS",
    "ABReport",
    "ArmSummary",
    "Comparison",
    "SRMResult",
    "analyze",
    "analyze_files",
]

log = logging.getLogger(__name__)

#: metric name -> (per-user column, label)
METRICS = {
    "conversion_rate": ("converted", "conversion rate"),
    "clicks_per_user": ("clicks", "clicks per user"),
    "revenue_per_user": (Revenue, "revenue per user"),
}


@dataclass
class ArmSummary:
    """Metrics of one arm (variant or holdout), each with its ``1 - alpha`` interval."""

    variant: str
    model: str | None
    expected_share: float
    users: int
    observed_share: float
    #: users with at least one outcome row (any event): a logging gap shows up here
    active_users: int
    converters: int
    conversion_rate: float
    conversion_rate_ci: tuple[float, float]
    clicks: int
    clicks_per_user: float
    clicks_per_user_ci: tuple[float, float]
    revenue: float
    revenue_per_user: float
    revenue_per_user_ci: tuple[float, float]


@dataclass
class Comparison:
    """Difference ``arm - control`` for one metric.

    ``relative_lift = diff / control_value``; ``relative_ci`` is ``ci / control_value``.
    """

    metric: str
    variant: str
    control: str
    test: str
    control_value: float
    variant_value: float
    diff: float
    ci: tuple[float, float]
    relative_lift: float | None
    relative_ci: tuple[float, float] | None
    statistic: float
    p_value: float
    p_adjusted: float
    significant: bool
    bootstrap_ci: tuple[float, float] | None = None
    bootstrap_p_value: float | None = None


@dataclass
class SRMResult:
    """Sample ratio mismatch check of the arm sizes against the configured shares."""

    chi2: float
    df: int
    p_value: float
    threshold: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]

    @property
    def message(self) -> str:
        """One-line verdict."""
        if not self.mismatch:
            return f"arm sizes match the configured weights (chi-square p = {self.p_value:.3g})"
        worst = max(
            self.observed,
            key=lambda k: abs(self.observed[k] - self.expected[k]) / max(self.expected[k], 1),
        )
        return (
            f"SAMPLE RATIO MISMATCH: arm sizes do not match the configured weights (chi-square = {self.chi2:.1f}, "
            f"df = {self.df}, p = {self.p_value:.2g} < {self.threshold}); '{worst}' has {self.observed[worst]:,} "
            f"users, expected {self.expected[worst]:,.0f}. Assignment, logging or filtering is broken: "
            "do not trust the differences below until the cause is found."
        )


@dataclass
class ABReport:
    """Everything ``recctl ab report`` shows."""

    experiment: str
    control: str
    alpha: float
    arms: list[ArmSummary]
    comparisons: list[Comparison]
    srm: SRMResult
    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists, NaN becomes None)."""
        return _clean(asdict(self) | {"srm": asdict(self.srm) | {"message": self.srm.message}})


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _f(x: Any) -> float:
    return float(np.asarray(x))


def _arm_stats(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.group_by(Columns.Variant).agg(
        pl.len().alias("n"),
        (pl.col("rows") > 0).sum().alias("active"),
        pl.col("converted").sum().alias("converters"),
        pl.col("clicks").sum().alias("clicks_sum"),
        pl.col("clicks").cast(pl.Float64).mean().alias("clicks_mean"),
        pl.col("clicks").cast(pl.Float64).var(ddof=1).alias("clicks_var"),
        pl.col(Revenue).sum().alias("revenue_sum"),
        pl.col(Revenue).mean().alias("revenue_mean"),
        pl.col(Revenue).var(ddof=1).alias("revenue_var"),
    )


def analyze(
    assignments: pl.DataFrame,
    outcomes: pl.DataFrame,
    experiment: ABTestConfig,
    *,
    seed: int = 0,
    data_notes: dict[str, Any] | None = None,
) -> ABReport:
    """Analyse an experiment from its assignments and canonical outcomes.

    Parameters
    ----------
    assignments
        ``user_id, variant`` (one row per user), e.g. from :func:`read_assignments`.
    outcomes
        ``user_id, kind (click|conversion|other), revenue`` from
        :func:`recctl.abtest.outcomes.read_outcomes` (or
        :func:`recctl.abtest.simulate.simulate_outcomes`).
    experiment
        The ``experiment:`` config (arms, weights, control, alpha, SRM threshold, bootstrap size).
    seed
        Seed of the bootstrap resampling.
    data_notes
        Extra facts about the input to carry into ``report.data`` (file names, dropped rows).

    Returns
    -------
    ABReport

    Raises
    ------
    DataError
        If the assignments name a variant the config does not define, or the control arm is empty.
    """
    alpha = experiment.alpha
    shares = variant_shares(experiment)
    present = set(assignments[Columns.Variant].unique().to_list())
    unknown = sorted(present - set(shares))
    if unknown:
        hint = (
            " (the config has no holdout: set experiment.holdout to the share that was used)"
            if HOLDOUT in unknown
            else ""
        )
        raise DataError(
            f"assignments contain variant(s) {unknown} that experiment '{experiment.name}' does not define "
            f"(configured: {sorted(shares)}){hint}. Use the config the assignments were made with, or "
            "re-run `recctl ab assign`."
        )
    frame, extra = per_user_outcomes(assignments, outcomes)
    by_arm = {row[Columns.Variant]: row for row in _arm_stats(frame).iter_rows(named=True)}
    n_total = frame.height
    if by_arm.get(experiment.control, {}).get("n", 0) == 0:
        raise DataError(
            f"the control variant '{experiment.control}' has no users in the assignments; nothing to compare to"
        )

    arms: list[ArmSummary] = []
    for name, share in shares.items():
        s = by_arm.get(name) or {
            "n": 0,
            "active": 0,
            "converters": 0,
            "clicks_sum": 0,
            "clicks_mean": np.nan,
            "clicks_var": np.nan,
            "revenue_sum": 0.0,
            "revenue_mean": np.nan,
            "revenue_var": np.nan,
        }
        n = int(s["n"])
        cr_lo, cr_hi = wilson_interval(s["converters"], n, alpha)
        ck_lo, ck_hi = mean_interval(s["clicks_mean"], _nz(s["clicks_var"]), n, alpha)
        rv_lo, rv_hi = mean_interval(s["revenue_mean"], _nz(s["revenue_var"]), n, alpha)
        arms.append(
            ArmSummary(
                variant=name,
                model=experiment.variants[name].model if name in experiment.variants else None,
                expected_share=share,
                users=n,
                observed_share=n / n_total if n_total else float("nan"),
                active_users=int(s["active"]),
                converters=int(s["converters"]),
                conversion_rate=s["converters"] / n if n else float("nan"),
                conversion_rate_ci=(_f(cr_lo), _f(cr_hi)),
                clicks=int(s["clicks_sum"]),
                clicks_per_user=_f(s["clicks_mean"] if s["clicks_mean"] is not None else np.nan),
                clicks_per_user_ci=(_f(ck_lo), _f(ck_hi)),
                revenue=float(s["revenue_sum"]),
                revenue_per_user=_f(s["revenue_mean"] if s["revenue_mean"] is not None else np.nan),
                revenue_per_user_ci=(_f(rv_lo), _f(rv_hi)),
            )
        )

    chi2, df, p_srm = srm_test([a.users for a in arms], [a.expected_share for a in arms])
    srm = SRMResult(
        chi2,
        df,
        p_srm,
        experiment.srm_threshold,
        p_srm < experiment.srm_threshold,
        {a.variant: a.users for a in arms},
        {a.variant: a.expected_share * n_total for a in arms},
    )
    comparisons = _compare(frame, arms, by_arm, experiment, seed)
    warnings = _warnings(arms, srm, experiment)
    data = {"n_assigned_users": n_total, **extra, **(data_notes or {})}
    if extra["unassigned_users"]:
        warnings.append(
            f"{extra['unassigned_rows']:,} outcome rows from {extra['unassigned_users']:,} users "
            "who are not in the assignments were excluded"
        )
        if extra["unassigned_users"] > extra["matched_users"]:
            # most outcome users unknown: almost always an id format or wrong-file problem
            examples = assignments[Columns.User].head(3).to_list()
            warnings.append(
                f"most outcome users ({extra['unassigned_users']:,} of "
                f"{extra['unassigned_users'] + extra['matched_users']:,}) are not in the "
                f"assignments: outcome ids look like {extra['unassigned_examples']}, assignment "
                f"ids like {examples}. Check experiment.outcomes.columns.user_id and the files."
            )
    for w in warnings:
        log.info(w)  # the caller renders report.warnings; logging them too would print twice
    return ABReport(experiment.name, experiment.control, alpha, arms, comparisons, srm, data, warnings)


def _nz(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _compare(
    frame: pl.DataFrame, arms: list[ArmSummary], by_arm: dict[str, dict[str, Any]], experiment: ABTestConfig, seed: int
) -> list[Comparison]:
    alpha = experiment.alpha
    control = experiment.control
    c = by_arm[control]
    others = [a.variant for a in arms if a.variant != control and a.users > 0]
    comparisons: list[Comparison] = []
    if not others:
        return comparisons
    # per-user values of each arm: the Welch test and the bootstrap work on them directly
    values_by_arm = {
        v: {
            key: frame.filter(pl.col(Columns.Variant) == v)[column].cast(pl.Float64).to_numpy()
            for key, column in (("clicks", "clicks"), ("revenue", Revenue))
        }
        for v in [control, *others]
    }
    for metric, (_, _label) in METRICS.items():
        rows = []
        for v in others:
            t = by_arm[v]
            if metric == "conversion_rate":
                r = two_proportion_ztest(t["converters"], t["n"], c["converters"], c["n"], alpha)
                base, value, test = (
                    c["converters"] / c["n"],
                    t["converters"] / t["n"],
                    "two-proportion z-test",
                )
            else:
                key = "clicks" if metric == "clicks_per_user" else "revenue"
                r = welch_ttest(values_by_arm[v][key], values_by_arm[control][key], alpha)
                base, value, test = c[f"{key}_mean"], t[f"{key}_mean"], "Welch t-test"
            boot = None
            if metric == "revenue_per_user" and experiment.n_bootstrap > 0:
                boot = bootstrap_mean_diff(
                    values_by_arm[v]["revenue"],
                    values_by_arm[control]["revenue"],
                    experiment.n_bootstrap,
                    alpha,
                    seed,
                )
            rows.append((v, r, float(base), float(value), test, boot))
        # Holm's family is the treatments: they are the decision. The holdout answers another
        # question (recommendations vs none), so it keeps its own unadjusted p-value.
        family = [i for i, row in enumerate(rows) if row[0] != HOLDOUT]
        adjusted = np.array([_f(r.p_value) for _, r, *_ in rows])
        adjusted[family] = holm(adjusted[family])
        for (v, r, base, value, test, boot), p_adj in zip(rows, adjusted, strict=True):
            comparisons.append(
                Comparison(
                    metric=metric,
                    variant=v,
                    control=control,
                    test=test,
                    control_value=base,
                    variant_value=value,
                    diff=_f(r.diff),
                    ci=(_f(r.ci_low), _f(r.ci_high)),
                    relative_lift=(_f(r.diff) / base) if base else None,
                    # the absolute interval in units of the control value: it agrees with the test
                    # (excludes 0 exactly when the difference's interval does), unlike a
                    # delta-method ratio interval, at the price of treating the control as fixed
                    relative_ci=(_f(r.ci_low) / base, _f(r.ci_high) / base) if base else None,
                    statistic=_f(r.statistic),
                    p_value=_f(r.p_value),
                    p_adjusted=float(p_adj),
                    significant=bool(p_adj < alpha),
                    bootstrap_ci=(boot[0], boot[1]) if boot else None,
                    bootstrap_p_value=boot[2] if boot else None,
                )
            )
    return comparisons


def _warnings(arms: list[ArmSummary], srm: SRMResult, experiment: ABTestConfig) -> list[str]:
    warnings = []
    if srm.mismatch:
        warnings.append(srm.message)
    logged = [a for a in arms if a.active_users > 0]
    for a in arms:
        if a.users == 0:
            warnings.append(f"arm '{a.variant}' has no users in the assignments")
        elif a.active_users == 0 and logged:
            # every other arm has outcome rows: this one was not logged, its zeros are not real
            warnings.append(
                f"arm '{a.variant}' has {a.users:,} users but not one outcome row while "
                f"{', '.join(repr(b.variant) for b in logged)} have some: is the outcome log missing this arm? "
                "Its zero rates are not a result."
            )
        elif a.converters < 10 and a.variant != HOLDOUT:
            warnings.append(
                f"arm '{a.variant}' has only {a.converters} converting users; the normal approximation behind "
                "the conversion-rate test is rough below about 10"
            )
    return warnings


def _check_assignment_consistency(assignments: pl.DataFrame, experiment: ABTestConfig, path: Path) -> list[str]:
    """Compare the file with the config: same experiment/salt, same variants as recomputed."""
    for col, expected in (("experiment", experiment.name), ("salt", experiment.salt)):
        if col in assignments.columns:
            found = sorted(str(v) for v in assignments[col].unique().to_list())
            if found != [expected]:
                raise DataError(
                    f"assignments file {path}: column '{col}' is {found} but the config's "
                    f"experiment.{'name' if col == 'experiment' else col} "
                    f"is '{expected}'. Analyse with the config the assignments were made with."
                )
    recomputed = assign_variants(assignments[Columns.User], experiment)
    differ = int(np.sum(recomputed != assignments[Columns.Variant].to_numpy()))
    if differ:
        return [
            f"{differ:,} of {assignments.height:,} users in {path.name} are in a different variant than the config's "
            "salt and weights give today (were the weights or holdout changed after assignment?). The report uses "
            "the file's variants."
        ]
    return []


def analyze_files(
    experiment: ABTestConfig,
    assignments_path: Path,
    outcomes_path: Path,
    *,
    seed: int = 0,
) -> ABReport:
    """Read an assignments file and an outcome log, then :func:`analyze` them.

    Parameters
    ----------
    experiment
        The ``experiment:`` config; ``experiment.outcomes`` maps the outcome columns and
        ``start``/``end`` bound the rows that count.
    assignments_path
        Written by ``recctl ab assign`` or ``serve-export`` (``user_id, variant``).
    outcomes_path
        The shop's outcome log (CSV or Parquet).
    seed
        Seed of the bootstrap.

    Returns
    -------
    ABReport

    Raises
    ------
    DataError
        Missing columns, unknown variants, an assignments file from another experiment.
    """
    numeric_ids = experiment.normalize_numeric_ids
    assignments = read_assignments(assignments_path, numeric_ids=numeric_ids)
    consistency = _check_assignment_consistency(assignments, experiment, Path(assignments_path))
    start = parse_instant(experiment.start) if experiment.start else None
    end = parse_instant(experiment.end) if experiment.end else None
    outcome_log = read_outcomes(Path(outcomes_path), experiment.outcomes, start, end, numeric_ids=numeric_ids)
    notes = {
        "assignments_file": str(assignments_path),
        "outcomes_file": str(outcomes_path),
        "outcome_rows": outcome_log.n_rows,
        "outcome_rows_outside_window": outcome_log.n_outside_window,
        "outcome_rows_without_user": outcome_log.n_null_user,
        "event_counts": outcome_log.event_counts,
        "window": {"start": experiment.start, "end": experiment.end},
    }
    report = analyze(assignments, outcome_log.frame, experiment, seed=seed, data_notes=notes)
    report.warnings.extend(consistency + outcome_log.notes)
    return report
