"""End to end through the CLI: ingest, train, append a day, update, re-score only what changed."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.columns import Columns

runner = CliRunner()


def invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: object) -> dict | None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else None


def test_update_before_training_says_what_to_run(tmp_path: Path, tiny_shop: dict) -> None:
    raw = yaml.safe_load(tiny_shop["config"].read_text())
    raw["workdir"] = str(tmp_path / "empty")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    result = invoke("update", cfg)
    assert result.exit_code == 5
    assert "recctl ingest" in result.output


def test_update_end_to_end(tiny_shop: dict, tmp_path: Path) -> None:
    cfg, day = tiny_shop["config"], tiny_shop["day"]
    work = Path(yaml.safe_load(cfg.read_text())["workdir"])
    for command in ("ingest", "preprocess", "train", "recommend"):
        ok(command, cfg, "-q")
    ok("serve-export", cfg, "--date", "2026-05-01", "-q")
    assert ok("update", cfg, "--json")["summary"]["status"] == "up to date"
    before = pl.read_parquet(work / "recommend" / "recommendations.parquet")

    ok("ingest", cfg, "--append", day, "-q")
    s = ok("update", cfg, "--check-drift", "--json")["summary"]
    assert s["status"] == "updated" and s["n_new_items"] == 3 and s["n_changed_users"] > 0
    assert s["batches"][0]["path"].endswith("day.csv")
    models = s["models"]
    assert models["popular"]["exact"] and models["knn"]["exact"]
    assert models["lfm"]["how"] in ("fit_partial", "retrained (drift)")
    # the exact models are exactly a full retrain
    for name in ("popular", "knn"):
        assert s["drift"]["models"][name]["jaccard"] == 1.0
        assert s["drift"]["models"][name]["relative_drop"] == 0.0
    # old users and items keep their indices; new ones come after
    for table, idx in (("users", Columns.UserIdx), ("items", Columns.ItemIdx)):
        old = pl.read_parquet(work / "preprocess" / f"{table}.parquet").sort(idx)
        grown = pl.read_parquet(work / "update" / f"{table}.parquet").sort(idx)
        assert grown.head(old.height).select(old.columns[:2]).equals(old.select(old.columns[:2]))
    new_items = pl.read_parquet(work / "update" / "new_items.parquet")[Columns.Item].to_list()
    assert sorted(new_items) == sorted(tiny_shop["held"])

    r = ok("recommend", cfg, "--changed-since", "last-update", "--json")["summary"]
    changed = pl.read_parquet(work / "recommend" / "changed_users.parquet")
    assert r["n_rescored"] == changed.height >= s["n_changed_users"]
    after = pl.read_parquet(work / "recommend" / "recommendations.parquet")
    # every customer the inputs name, not only the users the models were trained on
    customers = pl.read_parquet(work / "ingest" / "interactions.parquet")[Columns.User].n_unique()
    assert after[Columns.User].n_unique() == customers
    assert after.group_by(Columns.User).len()["len"].max() == 5
    # users who were not re-scored keep yesterday's rows exactly
    kept = before.join(changed.select(Columns.User), on=Columns.User, how="anti")
    assert after.join(changed.select(Columns.User), on=Columns.User, how="anti").equals(kept)

    e = ok("serve-export", cfg, "--date", "2026-05-02", "--json")["summary"]
    delta = pl.read_csv(e["delta"]["path"], infer_schema=False)
    assert set(delta[Columns.User].unique()) <= set(changed[Columns.User])
    assert e["delta"]["users"] == delta[Columns.User].n_unique() > 0
    assert e["delta"]["new_users"] == int(
        changed.join(before.select(Columns.User).unique(), on=Columns.User, how="anti").height
    )

    # a second update finds nothing new; bad input says what is wrong
    assert ok("update", cfg, "--json")["summary"]["status"] == "up to date"
    bad = invoke("recommend", cfg, "--changed-since", "yesterday-ish")
    assert bad.exit_code == 4 and "ISO date" in bad.output
    raw = yaml.safe_load(cfg.read_text())
    raw["update"] = {"models": ["nope"]}
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(yaml.safe_dump(raw))
    bad = invoke("update", bad_cfg)
    assert bad.exit_code == 3 and "update.models.0" in bad.output and "nope" in bad.output

    # train alone would fit the preprocessing without the appended batch: refused, naming preprocess
    stale = invoke("train", cfg)
    assert stale.exit_code == 5 and "preprocess is stale: ingest has 1 appended batch" in " ".join(stale.output.split())
    # a full retrain retires the update: serving goes back to train/ + preprocess/
    ok("preprocess", cfg, "-q")
    ok("train", cfg, "-q")
    none = invoke("recommend", cfg, "--changed-since", "last-update")
    assert none.exit_code == 5 and "no current update" in none.output
