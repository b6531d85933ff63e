"""Load-test ``recctl serve`` over HTTP on a shop of 50,000 items and 200,000 users (issue 17).

What it does, in one run:

1. writes a serving bundle of the issue's size with ``recctl.serving.write_bundle`` (the writer
   ``serve-export`` uses): 200,000 users x K=10 nightly lists, ~20 history items per user, 20
   neighbours per item, a popularity fallback, and an ALS-like factor model's live arrays
   (50,000 x 64 item factors) so users with events are re-scored as in production;
2. measures the floor: the in-process ``Bundle.recommend`` / ``Bundle.similar`` calls the
   service makes, one thread, per call (p50/p99) and calls per second;
3. starts ``recctl serve`` in a subprocess (one process, uvloop + httptools), posts one event
   for each of 2,000 users, and drives four scenarios: user lists (a random user per
   request), re-scored lists (a random user among those with an event: the ALS solve per
   request), similar items, events (POST, fsync'd, a new user each);
4. **closed loop**: a fixed number of keep-alive connections, each sending its next request
   when the previous one is answered (wrk when on PATH, else an asyncio client in its own
   process): the throughput the service sustains;
5. **open loop** (``--rate``): an asyncio client in its own process sends requests at a fixed
   rate and measures each latency from when the request was *due*, so a stall delays every
   request scheduled during it and shows in p99 (a closed-loop client stops sending while
   it waits: "coordinated omission" hides exactly the stalls p99 is about);
6. checks that a posted purchase is gone from the user's next list.

Load generator: **wrk** (``apt-get install wrk``): written in C and event-driven, it drives many
keep-alive connections from one thread at a fraction of the CPU a Python client needs, which
matters on a 2-core machine where client and server share the CPUs. The open-loop client is
Python (uvloop when installed); its own lateness in sending is printed and counted in the
latencies (conservative).

    python -m benchmarks.bench_serve                      # issue size, both modes, 10 s each
    python -m benchmarks.bench_serve --mode open --rate 1000 --seconds 20
    python -m benchmarks.bench_serve --users 20000 --items 5000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

TOKEN = "bench-token-0123456789abcdef"
_MAIN = "import sys; from recctl.cli.main import app; sys.argv[0] = 'recctl'; app()"


def build_shop(root: Path, n_users: int, n_items: int, k: int = 10, seed: int = 0, factors: int = 64) -> Path:
    """Write a config and a published bundle of the given size under ``root``; return the config.

    The main model is an ALS-like factor model (``factors`` per item, random) with its live
    arrays, so a user with events is re-scored by the ALS solve over their history + new items
    (the costliest common kind: one ``n_items x factors`` product per request); ~20 history
    items per user, 20 neighbours per item, a popularity fallback.
    """
    import scipy.sparse as sp

    from recctl.lists import Lists
    from recctl.lists.live import LiveState
    from recctl.rules import ItemRules
    from recctl.serving import write_bundle

    rng = np.random.default_rng(seed)
    (root / "events.csv").write_text("user,item,event,ts\nU0,I0,view,2026-01-01T00:00:00Z\n")
    config = root / "shop.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "workdir": "work",
                "data": {
                    "interactions": {
                        "path": "events.csv",
                        "columns": {"user_id": "user", "item_id": "item", "event": "event", "timestamp": "ts"},
                        "event_map": {"view": "view", "purchase": "purchase"},
                        "timestamp_format": "iso",
                    }
                },
                "models": {"popular": {"kind": "popularity"}, "als": {"kind": "als", "factors": factors}},
                "recommend": {
                    "model": "als",
                    "k": k,
                    "fallback": ["popular"],
                    "rules": {"exclude_events": ["purchase"]},
                },
                "serve": {"reload_interval_s": 5, "events": {"max_users": 100_000, "max_pending": 1_000_000}},
            },
            sort_keys=False,
        )
    )
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    user_items = np.empty((n_users, k), np.int64)
    for start in range(0, n_users, 20_000):  # k distinct items per user, popularity-skewed
        block = min(20_000, n_users - start)
        draw = rng.choice(n_items, size=(block, 3 * k), p=popularity)
        for r in range(block):
            uniq = np.unique(draw[r])
            user_items[start + r] = uniq[:k] if len(uniq) >= k else rng.choice(n_items, k, replace=False)
    user_scores = np.sort(rng.random((n_users, k), dtype=np.float32), axis=1)[:, ::-1].copy()
    n_seen = rng.integers(5, 36, size=n_users)
    indptr = np.concatenate([[0], np.cumsum(n_seen)]).astype(np.int64)
    indices = rng.integers(0, n_items, size=int(indptr[-1])).astype(np.int64)
    seen = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n_users, n_items))
    seen.sum_duplicates()
    neighbors = rng.integers(0, n_items, size=(n_items, 20)).astype(np.int64)
    neighbor_scores = np.sort(rng.random((n_items, 20), dtype=np.float32), axis=1)[:, ::-1].copy()
    item_factors = rng.normal(0.0, 0.1, size=(n_items, factors)).astype(np.float32)
    write_bundle(
        root / "work" / "export" / "bundle",
        user_ids=[f"U{i}" for i in range(n_users)],
        item_ids=[f"I{j}" for j in range(n_items)],
        lists=Lists(user_items, user_scores, np.zeros((n_users, k), np.int8), ["als"]),
        seen=seen,
        cold=(["popular"], popularity[None, :].astype(np.float32)),
        rules=ItemRules(),
        candidates=None,
        min_score=None,
        neighbors=(neighbors, neighbor_scores),
        similar=Lists(neighbors[:, :k], neighbor_scores[:, :k], np.zeros((n_items, k), np.int8), ["als"]),
        holdout=[],
        card={
            "model": "als",
            "kind": "als",
            "params": {"factors": factors},
            "fallback": ["popular"],
            "fallback_from": "popular",
            "neighbors_from": "als",
            "generated_at": "2026-01-01T00:00:00Z",
            "experiment": None,
            "metrics": None,
        },
        exclusions={"exclude_seen": True, "exclude_events": ["purchase"]},
        history=seen,
        live={
            "als": LiveState(
                "als",
                {"regularization": 0.05, "alpha": 10.0, "scale_regularization": False},
                {"item_factors": item_factors},
            )
        },
    )
    return config


#: users that get one event before the "re-scored list" scenario (their lists are re-scored per request)
N_RESCORED = 2_000


def floor(config: Path, n_users: int, n_items: int, calls: int = 20_000) -> dict[str, dict[str, float]]:
    """In-process ``Bundle.recommend`` / ``Bundle.similar``: the work the service does per request."""
    from recctl.service.server import single_threaded_blas
    from recctl.serving import load

    single_threaded_blas()  # as the service runs
    bundle = load(config.parent / "work" / "export" / "bundle")
    rng = np.random.default_rng(1)
    out = {}
    for name, call, n in (
        ("user list", lambda i: bundle.recommend(f"U{i % n_users}", 10), calls),
        (
            "re-scored list",
            lambda i: bundle.recommend(f"U{i % N_RESCORED}", 10, events=[(f"I{i % n_items}", "view")]),
            calls // 10,
        ),
        ("similar items", lambda i: bundle.similar(f"I{i % n_items}", 10), calls),
    ):
        ids = rng.integers(0, 10**9, size=n)
        lat = np.empty(n)
        start = time.perf_counter()
        for j, i in enumerate(ids):
            t = time.perf_counter()
            call(int(i))
            lat[j] = time.perf_counter() - t
        wall = time.perf_counter() - start
        out[name] = {
            "rps": n / wall,
            "p50": float(np.percentile(lat, 50)) * 1e3,
            "p99": float(np.percentile(lat, 99)) * 1e3,
        }
    return out


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(config: Path, port: int) -> subprocess.Popen[bytes]:
    """``recctl serve`` in a subprocess; returns once /readyz answers 200."""
    import http.client

    env = {**os.environ, "RECCTL_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, "serve", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(config.parent / "serve.log", "wb"),  # noqa: SIM115
        env=env,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"service exited: {(config.parent / 'serve.log').read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("service did not become ready")


def _call(port: int, method: str, path: str, body: object = None) -> dict:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    answer = conn.getresponse()
    data = json.loads(answer.read())
    assert answer.status == 200, data
    return data


def prime_rescored(port: int, n_items: int) -> None:
    """Post one view for each of the first :data:`N_RESCORED` users (their lists are then re-scored)."""
    for start in range(0, N_RESCORED, 1000):
        events = [
            {
                "user_id": f"U{u}",
                "item_id": f"I{(u * 7919) % n_items}",
                "event": "view",
                "timestamp": "2026-06-01T00:00:00Z",
            }
            for u in range(start, min(start + 1000, N_RESCORED))
        ]
        _call(port, "POST", "/v1/events", {"events": events})


_LUA = {
    "user list": """
math.randomseed(1)
request = function()
  return wrk.format("GET", "/v1/recommendations?user_id=U" .. math.random(0, {n_users} - 1) .. "&k=10")
end
""",
    "re-scored list": """
math.randomseed(4)
request = function()
  return wrk.format("GET", "/v1/recommendations?user_id=U" .. math.random(0, {n_rescored} - 1) .. "&k=10")
end
""",
    "similar items": """
math.randomseed(2)
request = function()
  return wrk.format("GET", "/v1/items/similar?item_id=I" .. math.random(0, {n_items} - 1) .. "&k=10")
end
""",
    "event": """
counter = 0
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  counter = counter + 1
  local body = '{{"events":[{{"user_id":"E' .. counter .. '","item_id":"I' .. (counter % {n_items}) ..
    '","event":"view","timestamp":"2026-06-01T00:00:00Z"}}]}}'
  return wrk.format("POST", "/v1/events", nil, body)
end
""",
}

SCENARIOS = ("user list", "re-scored list", "similar items", "event")


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(
    name: str, port: int, seconds: float, connections: int, n_users: int, n_items: int, tmp: Path
) -> dict[str, float]:
    """Drive one endpoint with wrk (closed loop); parse requests/s and the latency percentiles."""
    script = tmp / f"{name.replace(' ', '_')}.lua"
    script.write_text(_LUA[name].format(n_users=n_users, n_items=n_items, n_rescored=N_RESCORED, token=TOKEN))
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(seconds)}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", text, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    assert rps is not None, text
    return {
        "rps": float(rps.group(1)),
        "p50": _ms(pct["50"]),
        "p99": _ms(pct["99"]),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(1) if errors else "",
    }


def _request_bytes(name: str, i: int, rng: np.random.Generator, n_users: int, n_items: int) -> bytes:
    if name == "user list":
        return f"GET /v1/recommendations?user_id=U{rng.integers(n_users)}&k=10 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    if name == "re-scored list":
        return f"GET /v1/recommendations?user_id=U{rng.integers(N_RESCORED)}&k=10 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    if name == "similar items":
        return f"GET /v1/items/similar?item_id=I{rng.integers(n_items)}&k=10 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    event = {"user_id": f"P{i}-{rng.integers(1 << 30)}", "item_id": f"I{i % n_items}", "event": "view"}
    body = json.dumps({"events": [{**event, "timestamp": "2026-06-01T00:00:00Z"}]}).encode()
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bool:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"content-length: (\d+)", head, re.I)
    await reader.readexactly(int(m.group(1)) if m else 0)
    return head.startswith(b"HTTP/1.1 200")


def _summary(lat: list[float], wall: float, bad: int) -> dict[str, float]:
    arr = np.array(lat) * 1e3
    return {
        "rps": len(arr) / wall,
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "p999": float(np.percentile(arr, 99.9)),
        "max": float(arr.max()),
        "non_2xx": bad,
        "errors": "",
    }


async def _client(
    port: int, seconds: float, connections: int, name: str, n_users: int, n_items: int
) -> dict[str, float]:
    """Closed loop: ``connections`` keep-alive connections, each sends its next request on an answer."""
    rng = np.random.default_rng(3)
    lat: list[float] = []
    bad = 0
    stop = time.perf_counter() + seconds
    counter = [0]

    async def conn() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            counter[0] += 1
            payload = _request_bytes(name, counter[0], rng, n_users, n_items)
            t = time.perf_counter()
            ok = await _exchange(reader, writer, payload)
            lat.append(time.perf_counter() - t)
            bad += not ok
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(connections)))
    return _summary(lat, time.perf_counter() - start, bad)


async def _open_loop(
    port: int, rate: float, seconds: float, max_connections: int, name: str, n_users: int, n_items: int
) -> dict[str, float]:
    """Open loop at a fixed rate: request ``i`` is due at ``start + i / rate`` whatever happened before.

    Latency is measured from when a request was **due**, not from when it could be sent, so a
    stall of the service (or of this client) counts for every request that should have gone
    out meanwhile: no coordinated omission (a closed-loop client that waits for an answer
    before sending the next request records one slow request where users would have seen
    hundreds). Requests go over a pool of up to ``max_connections`` keep-alive connections
    (HTTP/1.1, one request in flight per connection), opened as needed; a request waiting for
    a free connection is waiting, and that counts too.
    """
    rng = np.random.default_rng(5)
    n = int(rate * seconds)
    payloads = [_request_bytes(name, i, rng, n_users, n_items) for i in range(n)]  # built before the clock runs
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    waiting: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = 0
    lat: list[float] = []
    lateness: list[float] = []
    bad = 0

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal opened
        if idle:
            return idle.pop()
        if opened < max_connections:
            opened += 1
            return await asyncio.open_connection("127.0.0.1", port)
        return await waiting.get()

    def release(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        if waiting._getters:  # type: ignore[attr-defined]  # someone waits for a connection
            waiting.put_nowait(conn)
        else:
            idle.append(conn)

    async def one(due: float, payload: bytes) -> None:
        nonlocal bad
        conn = await connection()
        ok = await _exchange(*conn, payload)
        lat.append(time.perf_counter() - due)
        bad += not ok
        release(conn)

    loop = asyncio.get_running_loop()
    tasks = []
    start = time.perf_counter() + 0.05
    for i, payload in enumerate(payloads):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append(max(0.0, time.perf_counter() - due))
        tasks.append(loop.create_task(one(due, payload)))
    await asyncio.gather(*tasks)
    out = _summary(lat, time.perf_counter() - start, bad)
    out["connections"] = opened
    out["client_late_p99"] = float(np.percentile(np.array(lateness) * 1e3, 99))
    return out


def run_python(
    name: str, port: int, seconds: float, connections: int, n_users: int, n_items: int, tmp: Path, rate: float = 0.0
) -> dict[str, float]:
    """Drive one endpoint from a separate process: closed loop, or open loop when ``rate`` > 0."""
    call = (
        f"_open_loop({port}, {rate}, {seconds}, {connections}, {name!r}, {n_users}, {n_items})"
        if rate > 0
        else f"_client({port}, {seconds}, {connections}, {name!r}, {n_users}, {n_items})"
    )
    code = (
        "import asyncio, json\n"
        "try:\n    import uvloop; uvloop.install()\nexcept ImportError:\n    pass\n"
        f"from benchmarks.bench_serve import _client, _open_loop\nprint(json.dumps(asyncio.run({call})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def scrape(port: int) -> dict[tuple[str, str], dict[float, float]]:
    """The service's histograms: ``(family, labels) -> {upper bound: cumulative count}``."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out: dict[tuple[str, str], dict[float, float]] = {}
    for m in re.finditer(r'^(\w+)_bucket\{(.*?),?le="([^"]+)"\} (\S+)$', text, re.M):
        bound = float("inf") if m.group(3) == "+Inf" else float(m.group(3))
        out.setdefault((m.group(1), m.group(2)), {})[bound] = float(m.group(4))
    return out


def quantile_bound(before: dict, after: dict, key: tuple[str, str], q: float) -> tuple[float, int]:
    """Upper bucket bound (ms) holding the ``q`` quantile of the observations between two scrapes, and their count."""
    now, then = after.get(key, {}), before.get(key, {})
    bounds = sorted(now)
    counts = [now[b] - then.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    for b, c in zip(bounds, counts, strict=True):
        if total and c >= q * total:
            return b * 1e3, int(total)
    return float("nan"), int(total)


_ROUTES = {
    "user list": "/v1/recommendations",
    "re-scored list": "/v1/recommendations",
    "similar items": "/v1/items/similar",
    "event": "/v1/events",
}


def server_side(before: dict, after: dict, name: str) -> dict[str, float]:
    """What the service measured itself during one scenario: handler p99, loop lag p99, GC pauses."""
    handler, _ = quantile_bound(before, after, ("recctl_serve_request_seconds", f'route="{_ROUTES[name]}"'), 0.99)
    lag, _ = quantile_bound(before, after, ("recctl_serve_loop_lag_seconds", ""), 0.99)
    gc_max, gc_n = float("nan"), 0
    for key in after:
        if key[0] == "recctl_serve_gc_seconds":
            worst, n = quantile_bound(before, after, key, 1.0)
            if n:
                gc_n += n
                gc_max = worst if gc_max != gc_max else max(gc_max, worst)
    return {"server_p99": handler, "loop_lag_p99": lag, "gc_n": gc_n, "gc_max": gc_max}


def reflected(port: int) -> bool:
    """Post a purchase for a known user and check the next request no longer lists it."""
    first = _call(port, "GET", "/v1/recommendations?user_id=U7&k=10")["items"][0]["item_id"]
    _call(port, "POST", "/v1/events", {"events": [{"user_id": "U7", "item_id": first, "event": "purchase"}]})
    after = _call(port, "GET", "/v1/recommendations?user_id=U7&k=10")
    return after["events_since_bundle"] >= 1 and first not in [r["item_id"] for r in after["items"]]


def _print_table(title: str, results: dict[str, dict[str, float]], base: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(
        f"{'endpoint':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9':>9}{'max':>9}{'non-2xx':>8}"
        f" | {'handler':>8}{'loop lag':>9}{'GC n/max':>12} | floor: call/s, p50, p99 ms"
    )
    for name, r in results.items():
        f = base.get(name)
        floor_text = f"{f['rps']:>8,.0f} {f['p50']:>6.3f} {f['p99']:>6.3f}" if f else "  (fsync'd write)"
        extra = "".join(f"{r[key]:>9.2f}" if key in r else f"{'-':>9}" for key in ("p999", "max"))
        gc_text = f"{r.get('gc_n', 0)}/{r.get('gc_max', float('nan')):.2f}"
        print(
            f"{name:<16}{r['rps']:>9,.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{extra}{r['non_2xx']:>8}"
            f" | {r.get('server_p99', float('nan')):>8.2f}{r.get('loop_lag_p99', float('nan')):>9.2f}{gc_text:>12}"
            f" | {floor_text}"
        )
        if r.get("errors"):
            print(f"  socket errors: {r['errors']}")
    print(
        "  handler = p99 of the time the service spent on the request (its own histogram, bucket upper bound); "
        "loop lag = p99 of how late its event loop woke (blocking + CPU scheduling); GC = collections / worst pause "
        "(bucket bound), all ms"
    )


def main() -> None:
    """Build the shop, measure the floor, load-test the service (closed and open loop), print tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="load per endpoint and mode")
    parser.add_argument("--connections", type=int, default=32, help="closed loop: concurrent keep-alive connections")
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop: requests per second (0: skip)")
    parser.add_argument("--max-connections", type=int, default=64, help="open loop: connection pool size")
    parser.add_argument("--mode", choices=["both", "closed", "open"], default="both")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto", help="closed-loop client")
    parser.add_argument("--keep", action="store_true", help="keep the generated shop")
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    root = Path(tempfile.mkdtemp(prefix="recctl-bench-serve-"))
    loads = [os.getloadavg()[0]]
    try:
        t = time.perf_counter()
        config = build_shop(root, args.users, args.items)
        print(f"shop: {args.users:,} users x {args.items:,} items, bundle written in {time.perf_counter() - t:.1f} s")
        base = floor(config, args.users, args.items)
        port = free_port()
        t = time.perf_counter()
        proc = start_service(config, port)
        print(f"service ready in {time.perf_counter() - t:.1f} s; load average {os.getloadavg()[0]:.1f}")
        try:
            prime_rescored(port, args.items)
            tables = {}
            if args.mode in ("both", "closed"):
                drive = run_wrk if client == "wrk" else run_python
                closed = {}
                for name in SCENARIOS:
                    before = scrape(port)
                    closed[name] = drive(name, port, args.seconds, args.connections, args.users, args.items, root)
                    closed[name].update(server_side(before, scrape(port), name))
                    loads.append(os.getloadavg()[0])
                tables[
                    f"closed loop ({client}, {args.connections} keep-alive connections, {args.seconds:.0f} s each)"
                ] = closed
            if args.mode in ("both", "open") and args.rate > 0:
                opened = {}
                for name in SCENARIOS:
                    before = scrape(port)
                    opened[name] = run_python(
                        name, port, args.seconds, args.max_connections, args.users, args.items, root, rate=args.rate
                    )
                    opened[name].update(server_side(before, scrape(port), name))
                    loads.append(os.getloadavg()[0])
                tables[
                    f"open loop (asyncio client in its own process, {args.rate:,.0f} req/s fixed, latency from when "
                    f"each request was due, pool of up to {args.max_connections} connections)"
                ] = opened
            ok = reflected(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        for title, results in tables.items():
            _print_table(title, results, base)
            if "open loop" in title:
                late = max(r.get("client_late_p99", 0.0) for r in results.values())
                print(f"  (client's own lateness in sending, p99: {late:.2f} ms; included in the latencies)")
        print(f"\nevent reflected in the next request: {'yes' if ok else 'NO'}")
        for title, results in tables.items():
            ul = results["user list"]
            print(
                f"aim (user lists, {title.split(' (')[0]}): p99 < 10 ms and >= 1,000 req/s -> p99 {ul['p99']:.2f} ms, "
                f"{ul['rps']:,.0f} req/s"
            )
        print(f"load average (1 min) during the run: {min(loads):.1f} .. {max(loads):.1f} (2 cores, shared)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
