"""Freshness of remote raw inputs: the Hadoop file status stands for the bytes (not read on the driver)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from recctl.config import load_config
from recctl.graph import why_stale
from tests.conftest import REPO_ROOT
from tests.engine.conftest import LOCAL_ENGINE, engine_config


def test_remote_inputs_are_fingerprinted_by_file_status(spark: Any, tmp_path: Path) -> None:
    from recctl.stages.ingest import run_ingest

    raw = tmp_path / "raw"
    raw.mkdir()
    events = raw / "events-1.csv"
    shutil.copy(REPO_ROOT / "sample_data" / "events.csv", events)
    config = engine_config(tmp_path, LOCAL_ENGINE, "remote-in")
    doc = yaml.safe_load(config.read_text())
    doc["data"]["interactions"]["path"] = f"{raw.as_uri()}/events-*.csv"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = load_config(config)
    manifest = run_ingest(cfg)
    uri = events.as_uri()
    (record,) = [r for r in manifest.inputs if r.path.startswith("file://")]
    assert record.path == uri and record.bytes == events.stat().st_size and len(record.sha256) == 64
    assert why_stale(cfg, "ingest") is None  # same file status: fresh, nothing re-read

    stat = events.stat()
    os.utime(events, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # rewritten in place
    reason = why_stale(cfg, "ingest")
    assert reason is not None and uri in reason and "file status" in reason
    os.utime(events, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert why_stale(cfg, "ingest") is None

    (raw / "events-2.csv").write_text(events.read_text().splitlines()[0] + "\n")  # a new file matches the glob
    reason = why_stale(cfg, "ingest")
    assert reason is not None and f"new raw input {(raw / 'events-2.csv').as_uri()}" in reason
