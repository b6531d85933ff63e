"""docs/config.md is generated from the config models and must stay current."""

from __future__ import annotations

from pathlib import Path

from recctl.config.reference import render_reference
from recctl.models.registry import model_kinds

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_config_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/config.md is stale: run `python -m recctl.config.reference > docs/config.md`"
    )


def test_reference_names_every_section_key_and_model_kind() -> None:
    text = render_reference()
    for heading in ("## `data.interactions`", "## `data.interactions.lookups`", "## `preprocess.split`", "## `tune`"):
        assert heading in text
    for key in ("`has_header`", "`column_names`", "`sheet`", "`lookups`", "`timestamp_format`", "`refit_on_all_data`"):
        assert key in text
    for kind in model_kinds():
        assert f"### kind `{kind}`" in text
