"""Load-test ``recctl serve`` over HTTP on a shop of 50,000 items and 200,000 users (issue 17).

What it does, in one run:

1. writes a serving bundle of the issue's size with ``recctl.serving.write_bundle`` (the writer
   ``serve-export`` uses): 200,000 users x K=10 nightly lists, ~20 seen items per user, 20
   neighbours per item, a 200-item fallback list;
2. measures the floor: the in-process ``Bundle.recommend`` / ``Bundle.similar`` calls the
   service makes, one thread, per call (p50/p99) and calls per second;
3. starts ``recctl serve`` in a subprocess (one process, uvloop + httptools) and drives it with a
   real HTTP load generator over keep-alive connections: user lists (a random user per request),
   similar items (a random item), and events (a new user per event: POST, fsync'd);
4. checks that a posted event is reflected by the user's next request.

Load generator: **wrk** (``apt-get install wrk``) when it is on PATH: written in C and
event-driven, it drives many keep-alive connections from one thread at a fraction of the CPU a
Python client needs, which matters on a 2-core machine where client and server share the CPUs;
random users/items come from a small Lua script. Without wrk a Python asyncio client runs in a
separate process (``--client python``; same keep-alive connections and per-request latencies,
but it costs the server more CPU, so its throughput is a lower bound).

    python -m benchmarks.bench_serve                      # issue size, 10 s per endpoint
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


def build_shop(root: Path, n_users: int, n_items: int, k: int = 10, seed: int = 0) -> Path:
    """Write a config and a published bundle of the given size under ``root``; return the config."""
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
                "models": {"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn"}},
                "recommend": {
                    "model": "knn",
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
    user_items = np.empty((n_users, k), np.int32)
    for start in range(0, n_users, 20_000):  # k distinct items per user, popularity-skewed
        block = min(20_000, n_users - start)
        draw = rng.choice(n_items, size=(block, 3 * k), p=popularity)
        for r in range(block):
            user_items[start + r] = (
                np.unique(draw[r])[:k] if len(np.unique(draw[r])) >= k else rng.choice(n_items, k, replace=False)
            )
    user_scores = np.sort(rng.random((n_users, k), dtype=np.float32), axis=1)[:, ::-1]
    n_seen = rng.integers(5, 36, size=n_users)
    indptr = np.concatenate([[0], np.cumsum(n_seen)]).astype(np.int64)
    indices = rng.integers(0, n_items, size=int(indptr[-1])).astype(np.int32)
    neighbors = rng.integers(0, n_items, size=(n_items, 20)).astype(np.int32)
    neighbor_scores = np.sort(rng.random((n_items, 20), dtype=np.float32), axis=1)[:, ::-1]
    order = np.argsort(-popularity)[:200]
    write_bundle(
        root / "work" / "export" / "bundle",
        user_ids=[f"U{i}" for i in range(n_users)],
        item_ids=[f"I{j}" for j in range(n_items)],
        user_items=user_items,
        user_scores=user_scores,
        user_sources=np.zeros((n_users, k), np.int8),
        sources=["knn"],
        fallback_items=order.astype(np.int32),
        fallback_scores=popularity[order].astype(np.float32),
        neighbors=(neighbors, neighbor_scores),
        holdout=[],
        card={
            "model": "knn",
            "kind": "item_knn",
            "params": {},
            "fallback": ["popular"],
            "fallback_from": "popular",
            "neighbors_from": "knn",
            "generated_at": "2026-01-01T00:00:00Z",
            "experiment": None,
            "metrics": None,
        },
        seen=(indptr, indices),
    )
    return config


def floor(config: Path, n_users: int, n_items: int, calls: int = 20_000) -> dict[str, dict[str, float]]:
    """In-process ``Bundle.recommend`` / ``Bundle.similar``: the work the service does per request."""
    from recctl.serving import load

    bundle = load(config.parent / "work" / "export" / "bundle")
    rng = np.random.default_rng(1)
    out = {}
    for name, call in (
        ("user list", lambda i: bundle.recommend(f"U{i % n_users}", 10)),
        ("similar items", lambda i: bundle.similar(f"I{i % n_items}", 10)),
    ):
        ids = rng.integers(0, 10**9, size=calls)
        lat = np.empty(calls)
        start = time.perf_counter()
        for n, i in enumerate(ids):
            t = time.perf_counter()
            call(int(i))
            lat[n] = time.perf_counter() - t
        wall = time.perf_counter() - start
        out[name] = {
            "rps": calls / wall,
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
        stderr=open(config.parent / "serve.log", "wb"),
        env=env,  # noqa: SIM115
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


_LUA = {
    "user list": """
math.randomseed(1)
request = function()
  return wrk.format("GET", "/v1/recommendations?user_id=U" .. math.random(0, {n_users} - 1) .. "&k=10")
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


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(
    name: str, port: int, seconds: float, connections: int, n_users: int, n_items: int, tmp: Path
) -> dict[str, float]:
    """Drive one endpoint with wrk; parse requests/s and the latency percentiles."""
    script = tmp / f"{name.replace(' ', '_')}.lua"
    script.write_text(_LUA[name].format(n_users=n_users, n_items=n_items, token=TOKEN))
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
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50": _ms(pct["50"]),
        "p99": _ms(pct["99"]),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(1) if errors else "",
    }


async def _client(
    port: int, seconds: float, connections: int, name: str, n_users: int, n_items: int
) -> dict[str, float]:
    rng = np.random.default_rng(3)
    lat: list[float] = []
    bad = 0
    stop = time.perf_counter() + seconds
    counter = [0]

    def req() -> bytes:
        if name == "user list":
            path = f"/v1/recommendations?user_id=U{rng.integers(n_users)}&k=10"
            return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        if name == "similar items":
            return f"GET /v1/items/similar?item_id=I{rng.integers(n_items)}&k=10 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        counter[0] += 1
        body = json.dumps(
            {
                "events": [
                    {
                        "user_id": f"P{counter[0]}",
                        "item_id": f"I{counter[0] % n_items}",
                        "event": "view",
                        "timestamp": "2026-06-01T00:00:00Z",
                    }
                ]
            }
        ).encode()
        head = (
            f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def conn() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            t = time.perf_counter()
            writer.write(req())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            bad += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(connections)))
    wall = time.perf_counter() - start
    arr = np.array(lat)
    return {
        "rps": len(arr) / wall,
        "p50": float(np.percentile(arr, 50)) * 1e3,
        "p99": float(np.percentile(arr, 99)) * 1e3,
        "non_2xx": bad,
        "errors": "",
    }


def run_python(
    name: str, port: int, seconds: float, connections: int, n_users: int, n_items: int, tmp: Path
) -> dict[str, float]:
    """Drive one endpoint with the asyncio client in a separate process."""
    code = (
        "import asyncio, json, sys; from benchmarks.bench_serve import _client; "
        f"print(json.dumps(asyncio.run(_client({port}, {seconds}, {connections}, {name!r}, {n_users}, {n_items}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def reflected(port: int) -> bool:
    """Post a purchase for a known user and check the next request no longer lists it."""
    import http.client

    def call(method: str, path: str, body: object = None) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        return json.loads(conn.getresponse().read())

    first = call("GET", "/v1/recommendations?user_id=U7&k=10")["items"][0]["item_id"]
    call("POST", "/v1/events", {"events": [{"user_id": "U7", "item_id": first, "event": "purchase"}]})
    after = call("GET", "/v1/recommendations?user_id=U7&k=10")
    return after["events_since_bundle"] == 1 and first not in [r["item_id"] for r in after["items"]]


def main() -> None:
    """Build the shop, measure the floor, load-test the service, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="load per endpoint")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the generated shop")
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    root = Path(tempfile.mkdtemp(prefix="recctl-bench-serve-"))
    try:
        t = time.perf_counter()
        config = build_shop(root, args.users, args.items)
        print(f"shop: {args.users:,} users x {args.items:,} items, bundle written in {time.perf_counter() - t:.1f} s")
        base = floor(config, args.users, args.items)
        port = free_port()
        t = time.perf_counter()
        proc = start_service(config, port)
        print(
            f"service ready in {time.perf_counter() - t:.1f} s; load generator: {client}, "
            f"{args.connections} keep-alive connections, {args.seconds:.0f} s per endpoint"
        )
        try:
            drive = run_wrk if client == "wrk" else run_python
            results = {}
            for name in ("user list", "similar items", "event"):
                results[name] = drive(name, port, args.seconds, args.connections, args.users, args.items, root)
            ok = reflected(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        print(
            f"\n{'endpoint':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}"
            "   floor: in-process call/s, p50, p99 ms"
        )
        for name, r in results.items():
            f = base.get(name)
            floor_text = (
                f"{f['rps']:>10,.0f} {f['p50']:>7.3f} {f['p99']:>7.3f}"
                f"   ({f['rps'] / r['rps']:.1f}x the service's req/s)"
                if f
                else "  (fsync'd write; no in-process floor)"
            )
            print(f"{name:<16}{r['rps']:>10,.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['non_2xx']:>9}   {floor_text}")
            if r["errors"]:
                print(f"  socket errors: {r['errors']}")
        print(f"\nevent reflected in the next request: {'yes' if ok else 'NO'}")
        ul = results["user list"]
        print(
            f"aim (user lists): p99 < 10 ms and >= 1,000 req/s -> p99 {ul['p99']:.2f} ms, {ul['rps']:,.0f} req/s: "
            f"{'met' if ul['p99'] < 10 and ul['rps'] >= 1000 else 'NOT met'}"
        )
        loads = os.getloadavg()
        print(f"load average during the run: {loads[0]:.1f} (other jobs share the 2 cores)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
