"""Simulated outcome logs with known true effects (for tests, docs and demos).

A simulated experiment is the ground truth the analysis is checked against: each arm gets a
true conversion rate, a true mean number of clicks and a true mean order value, and the log
looks like what a shop would return (``user_id, event, item_id, revenue, timestamp``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from recctl.abtest.assign import assignment_frame
from recctl.columns import Columns
from recctl.config.abtest import ABTestConfig

__all__ = ["simulate_experiment", "simulate_outcomes"]


def _per_arm(value: float | Mapping[str, float], variants: np.ndarray, what: str) -> np.ndarray:
    if isinstance(value, Mapping):
        missing = sorted(set(variants.tolist()) - set(value))
        if missing:
            raise ValueError(f"{what}: no value for variant(s) {missing}")
        return np.array([value[v] for v in variants.tolist()], dtype=np.float64)
    return np.full(variants.size, float(value))


def simulate_outcomes(
    assignments: pl.DataFrame,
    conversion_rate: float | Mapping[str, float],
    *,
    clicks_per_user: float | Mapping[str, float] = 0.5,
    order_value: float | Mapping[str, float] = 40.0,
    n_items: int = 200,
    start: datetime | None = None,
    days: int = 14,
    seed: int = 0,
) -> pl.DataFrame:
    """Simulate the outcome log of an experiment with known true effects.

    Each user converts with their arm's probability (one purchase row), clicks a
    Poisson(``clicks_per_user``) number of times, and a purchase carries revenue drawn from an
    exponential distribution with the arm's mean ``order_value`` (skewed, like real baskets).

    Parameters
    ----------
    assignments
        ``user_id, variant`` (e.g. from :func:`recctl.abtest.assign.assignment_frame`).
    conversion_rate
        True conversion probability, one number or ``{variant: rate}``.
    clicks_per_user
        True mean clicks per user, one number or per variant.
    order_value
        True mean revenue of a purchase, one number or per variant.
    n_items
        Size of the simulated catalogue (item ids ``I0000``...).
    start
        Experiment start (UTC); events fall uniformly in ``[start, start + days)``.
    days
        Length of the experiment.
    seed
        Random seed.

    Returns
    -------
    pl.DataFrame
        ``user_id, event (click|purchase), item_id, revenue, timestamp`` sorted by time.
    """
    rng = np.random.default_rng(seed)
    users = assignments[Columns.User].to_numpy().astype(object)
    variants = assignments[Columns.Variant].to_numpy().astype(str)
    p = _per_arm(conversion_rate, variants, "conversion_rate")
    lam = _per_arm(clicks_per_user, variants, "clicks_per_user")
    value = _per_arm(order_value, variants, "order_value")
    buys = rng.random(users.size) < p
    n_clicks = rng.poisson(lam)
    click_users = np.repeat(users, n_clicks)
    buy_users = users[buys]
    revenue = np.round(rng.exponential(value[buys]), 2)
    n_rows = click_users.size + buy_users.size
    start = start or datetime(2026, 12, 1, tzinfo=timezone.utc)
    offsets_us = rng.integers(0, days * 86_400, size=n_rows) * 1_000_000
    start_us = int((start - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))
    frame = pl.DataFrame(
        {
            "user_id": pl.Series(np.concatenate([click_users, buy_users]).tolist(), dtype=pl.String),
            "event": pl.Series(["click", "purchase"]).gather(np.repeat([0, 1], [click_users.size, buy_users.size])),
            "item_id": pl.Series(rng.integers(0, n_items, size=n_rows)),
            "revenue": np.concatenate([np.zeros(click_users.size), revenue]),
            "timestamp": pl.Series(start_us + offsets_us).cast(pl.Datetime("us", "UTC")),
        }
    ).with_columns(pl.format("I{}", pl.col("item_id").cast(pl.String).str.zfill(4)).alias("item_id"))
    return frame.sort("timestamp", maintain_order=True)


def simulate_experiment(
    n_users: int,
    experiment: ABTestConfig,
    conversion_rate: float | Mapping[str, float],
    **kwargs,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Assign ``n_users`` synthetic users (``U000000``...) and simulate their outcomes.

    Parameters
    ----------
    n_users
        Number of users.
    experiment
        The experiment config (assignment uses its salt, weights and holdout).
    conversion_rate
        True conversion rate, one number or ``{variant: rate}`` (include ``holdout`` if used).
    **kwargs
        Passed to :func:`simulate_outcomes`.

    Returns
    -------
    tuple of pl.DataFrame
        ``(assignments, outcomes)``.
    """
    assignments = assignment_frame([f"U{i:06d}" for i in range(n_users)], experiment)
    return assignments, simulate_outcomes(assignments, conversion_rate, **kwargs)
