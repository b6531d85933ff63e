"""The service as a client sees it: the real ``recctl serve`` in a subprocess, spoken to over HTTP."""

from __future__ import annotations

import http.client
import json
import signal
import threading
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest

from recctl.config import load_config
from tests.service.conftest import TOKEN, Service, set_serve

pytestmark = pytest.mark.slow


def _published_lists(config: Path) -> dict[str, list[str]]:
    cfg = load_config(config)
    pointer = json.loads((cfg.workdir_path / "exports" / "recommendations_latest.json").read_text())
    frame = pl.read_csv(cfg.workdir_path / "exports" / pointer["file"], infer_schema=False)
    frame = frame.with_columns(pl.col("rank").cast(pl.Int32)).sort("user_id", "rank")
    return {u[0]: g["item_id"].to_list() for u, g in frame.group_by("user_id", maintain_order=True)}


def test_every_user_gets_the_published_list_and_variant(serve: Service, shop: Path) -> None:
    from recctl.abtest.assign import assign_variants

    cfg = load_config(shop)
    published = _published_lists(shop)
    # every customer the inputs name is served (issue 15), not only the users the models trained on
    ingest = cfg.stage_dir("ingest")
    named = [pl.read_parquet(ingest / "interactions.parquet", columns=["user_id"])["user_id"]]
    if (ingest / "users.parquet").exists():
        named.append(pl.read_parquet(ingest / "users.parquet", columns=["user_id"])["user_id"])
    users = sorted(set(pl.concat(named).cast(pl.String).to_list()))
    variants = dict(zip(users, assign_variants(users, cfg.experiment), strict=True))
    assert len(published) > 1000
    answers = {}
    for start in range(0, len(users), 1000):
        body = {"user_ids": users[start : start + 1000]}
        status, got = serve.request("POST", "/v1/recommendations/batch", body)
        assert status == 200, got
        answers.update({r["user_id"]: r for r in got["results"]})
    for user in users:
        answer = answers[user]
        assert answer["variant"] == variants[user]
        if variants[user] == "holdout":  # held out of the experiment: no list, as in the file
            assert user not in published and answer["items"] == []
        else:
            assert [r["item_id"] for r in answer["items"]] == published[user], user
    # the single-user endpoint answers the same
    for user in list(published)[:20]:
        got = serve.get(f"/v1/recommendations?user_id={quote(user)}")
        assert [r["item_id"] for r in got["items"]] == published[user]
    # exposures are recorded for recctl ab (flushed when the service stops)
    serve.stop()
    from recctl.abtest.outcomes import read_assignments

    exposures = read_assignments(cfg.workdir_path / "events" / "exposures" / "serve-ab.csv")
    assert exposures.height == len(users)
    assert dict(zip(exposures["user_id"], exposures["variant"], strict=True)) == variants


def test_events_are_reflected_at_once_logged_and_ingestible(serve: Service, shop: Path) -> None:
    cfg = load_config(shop)
    published = _published_lists(shop)
    user = next(
        u
        for u, items in published.items()
        if len(items) == 10 and serve.get(f"/v1/recommendations?user_id={quote(u)}")["variant"] == "a"
    )
    before = [r["item_id"] for r in serve.get(f"/v1/recommendations?user_id={quote(user)}")["items"]]
    bought, viewed = before[0], before[5]
    events = [
        {"user_id": user, "item_id": bought, "event": "purchase", "timestamp": "2026-12-04T10:00:00Z", "value": 1},
        {"user_id": user, "item_id": viewed, "event": "view", "timestamp": "2026-12-04T10:01:00+00:00"},
    ]
    assert serve.post_events(events)["accepted"] == 2
    after = serve.get(f"/v1/recommendations?user_id={quote(user)}")
    items = [r["item_id"] for r in after["items"]]
    assert after["events_since_bundle"] == 2 and len(items) == 10
    assert bought not in items  # purchases are excluded (rules.exclude_events)
    assert items != before[1:] + items[-1:]  # the view's neighbours moved in, not only a shift
    # replaying the same batch adds nothing
    assert serve.post_events(events) == {"accepted": 0, "duplicates": 2, "segment": None}
    # an id the bundle never saw, in the kNN variant ("a"; NEW-2 by the salted rule): scored from
    # the item they viewed, not the no-history list another new id in that variant gets
    new = serve.post_events([{"user_id": "NEW-2", "item_id": viewed, "event": "view"}])
    assert new["accepted"] == 1
    visitor = serve.get("/v1/recommendations?user_id=NEW-2")
    assert visitor["known_user"] is False and visitor["events_since_bundle"] == 1 and visitor["variant"] == "a"
    fallback = serve.get("/v1/recommendations?user_id=NEW-3")
    assert fallback["variant"] == "a"
    assert [r["item_id"] for r in visitor["items"]] != [r["item_id"] for r in fallback["items"]]
    serve.stop()  # SIGTERM: graceful (uvicorn re-raises the signal after its shutdown)
    # the stop closed the segment; ingest --append takes it unchanged, and twice adds nothing
    from recctl.stages.ingest import run_ingest

    segments = sorted((cfg.workdir_path / "events").glob("events-*.csv"))
    assert len(segments) == 1 and not list((cfg.workdir_path / "events").glob("*.open"))
    before_rows = pl.read_parquet(cfg.stage_dir("ingest") / "interactions.parquet").height
    manifest = run_ingest(cfg, append=segments)
    assert manifest.summary["appended"][0]["accepted"] == 3
    assert manifest.summary["appended"][0]["rejected"] == 0
    rows = pl.read_parquet(cfg.stage_dir("ingest") / "interactions.parquet")
    assert rows.height == before_rows + 3
    mine = rows.filter(pl.col("user_id") == user, pl.col("item_id") == bought, pl.col("event") == "purchase")
    assert mine.height >= 1
    # the same events logged again later (e.g. a replay after the service forgot them) add no row
    copy = segments[0].with_name("replayed.csv")
    logged = pl.read_csv(segments[0], infer_schema=False)
    logged.with_columns(pl.lit("2030-01-01T00:00:00Z").alias("recctl_received_at")).write_csv(copy)
    again = run_ingest(cfg, append=[copy])
    assert again.summary["appended"][0]["added"] == 0
    assert again.summary["appended"][0]["duplicates"] == 3


def test_bad_requests_are_refused_with_where_and_why(serve: Service, shop: Path) -> None:
    ok = {"events": [{"user_id": "u", "item_id": "P0001", "event": "view"}]}
    assert serve.request("POST", "/v1/events", ok)[0] == 401
    assert serve.request("POST", "/v1/events", ok, token="wrong-token-wrong-token")[0] == 401
    status, body = serve.request("GET", "/v1/recommendations?user_id=C10001&k=100000")
    assert status == 422 and body["detail"][0]["loc"] == ["query", "k"]
    status, body = serve.request("POST", "/v1/recommendations/batch", raw=b'{"user_ids": ["a",')
    assert status == 422 and body["detail"][0]["type"] == "json_invalid" and body["detail"][0]["loc"][0] == "body"
    status, body = serve.request("POST", "/v1/events", {"events": [{"user_id": "u"}]}, token=TOKEN)
    assert status == 422 and body["detail"][0]["loc"] == ["body", "events", 0, "item_id"]
    status, body = serve.request(
        "POST", "/v1/events", {"events": [{"user_id": "u", "item_id": "P1", "event": "hug"}]}, token=TOKEN
    )
    assert status == 422 and "hug" in body["error"] and "purchase" in body["error"]
    status, body = serve.request("GET", "/v1/items/similar?item_id=NOPE")
    assert status == 404 and "unknown item id 'NOPE'" in body["error"]
    status, body = serve.request("POST", "/v1/recommendations/session", {"items": ["NOPE"]})
    assert status == 404 and "NOPE" in body["error"]
    status, body = serve.request("POST", "/v1/recommendations/batch", {"user_ids": ["u"] * 1001})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "user_ids"]
    status, body = serve.request("GET", "/v1/recommendations?user_id=a%0Ab")
    assert status == 422
    status, _ = serve.request("POST", "/v1/recommendations/batch", raw=b'{"user_ids": ["' + b"x" * 2_000_000 + b'"]}')
    assert status == 413
    # unknown user: the fallback list; nothing reads files named by a request
    unknown = serve.get("/v1/recommendations?user_id=..%2F..%2Fetc%2Fpasswd")
    assert unknown["known_user"] is False and len(unknown["items"]) == 10
    assert serve.request("GET", "/../../etc/passwd")[0] == 404
    assert serve.request("GET", "/v1/items/similar?item_id=..%2Fexport%2Fbundle%2Fbundle.json")[0] == 404
    # the fast path (well-formed GETs) and FastAPI (here: an extra parameter sends it there) agree
    fast = serve.get("/v1/recommendations?user_id=C10001&k=3&exclude=P0001&exclude=P0002")
    slow = serve.get("/v1/recommendations?user_id=C10001&k=3&exclude=P0001&exclude=P0002&via=fastapi")
    assert fast == slow and len(fast["items"]) == 3
    assert serve.get("/v1/items/similar?item_id=P0001&k=4") == serve.get("/v1/items/similar?item_id=P0001&k=4&x=1")
    metrics = serve.request("GET", "/metrics")[1]
    assert 'recctl_serve_requests_total{route="/v1/events",status="401"} 2' in metrics
    assert "recctl_serve_request_seconds_bucket" in metrics


def test_write_endpoints_are_off_without_a_token(shop: Path) -> None:
    service = Service(shop, token=None).start()
    try:
        status, body = service.request("POST", "/v1/admin/reload", token="anything-anything-anything")
        assert status == 403 and "no token configured" in body["error"]
    finally:
        service.stop()


def test_crash_and_restart_loses_no_acknowledged_event(shop: Path) -> None:
    service = Service(shop).start()
    acknowledged: list[dict[str, str]] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set() and i < 400:
            event = {
                "user_id": f"W{n}-{i}",
                "item_id": "P0001",
                "event": "view",
                "timestamp": f"2026-12-04T10:00:{i % 60:02d}Z",
            }
            try:
                status, _ = service.request("POST", "/v1/events", {"events": [event]}, token=TOKEN)
            except (OSError, http.client.HTTPException):
                # the service died under us (before the reply, or mid-body: IncompleteRead is
                # not an OSError): this one was not acknowledged
                return
            if status == 200:
                acknowledged.append(event)
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    while len(acknowledged) < 200 and any(t.is_alive() for t in threads):
        threading.Event().wait(0.01)
    service.stop(signal.SIGKILL)  # mid-stream, no chance to close anything
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 200
    restarted = Service(shop).start()
    try:
        for event in acknowledged[:: max(1, len(acknowledged) // 50)] + acknowledged[-5:]:
            got = restarted.get(f"/v1/recommendations?user_id={event['user_id']}")
            assert got["events_since_bundle"] == 1, event
        ready = restarted.get("/readyz")
        assert ready["events"]["replayed_at_start"] >= len(acknowledged)
    finally:
        restarted.stop()
    cfg = load_config(shop)
    logged = set()
    for seg in sorted((cfg.workdir_path / "events").glob("events-*.csv")):
        lines = seg.read_text().splitlines()
        assert lines[0].startswith("customer_id,product_id")
        logged |= {line.split(",")[0] for line in lines[1:]}
    assert {e["user_id"] for e in acknowledged} <= logged


def test_hot_reload_under_load_refuses_a_broken_bundle(shop: Path) -> None:
    import os
    import shutil

    from recctl.stages.export import run_serve_export
    from recctl.stages.recommend import run_recommend

    service = Service(shop).start()
    failures: list[object] = []
    served: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                status, body = service.request("GET", "/v1/recommendations?user_id=C10001")
            except OSError as exc:
                failures.append(exc)
                continue
            if status != 200:
                failures.append((status, body))
            else:
                served.append(body["bundle"])

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        first = service.get("/v1/info")["version"]
        cfg = load_config(shop)
        # 1. a broken bundle is published: refused, the old one keeps serving, readiness says why
        export = cfg.stage_dir("export")
        broken = export.with_name("export.broken")
        shutil.copytree(export, broken)
        meta = json.loads((broken / "bundle" / "bundle.json").read_text())
        meta["generated_at"] = "2099-01-01T00:00:00Z"
        (broken / "bundle" / "bundle.json").write_text(json.dumps(meta))
        with open(broken / "bundle" / "user_scores.npy", "r+b") as f:
            f.seek(-4, os.SEEK_END)
            f.write(b"\x00\x00\x80\x7f")
        os.rename(export, export.with_name("export.good"))
        os.rename(broken, export)
        status, body = service.request("POST", "/v1/admin/reload", token=TOKEN)
        assert status == 200 and body["switched"] is False and "sha256" in body["message"]
        ready = service.get("/readyz")
        assert ready["bundle"]["version"] == first and "sha256" in ready["bundle"]["last_reload_error"]
        # 2. a good new bundle (K changed) is published by the pipeline: switched atomically
        shutil.rmtree(export)
        os.rename(export.with_name("export.good"), export)
        set_serve(shop)  # unchanged serve section; recommend.k changes below
        import yaml

        raw = yaml.safe_load(shop.read_text())
        raw["recommend"]["k"] = 7
        shop.write_text(yaml.safe_dump(raw, sort_keys=False))
        cfg = load_config(shop)
        run_recommend(cfg)
        run_serve_export(cfg, date="2026-04-02")
        status, body = service.request("POST", "/v1/admin/reload", token=TOKEN)
        assert status == 200 and body["switched"] is True, body
        after = service.get("/v1/recommendations?user_id=C10001")
        assert len(after["items"]) == 7 and after["bundle"] != first
        assert service.get("/readyz")["bundle"]["last_reload_error"] is None
    finally:
        done.set()
        for t in threads:
            t.join()
        service.stop()
    assert not failures
    assert first in served and len(set(served)) == 2


def test_port_in_use_exits_8_and_no_bundle_exits_5(shop: Path, tmp_path: Path) -> None:
    import socket

    from typer.testing import CliRunner

    from recctl.cli.main import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(shop), "--port", str(port)])
    assert result.exit_code == 8 and "already in use" in " ".join(result.output.split())
    cfg = load_config(shop)
    (cfg.stage_dir("export") / "bundle" / "bundle.json").unlink()
    result = CliRunner().invoke(app, ["serve", str(shop), "--port", "0"])
    assert result.exit_code == 5 and "serve-export" in result.output
