"""A bad night is gated (exit 7, yesterday's file untouched), and rollback republishes a kept version.

Driven through the CLI on the synthetic serving shop: a good night publishes, then half the
input or a model worse than popularity is refused with a message naming the gate, and
``recctl rollback`` brings back an earlier file and bundle, the pointer moving last.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.columns import Columns
from recctl.config import load_config
from recctl.serving import load
from recctl.stages.train import run_train
from tests.fake_stages import write_preprocess_stage
from tests.serving.conftest import _shop, build_workdir, make_config, shop_frames

runner = CliRunner()


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: object) -> dict:
    res = invoke(*args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _exports(config: Path) -> Path:
    return config.parent / "work" / "exports"


def _state(config: Path) -> dict[str, bytes]:
    directory = _exports(config)
    # .recctl holds the folder's lock and ledger (the ledger changes with each publication)
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.is_symlink() and p.name != ".recctl"}


@pytest.fixture
def published(tmp_path: Path) -> Path:
    config = make_config(tmp_path, export={"versions": 3})
    build_workdir(config)
    ok("recommend", config)
    ok("serve-export", config, "--date", "2026-05-01")
    return config


def test_half_the_input_is_gated_and_yesterday_stays(published: Path) -> None:
    cfg = load_config(published)
    shop = _shop()
    before = _state(published)
    bundle_before = (cfg.stage_dir("export") / "bundle" / "bundle.json").read_bytes()
    # tonight only half the customers' events arrived: the whole pipeline runs on them
    half = shop["users"].filter(pl.col(Columns.UserIdx) < 20)
    events = shop["events"].filter(pl.col(Columns.UserIdx) < 20)
    write_preprocess_stage(cfg, shop_frames(half, shop["items"], events))
    run_train(cfg)
    ok("recommend", published)
    res = invoke("serve-export", published, "--date", "2026-05-02")
    assert res.exit_code == 7, res.output
    err = " ".join(res.stderr.split())
    assert "did not pass the publication gates, nothing was published" in err
    assert "20 customers against 40 in recommendations_2026-05-01.csv: a drop of 50%" in err
    assert "export.gates.max_drop = 20%" in err and "recommendations_2026-05-01.csv is still the latest file" in err
    assert _state(published) == before  # no new file, pointer untouched
    assert (cfg.stage_dir("export") / "bundle" / "bundle.json").read_bytes() == bundle_before
    assert [v["version"] for v in ok("rollback", published, "--list")["versions"]] == [
        json.loads(before["recommendations_latest.json"])["version"]
    ]


def test_a_model_worse_than_popularity_is_gated(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recctl.models.item_knn import ItemKNNModel

    before = _state(published)
    # on this small shop item-kNN ranks the test items worse than popularity does: not published
    ok("evaluate", published)
    res = invoke("serve-export", published, "--date", "2026-05-02")
    assert res.exit_code == 7, res.output
    err = " ".join(res.stderr.split())
    assert "knn scores ndcg@10 =" in err and "below the baseline popularity_baseline" in err
    assert "export.gates.metric: off turns this gate off" in err
    assert _state(published) == before
    # a shop that accepts kNN here sets a floor instead: kNN passes it, a broken kNN does not
    published.write_text(published.read_text() + "  gates: {metric: 'off', metric_floor: 0.2}\n")
    ok("serve-export", published, "--date", "2026-05-02")
    before = _state(published)

    def broken(self, users):  # noqa: ANN001, ANN202 - a model that learnt the opposite of the data
        return -(self.user_items_[users] @ self.similarity_).toarray()

    monkeypatch.setattr(ItemKNNModel, "_score", broken)
    ok("evaluate", published)
    ok("recommend", published)
    res = invoke("serve-export", published, "--date", "2026-05-03")
    assert res.exit_code == 7, res.output
    err = " ".join(res.stderr.split())
    assert "below export.gates.metric_floor = 0.2" in err
    assert _state(published) == before


def test_rollback_republishes_an_earlier_file_and_bundle(published: Path) -> None:
    cfg = load_config(published)
    first_bundle = load(cfg.stage_dir("export") / "bundle")
    first = {u: [r["item_id"] for r in first_bundle.recommend(u)] for u in first_bundle.user_ids}
    # the next night serves another model (popularity); export.keep prunes the first file
    text = (
        published.read_text().replace("model: knn", "model: popular").replace("fallback:\n  - popular", "fallback: []")
    )
    published.write_text(text + "  keep: 1\n")
    ok("recommend", published)
    ok("serve-export", published, "--date", "2026-05-02")
    assert not (_exports(published) / "recommendations_2026-05-01.csv").exists()  # pruned by export.keep
    listed = ok("rollback", published, "--list")["versions"]
    assert [v["current"] for v in listed] == [False, True]
    res = invoke("rollback", published, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)["summary"]
    assert summary["rolled_back_to"] == listed[0]["version"]
    pointer = json.loads((_exports(published) / "recommendations_latest.json").read_text())
    assert pointer["file"] == "recommendations_2026-05-01.csv" and pointer["version"] == listed[0]["version"]
    restored = _exports(published) / "recommendations_2026-05-01.csv"
    assert restored.exists() and pointer["sha256"] == __import__("hashlib").sha256(restored.read_bytes()).hexdigest()
    assert (_exports(published) / "recommendations_latest.csv").resolve() == restored.resolve()
    bundle = load(cfg.stage_dir("export") / "bundle")
    assert {u: [r["item_id"] for r in bundle.recommend(u)] for u in bundle.user_ids} == first
    assert [v["current"] for v in ok("rollback", published, "--list")["versions"]] == [True, False]
    # nothing earlier than the oldest kept version
    res = invoke("rollback", published)
    assert res.exit_code == 5 and "nothing earlier to roll back to" in " ".join(res.stderr.split())
    # and forward again by id
    res = invoke("rollback", published, "--to", listed[1]["version"])
    assert res.exit_code == 0, res.output
    assert json.loads((_exports(published) / "recommendations_latest.json").read_text())["file"] == (
        "recommendations_2026-05-02.csv"
    )


def test_only_the_last_versions_are_kept_and_an_altered_version_is_refused(published: Path) -> None:
    for day in ("02", "03", "04"):
        ok("serve-export", published, "--date", f"2026-05-{day}")
    versions = ok("rollback", published, "--list")["versions"]
    assert len(versions) == 3 and [v["file"] for v in versions][-1] == "recommendations_2026-05-04.csv"
    root = published.parent / "work" / "versions"
    assert sorted(p.name for p in root.iterdir()) == [v["version"] for v in versions]
    oldest = root / versions[0]["version"] / "published" / versions[0]["file"]
    oldest.write_text("tampered\n")
    res = invoke("rollback", published, "--to", versions[0]["version"])
    assert res.exit_code == 5 and "the version was altered" in " ".join(res.stderr.split())
    assert json.loads((_exports(published) / "recommendations_latest.json").read_text())["file"] == (
        "recommendations_2026-05-04.csv"
    )
    res = invoke("rollback", published, "--to", "1999")
    assert res.exit_code == 5 and "no version matches" in " ".join(res.stderr.split())


def test_rollback_waits_its_turn_for_the_export_folder(published: Path) -> None:
    # another workdir publishing into the same folder holds its lock: rollback moves nothing
    ok("serve-export", published, "--date", "2026-05-02")
    before = _state(published)
    code = (
        "import time; from pathlib import Path; from recctl.workdir import exclusive_dir\n"
        f"with exclusive_dir(Path({str(_exports(published))!r}), wait_s=0, what='export folder'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        res = runner.invoke(app, ["rollback", str(published)], env={"RECCTL_LOCK_WAIT": "0"})
        assert res.exit_code == 8, res.output
        err = " ".join(res.stderr.split())
        assert "export folder busy" in err and f"pid {holder.pid}" in err
        assert _state(published) == before
        assert json.loads((_exports(published) / "recommendations_latest.json").read_text())["file"] == (
            "recommendations_2026-05-02.csv"
        )
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # the lock died with its holder: the rollback now goes through
    res = runner.invoke(app, ["rollback", str(published)], env={"RECCTL_LOCK_WAIT": "0"})
    assert res.exit_code == 0, res.output
    assert json.loads((_exports(published) / "recommendations_latest.json").read_text())["file"] == (
        "recommendations_2026-05-01.csv"
    )
