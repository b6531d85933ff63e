"""The pipeline contract through the CLI: fresh upstreams, exclusive and owned workdirs, named faults.

One small pipeline (popularity + item-kNN on the sample shop) is built once; each test works on
its own copy of it, so no test sees another's changes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from tests.conftest import copy_workdir, write_config

runner = CliRunner()
pytestmark = pytest.mark.slow

MODELS = {"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 20}}
RECOMMEND = {"model": "knn", "k": 5, "fallback": ["popular"]}


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: Any) -> Any:
    result = invoke(*args)
    assert result.exit_code == 0, f"recctl {' '.join(map(str, args))}: {result.output}"
    return result


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished pipeline (run --skip tune); tests copy it, never change it."""
    base = tmp_path_factory.mktemp("contract")
    config = write_config(base, models=MODELS, recommend=RECOMMEND, tune=None, evaluate={"k": [5], "n_bootstrap": 0})
    ok("run", config, "-q")
    return base


@pytest.fixture
def shop(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built pipeline; returns its config path."""
    return copy_workdir(built / "quickstart.yaml", tmp_path)


def edit(config: Path, change: Any) -> Path:
    raw = yaml.safe_load(config.read_text())
    change(raw)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def statuses(config: Path) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in json.loads(ok("info", config, "--json").stdout)["stages"]}


def test_a_copied_workdir_is_up_to_date(shop: Path) -> None:
    status = statuses(shop)
    assert all(status[s] == "up to date" for s in ("ingest", "preprocess", "train", "evaluate", "serve-export")), status


def test_changed_model_kind_is_refused_by_recommend_and_export(shop: Path) -> None:
    edit(shop, lambda raw: raw["models"].update(knn={"kind": "popularity"}))
    for command in ("recommend", "serve-export", "evaluate"):
        res = invoke(command, shop)
        assert res.exit_code == 5, (command, res.output)
        assert "train is stale: models.knn.kind, models.knn.neighbors changed" in flat(res.stderr), res.stderr
        assert "recctl train" in res.stderr and "recctl run" in res.stderr
    status = statuses(shop)
    assert status["train"].startswith("stale: models.knn.kind")
    for stage in ("evaluate", "recommend", "serve-export"):
        assert status[stage].startswith("stale: train is stale: models.knn.kind")
    assert status["ingest"] == status["preprocess"] == "up to date"


def test_changed_preprocessing_is_refused_downstream(shop: Path) -> None:
    edit(shop, lambda raw: raw["preprocess"].update(min_user_interactions=3))
    for command in ("train", "evaluate", "recommend", "serve-export"):
        res = invoke(command, shop)
        assert res.exit_code == 5, (command, res.output)
        assert "preprocess is stale: preprocess.min_user_interactions changed" in flat(res.stderr)
    # run re-runs exactly from preprocess on
    report = json.loads(ok("run", shop, "--json").stdout)
    ran = {s["stage"]: s["status"] for s in report["stages"]}
    assert ran["ingest"] == "skipped" and ran["preprocess"] == ran["train"] == ran["serve-export"] == "ran"
    assert all(v == "up to date" for k, v in statuses(shop).items() if k in ran and ran[k] != "not configured")


def test_raw_input_edited_in_place_or_repointed(shop: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(shop.read_text())
    source = Path(raw["data"]["interactions"]["path"])
    copy = tmp_path / "events.csv"
    shutil.copy(source, copy)
    edit(shop, lambda r: r["data"]["interactions"].update(path=str(copy)))
    res = invoke("preprocess", shop)
    assert res.exit_code == 5 and "ingest is stale: data.interactions.path changed" in flat(res.stderr)
    # same path as recorded, content edited in place
    ok("ingest", shop, "-q")
    with copy.open("a") as handle:
        handle.write(copy.read_text().splitlines()[1] + "\n")
    res = invoke("preprocess", shop)
    assert res.exit_code == 5, res.output
    assert f"ingest is stale: raw input {copy} changed" in flat(res.stderr)
    manifest = json.loads((tmp_path / "work" / "ingest" / "manifest.json").read_text())
    assert any(i["path"] == str(copy) and len(i["sha256"]) == 64 for i in manifest["inputs"])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("summary", None, "field 'summary' is null, expected an object"),
        ("schema_version", "1", "schema_version is '1'"),
        ("outputs", "x", "field 'outputs' is a string"),
    ],
)
def test_hand_edited_manifest_exits_5_naming_what_to_rerun(shop: Path, field: str, value: Any, expected: str) -> None:
    path = shop.parent / "work" / "train" / "manifest.json"
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    res = invoke("evaluate", shop)
    assert res.exit_code == 5, res.output
    assert expected in flat(res.stderr) and "recctl train" in res.stderr
    assert "bug" not in res.output
    info = invoke("info", shop, "--json")
    assert info.exit_code == 0
    train = next(s for s in json.loads(info.stdout)["stages"] if s["stage"] == "train")
    assert train["status"].startswith("corrupt")


def test_crafted_model_with_rewritten_manifest_exits_5_and_runs_nothing(shop: Path, tmp_path: Path) -> None:
    import hashlib
    import os
    import pickle

    from recctl.artifacts import model_stamp

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, (f"touch {marker}",))

    train = shop.parent / "work" / "train"
    manifest = json.loads((train / "manifest.json").read_text())
    # every knn file (the train-split one evaluate reads, the all-data one recommend serves)
    for rec in manifest["outputs"]:
        if rec["path"].startswith("knn."):
            with (train / rec["path"]).open("wb") as handle:
                pickle.dump(model_stamp(), handle)
                pickle.dump(Payload(), handle)
            rec["sha256"] = hashlib.sha256((train / rec["path"]).read_bytes()).hexdigest()
            rec["bytes"] = (train / rec["path"]).stat().st_size
    (train / "manifest.json").write_text(json.dumps(manifest))
    for command in ("evaluate", "recommend", "run"):
        res = invoke(command, shop)
        assert res.exit_code == 5, (command, res.output)
        assert "refused" in res.stderr and "system" in res.stderr
        assert not marker.exists()


def test_truncated_parquet_with_a_rewritten_hash_exits_5(shop: Path) -> None:
    import hashlib

    ingest = shop.parent / "work" / "ingest"
    target = ingest / "interactions.parquet"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    manifest = json.loads((ingest / "manifest.json").read_text())
    for rec in manifest["outputs"]:
        if rec["path"] == "interactions.parquet":
            rec["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
            rec["bytes"] = target.stat().st_size
    (ingest / "manifest.json").write_text(json.dumps(manifest))
    res = invoke("preprocess", shop)
    assert res.exit_code == 5, res.output
    assert "is corrupt" in flat(res.stderr) and "recctl ingest" in res.stderr


def test_a_reexport_deletes_the_previous_bundle_without_reading_it(shop: Path, hashed: list[str]) -> None:
    ok("serve-export", shop, "-q")  # the copy's files have new identities: this export records its own
    hashed.clear()
    ok("serve-export", shop, "-q")
    old = [p for p in hashed if ".export.old-" in p]
    # only the old manifest itself is read; its bundle files are known by identity (hard-linked
    # into a version after they were recorded: StageRun took the ctime that link gave them)
    assert [Path(p).name for p in old] == ["manifest.json"], old
    assert not (Path(yaml.safe_load(shop.read_text())["workdir"]) / ".recctl" / "kept").exists()
