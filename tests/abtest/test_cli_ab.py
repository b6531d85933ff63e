"""``recctl ab ...`` through the CLI: happy paths, bad input, messages and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recctl.cli.main import app

from .conftest import build_trained_workdir, write_ab_config

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Typer's usage-error panel wraps lines inside box characters; undo that for matching."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture
def users_csv(tmp_path: Path) -> Path:
    path = tmp_path / "users.csv"
    pl.DataFrame({"customer_id": [f"C{i}" for i in range(6000)], "country": ["UK"] * 6000}).write_csv(path)
    return path


@pytest.fixture
def assigned(ab_config: Path, users_csv: Path, tmp_path: Path) -> Path:
    out = tmp_path / "assignments.parquet"
    result = invoke("ab", "assign", ab_config, "--users", users_csv, "--user-column", "customer_id", "-o", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def outcomes_csv(ab_config: Path, assigned: Path, tmp_path: Path) -> Path:
    out = tmp_path / "outcomes.csv"
    result = invoke(
        "ab",
        "simulate",
        ab_config,
        "-a",
        assigned,
        "--rates",
        "control=0.05,treatment=0.09,holdout=0.03",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("command", ["assign", "report", "plan", "preview", "simulate"])
def test_help_has_an_example(command: str) -> None:
    result = invoke("ab", command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"recctl ab {command}" in result.stdout


def test_assign_writes_the_file_and_reports_shares(ab_config: Path, users_csv: Path, tmp_path: Path) -> None:
    result = invoke("ab", "assign", ab_config, "--users", users_csv, "--user-column", "customer_id", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_users"] == 6000
    assert set(data["arms"]) == {"control", "treatment", "holdout"}
    frame = pl.read_parquet(data["output"])  # default: <workdir>/abtest/assignments.parquet
    assert Path(data["output"]) == tmp_path / "work" / "abtest" / "assignments.parquet"
    assert frame.columns == ["user_id", "variant", "bucket", "experiment", "salt"]
    # a CSV output, from a plain id list, agrees with the parquet one
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"C{i}" for i in range(100)) + "\n")
    assert invoke("ab", "assign", ab_config, "--users", ids, "-o", tmp_path / "a.csv").exit_code == 0
    csv = pl.read_csv(tmp_path / "a.csv", schema_overrides={"bucket": pl.UInt64})
    assert csv["variant"].to_list() == frame["variant"].head(100).to_list()


def test_assign_bad_input(ab_config: Path, users_csv: Path, tmp_path: Path) -> None:
    result = invoke("ab", "assign", ab_config, "--users", users_csv)
    assert result.exit_code == 4
    assert "no 'user_id' column" in result.stderr and "--user-column" in result.stderr
    result = invoke("ab", "assign", ab_config, "--users", users_csv, "--user-column", "cust")
    assert result.exit_code == 4 and "column 'cust' not found" in result.stderr
    result = invoke("ab", "assign", ab_config, "--users", tmp_path / "missing.csv")
    assert result.exit_code == 4 and "not found" in result.stderr
    result = invoke(
        "ab",
        "assign",
        ab_config,
        "--users",
        users_csv,
        "--user-column",
        "customer_id",
        "-o",
        tmp_path / "a.xlsx",
    )
    assert result.exit_code == 4 and "use .parquet or .csv" in result.stderr


def test_assign_without_experiment_section(tmp_path: Path, users_csv: Path) -> None:
    config = write_ab_config(tmp_path, experiment=False)
    result = invoke("ab", "assign", config, "--users", users_csv)
    assert result.exit_code == 3
    assert "experiment:" in result.stderr and "ab_example.yaml" in result.stderr


_TWO_ARMS = {"control": {"model": "popular", "weight": 1}, "b": {"model": "nope", "weight": 1}}


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        (
            {
                "control": "ctrl",
                "variants": {"control": {"model": "popular", "weight": 1}, "holdout": {"model": "other", "weight": 1}},
            },
            "experiment.variants: 'holdout' is reserved",
        ),
        (
            {"control": "ctrl", "start": "2026-12-40", "variants": _TWO_ARMS},
            "experiment.start: '2026-12-40' is not an ISO date",
        ),
        ({"control": "ctrl", "variants": _TWO_ARMS}, "control 'ctrl' is not one of the variants"),
    ],
    ids=["reserved-holdout-name", "bad-start-date", "unknown-control"],
)
def test_config_with_unknown_control_or_reserved_name(
    tmp_path: Path, users_csv: Path, experiment: dict, message: str
) -> None:
    config = write_ab_config(tmp_path, experiment={"name": "e", "salt": "s", **experiment})
    result = invoke("ab", "assign", config, "--users", users_csv)
    assert result.exit_code == 3
    assert message in result.stderr


def test_report_table_json_and_html(ab_config: Path, assigned: Path, outcomes_csv: Path, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    result = invoke(
        "ab",
        "report",
        ab_config,
        "--assignments",
        assigned,
        "--outcomes",
        outcomes_csv,
        "--html",
        html,
    )
    assert result.exit_code == 0, result.output
    assert "conversion" in result.stdout and "treatment" in result.stdout and "active" in result.stdout
    assert "match the configured weights" in result.stdout
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page

    result = invoke("ab", "report", ab_config, "-a", assigned, "--outcomes", outcomes_csv, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    conv = next(c for c in data["comparisons"] if c["metric"] == "conversion_rate" and c["variant"] == "treatment")
    assert conv["significant"] and conv["diff"] > 0
    assert data["srm"]["mismatch"] is False


def test_report_warns_loudly_on_sample_ratio_mismatch(
    ab_config: Path, assigned: Path, outcomes_csv: Path, tmp_path: Path
) -> None:
    frame = pl.read_parquet(assigned)
    treated = frame.filter(pl.col("variant") == "treatment")
    broken = pl.concat([frame.filter(pl.col("variant") != "treatment"), treated.head(int(treated.height * 0.8))])
    broken.write_parquet(tmp_path / "broken.parquet")
    result = invoke("ab", "report", ab_config, "-a", tmp_path / "broken.parquet", "--outcomes", outcomes_csv)
    assert result.exit_code == 0
    assert "SAMPLE RATIO MISMATCH" in result.stderr
    html = tmp_path / "r.html"
    result = invoke(
        "ab",
        "report",
        ab_config,
        "-a",
        tmp_path / "broken.parquet",
        "--outcomes",
        outcomes_csv,
        "--fail-on-srm",
        "--html",
        html,
    )
    assert result.exit_code == 4
    assert "SAMPLE RATIO MISMATCH" in html.read_text()


def test_report_missing_outcome_column(ab_config: Path, assigned: Path, tmp_path: Path) -> None:
    pl.DataFrame({"user_id": ["C1"], "event": ["purchase"], "item_id": ["I1"], "timestamp": ["2026-12-02"]}).write_csv(
        tmp_path / "o.csv"
    )
    result = invoke("ab", "report", ab_config, "-a", assigned, "--outcomes", tmp_path / "o.csv")
    assert result.exit_code == 4
    assert "column 'revenue'" in result.stderr and "experiment.outcomes.columns.revenue" in result.stderr


def test_report_unknown_variant(ab_config: Path, assigned: Path, outcomes_csv: Path, tmp_path: Path) -> None:
    frame = pl.read_parquet(assigned).drop("salt", "experiment", "bucket")
    frame = frame.with_columns(
        pl.when(pl.col("variant") == "holdout").then(pl.lit("shiny")).otherwise(pl.col("variant")).alias("variant")
    )
    frame.write_csv(tmp_path / "a.csv")
    result = invoke("ab", "report", ab_config, "-a", tmp_path / "a.csv", "--outcomes", outcomes_csv)
    assert result.exit_code == 4
    assert "['shiny']" in result.stderr and "does not define" in result.stderr


def test_report_missing_files(ab_config: Path, assigned: Path, tmp_path: Path) -> None:
    result = invoke("ab", "report", ab_config, "-a", assigned)
    assert result.exit_code == 3 and "--outcomes" in result.stderr
    result = invoke("ab", "report", ab_config, "-a", tmp_path / "none.parquet", "--outcomes", tmp_path / "x.csv")
    assert result.exit_code == 4 and "assignments file not found" in result.stderr


def test_plan_sample_size_and_mde() -> None:
    result = invoke("ab", "plan", "--baseline-rate", 0.05, "--mde", 0.1, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert 62_000 <= data["total_users"] <= 63_000
    result = invoke("ab", "plan", "--baseline-rate", 0.05, "--users", 62468)
    assert result.exit_code == 0 and "minimum detectable effect" in result.stdout
    result = invoke(
        "ab",
        "plan",
        "--baseline-mean",
        2.0,
        "--sd",
        10,
        "--mde",
        0.1,
        "--weights",
        "2,1,1",
        "--json",
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["alpha_per_comparison"] == pytest.approx(0.025)


def test_plan_takes_the_experiment_from_a_config(ab_config: Path) -> None:
    # CONFIG is positional, as for every other command
    result = invoke("ab", "plan", ab_config, "--baseline-rate", 0.05, "--mde", 0.1, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["users_per_arm"]) == {"control", "treatment"}
    assert data["shares"]["control"] == pytest.approx(0.475)
    # the old --config spelling still works (hidden from --help), but not both at once
    old = invoke("ab", "plan", "--baseline-rate", 0.05, "--mde", 0.1, "--config", ab_config, "--json")
    assert old.exit_code == 0 and json.loads(old.stdout)["users_per_arm"] == data["users_per_arm"]
    both = invoke("ab", "plan", ab_config, "--baseline-rate", 0.05, "--mde", 0.1, "--config", ab_config)
    assert both.exit_code == 2
    # --set reaches the experiment like any other config key
    args = ("ab", "plan", ab_config, "--baseline-rate", 0.05, "--mde", 0.1, "--json")
    result = invoke(*args, "--set", "experiment.holdout=0.5")
    assert result.exit_code == 0, result.output
    half = json.loads(result.stdout)
    assert half["shares"]["control"] == pytest.approx(0.25)
    assert half["total_users"] > 1.8 * data["total_users"]  # half the users held out: about twice as many


def test_plan_with_a_missing_config_answers_json(tmp_path: Path) -> None:
    result = invoke("ab", "plan", tmp_path / "missing.yaml", "--baseline-rate", 0.05, "--mde", 0.1, "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["exit_code"] == 3
    missing = tmp_path / "missing.yaml"
    result = invoke("ab", "plan", "--config", missing, "--baseline-rate", 0.05, "--mde", 0.1, "--json")
    assert result.exit_code == 3 and json.loads(result.stdout)["error"]["type"] == "ConfigError"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--baseline-rate", "0.05", "--mde", "0.1", "--weights", "1,x"],
            "not a comma-separated list",
        ),
        (
            ["--baseline-rate", "0.05", "--mde", "0.1", "--weights", "1"],
            "at least two positive weights",
        ),
        (["--baseline-rate", "0.05"], "exactly one of --mde"),
        (["--baseline-rate", "0.05", "--mde", "0.1", "--users", "100"], "exactly one of --mde"),
        (["--mde", "0.1"], "exactly one of --baseline-rate"),
        (["--baseline-mean", "2", "--mde", "0.1"], "needs --sd"),
        (["--baseline-rate", "1.5", "--mde", "0.1"], "rates must be in (0, 1)"),
    ],
)
def test_plan_bad_input_is_a_usage_error(args: list[str], message: str) -> None:
    result = invoke("ab", "plan", *args)
    assert result.exit_code == 2
    assert message in flat(result.stderr)


def test_plan_weights_not_matching_the_experiment(ab_config: Path) -> None:
    result = invoke(
        "ab",
        "plan",
        "--baseline-rate",
        0.05,
        "--mde",
        0.1,
        "--config",
        ab_config,
        "--weights",
        "1,1,1",
    )
    assert result.exit_code == 2
    assert "3 weights given" in flat(result.stderr) and "2 variants" in flat(result.stderr)


def test_simulate_json_and_quiet(ab_config: Path, assigned: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    result = invoke("ab", "simulate", ab_config, "-a", assigned, "--rates", "control=0.05", "-o", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"] > 0 and data["schema_version"] == 1 and Path(data["output"]) == out
    assert pl.read_parquet(out).height == data["rows"]
    assert result.stderr == ""
    bad = invoke("ab", "simulate", ab_config, "-a", assigned, "--rates", "shiny=0.1", "-o", out, "--json")
    assert bad.exit_code == 3 and json.loads(bad.stdout)["error"]["exit_code"] == 3


def test_simulate_bad_input(ab_config: Path, assigned: Path, tmp_path: Path) -> None:
    result = invoke(
        "ab",
        "simulate",
        ab_config,
        "-a",
        assigned,
        "--rates",
        "control=0.05,shiny=0.1",
        "-o",
        tmp_path / "o.csv",
    )
    assert result.exit_code == 3 and "unknown variant(s) ['shiny']" in result.stderr
    result = invoke("ab", "simulate", ab_config, "-a", assigned, "--rates", "control", "-o", tmp_path / "o.csv")
    assert result.exit_code == 2


def test_preview_compares_the_variants_offline(tmp_path: Path) -> None:
    config = build_trained_workdir(tmp_path)
    result = invoke("ab", "preview", config, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metrics"] == ["precision@10", "ndcg@10"]  # coverage is not per user: left out
    ndcg = next(c for c in data["comparisons"] if c["metric"] == "ndcg@10")
    assert ndcg["variant"] == "treatment" and ndcg["verdict"] == "better"
    assert ndcg["ci_low"] > 0
    result = invoke("ab", "preview", config, "--k", 5, "-m", "hit_rate")
    assert result.exit_code == 0, result.output
    assert "hit_rate@5" in result.stdout
    result = invoke("ab", "preview", config, "-m", "coverage")
    assert result.exit_code == 3 and "cannot be compared user by user" in result.stderr


def test_preview_before_training(ab_config: Path) -> None:
    result = invoke("ab", "preview", ab_config)
    assert result.exit_code == 5
    assert "recctl preprocess" in result.stderr


def test_report_finds_the_assignments_of_the_recommend_stage(
    ab_config: Path, assigned: Path, outcomes_csv: Path, tmp_path: Path
) -> None:
    result = invoke("ab", "report", ab_config, "--outcomes", outcomes_csv)
    assert result.exit_code == 4
    assert "no assignments file found" in result.stderr and "recctl ab assign" in result.stderr
    target = tmp_path / "work" / "recommend" / "assignments.parquet"
    target.parent.mkdir(parents=True)
    pl.read_parquet(assigned).select("user_id", "variant").write_parquet(target)
    result = invoke("ab", "report", ab_config, "--outcomes", outcomes_csv, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["assignments_file"] == str(target)


def test_weights_changed_after_assignment_are_caught(
    ab_config: Path, assigned: Path, outcomes_csv: Path, tmp_path: Path
) -> None:
    import yaml

    raw = yaml.safe_load(ab_config.read_text())
    raw["experiment"]["variants"]["treatment"]["weight"] = 3  # someone edits the config mid-experiment
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(raw))
    result = invoke("ab", "report", changed, "-a", assigned, "--outcomes", outcomes_csv, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["srm"]["mismatch"] is True
    assert "SAMPLE RATIO MISMATCH" in result.stderr
    assert any("different variant than the config" in w for w in data["warnings"])
