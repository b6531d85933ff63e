"""End-to-end analysis on simulated experiments with known truth."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.abtest.analysis import analyze, analyze_files
from recctl.abtest.assign import assignment_frame
from recctl.abtest.outcomes import read_outcomes
from recctl.abtest.simulate import simulate_experiment, simulate_outcomes
from recctl.config.abtest import ABTestConfig
from recctl.errors import DataError

from .conftest import make_experiment


def _canonical(outcomes: pl.DataFrame, exp: ABTestConfig, tmp_path: Path) -> pl.DataFrame:
    path = tmp_path / "o.parquet"
    outcomes.write_parquet(path)
    return read_outcomes(path, exp.outcomes).frame


def _comparison(report, metric: str, variant: str = "treatment"):
    return next(c for c in report.comparisons if c.metric == metric and c.variant == variant)


def test_finds_a_real_effect(tmp_path: Path) -> None:
    exp = make_experiment()
    a, o = simulate_experiment(
        30_000,
        exp,
        {"control": 0.05, "treatment": 0.065},
        order_value={"control": 40.0, "treatment": 40.0},
        seed=1,
    )
    report = analyze(a, _canonical(o, exp, tmp_path), exp)
    conv = _comparison(report, "conversion_rate")
    assert conv.significant and conv.diff > 0
    assert conv.ci[0] < 0.015 < conv.ci[1]  # the interval covers the true difference
    assert conv.relative_lift == pytest.approx(0.3, abs=0.12)
    assert conv.relative_ci == pytest.approx((conv.ci[0] / conv.control_value, conv.ci[1] / conv.control_value))
    rev = _comparison(report, "revenue_per_user")
    assert rev.ci[0] < 0.015 * 40 < rev.ci[1]
    assert rev.bootstrap_ci is not None and rev.bootstrap_ci[0] < 0.6 < rev.bootstrap_ci[1]
    assert not report.srm.mismatch


def test_no_effect_false_positive_rate_through_the_whole_pipeline() -> None:
    # 200 A/A experiments through analyze(): the share of significant differences is ~alpha
    exp = make_experiment(n_bootstrap=0)
    assignments = assignment_frame([f"U{i}" for i in range(4000)], exp)
    hits = 0
    n_sims = 200
    for seed in range(n_sims):
        outcomes = simulate_outcomes(assignments, 0.1, clicks_per_user=0.3, seed=seed)
        canonical = outcomes.select(
            "user_id",
            pl.when(pl.col("event") == "purchase").then(pl.lit("conversion")).otherwise(pl.lit("click")).alias("kind"),
            "revenue",
        )
        hits += _comparison(analyze(assignments, canonical, exp), "conversion_rate").significant
    rate = hits / n_sims
    # binomial(200, 0.05): mean 10, sd 3.1; accept 1..22 rejections (beyond 3.9 sd)
    assert 1 / n_sims <= rate <= 22 / n_sims, rate


def test_flags_an_injected_sample_ratio_mismatch(tmp_path: Path) -> None:
    exp = make_experiment(holdout=0.1)
    a, o = simulate_experiment(20_000, exp, 0.05, seed=2)
    ok = analyze(a, _canonical(o, exp, tmp_path), exp)
    assert not ok.srm.mismatch and not any("MISMATCH" in w for w in ok.warnings)
    # the treatment loses 8 % of its users (e.g. its page crashes before the visit is logged)
    rng = np.random.default_rng(0)
    drop = (a["variant"] == "treatment").to_numpy() & (rng.random(a.height) < 0.08)
    broken = analyze(a.filter(~pl.Series(drop)), _canonical(o, exp, tmp_path), exp)
    assert broken.srm.mismatch
    assert broken.srm.p_value < 0.001
    assert any("SAMPLE RATIO MISMATCH" in w and "treatment" in w for w in broken.warnings)


def test_multiple_variants_get_holm_adjusted(tmp_path: Path) -> None:
    exp = make_experiment({"control": 2, "b": 1, "c": 1})
    a, o = simulate_experiment(20_000, exp, {"control": 0.05, "b": 0.05, "c": 0.07}, seed=3)
    report = analyze(a, _canonical(o, exp, tmp_path), exp)
    conv = [c for c in report.comparisons if c.metric == "conversion_rate"]
    assert {c.variant for c in conv} == {"b", "c"}
    assert all(c.p_adjusted >= c.p_value for c in conv)
    assert _comparison(report, "conversion_rate", "c").significant
    assert [a.variant for a in report.arms] == ["b", "c", "control"]


def test_users_without_outcomes_do_not_convert_and_strangers_are_excluded() -> None:
    exp = make_experiment()
    a = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4"],
            "variant": ["control", "control", "treatment", "treatment"],
        }
    )
    o = pl.DataFrame(
        {
            "user_id": ["u1", "u3", "u3", "zz", "zz"],
            "kind": ["conversion", "click", "conversion", "conversion", "click"],
            "revenue": [10.0, 0.0, 30.0, 99.0, 0.0],
        }
    )
    report = analyze(a, o, exp)
    arms = {arm.variant: arm for arm in report.arms}
    assert arms["control"].conversion_rate == 0.5
    assert arms["treatment"].clicks_per_user == 0.5
    assert arms["treatment"].revenue_per_user == 15.0
    assert report.data["unassigned_users"] == 1 and report.data["unassigned_rows"] == 2
    assert any("not in the assignments" in w for w in report.warnings)
    assert not any(w.startswith("most outcome users") for w in report.warnings)


def test_mismatched_id_formats_are_pointed_out(tmp_path: Path) -> None:
    exp = make_experiment(outcomes={"columns": {"user_id": "cust", "event": None}})
    a = pl.DataFrame({"user_id": ["17850", "13047", "12583"], "variant": ["control", "treatment", "control"]})
    a.write_csv(tmp_path / "a.csv")
    # a float-typed id column: normalised to the ingest's form, so it matches
    pl.DataFrame({"cust": [17850.0, 13047.0]}).write_parquet(tmp_path / "o.parquet")
    report = analyze_files(exp, tmp_path / "a.csv", tmp_path / "o.parquet")
    assert sum(arm.converters for arm in report.arms) == 2
    # ids from another system: the report says so
    pl.DataFrame({"cust": ["cust-1", "cust-2", "17850"]}).write_parquet(tmp_path / "o.parquet")
    report = analyze_files(exp, tmp_path / "a.csv", tmp_path / "o.parquet")
    warning = next(w for w in report.warnings if w.startswith("most outcome users"))
    assert "cust-1" in warning and "17850" in warning


def test_unknown_variant_in_assignments_is_an_error() -> None:
    a = pl.DataFrame({"user_id": ["u1", "u2"], "variant": ["control", "shiny"]})
    o = pl.DataFrame({"user_id": ["u1"], "kind": ["conversion"], "revenue": [1.0]})
    with pytest.raises(DataError, match=r"\['shiny'\].*configured"):
        analyze(a, o, make_experiment())


def test_window_and_mapping_from_files(tmp_path: Path) -> None:
    exp = make_experiment(start="2026-12-05", end="2026-12-10")
    a = assignment_frame([f"U{i}" for i in range(2000)], exp)
    o = simulate_outcomes(a, 0.2, start=datetime(2026, 12, 1, tzinfo=timezone.utc), days=14, seed=4)
    # a shop's own column names and CSV text timestamps
    shop = o.rename({"user_id": "customer", "event": "type", "revenue": "amount", "timestamp": "ts"}).with_columns(
        pl.col("ts").dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    shop.write_csv(tmp_path / "shop.csv")
    a.write_parquet(tmp_path / "a.parquet")
    exp = ABTestConfig.model_validate(
        {
            **exp.model_dump(),
            "outcomes": {
                "columns": {
                    "user_id": "customer",
                    "event": "type",
                    "revenue": "amount",
                    "timestamp": "ts",
                }
            },
        }
    )
    report = analyze_files(exp, tmp_path / "a.parquet", tmp_path / "shop.csv")
    inside = o.filter(
        (pl.col("timestamp") >= datetime(2026, 12, 5, tzinfo=timezone.utc))
        & (pl.col("timestamp") < datetime(2026, 12, 10, tzinfo=timezone.utc))
    )
    assert report.data["outcome_rows_outside_window"] == o.height - inside.height
    total_conv = sum(arm.converters for arm in report.arms)
    assert total_conv == inside.filter(pl.col("event") == "purchase")["user_id"].n_unique()
    assert sum(arm.revenue for arm in report.arms) == pytest.approx(inside["revenue"].sum())


def test_assignments_from_another_experiment_are_refused(tmp_path: Path) -> None:
    exp = make_experiment()
    other = make_experiment(salt="other-salt")
    assignment_frame(["a", "b"], other).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"user_id": ["a"], "event": ["purchase"]}).write_csv(tmp_path / "o.csv")
    with pytest.raises(DataError, match="salt.*other-salt.*salt-1"):
        analyze_files(exp, tmp_path / "a.parquet", tmp_path / "o.csv")


def test_reassigned_users_are_reported(tmp_path: Path) -> None:
    exp = make_experiment(outcomes={})
    frame = assignment_frame([f"U{i}" for i in range(100)], exp)
    flipped = frame.with_columns(
        pl.when(pl.col("user_id") == "U1")
        .then(pl.when(pl.col("variant") == "control").then(pl.lit("treatment")).otherwise(pl.lit("control")))
        .otherwise(pl.col("variant"))
        .alias("variant")
    )
    flipped.write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"user_id": ["U1", "U2"], "event": ["purchase", "purchase"]}).write_csv(tmp_path / "o.csv")
    report = analyze_files(exp, tmp_path / "a.parquet", tmp_path / "o.csv")
    assert any(w.startswith("1 of 100 users") for w in report.warnings)


def test_report_json_has_no_nan(tmp_path: Path) -> None:
    import json

    exp = make_experiment({"control": 1, "treatment": 1, "empty": 1})
    a = pl.DataFrame({"user_id": [f"u{i}" for i in range(40)], "variant": ["control", "treatment"] * 20})
    o = pl.DataFrame({"user_id": ["u0"], "kind": ["conversion"], "revenue": [5.0]})
    report = analyze(a, o, exp)
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert "empty" in text
    assert any("'empty' has no users" in w for w in report.warnings)


def test_holdout_is_not_in_the_holm_family(tmp_path: Path) -> None:
    exp = make_experiment(holdout=0.2)
    a, o = simulate_experiment(8000, exp, {"control": 0.05, "treatment": 0.06, "holdout": 0.03}, seed=5)
    report = analyze(a, _canonical(o, exp, tmp_path), exp)
    for c in report.comparisons:
        # one treatment: nothing to adjust for; the holdout keeps its raw p-value too
        assert c.p_adjusted == pytest.approx(c.p_value)


@settings(max_examples=40, deadline=None)
@given(
    arms=st.lists(st.sampled_from(["control", "treatment", "holdout"]), min_size=1, max_size=60),
    events=st.lists(
        st.tuples(st.integers(0, 80), st.sampled_from(["conversion", "click", "other"]), st.floats(0, 500)),
        max_size=120,
    ),
)
def test_any_small_experiment_gives_a_sane_report(arms: list[str], events: list[tuple[int, str, float]]) -> None:
    import json

    exp = make_experiment(holdout=0.1, n_bootstrap=50)
    arms = ["control", *arms]  # the control arm must exist
    a = pl.DataFrame({"user_id": [f"u{i}" for i in range(len(arms))], "variant": arms})
    o = pl.DataFrame(
        {
            "user_id": [f"u{u}" for u, _, _ in events],
            "kind": [k for _, k, _ in events],
            "revenue": [r for *_, r in events],
        },
        schema={"user_id": pl.String, "kind": pl.String, "revenue": pl.Float64},
    )
    report = analyze(a, o, exp)
    assert sum(arm.users for arm in report.arms) == len(arms)
    for arm in report.arms:
        assert 0 <= arm.converters <= arm.users
    for c in report.comparisons:
        assert np.isnan(c.p_value) or 0 <= c.p_value <= 1
        assert np.isnan(c.p_adjusted) or c.p_adjusted >= c.p_value - 1e-12
    json.dumps(report.to_dict(), allow_nan=False)


def test_an_arm_missing_from_the_outcome_log_is_pointed_out(tmp_path: Path) -> None:
    exp = make_experiment()
    a, o = simulate_experiment(4000, exp, 0.1, seed=6)
    treated = set(a.filter(pl.col("variant") == "treatment")["user_id"].to_list())
    o = o.filter(~pl.col("user_id").is_in(list(treated)))  # the treatment's page never logged
    report = analyze(a, _canonical(o, exp, tmp_path), exp)
    arms = {arm.variant: arm for arm in report.arms}
    assert arms["treatment"].active_users == 0 and arms["control"].active_users > 0
    assert any("'treatment'" in w and "not one outcome row" in w for w in report.warnings)


def test_holdout_users_with_a_config_without_holdout() -> None:
    a = pl.DataFrame({"user_id": ["u1", "u2"], "variant": ["control", "holdout"]})
    o = pl.DataFrame({"user_id": ["u1"], "kind": ["conversion"], "revenue": [1.0]})
    with pytest.raises(DataError, match="set experiment.holdout"):
        analyze(a, o, make_experiment())
