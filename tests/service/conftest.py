"""The real service in a subprocess on a free port, over the sample shop's published bundle.

``published`` runs the pipeline once per session on ``sample_data/`` (ingest, preprocess,
train popularity + item kNN, recommend and serve-export under an A/B experiment with a
holdout); each test gets its own copy of that workdir, so tests never see each other's events.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import write_config

TOKEN = "test-token-0123456789abcdef"
_MAIN = "import sys; from recctl.cli.main import app; sys.argv[0] = 'recctl'; app()"

EXPERIMENT = {
    "name": "serve-ab",
    "salt": "serve-salt",
    "control": "a",
    "holdout": 0.1,
    "variants": {"a": {"model": "knn", "weight": 1}, "b": {"model": "popular", "weight": 1}},
}


def _serve_extra() -> None:
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason="the serve extra is not installed: pip install 'recctl[serve]'")


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir with a published nightly file and bundle (built once per session)."""
    _serve_extra()
    from recctl.config import load_config
    from recctl.stages.export import run_serve_export
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.recommend import run_recommend
    from recctl.stages.train import run_train

    base = tmp_path_factory.mktemp("published")
    config = shop_config(base)
    cfg = load_config(config)
    run_ingest(cfg)
    run_preprocess(cfg)
    run_train(cfg)
    run_recommend(cfg)
    run_serve_export(cfg, date="2026-04-01")
    return base


def shop_config(tmp_path: Path, **serve: Any) -> Path:
    """The sample shop's config (popularity + item kNN, an experiment) with a workdir in ``tmp_path``."""
    config = write_config(
        tmp_path,
        models={"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 50}},
        recommend={
            "model": "knn",
            "k": 10,
            "fallback": ["popular"],
            "min_score": 0.0,
            "rules": {"exclude_events": ["purchase"], "in_stock_column": "in_stock"},
        },
        evaluate=None,
        tune=None,
        experiment=EXPERIMENT,
        serve={"reload_interval_s": 0, **serve},
    )
    return config


@pytest.fixture
def shop(published: Path, tmp_path: Path) -> Path:
    """A private copy of the published workdir; returns its config."""
    shutil.copytree(published / "work", tmp_path / "work", symlinks=True)
    return shop_config(tmp_path)


def set_serve(config: Path, **serve: Any) -> None:
    """Change keys of the config's ``serve:`` section."""
    raw = yaml.safe_load(config.read_text())
    raw["serve"] = {**raw.get("serve", {}), **serve}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``recctl serve`` in a subprocess, with small HTTP helpers (stdlib only)."""

    def __init__(self, config: Path, *, token: str | None = TOKEN) -> None:
        self.config = config
        self.token = token
        self.port = free_port()
        self.log = config.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Service:
        env = {k: v for k, v in os.environ.items() if k != "RECCTL_SERVE_TOKEN"}
        if self.token:
            env["RECCTL_SERVE_TOKEN"] = self.token
        self.log_file = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _MAIN, "serve", str(self.config), "--port", str(self.port)],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        # a bounded wait for start-up, not a timing assertion: the failure shows the service's log
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                self.log_file.close()
                raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"service not ready:\n{self.log.read_text()}")

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        ctype = resp.getheader("content-type", "")
        return resp.status, (json.loads(payload) if "json" in ctype else payload.decode())

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (status, body)
        return body

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        status, body = self.request("POST", "/v1/events", {"events": events}, token=TOKEN)
        assert status == 200, (status, body)
        return body

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


@pytest.fixture
def serve(shop: Path) -> Iterator[Service]:
    """The service running over a private copy of the published shop."""
    service = Service(shop).start()
    yield service
    service.stop()
