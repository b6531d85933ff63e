"""docs/architecture.md carries the stage graph's table exactly as recctl.graph declares it."""

from __future__ import annotations

from pathlib import Path

from recctl.graph import stage_table_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_architecture_doc_has_the_current_stage_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- stage-graph -->\n", "<!-- /stage-graph -->"
    documented = text[text.index(start) + len(start) : text.index(end)]
    assert documented == stage_table_markdown(), (
        "docs/architecture.md's stage table is stale: paste `python -m recctl.graph` between the markers"
    )
