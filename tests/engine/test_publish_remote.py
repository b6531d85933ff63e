"""Publishing into a URI export directory (object stores, HDFS): staging prefix, validation, pointer last.

Exercised with a ``file://`` URI through the Hadoop FileSystem API of the shared session (the
same calls an ``s3a://`` or ``hdfs://`` directory goes through); failures are injected between
staging and the pointer, and in validation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from recctl.artifacts import sha256_file
from recctl.cli.main import app
from recctl.config import load_config
from recctl.errors import ConfigError, ExportValidationError
from recctl.export import ValidationReport
from tests.engine.conftest import LOCAL_ENGINE, engine_config, needs_spark


def _setup(runs: dict[str, Path], tmp_path: Path, **export: Any) -> tuple[Path, Path]:
    store = tmp_path / "store"
    sections = {"format": "csv", "directory": store.as_uri(), "basename": "recs", "latest": "json", **export}
    config = engine_config(tmp_path, LOCAL_ENGINE, "remote", export=sections)
    shutil.copytree(runs["spark"], config.parent / "work")
    return config, store


def _pointer(store: Path) -> dict[str, Any]:
    return json.loads((store / "recs_latest.json").read_text(encoding="utf-8"))


@needs_spark
def test_publication_stages_validates_then_commits_the_pointer(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recctl.engine.spark.publish as publish
    from recctl.stages.export import run_serve_export

    config, store = _setup(runs, tmp_path, keep=1)
    cfg = load_config(config)
    manifest = run_serve_export(cfg, date="2026-12-01")
    first = _pointer(store)
    main = store / first["file"]
    assert first["file"].startswith("published/") and main.name == "recs_2026-12-01.csv"
    assert sha256_file(main) == first["sha256"] and main.stat().st_size == first["bytes"]
    # byte for byte the file a local export directory gets from the same lists
    local_dir = runs["spark"].parent / "exports"
    assert first["sha256"] == sha256_file(local_dir / _pointer(local_dir)["file"])
    assert pl.read_csv(main, infer_schema=False).height == first["rows"] > 0
    assert manifest.summary["published"][0]["path"] == f"{store.as_uri()}/{first['file']}"
    assert not list((store / "_staging").iterdir())
    assert not list(cfg.workdir_path.glob(".export-remote.*"))  # local copies removed (kept in versions/)

    # a run killed after staging, before the pointer: nothing of it stays, the pointer is untouched
    stale = store / "_staging" / "20200101T000000-deadbeef"
    stale.mkdir(parents=True)
    (stale / "recs_2020-01-01.csv").write_text("half a file")
    os.utime(stale, (time.time() - 3 * 86_400,) * 2)

    def crash(*args: Any) -> None:
        raise RuntimeError("driver killed before the pointer moved")

    monkeypatch.setattr(publish, "_commit_pointer", crash)
    with pytest.raises(RuntimeError, match="before the pointer"):
        run_serve_export(cfg, date="2026-12-02")
    assert _pointer(store) == first and sha256_file(main) == first["sha256"]
    assert [p.name for p in (store / "published").iterdir()] == [main.parent.name]
    assert [p.name for p in (store / "_staging").iterdir()] == [stale.name]  # only the killed run's

    # validation failing on the staged object: exit 7, nothing published
    monkeypatch.undo()
    monkeypatch.setattr(publish, "validate_export", lambda *a, **k: ValidationReport(problems=["3 users short"]))
    with pytest.raises(ExportValidationError, match="3 users short") as err:
        run_serve_export(cfg, date="2026-12-02")
    assert err.value.exit_code == 7 and f"{first['file']} is still the latest file" in str(err.value)
    assert _pointer(store) == first

    # the next good run commits; keep: 1 prunes the first run's prefix, the day-old staging is swept;
    # its run name sorts BEFORE the first's (same second under the test clock, a lower random
    # suffix): the run just committed must still count as the newest
    monkeypatch.undo()
    first_run = dt.datetime.strptime(first["file"].split("/")[1][:15], "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    monkeypatch.setattr(publish.clock, "now", lambda: first_run)
    monkeypatch.setattr(publish.uuid, "uuid4", lambda: uuid.UUID(int=0))
    run_serve_export(cfg, date="2026-12-02")
    second = _pointer(store)
    assert second["file"].endswith("recs_2026-12-02.csv") and second["sha256"] == sha256_file(store / second["file"])
    assert [p.name for p in (store / "published").iterdir()] == [Path(second["file"]).parent.name]
    assert not list((store / "_staging").iterdir())


def test_uri_export_directory_needs_spark_and_a_json_pointer(tmp_path: Path) -> None:
    uri = (tmp_path / "store").as_uri()
    config = engine_config(
        tmp_path,
        None,
        "local-uri",
        export={"directory": uri, "latest": "symlink", "delta": True, "related": {"model": "knn", "k": 5}},
    )
    with pytest.raises(ConfigError) as err:
        load_config(config)
    text = str(err.value)
    assert "export.directory" in text and "engine: {kind: spark" in text
    assert "set export.latest: json" in text and "export.delta: false" in text
    assert "remove export.related" in text


def test_rollback_refuses_a_uri_export_directory(tmp_path: Path) -> None:
    uri = (tmp_path / "store").as_uri()
    export = {"directory": uri, "latest": "json", "delta": False, "related": None}
    config = engine_config(tmp_path, LOCAL_ENGINE, "rollback-uri", export=export)
    result = CliRunner().invoke(app, ["rollback", str(config)])
    assert result.exit_code == 3, result.output
    message = " ".join(result.output.split())
    assert f"export.directory: '{uri}' is a URI; recctl rollback moves pointers in local folders only" in message
    assert not (tmp_path / "store").exists()  # nothing written
