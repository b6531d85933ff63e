"""docs/python.md runs as written: every ```python block, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, write_config

pytestmark = pytest.mark.slow

DOC = REPO_ROOT / "docs" / "python.md"


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a Markdown text."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_documented_session_runs_on_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    raw = yaml.safe_load((REPO_ROOT / "configs" / "quickstart.yaml").read_text())
    models = raw["models"]
    for spec in models.values():
        if spec["kind"] == "lightfm":
            spec["epochs"] = 5  # the documented calls, on a lighter training and evaluation
    evaluate = {**raw["evaluate"], "k": [10], "n_bootstrap": 100, "report": False}
    config = write_config(tmp_path, models=models, evaluate=evaluate)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks, start=1):
        code = block.replace('"configs/quickstart.yaml"', repr(str(config)))
        try:
            exec(compile(code, f"{DOC.name} block {number}", "exec"), namespace)
        except Exception as exc:  # name the block that broke
            raise AssertionError(f"docs/python.md block {number} failed: {exc!r}\n{block}") from exc
    assert namespace["best"] in ("lightfm_warp", "lightfm_bpr", "popular")
