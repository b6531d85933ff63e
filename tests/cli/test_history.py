"""``recctl history``: evaluations, runs and publications of the workdir; the ``--max-drop`` gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.history import append_record, compare_last_runs, read_history

runner = CliRunner()


def evaluation(value: float, *, model: str = "lightfm_warp", test: str = "t1", at: str = "2026-06-15T02:00Z") -> dict:
    return {
        "experiment": "quickstart",
        "finished_at": at,
        "primary_metric": "ndcg@10",
        "baseline": "popular",
        "best": model,
        "serving_model": model,
        "test_sha256": test,
        "decision": {"action": "keep", "ship": model, "headline": f"Keep {model}"},
        "models": {
            model: {"mean": {"ndcg@10": value}, "interval": {"ndcg@10": [value - 0.01, value + 0.01]}},
            "popular": {"mean": {"ndcg@10": 0.07}},
        },
    }


@pytest.fixture
def workdir(quickstart_config: Path) -> Path:
    return quickstart_config.parent / "work"


def history(config: Path, *args: str) -> Any:
    return runner.invoke(app, ["history", str(config), *args])


def test_empty_history_says_what_to_run(quickstart_config: Path) -> None:
    result = history(quickstart_config)
    assert result.exit_code == 0, result.output
    assert "recctl evaluate" in result.stdout
    data = json.loads(history(quickstart_config, "--json").stdout)
    assert data["evaluations"] == [] and data["runs"] == [] and data["change"] is None
    # a gate with nothing to compare passes (the first night publishes)
    gate = history(quickstart_config, "--max-drop", "0.1", "--json")
    assert gate.exit_code == 0 and json.loads(gate.stdout)["gate"]["passed"] is True


def test_evaluations_runs_and_the_change_between_the_last_two(quickstart_config: Path, workdir: Path) -> None:
    append_record(workdir, evaluation(0.130, at="2026-06-14T02:00:00Z"))
    append_record(workdir, evaluation(0.120, at="2026-06-15T02:00:00Z"))
    append_record(workdir, {"finished_at": "2026-06-15T02:01:00Z", "status": "ok", "stages": []}, stage="run")
    result = history(quickstart_config, "--format", "tsv")
    assert result.exit_code == 0, result.output
    assert "0.1200 [0.1100, 0.1300]\t-0.0100" in result.stdout
    assert "Keep lightfm_warp" in result.stdout and "# Runs (recctl run)" in result.stdout
    data = json.loads(history(quickstart_config, "--json", "--last", "1").stdout)
    assert len(data["evaluations"]) == 1 and data["change"] is None  # one record: nothing to compare
    change = json.loads(history(quickstart_config, "--json").stdout)["change"]
    assert change["previous"] == pytest.approx(0.13) and change["current"] == pytest.approx(0.12)
    assert change["relative_change"] == pytest.approx(-0.01 / 0.13) and change["same_test_split"] is True


def test_max_drop_gate_refuses_with_exit_7_and_its_numbers(quickstart_config: Path, workdir: Path) -> None:
    append_record(workdir, evaluation(0.130))
    append_record(workdir, evaluation(0.100, test="t2"))  # -23%
    passed = history(quickstart_config, "--max-drop", "0.25", "--json")
    assert passed.exit_code == 0
    refused = history(quickstart_config, "--max-drop", "0.1", "--json")
    assert refused.exit_code == 7
    data = json.loads(refused.stdout)
    assert data["error"]["exit_code"] == 7 and data["gate"]["passed"] is False
    assert data["gate"]["drop"] == pytest.approx(0.03 / 0.13)
    assert "-23.1%" in data["gate"]["reason"] and "test split changed" in data["gate"]["reason"]
    assert "more than the allowed drop" in refused.stderr


def test_a_changed_serving_model_compares_what_serves_now_with_what_served(workdir: Path) -> None:
    append_record(workdir, evaluation(0.130, model="lightfm_warp"))
    append_record(workdir, evaluation(0.140, model="ease"))
    change = compare_last_runs(read_history(workdir))
    assert change is not None
    assert (change["previous_model"], change["model"]) == ("lightfm_warp", "ease")
    assert change["change"] == pytest.approx(0.01)


def test_history_keeps_the_newest_records_only(workdir: Path) -> None:
    for i in range(7):
        append_record(workdir, evaluation(0.1 + i / 100, at=f"2026-06-1{i}T02:00:00Z"), keep=5)
    records = read_history(workdir)
    assert [r["finished_at"][:10] for r in records] == [f"2026-06-1{i}" for i in range(2, 7)]
    # a torn last line (a crash mid-write) is skipped, not fatal
    path = workdir / "history" / "evaluate.jsonl"
    path.write_text(path.read_text() + '{"schema_version": 1, "stage": "evalu')
    assert len(read_history(workdir)) == 5


def test_history_keep_is_a_checked_config_key(quickstart_config: Path) -> None:
    result = history(quickstart_config, "--set", "history.keep=0", "--json")
    assert result.exit_code == 3 and "history.keep" in json.loads(result.stdout)["error"]["message"]


def test_a_failed_run_is_recorded_with_its_stage_and_exit_code(quickstart_config: Path, workdir: Path) -> None:
    # the sample's events read with a timestamp format that matches no row: a data error (exit 4)
    bad = ["--set", "data.interactions.timestamp_format=%d.%m.%Y %H:%M"]
    result = runner.invoke(app, ["run", str(quickstart_config), *bad, "--json"])
    assert result.exit_code == 4, result.output
    (record,) = read_history(workdir, "run")
    assert record["status"] == "failed" and record["error"]["exit_code"] == 4
    assert record["stages"][-1]["status"] == "failed"
    assert record["stages"][-1]["stage"] in ("ingest", "preprocess")
    shown = history(quickstart_config, "--format", "tsv").stdout
    assert "\tfailed\t" in shown
