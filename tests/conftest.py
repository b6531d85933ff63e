"""Fixtures shared by every test area."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from recctl import artifacts, clock
from tests.spark_session import spark  # noqa: F401 - the one SparkSession of the test session

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


#: the instant the tests' clock starts at: noon UTC, so the suite never crosses a midnight
TEST_EPOCH = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)


def fixed_start_clock(start: dt.datetime = TEST_EPOCH) -> clock.Clock:
    """A clock that starts at ``start`` and advances with real (monotonic) time."""
    t0 = time.monotonic()
    return lambda: start + dt.timedelta(seconds=time.monotonic() - t0)


@pytest.fixture(scope="session", autouse=True)
def _injected_clock() -> Iterator[None]:
    """Every test reads recctl's clock from :data:`TEST_EPOCH` on, never the wall clock's date."""
    previous = clock.set_clock(fixed_start_clock())
    yield
    clock.set_clock(previous)


@pytest.fixture
def set_now() -> Iterator[Any]:
    """Call ``set_now(datetime)`` to move recctl's clock (restored after the test)."""
    previous = clock.set_clock(None)
    clock.set_clock(previous)

    def install(when: dt.datetime) -> None:
        clock.set_clock(fixed_start_clock(when))

    yield install
    clock.set_clock(previous)


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths sha256_file reads, in order (every hashing path goes through artifacts.sha256_file)."""
    calls: list[str] = []
    real = artifacts.sha256_file

    def counting(path: Any) -> str:
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(artifacts, "sha256_file", counting)
    return calls


@pytest.fixture(params=["compiled", "numpy"])
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through recctl's compiled kernels and through their numpy / polars fallbacks.

    ``compiled`` skips when the extension is not built (``tests/serving/test_ranking.py``'s
    ``test_compiled_selection_is_built`` is the test that fails then).
    """
    from recctl import kernels

    if request.param == "compiled" and kernels.compiled("select_f32") is None:
        pytest.skip(f"recctl._kernels is not built ({kernels.missing_reason()}): only the fallbacks run")
    if request.param == "numpy":
        monkeypatch.setenv(kernels.KERNELS_ENV, "numpy")
    return str(request.param)


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
    related = (raw.get("export") or {}).get("related")
    if related and "models" in overrides and related.get("model") not in (raw.get("models") or {}):
        # the shipped config's related products name one of its own models; tests that bring
        # their own models (and do not configure related products) drop that section
        raw["export"] = {k: v for k, v in raw["export"].items() if k != "related"}
    out = tmp_path / base
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def copy_workdir(config: Path, dest: Path) -> Path:
    """Copy ``config``'s workdir into ``dest/work`` and write a config pointing at the copy.

    For tests that change a pipeline a module-scoped fixture built: they work on their own copy
    (manifests record workdir files relative to the workdir, so the copy is fresh as it is).
    """
    import shutil

    raw = yaml.safe_load(config.read_text())
    shutil.copytree(Path(raw["workdir"]), dest / "work", symlinks=True)
    raw["workdir"] = str(dest / "work")
    out = dest / f"copy-{config.name}"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


@pytest.fixture
def quickstart_config(tmp_path: Path) -> Path:
    """The quickstart config, pointed at a workdir inside ``tmp_path``."""
    return write_config(tmp_path)


@pytest.fixture(scope="session")
def live_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published sample shop with an A/B variant per live-scored model kind (tests/live_shop.py)."""
    from tests.live_shop import build_live_shop

    return build_live_shop(tmp_path_factory.mktemp("live-shop"))
