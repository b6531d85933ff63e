"""The whole pipeline through the CLI on the shipped sample shop, in a temporary workdir."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from tests.conftest import TEST_EPOCH, write_config

runner = CliRunner()
pytestmark = pytest.mark.slow

SMALL_TUNE = {
    "model": "lightfm_warp",
    "method": "random",
    "n_trials": 2,
    "objective": "ndcg@10",
    "space": {"no_components": {"type": "choice", "values": [16, 32]}},
}


def repeatable_config(tmp: Path, **overrides: Any) -> Path:
    """The quickstart config with LightFM on one thread: same seed, same numbers.

    LightFM trains on all cores by default, and its lock-free updates then make runs differ
    slightly; ``num_threads: 1`` is the documented way to repeatable models.
    """
    config = write_config(tmp, **overrides)
    raw = yaml.safe_load(config.read_text())
    for model in raw["models"].values():
        if model.get("kind") == "lightfm":
            model["num_threads"] = 1
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def invoke(*args: str) -> object:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (
        f"recctl {' '.join(args)} failed ({result.exit_code}):\n{result.stderr}\n{result.stdout}"
    )
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run every subcommand once, in order; return (config, workdir)."""
    tmp = tmp_path_factory.mktemp("e2e")
    config = repeatable_config(tmp, tune=SMALL_TUNE)
    for command in ("ingest", "preprocess", "train", "evaluate", "tune", "recommend", "serve-export"):
        invoke(command, str(config), "--json")
    return config, tmp / "work"


def test_every_stage_wrote_a_manifest_with_hashed_outputs(pipeline: tuple[Path, Path]) -> None:
    _, work = pipeline
    for stage in ("ingest", "preprocess", "train", "evaluate", "tune", "recommend", "export"):
        manifest = json.loads((work / stage / "manifest.json").read_text())
        assert manifest["outputs"], stage
        for out in manifest["outputs"]:
            assert len(out["sha256"]) == 64
        assert manifest["seed"] == 42
        assert manifest["versions"]["polars"]
    ingest = json.loads((work / "ingest" / "manifest.json").read_text())
    assert ingest["outputs"][0]["rows"] > 10_000


def test_no_staging_directories_left_behind(pipeline: tuple[Path, Path]) -> None:
    _, work = pipeline
    assert not [p.name for p in work.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_lightfm_beats_popularity_on_ndcg10(pipeline: tuple[Path, Path]) -> None:
    _, work = pipeline
    metrics = json.loads((work / "evaluate" / "metrics.json").read_text())
    models = metrics["models"]
    assert models["lightfm_warp"]["mean"]["ndcg@10"] > models["popular"]["mean"]["ndcg@10"]
    per_user = pl.read_parquet(work / "evaluate" / "per_user.parquet")
    assert per_user.height > 0


def test_recommendations_are_top_k_unseen_and_unique(pipeline: tuple[Path, Path]) -> None:
    config, work = pipeline
    recs = pl.read_parquet(work / "recommend" / "recommendations.parquet")
    assert recs.columns[:5] == ["user_id", "rank", "item_id", "score", "model"]
    per_user = recs.group_by("user_id").agg(pl.len().alias("n"), pl.col("item_id").n_unique().alias("u"))
    assert per_user["n"].max() == 10 and (per_user["n"] == per_user["u"]).all()
    # nothing the user purchased is recommended (rules.exclude_events: [purchase])
    events = pl.read_parquet(work / "ingest" / "interactions.parquet").filter(pl.col("event") == "purchase")
    clash = recs.join(events.select("user_id", "item_id").unique(), on=["user_id", "item_id"])
    assert clash.height == 0


def test_nightly_csv_has_stable_header_and_k_rows_per_user(pipeline: tuple[Path, Path]) -> None:
    _, work = pipeline
    files = sorted((work / "exports").glob("recommendations_2*.csv"))
    assert files
    with files[-1].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:6] == ["user_id", "rank", "item_id", "score", "model", "generated_at"]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["user_id"]] = counts.get(row["user_id"], 0) + 1
    assert set(counts.values()) == {10}


def test_tune_wrote_trials_and_a_usable_best_config(pipeline: tuple[Path, Path]) -> None:
    _, work = pipeline
    trials = pl.read_parquet(work / "tune" / "trials.parquet")
    assert trials.height == 2
    best = yaml.safe_load((work / "tune" / "best.yaml").read_text())
    assert best["models"]["lightfm_warp"]["no_components"] in (16, 32)


def test_second_run_skips_every_stage(pipeline: tuple[Path, Path]) -> None:
    config, _ = pipeline
    result = invoke("run", str(config), "--json")
    report = json.loads(result.stdout)
    assert {s["stage"]: s["status"] for s in report["stages"]} == {
        "ingest": "skipped",
        "preprocess": "skipped",
        "train": "skipped",
        "evaluate": "skipped",
        "tune": "skipped",
        "recommend": "skipped",
        "serve-export": "skipped",
    }


def test_info_reports_up_to_date(pipeline: tuple[Path, Path]) -> None:
    config, _ = pipeline
    result = invoke("info", str(config), "--json")
    stages = json.loads(result.stdout)["stages"]
    assert all(s["status"] == "up to date" for s in stages)


def test_failed_train_leaves_previous_models_intact(
    pipeline: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, work = pipeline
    before = (work / "train" / "manifest.json").read_text()
    hashes = {p.name: p.read_bytes() for p in (work / "train").iterdir()}

    from recctl.models.lightfm_model import LightFMModel

    def explode(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash in the middle of training")

    monkeypatch.setattr(LightFMModel, "_fit", explode)
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1
    assert "internal error" in result.stderr and "--verbose" in result.stderr
    assert (work / "train" / "manifest.json").read_text() == before
    assert {p.name: p.read_bytes() for p in (work / "train").iterdir()} == hashes
    assert not [p.name for p in work.iterdir() if ".partial-" in p.name]


def test_same_seed_same_numbers(pipeline: tuple[Path, Path], tmp_path: Path) -> None:
    _, work = pipeline
    config2 = repeatable_config(tmp_path, tune=None)
    invoke("run", str(config2), "--json", "--skip", "tune")
    first = json.loads((work / "evaluate" / "metrics.json").read_text())["models"]
    second = json.loads((tmp_path / "work" / "evaluate" / "metrics.json").read_text())["models"]
    assert first == second


def test_changed_model_section_reruns_from_train(pipeline: tuple[Path, Path], tmp_path: Path) -> None:
    # a private workdir: editing the shared pipeline's models would make the other tests' stages stale
    config, _ = pipeline
    raw = yaml.safe_load(config.read_text())
    raw.pop("tune", None)
    raw["workdir"] = str(tmp_path / "work")
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(raw, sort_keys=False))
    invoke("run", str(first), "--json")
    raw["models"]["lightfm_bpr"]["epochs"] = 5
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = invoke("run", str(edited), "--json")
    status = {s["stage"]: s["status"] for s in json.loads(result.stdout)["stages"]}
    assert status["ingest"] == "skipped" and status["preprocess"] == "skipped"
    assert status["train"] == "ran" and status["evaluate"] == "ran"


def test_export_is_stale_on_a_new_day(pipeline: tuple[Path, Path], set_now: Any) -> None:
    from recctl.config import load_config
    from recctl.pipeline import why_stale

    config, _ = pipeline
    cfg = load_config(config)
    assert why_stale(cfg, "serve-export") is None
    set_now(TEST_EPOCH + dt.timedelta(days=1))
    assert "today is 2026-06-16" in (why_stale(cfg, "serve-export") or "")


def test_training_a_subset_leaves_run_to_train_the_rest(pipeline: tuple[Path, Path], tmp_path: Path) -> None:
    from recctl.config import load_config
    from recctl.pipeline import why_stale

    config, work = pipeline
    raw = yaml.safe_load(config.read_text())
    raw["workdir"] = str(tmp_path / "work")
    subset = tmp_path / "subset.yaml"
    subset.write_text(yaml.safe_dump(raw, sort_keys=False))
    for command in ("ingest", "preprocess"):
        invoke(command, str(subset))
    invoke("train", str(subset), "--model", "popular")
    assert why_stale(load_config(subset), "train") == "models not trained: lightfm_bpr, lightfm_warp"
