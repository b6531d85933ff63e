"""File-level entry points of ``recctl ab ...`` (the CLI calls exactly one of these).

Each takes the validated config, reads and writes files, and returns plain results; nothing
here prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from recctl.abtest.analysis import ABReport, analyze_files
from recctl.abtest.assign import assignment_frame, variant_shares
from recctl.abtest.outcomes import read_assignments, read_table, write_table
from recctl.abtest.simulate import simulate_outcomes
from recctl.columns import Columns
from recctl.config.abtest import ABTestConfig, parse_instant
from recctl.errors import ConfigError, DataError

__all__ = [
    "default_assignments_path",
    "experiment_of",
    "find_assignments",
    "read_user_ids",
    "run_assign",
    "run_report",
    "run_simulate",
]


def experiment_of(cfg: Any) -> ABTestConfig:
    """Return the config's ``experiment:`` section or explain how to add one.

    Parameters
    ----------
    cfg
        A loaded :class:`recctl.config.Config`.

    Returns
    -------
    ABTestConfig

    Raises
    ------
    ConfigError
        If the config has no ``experiment:`` section.
    """
    if cfg.experiment is None:
        raise ConfigError(
            f"{cfg.source_path or 'config'}: experiment: the config has no `experiment:` section; add one with "
            "name, salt, control and variants (see configs/ab_example.yaml)"
        )
    return cfg.experiment


def default_assignments_path(cfg: Any) -> Path:
    """``<workdir>/abtest/assignments.parquet``: where ``ab assign`` writes by default."""
    return cfg.stage_dir("abtest") / "assignments.parquet"


def find_assignments(cfg: Any) -> Path:
    """The assignments to analyse when none is given.

    ``<workdir>/abtest/assignments.parquet`` (from ``ab assign``) if it exists, else
    ``<workdir>/recommend/assignments.parquet`` (written with the recommendations when the config
    has an experiment).

    Raises
    ------
    DataError
        If neither exists.
    """
    candidates = [default_assignments_path(cfg), cfg.stage_dir("recommend") / "assignments.parquet"]
    for path in candidates:
        if path.exists():
            return path
    raise DataError(
        f"no assignments file found (looked for {candidates[0]} and {candidates[1]}); pass "
        "--assignments FILE, or run `recctl ab assign CONFIG --users FILE` or `recctl recommend CONFIG`"
    )


def read_user_ids(path: Path, column: str | None = None, *, numeric_ids: bool = True) -> pl.Series:
    """Read the user ids to assign.

    Parameters
    ----------
    path
        ``.txt`` (one id per line, no header), or CSV / Parquet with a user column.
    column
        The user column; default ``user_id``, or the only column of a one-column file.
    numeric_ids
        Read ``17850.0`` as ``17850``, as ingest does (``experiment.normalize_numeric_ids``).

    Returns
    -------
    pl.Series
        Distinct non-empty ids (String), first-seen order; rows with an empty id are skipped.

    Raises
    ------
    DataError
        If the file or column is missing or the file has no ids.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise DataError(f"users file not found: {path}; check the path")
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        frame = pl.DataFrame({Columns.User: pl.Series(ids, dtype=pl.String)})
        column = Columns.User
    else:
        frame = read_table(path, "users file")
        if column is None:
            if Columns.User in frame.columns:
                column = Columns.User
            elif frame.width == 1:
                column = frame.columns[0]
            else:
                raise DataError(
                    f"users file {path}: no '{Columns.User}' column and more than one column "
                    f"({', '.join(frame.columns)}); name the user column with --user-column"
                )
        if column not in frame.columns:
            raise DataError(f"users file {path}: column '{column}' not found; columns are: {', '.join(frame.columns)}")
    from recctl.data.ingest import normalise_id

    series = frame.select(normalise_id(pl.col(column), numeric_ids).alias(Columns.User)).to_series()
    # rows without an id (guest checkouts in raw exports) cannot be served a variant: skip them
    series = series.drop_nulls()
    if series.len() == 0:
        raise DataError(f"users file {path}: no user ids found")
    return series.unique(maintain_order=True)


def run_assign(
    cfg: Any, users_path: Path, output: Path | None = None, user_column: str | None = None
) -> dict[str, Any]:
    """Assign every user of ``users_path`` and write the assignments file.

    Parameters
    ----------
    cfg
        Loaded config with an ``experiment:`` section.
    users_path
        File of user ids (see :func:`read_user_ids`).
    output
        ``.parquet`` or ``.csv``; default :func:`default_assignments_path`.
    user_column
        User column of ``users_path``.

    Returns
    -------
    dict
        ``output``, ``n_users``, and per arm ``users``, ``share``, ``expected_share``.
    """
    experiment = experiment_of(cfg)
    ids = read_user_ids(users_path, user_column, numeric_ids=experiment.normalize_numeric_ids)
    frame = assignment_frame(ids, experiment)
    target = Path(output) if output is not None else default_assignments_path(cfg)
    write_table(frame, target)
    counts = dict(frame.group_by(Columns.Variant).len().iter_rows())
    shares = variant_shares(experiment)
    arms = {
        name: {
            "users": int(counts.get(name, 0)),
            "share": counts.get(name, 0) / frame.height,
            "expected_share": share,
        }
        for name, share in shares.items()
    }
    return {
        "experiment": experiment.name,
        "salt": experiment.salt,
        "output": str(target),
        "n_users": frame.height,
        "arms": arms,
    }


def run_report(cfg: Any, assignments: Path | None, outcomes: Path | None, html: Path | None = None) -> ABReport:
    """Analyse a finished experiment (and write the HTML page when ``html`` is given).

    Parameters
    ----------
    cfg
        Loaded config with an ``experiment:`` section.
    assignments
        Assignments file; default :func:`default_assignments_path`.
    outcomes
        Outcome log; default ``experiment.outcomes.path``.
    html
        Where to write the HTML report, if anywhere.

    Returns
    -------
    ABReport

    Raises
    ------
    ConfigError
        If no outcome file is given either way.
    """
    experiment = experiment_of(cfg)
    if outcomes is None:
        if experiment.outcomes.path is None:
            raise ConfigError(
                f"{cfg.source_path or 'config'}: experiment.outcomes.path: no outcome log given; pass --outcomes FILE "
                "or set experiment.outcomes.path"
            )
        outcomes = cfg.resolve(experiment.outcomes.path)
    assignments = Path(assignments) if assignments is not None else find_assignments(cfg)
    report = analyze_files(experiment, assignments, Path(outcomes), seed=cfg.seed)
    if html is not None:
        from recctl.abtest.report import write_html

        write_html(report, Path(html))
        report.data["html"] = str(html)
    return report


def run_simulate(
    cfg: Any,
    assignments: Path | None,
    output: Path,
    conversion_rates: dict[str, float],
    *,
    clicks_per_user: float = 0.5,
    order_value: float = 40.0,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write a simulated outcome log for the assigned users (known true conversion rates).

    Parameters
    ----------
    cfg
        Loaded config with an ``experiment:`` section (``start`` sets the event times).
    assignments
        Assignments file; default :func:`default_assignments_path`.
    output
        ``.csv`` or ``.parquet``.
    conversion_rates
        True rate per arm; arms not listed get the control's rate.
    clicks_per_user, order_value
        True means, equal in every arm.
    seed
        Random seed (default the config's seed).

    Returns
    -------
    dict
        ``output``, ``rows`` and the rates used.

    Raises
    ------
    ConfigError
        If a rate names an unknown arm or is outside [0, 1], or the control has no rate.
    """
    experiment = experiment_of(cfg)
    arms = list(variant_shares(experiment))
    unknown = sorted(set(conversion_rates) - set(arms))
    if unknown:
        raise ConfigError(f"--rates: unknown variant(s) {unknown}; the experiment's arms are {arms}")
    bad = {k: v for k, v in conversion_rates.items() if not 0 <= v <= 1}
    if bad:
        raise ConfigError(f"--rates: rates must be in [0, 1]; got {bad}")
    if experiment.control not in conversion_rates:
        raise ConfigError(f"--rates: give the control's rate ({experiment.control}=...)")
    rates = {a: conversion_rates.get(a, conversion_rates[experiment.control]) for a in arms}
    path = Path(assignments) if assignments is not None else find_assignments(cfg)
    frame = read_assignments(path, numeric_ids=experiment.normalize_numeric_ids)
    strays = sorted(set(frame[Columns.Variant].unique().to_list()) - set(arms))
    if strays:
        raise DataError(
            f"assignments file {path}: variant(s) {strays} are not arms of experiment '{experiment.name}' ({arms})"
        )
    start = parse_instant(experiment.start) if experiment.start else None
    log = simulate_outcomes(
        frame,
        rates,
        clicks_per_user=clicks_per_user,
        order_value=order_value,
        start=start,
        seed=cfg.seed if seed is None else seed,
    )
    write_table(log, Path(output))
    return {"output": str(output), "rows": log.height, "conversion_rates": rates}
