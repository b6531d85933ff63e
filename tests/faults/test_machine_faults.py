"""Faults of the machine are named (exit 9, the path), never "a bug", never blamed on the input.

The real faults need a small file system of their own: a tmpfs mounted for the test (root only;
the tests skip with a reason elsewhere). The mapping itself is also tested without mounting.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.errors import DataError, MachineError, machine_fault
from tests.conftest import write_config

pytestmark = [pytest.mark.faults, pytest.mark.slow]
runner = CliRunner()


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Any]:
    """``mount(size)`` -> a fresh tmpfs of that size (unmounted after the test)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _config(tmp_path: Path, workdir: Path) -> Path:
    config = write_config(
        tmp_path, models={"popular": {"kind": "popularity"}}, tune=None, recommend=None, experiment=None
    )
    raw = yaml.safe_load(config.read_text())
    raw["workdir"] = str(workdir)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def test_disk_full_during_ingest_exits_9_naming_the_disk_not_the_input(tmp_path: Path, small_fs: Any) -> None:
    disk = small_fs("400k")
    config = _config(tmp_path, disk / "work")
    res = invoke("ingest", config)
    assert res.exit_code == 9, res.output
    text = flat(res.stderr)
    assert f"{disk / 'work'}: no space left on the device" in text  # the disk refused, not the input
    assert "delimiter" not in text and "bug" not in text
    leftovers = [p.name for p in (disk / "work").iterdir() if ".partial-" in p.name or p.name.startswith("recctl-")]
    assert not leftovers, leftovers


def test_read_only_workdir_exits_9_and_keeps_the_outputs(tmp_path: Path, small_fs: Any) -> None:
    disk = small_fs("64m")
    config = _config(tmp_path, disk / "work")
    assert invoke("ingest", config, "-q").exit_code == 0
    before = (disk / "work" / "ingest" / "manifest.json").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    try:
        res = invoke("preprocess", config)
        assert res.exit_code == 9, res.output
        assert "read-only" in flat(res.stderr) and str(disk) in flat(res.stderr)
        assert invoke("info", config).exit_code == 0  # reading still works
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    assert (disk / "work" / "ingest" / "manifest.json").read_bytes() == before


def test_a_reader_that_blames_the_input_for_a_full_disk_is_overruled() -> None:
    # what a Parquet writer says when the disk fills, wrapped by a reader as a data error
    cause = OSError("failed to write: No space left on device (os error 28)")
    try:
        try:
            raise cause
        except OSError as exc:
            raise DataError("events.csv: could not parse; check data.interactions.delimiter") from exc
    except DataError as wrapped:
        fault = machine_fault(wrapped)
    assert isinstance(fault, MachineError) and fault.exit_code == 9
    assert "no space left" in str(fault)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM])
def test_machine_errnos_name_the_path(code: int) -> None:
    fault = machine_fault(OSError(code, os.strerror(code), "/srv/shop/work/train/x.pkl"))
    assert fault is not None and str(fault).startswith("/srv/shop/work/train/x.pkl: ")


def test_a_vanished_workdir_is_a_machine_fault_not_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from recctl.stages import _common

    config = _config(tmp_path, tmp_path / "work")
    assert invoke("ingest", config, "-q").exit_code == 0
    real = _common.swap_in

    def vanish(staging: Path, final: Path) -> None:
        shutil.rmtree(tmp_path / "work")  # someone deletes the workdir while the stage runs
        real(staging, final)

    monkeypatch.setattr(_common, "swap_in", vanish)
    res = invoke("preprocess", config)
    assert res.exit_code == 9, res.output
    assert "vanished" in flat(res.stderr) and "bug" not in res.output
