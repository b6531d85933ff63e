"""The service's parts without HTTP: raw layouts, bounded memory, crash recovery, missing extra, OpenAPI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recctl.config.data import InteractionSource
from recctl.errors import ConfigError
from recctl.service.eventlog import EventLog, EventLogBusy, list_segments
from recctl.service.layout import EventLayout
from recctl.service.metrics import Metrics
from recctl.service.recent import LiveEvent, RecentEvents, event_key

WHEN = dt.datetime(2026, 3, 1, 12, 30, 5, 250000, tzinfo=dt.timezone.utc)


def _source(**kw: object) -> InteractionSource:
    base = {"path": "x.csv", "columns": {"user_id": "cust", "item_id": "sku", "event": "ev", "timestamp": "ts"}}
    return InteractionSource.model_validate({**base, **kw})


@pytest.mark.parametrize(
    ("fmt", "tz", "expected"),
    [
        ("%d/%m/%Y %H:%M:%S", "Europe/London", "01/03/2026 12:30:05"),
        ("%Y-%m-%d %H:%M", "Asia/Tokyo", "2026-03-01 21:30"),
        ("auto", "UTC", "2026-03-01T12:30:05.250000Z"),
        ("epoch_ms", "UTC", "1772368205250"),
    ],
)
def test_time_is_written_in_the_shops_format(fmt: str, tz: str, expected: str) -> None:
    layout = EventLayout(_source(timestamp_format=fmt, timezone=tz))
    assert layout.render("u", "i", "view", WHEN, None).fields[3] == expected


def test_events_round_trip_through_the_raw_layout(tmp_path: Path) -> None:
    layout = EventLayout(_source(event_map={"pv": "view", "buy": "purchase", "order": "purchase"}))
    assert layout.events() == ["purchase", "view"]
    raw = layout.render('a,"b', "i 1", "purchase", WHEN, 2.0)
    assert raw.fields[2] == "buy"
    data = layout.file_header() + layout.line(raw, WHEN)
    assert data.decode().splitlines()[0] == "cust,sku,ev,ts,recctl_received_at"
    (back,) = layout.parse(data)
    assert (back.user_id, back.item_id, back.event, back.fields) == ('a,"b', "i 1", "purchase", raw.fields)
    with pytest.raises(ValueError, match="unknown event 'hug'"):
        layout.render("u", "i", "hug", WHEN, None)
    jsonl = EventLayout(_source(format="jsonl"))
    (again,) = jsonl.parse(jsonl.line(jsonl.render("u", "i", "view", WHEN, None), WHEN))
    assert again.user_id == "u" and jsonl.suffix == ".jsonl"


def test_layouts_the_log_cannot_hold_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data.interactions.format: parquet"):
        EventLayout(_source(format="parquet"))
    with pytest.raises(ConfigError, match=r"data.interactions.require.0.column: 'price'"):
        EventLayout(_source(require=[{"column": "price", "op": ">", "value": 0}]))


def test_memory_stays_bounded_under_a_flood_of_new_users() -> None:
    recent = RecentEvents(max_users=1000, max_recent=5)
    for i in range(20_000):
        for j in range(3 if i % 2 else 8):
            recent.add(f"user-{i}", LiveEvent(f"item-{j}", "view", 1, event_key([str(i), str(j)])))
    assert len(recent) == 1000 and recent.n_events <= 5000
    assert recent.n_evicted_users == 19_000
    assert [e.item_id for e in recent.get("user-19998")] == ["item-3", "item-4", "item-5", "item-6", "item-7"]
    assert recent.get("user-0") == []
    held = recent.n_events
    assert recent.forget_segments({2}) == 0 and recent.forget_segments({1}) == held and len(recent) == 0


def test_a_crash_leaves_only_acknowledged_lines(tmp_path: Path) -> None:
    layout = EventLayout(_source())
    log = EventLog(tmp_path / "events", layout)
    log.open()

    async def write() -> None:
        await log.append([layout.render("u1", "i1", "view", WHEN, None)], WHEN)
        await log.append([layout.render("u2", "i2", "view", WHEN, None)], WHEN)

    asyncio.run(write())
    (seg,) = list_segments(tmp_path / "events")
    assert not seg.closed and seg.path.name == "events-000001.csv.open"
    with open(seg.path, "ab") as f:  # a write cut short by the crash (never acknowledged)
        f.write(b"u3,i3,vi")
    log._io.shutdown()  # the process "dies": lock released with its file descriptor
    import os

    os.close(log._lock_fd)  # type: ignore[arg-type]
    restarted = EventLog(tmp_path / "events", layout)
    (closed,) = restarted.open()
    assert closed.closed and closed.path.name == "events-000001.csv"
    assert [e.user_id for e in layout.parse(closed.path.read_bytes())] == ["u1", "u2"]
    with pytest.raises(EventLogBusy, match="pid"):
        EventLog(tmp_path / "events", layout).open()


def test_metrics_render_prometheus_text() -> None:
    m = Metrics()
    m.describe("x_total", "counter", "Things.")
    m.inc("x_total", route='/a"b')
    m.observe("lat_seconds", 0.003, route="/a")
    text = m.render()
    assert '# TYPE x_total counter\nx_total{route="/a\\"b"} 1' in text
    assert (
        'lat_seconds_bucket{route="/a",le="0.005"} 1' in text and 'lat_seconds_bucket{route="/a",le="0.002"} 0' in text
    )


def test_missing_extra_exits_6_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, quickstart_config: Path
) -> None:
    import importlib.util

    from recctl.cli.main import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    result = CliRunner().invoke(app, ["serve", str(quickstart_config)])
    assert result.exit_code == 6
    assert "pip install 'recctl[serve]'" in " ".join(result.output.split())


def _shape(doc: dict) -> dict:
    """What clients rely on, not how a FastAPI version spells it: paths, methods, params, fields."""
    paths = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = sorted((p["name"], p["in"], bool(p.get("required"))) for p in op.get("parameters", []))
            body = json.dumps(op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema"))
            paths[f"{method.upper()} {path}"] = (params, body, sorted(op.get("responses", {})))
    schemas = {
        name: (sorted(s.get("properties", {})), sorted(s.get("required", [])))
        for name, s in doc["components"]["schemas"].items()
    }
    return {"paths": paths, "schemas": schemas}


def test_committed_openapi_schema_is_current(repo_root: Path) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'recctl[serve]'")
    from recctl.config import load_config
    from recctl.service.openapi import openapi_schema

    committed = json.loads((repo_root / "docs" / "openapi.json").read_text())
    current = openapi_schema(load_config(repo_root / "configs" / "quickstart.yaml", check_files=False))
    assert _shape(committed) == _shape(current), (
        "docs/openapi.json is stale: run `python -m recctl.service.openapi > docs/openapi.json`"
    )


def test_a_second_event_log_writer_is_refused_and_an_unwritable_log_raises(tmp_path: Path) -> None:
    # Service.start maps these to recctl.errors.BusyError (exit 8) / MachineError (exit 9);
    # the CLI's exit 8 for a busy port is tests/service/test_http.py's
    layout = EventLayout(_source())
    first = EventLog(tmp_path / "events", layout)
    first.open()
    with pytest.raises(EventLogBusy):
        EventLog(tmp_path / "events", layout).open()
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(OSError):
        EventLog(blocked / "events", layout).open()
