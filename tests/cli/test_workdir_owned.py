"""Exclusive and never destructive: the workdir lock, the ownership marker, recorded-only deletion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from tests.conftest import write_config

runner = CliRunner()
pytestmark = pytest.mark.slow

MODELS = {"popular": {"kind": "popularity"}}
RECOMMEND = {"model": "popular", "k": 5, "fallback": []}


def invoke(*args: Any, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, [str(a) for a in args], env=env)


def flat(text: str) -> str:
    return " ".join(text.split())


def _config(tmp_path: Path, **extra: Any) -> Path:
    return write_config(
        tmp_path, models=MODELS, recommend=RECOMMEND, tune=None, evaluate={"k": [5], "n_bootstrap": 0}, **extra
    )


@pytest.mark.parametrize("folder", ["train", "export", "ingest", "recommend", "notes.txt"])
def test_a_folder_recctl_did_not_create_is_refused_and_untouched(tmp_path: Path, folder: str) -> None:
    config = _config(tmp_path)
    work = tmp_path / "work"
    (work / folder).parent.mkdir(parents=True, exist_ok=True)
    if "." in folder:
        (work / folder).write_text("the shop's notes\n")
    else:
        (work / folder).mkdir()
        (work / folder / "precious.csv").write_text("a,b\n1,2\n")
    before = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    res = invoke("ingest", config)
    assert res.exit_code == 3, res.output
    assert "already holds files recctl did not write" in flat(res.stderr)
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == before


def test_an_empty_folder_is_adopted_and_marked(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "work").mkdir()
    assert invoke("ingest", config, "-q").exit_code == 0
    marker = json.loads((tmp_path / "work" / ".recctl" / "workdir.json").read_text())
    assert marker["created_by"] == "recctl"


def test_files_recctl_did_not_write_are_kept_not_deleted(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert invoke("ingest", config, "-q").exit_code == 0
    note = tmp_path / "work" / "ingest" / "notes.txt"
    note.write_text("mine\n")
    assert invoke("ingest", config, "-q").exit_code == 0
    assert not note.exists()
    kept = list((tmp_path / "work" / ".recctl" / "kept").rglob("notes.txt"))
    assert len(kept) == 1 and kept[0].read_text() == "mine\n"
    # recorded outputs of the replaced run were deleted, so only the note is kept
    assert [p.name for p in kept[0].parent.iterdir()] == ["notes.txt"]


def test_debris_of_killed_runs_is_removed_by_the_next_command(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert invoke("ingest", config, "-q").exit_code == 0
    work = tmp_path / "work"
    (work / ".train.partial-999999").mkdir()
    (work / ".train.partial-999999" / "popular.pkl").write_bytes(b"half")
    (work / "recctl-ingest-abc123").mkdir()
    (work / "recctl-ingest-abc123" / "raw.csv").write_bytes(b"x" * 1000)
    (work / ".tune-checkpoint").mkdir()
    (work / ".tune-checkpoint" / ".k.parquet.abcdefgh.tmp").write_bytes(b"half")
    # killed between the two renames of a swap: the old preprocess stage is aside, none in place
    ingest_manifest = (work / "ingest" / "manifest.json").read_bytes()
    os.replace(work / "ingest", work / ".ingest.old-999999-1")
    res = invoke("preprocess", config, "-q")
    assert res.exit_code == 0, res.output
    assert "removed what interrupted runs left" in flat(res.stderr)
    names = [p.name for p in work.iterdir()] + [p.name for p in (work / ".tune-checkpoint").iterdir()]
    assert not [n for n in names if ".partial-" in n or ".old-" in n or n.startswith("recctl-ingest-") or ".tmp" in n]
    assert (work / "ingest" / "manifest.json").read_bytes() == ingest_manifest


def _hold_lock(work: Path) -> subprocess.Popen[str]:
    code = (
        "import sys, time; from pathlib import Path; from recctl.workdir import exclusive_dir\n"
        f"with exclusive_dir(Path({str(work)!r}), wait_s=0):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_exits_8_naming_the_holder_and_info_never_waits(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert invoke("ingest", config, "-q").exit_code == 0
    holder = _hold_lock(tmp_path / "work")
    try:
        res = invoke("preprocess", config, env={"RECCTL_LOCK_WAIT": "0"})
        assert res.exit_code == 8, res.output
        assert f"pid {holder.pid}" in flat(res.stderr) and "workdir busy" in flat(res.stderr)
        assert invoke("info", config, "--json").exit_code == 0  # read-only: no lock, no wait
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # the lock died with its process: no stale lock file to clean up
    assert invoke("preprocess", config, "-q", env={"RECCTL_LOCK_WAIT": "0"}).exit_code == 0


def test_a_writer_waits_for_the_lock_when_asked(tmp_path: Path) -> None:
    config = _config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["lock_wait_s"] = 30
    config.write_text(yaml.safe_dump(raw))
    assert invoke("ingest", config, "-q").exit_code == 0
    holder = _hold_lock(tmp_path / "work")
    t0 = time.monotonic()
    killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1); os.kill({holder.pid}, 9)"])
    try:
        assert invoke("preprocess", config, "-q").exit_code == 0
        assert time.monotonic() - t0 > 0.5  # it really waited for the holder to die
    finally:
        killer.wait()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_export_keep_deletes_only_files_recctl_published(tmp_path: Path) -> None:
    config = _config(tmp_path, export={"keep": 1, "bundle": False})
    assert invoke("run", config, "-q").exit_code == 0
    exports = tmp_path / "work" / "exports"
    theirs = exports / "recommendations_2001-01-01.csv"  # the shop's own file, with a dated name
    theirs.write_text("user_id,rank\n")
    for date in ("2026-06-20", "2026-06-21"):
        res = invoke("serve-export", config, "--date", date, "-q")
        assert res.exit_code == 0, res.output
    names = sorted(p.name for p in exports.iterdir() if not p.name.startswith("."))
    assert "recommendations_2001-01-01.csv" in names  # never deleted
    assert "recommendations_2026-06-20.csv" not in names and "recommendations_2026-06-21.csv" in names
    # a file of the name recctl is about to publish, which recctl did not write: refused, untouched
    clash = exports / "recommendations_2026-06-22.csv"
    clash.write_text("the shop's\n")
    res = invoke("serve-export", config, "--date", "2026-06-22")
    assert res.exit_code == 3 and "recctl did not publish it" in flat(res.stderr)
    assert clash.read_text() == "the shop's\n"
