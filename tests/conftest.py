"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real datasets); skips the test when it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (only present on the team's machines)")
    return SHARED_DATA


def write_config(tmp_path: Path, base: str = "quickstart.yaml", **overrides: Any) -> Path:
    """Copy a shipped config into ``tmp_path`` with absolute data paths and a private workdir.

    ``overrides`` replace top-level sections (a value of ``None`` deletes the section).
    """
    src = REPO_ROOT / "configs" / base
    raw = yaml.safe_load(src.read_text())
    base_dir = src.parent

    def absolute(path: str | list[str]) -> str | list[str]:
        if isinstance(path, list):
            return [absolute(p) for p in path]  # type: ignore[misc]
        return str((base_dir / path).resolve())

    data = raw["data"]
    sources = data["interactions"] if isinstance(data["interactions"], list) else [data["interactions"]]
    for src_cfg in sources:
        src_cfg["path"] = absolute(src_cfg["path"])
    for key in ("items", "users"):
        if data.get(key):
            data[key]["path"] = absolute(data[key]["path"])
    raw["workdir"] = str(tmp_path / "work")
    for key, value in overrides.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    out = tmp_path / base
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


@pytest.fixture
def quickstart_config(tmp_path: Path) -> Path:
    """The quickstart config, pointed at a workdir inside ``tmp_path``."""
    return write_config(tmp_path)
