"""`recctl recommend` and `recctl serve-export` through the CLI: output, exit codes, safety."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.columns import Columns
from tests.serving.conftest import build_workdir, make_config

runner = CliRunner()


def invoke(*args: str):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """``text`` as one line: Typer's usage-error box (borders, wrapping) taken away.

    The box's width is Rich's console width, which depends on the terminal and on the
    ``TERMINAL_WIDTH`` seen when Typer was first imported (another test may set it), so a
    message can wrap inside the box: compare words, not the box's lines.
    """
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


def test_recommend_all_then_export(shop_config: Path) -> None:
    res = invoke("recommend", shop_config, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["summary"]["n_users"] == 40 and summary["summary"]["n_rows"] == 200
    res = invoke("serve-export", shop_config, "--date", "2026-03-01")
    assert res.exit_code == 0, res.output
    assert "recommendations_2026-03-01.csv" in res.stdout
    exports = shop_config.parent / "work" / "exports"
    assert json.loads((exports / "recommendations_latest.json").read_text())["users"] == 40


def test_recommend_users_items_similar(shop_config: Path) -> None:
    res = invoke("recommend", shop_config, "--users", "U001,BRANDNEW", "-k", "2", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert [(r["user_id"], r["rank"]) for r in rows] == [("U001", 1), ("U001", 2), ("BRANDNEW", 1), ("BRANDNEW", 2)]
    assert rows[-1]["source"] == "popular"
    res = invoke("recommend", shop_config, "--items", "P001,P002", "-k", "3", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["mode"] == "items" and data["query"] == ["P001", "P002"] and len(data["items"]) == 3
    res = invoke("recommend", shop_config, "--similar-to", "P001", "-k", "3")
    assert res.exit_code == 0, res.output
    assert "Similar to P001" in res.stdout and "knn" in res.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--similar-to", "NOPE"], 4, "--similar-to: unknown item id(s): NOPE"),
        (["--items", "P001,NOPE"], 4, "--items: unknown item id(s): NOPE"),
        (["--items", "P001", "--similar-to", "P002"], 2, "use only one of"),
        (["-k", "3"], 2, "-k applies to --users"),
        (["--users", "U001", "--changed-since", "last-update"], 2, "cannot be combined with --users"),
    ],
)
def test_recommend_errors(shop_config: Path, args: list[str], code: int, message: str) -> None:
    res = invoke("recommend", shop_config, *args)
    assert res.exit_code == code, res.output
    assert message in flat(res.stderr) or message in flat(res.output), res.output


def test_export_before_recommend_says_what_to_run(shop_config: Path) -> None:
    res = invoke("serve-export", shop_config)
    assert res.exit_code == 5
    assert "recctl recommend" in res.stderr


def test_changed_deny_list_publishes_nothing_and_keeps_yesterday(tmp_path: Path) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text("NONE\n")
    config = make_config(tmp_path, recommend={"rules": {"deny_list": "deny.txt"}})
    build_workdir(config)
    assert invoke("recommend", config).exit_code == 0
    assert invoke("serve-export", config, "--date", "2026-03-01").exit_code == 0
    exports = tmp_path / "work" / "exports"
    yesterday = (exports / "recommendations_2026-03-01.csv").read_bytes()
    pointer = (exports / "recommendations_latest.json").read_text()
    # the shop updates its deny list after the lists were computed: recommend read the old one,
    # so it is stale and the export refuses (exit 5) before validating anything
    top_item = yesterday.decode().splitlines()[1].split(",")[2]
    deny.write_text(f"{top_item}\n")
    res = invoke("serve-export", config, "--date", "2026-03-02")
    assert res.exit_code == 5, res.output
    err = " ".join(res.stderr.split())
    assert "recommend is stale: raw input" in err and "deny.txt changed" in err
    assert not (exports / "recommendations_2026-03-02.csv").exists()
    assert (exports / "recommendations_2026-03-01.csv").read_bytes() == yesterday
    assert (exports / "recommendations_latest.json").read_text() == pointer
    assert os.readlink(exports / "recommendations_latest.csv") == "recommendations_2026-03-01.csv"
    # no temporary file left (.recctl holds the folder's lock and ledger)
    assert not [p for p in exports.iterdir() if p.name.startswith(".") and p.name != ".recctl"]


def test_k_above_the_allowed_items_is_refused_before_training(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    build_workdir(config)
    trained = (tmp_path / "work" / "train" / "manifest.json").read_bytes()
    (tmp_path / "allow.txt").write_text("P010\nP011\nP012\n")  # 3 allowed items, k = 5
    make_config(tmp_path, recommend={"rules": {"allow_list": "allow.txt"}})
    for command in ("train", "recommend"):
        res = invoke(command, config)
        assert res.exit_code == 3, (command, res.output)
        err = " ".join(res.stderr.split())
        assert "recommend.k: 5 items per list cannot be filled" in err
        assert "3 of them pass the item rules (excluded by allow_list: 27)" in err
        assert "Lower recommend.k to at most 3" in err
    # refused before fitting anything: the previous models are untouched
    assert (tmp_path / "work" / "train" / "manifest.json").read_bytes() == trained


def test_a_crawler_gets_every_eligible_item_and_the_file_still_publishes(tmp_path: Path) -> None:
    from recctl.config import load_config
    from recctl.stages.train import run_train
    from tests.fake_stages import write_ingest_stage, write_preprocess_stage
    from tests.serving.conftest import N_ITEMS, _shop

    config = make_config(tmp_path)
    # a staff account that viewed every item but P020 and P021 (never in the training data)
    crawl = pl.DataFrame(
        {
            Columns.User: "CRAWLER",
            Columns.Item: [f"P{i:03d}" for i in range(N_ITEMS) if i not in (20, 21)],
            Columns.Event: "view",
            Columns.Timestamp: dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc),
        }
    )
    # ingest holds the crawler's events, preprocess (built on that ingest) dropped them
    cfg = load_config(config)
    write_ingest_stage(cfg, _shop(), extra_events=crawl)
    write_preprocess_stage(cfg, _shop(), with_ingest=False)
    run_train(cfg)
    res = invoke("recommend", config, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)["summary"]
    assert summary["n_users"] == 41 and summary["n_short_lists"] == 1
    assert summary["users_by_origin"] == {"model": 40, "fallback": 1, "customer_file": 0}
    assert summary["short_list_examples"] == ["CRAWLER (2 of 5 items, 2 eligible)"]
    res = invoke("serve-export", config, "--date", "2026-03-02", "--json")
    assert res.exit_code == 0, res.output
    exports = tmp_path / "work" / "exports"
    rows = pl.read_csv(exports / "recommendations_2026-03-02.csv", infer_schema=False)
    assert sorted(rows.filter(pl.col(Columns.User) == "CRAWLER")[Columns.Item].to_list()) == ["P020", "P021"]
    assert rows[Columns.User].n_unique() == 41
    short = pl.read_csv(exports / "recommendations_short_lists_2026-03-02.csv")
    assert short.rows() == [("CRAWLER", 2, 2)]
    pointer = json.loads((exports / "recommendations_latest.json").read_text())
    assert pointer["short_lists"] == 1 and "recommendations_short_lists_2026-03-02.csv" in pointer["side_files"]


def test_bad_date_is_a_usage_error(shop_config: Path) -> None:
    res = invoke("serve-export", shop_config, "--date", "01/02/2026")
    assert res.exit_code == 2


@pytest.mark.slow
def test_sample_data_pipeline_through_cli(tmp_path: Path, repo_root: Path) -> None:
    from tests.conftest import write_config

    config = write_config(
        tmp_path,
        models={"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 50}},
        recommend={
            "model": "knn",
            "k": 10,
            "fallback": ["popular"],
            "rules": {
                "exclude_events": ["purchase"],
                "in_stock_column": "in_stock",
                "category_cap": {"column": "category", "max_per_list": 4},
            },
        },
        export={"format": "csv_wide"},
        evaluate=None,
        tune=None,
    )
    for cmd in ("ingest", "preprocess", "train", "recommend"):
        res = invoke(cmd, config, "-q")
        assert res.exit_code == 0, (cmd, res.output)
    res = invoke("serve-export", config, "--json")
    assert res.exit_code == 0, res.output
    published = json.loads(res.stdout)["summary"]["published"][0]
    header = Path(published["path"]).read_text().splitlines()[0].split(",")
    assert header[:3] == ["user_id", "item_1", "item_2"] and header[-2:] == ["model", "generated_at"]
    assert published["rows"] == published["users"] > 1000


def test_export_refuses_lists_made_with_another_config(shop_config: Path) -> None:
    assert invoke("recommend", shop_config).exit_code == 0
    shop_config.write_text(shop_config.read_text().replace("k: 5", "k: 4"))
    res = invoke("serve-export", shop_config)
    assert res.exit_code == 5
    assert "recommend is stale: recommend.k changed" in " ".join(res.stderr.split())


def test_missing_model_for_the_bundle_publishes_nothing(shop_config: Path) -> None:
    assert invoke("recommend", shop_config).exit_code == 0
    (shop_config.parent / "work" / "train" / "knn.all.pkl").unlink()  # the serving copy (refit on all data)
    res = invoke("serve-export", shop_config)
    assert res.exit_code == 5, res.output
    assert "knn.all.pkl" in " ".join(res.stderr.split())
    assert not (shop_config.parent / "work" / "exports").exists()
