"""A file's recorded sha256 is reused while its identity (device, inode, size, mtime, ctime) is unchanged.

docs/architecture.md, "The artifact contract": freshness and bookkeeping checks reuse it; an edit
that restores size and mtime still changes ctime; a copy of the same bytes is hashed and accepted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recctl import artifacts
from recctl.artifacts import FileRecord, Manifest, file_record, known_sha256, sha256_file
from recctl.cli.main import app
from tests.conftest import write_config


def _next_tick(path: Path) -> None:
    """Return once the file system stamps a later ctime than ``path``'s (its clock ticks coarsely)."""
    probe = path.with_name(path.name + ".probe")
    then = path.stat().st_ctime_ns
    while True:
        probe.write_bytes(b"x")
        if probe.stat().st_ctime_ns > then:
            probe.unlink()
            return


def test_an_edit_restoring_size_and_mtime_is_still_seen(tmp_path: Path, hashed: list[str]) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"user,item\nu1,i1\n")
    rec = file_record(path, own=True)
    assert rec.identity is not None
    assert known_sha256(path, rec) == rec.sha256 and hashed == [str(path)]  # unchanged: not read again
    before = path.stat()
    _next_tick(path)
    with path.open("r+b") as handle:  # same size, other bytes
        handle.write(b"USER")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert known_sha256(path, rec) == sha256_file(path) != rec.sha256


def test_a_copy_of_the_same_bytes_is_hashed_and_accepted(tmp_path: Path, hashed: list[str]) -> None:
    path = tmp_path / "items.parquet"
    path.write_bytes(b"PAR1 some bytes PAR1")
    rec = file_record(path, own=True)
    copy = tmp_path / "copy"
    shutil.copy2(path, copy)  # same bytes and mtime, another inode
    os.replace(copy, path)
    hashed.clear()
    assert known_sha256(path, rec) == rec.sha256
    assert hashed == [str(path)]


def test_a_manifest_without_identity_reads_and_hashes(tmp_path: Path, hashed: list[str]) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    old = {"path": "a.bin", "sha256": sha256_file(path), "bytes": 3, "rows": None}
    manifest = Manifest.from_dict(
        {**Manifest("ingest", {}, "h", 0, outputs=[FileRecord(**old)]).to_dict(), "outputs": [old]}
    )
    assert manifest.outputs[0].identity is None
    assert "identity" not in manifest.to_dict()["outputs"][0]  # written as before when there is none
    hashed.clear()
    assert known_sha256(path, manifest.outputs[0]) == old["sha256"] and hashed == [str(path)]
    rec = file_record(path, own=True)
    again = Manifest.from_dict(json.loads(json.dumps(Manifest("ingest", {}, "h", 0, outputs=[rec]).to_dict())))
    assert again.outputs[0].identity == rec.identity
    with pytest.raises(ValueError, match="identity is not a list of 5 integers"):
        Manifest.from_dict({**again.to_dict(), "outputs": [{**old, "identity": [1, 2]}]})


def test_a_file_changing_as_it_is_hashed_gets_no_identity(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_bytes(b"a,b\n")
    assert file_record(path).identity is None  # changed within RACY_NS: a raw file still being written
    assert file_record(path, own=True).identity is not None


@pytest.mark.slow
def test_a_no_change_rerun_hashes_less(tmp_path: Path, hashed: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "RACY_NS", 0)  # the sample CSV counts as settled however new the checkout
    runner = CliRunner()
    config = write_config(tmp_path, tune=None)
    for command in ("ingest", "preprocess"):
        result = runner.invoke(app, [command, str(config), "-q"])
        assert result.exit_code == 0, result.output
    work = tmp_path / "work"
    raw = [i["path"] for i in json.loads((work / "ingest" / "manifest.json").read_text())["inputs"]]

    def rerun() -> list[str]:
        hashed.clear()
        result = runner.invoke(app, ["preprocess", str(config), "-q"])
        assert result.exit_code == 0, result.output
        return list(hashed)

    with_identity = rerun()
    # the raw files and ingest's outputs are known by identity: neither the freshness check, the
    # input records nor the deletion of the previous outputs reads them
    assert not set(with_identity) & set(raw)
    # (the old manifest itself is hashed: it records no identity of its own)
    old = [p for p in with_identity if "/ingest/" in p or ("/.preprocess.old-" in p and "manifest.json" not in p)]
    assert not old, with_identity
    # the same re-run over manifests written before identities (all hashed, as before)
    for manifest in work.glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        for where in ("inputs", "outputs"):
            for rec in data[where]:
                rec.pop("identity", None)
        manifest.write_text(json.dumps(data))
    without = rerun()
    assert set(raw) <= set(without)
    assert len(with_identity) < len(without)
    assert sum("interactions.parquet" in p for p in without) == 2  # freshness check + input record
