"""Benchmark the scale-out on Redis (--redis, --workers): log throughput, refreshes, streams held and visibility.

Run: python benchmarks/bench_scale_out.py   (needs Debian's redis-server and wrk: ./scripts/test installs the first,
`apt-get install wrk` the second)

Four figures, each beside its baseline from the same run:
1. Events per second through the shared log, in batches as a log backfill sends them (5,000 events per script
   call), until a second process has applied them all; baseline: the same events through a bare Redis stream (XADD
   of each batch as JSON, XREAD by a second connection: no decisions); the embedded pool's hand-off beside them.
2. Dashboard refreshes per second (a new tab's full refresh, POST /_dash-update-component, 200 tools, the buffer
   holding the events of 1.), driven by wrk: 1, 2 and 4 workers on Redis; baseline: one embedded worker (a system
   property: what --redis costs one worker, and what more workers add).
3. Stream clients held: the streams a deployment with --threads 32 per worker keeps open, 1, 2 and 4 workers.
4. Borrow to visible: from a REST borrow on one process until another process's stream (1 s ticks) shows it, p50
   and p95; baseline: the same process's own stream, read at the same time.
"""

import json
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import orjson
import psutil
import requests

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.callbacks.page import OUTPUTS
from dash_app.eventlog.connection import Keys, connect
from dash_app.eventlog.follower import LogFollower
from dash_app.eventlog.ledger import RedisLedger
from dash_app.eventlog.progress import LogProgress
from dash_app.eventlog.shared_pool import SharedLicensePool
from dash_app.licenses import LicensePool, load_inventory
from dash_app.recording import EventRecorder
from dash_app.stream.ticker import stream_capacity
from dash_app.testing import RedisServer, ServerProcess, estate_inventory, p95
from dash_app.testing.sse_client import SseClient

TOOLS = 200
BORROWS = 100_000  # and as many returns: 200,000 events
BATCH = 5_000
THREADS = 32


def backfill_ops(specs, end):
    """Return the observed borrows and returns of a log backfill: BORROWS sessions over the 5 hours before `end`."""
    names = list(specs)
    ops = []
    for n in range(BORROWS):
        start = end - 5 * 3600 + n * ((5 * 3600 - 120) / BORROWS)  # every session ends before `end`
        borrow_id = f"flexlm|bench|{n}"
        ops.append(("borrow", names[n % len(names)], f"user{n % 400:03d}", start, borrow_id))
        ops.append(("return", None, None, start + 60.0, borrow_id))
    return ops


def play(pool, ops):
    """Send `ops` through `pool` as a backfill does: observed events, BATCH to a batch."""
    for start in range(0, len(ops), BATCH):
        with pool.recording_batch():
            for kind, tool, user, at, borrow_id in ops[start : start + BATCH]:
                if kind == "borrow":
                    pool.observe_borrow(tool, user, at, borrow_id)
                else:
                    pool.observe_return(borrow_id, at)


def log_throughput(url, specs, ops):
    """Return (seconds until a second process applied every event, seconds of the embedded hand-off)."""
    keys = Keys("dash_app")
    applied = [0]
    done = threading.Event()

    def count(entry_id, events):
        applied[0] += len(events)
        if applied[0] >= len(ops):
            done.set()

    other = LogFollower(connect(url), keys.events, LogProgress(), count)
    other.start()
    buffer = RealtimeMetricsBuffer(retention_seconds=6 * 3600, max_borrows=BORROWS, max_returns=BORROWS)
    progress = LogProgress()
    # Unfenced: a one-off backfill, as ingest-flexlm sends it.
    pool = SharedLicensePool(specs, EventRecorder(buffer), RedisLedger(connect(url), keys), progress=progress, fence=lambda: "")
    pool.ledger.seed_once([], {})  # a new Redis, as the first server fills it at start
    mine = LogFollower(connect(url), keys.events, progress, lambda entry_id, events: pool.apply(events))
    mine.start()
    began = time.perf_counter()
    play(pool, ops)
    done.wait(120)
    shared = time.perf_counter() - began
    mine.stop()
    other.stop()

    local_buffer = RealtimeMetricsBuffer(retention_seconds=6 * 3600, max_borrows=BORROWS, max_returns=BORROWS)
    local = LicensePool(specs, EventRecorder(local_buffer))
    began = time.perf_counter()
    play(local, ops)
    return shared, time.perf_counter() - began


def raw_stream(url, ops):
    """Baseline: the seconds until a second connection has read every event of `ops` through a bare Redis stream.

    What one writes first to move events between processes: each BATCH of events as one orjson entry (XADD), read
    with XREAD as it comes; no limits decided, no counts kept, nothing applied. Ours minus this is what the ledger's
    script and the followers cost.
    """
    stream = "bench:raw"
    done = threading.Event()

    def read():
        client, last, seen = connect(url), "0-0", 0
        while seen < len(ops):
            for _stream, entries in client.xread({stream: last}, count=200, block=1000) or []:
                for entry_id, fields in entries:
                    seen += len(orjson.loads(fields[b"e"]))
                    last = entry_id
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    client = connect(url)
    began = time.perf_counter()
    for start in range(0, len(ops), BATCH):
        client.xadd(stream, {"e": orjson.dumps(ops[start : start + BATCH])})
    done.wait(120)
    return time.perf_counter() - began


def refresh_body(server):
    """Return the POST body of a new tab's refresh of the overview (6 h window)."""
    deps = requests.get(server.url + "/_dash-dependencies", timeout=10).json()
    (dependency,) = [d for d in deps if d["output"].startswith("..borrow-rate")]
    return {
        "output": dependency["output"],
        "outputs": [{"id": i, "property": p} for i, p in OUTPUTS],
        "inputs": [
            {"id": "refresh", "property": "n_intervals", "value": 1},
            {"id": "tool-filter", "property": "value", "value": "__all__"},
            {"id": "time-range", "property": "value", "value": 21600},
            {"id": "tz-select", "property": "value", "value": "local"},
            {"id": "browser-tz", "property": "data", "value": "Europe/Berlin"},
        ],
        "state": [
            {"id": "render-state", "property": "data", "value": None},
            {"id": "legend-hidden", "property": "data", "value": {}},
            {"id": "url", "property": "pathname", "value": "/"},
        ],
        "changedPropIds": ["refresh.n_intervals"],
    }


def refreshes_per_second(server, workdir, seconds=10):
    """Return the refreshes per second wrk gets from `server` with 8 connections."""
    body = workdir / "refresh.json"
    body.write_text(json.dumps(refresh_body(server)))
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local f = io.open({json.dumps(str(body))}, 'r')\nwrk.body = f:read('*a')\nf:close()\n"
    )
    # A short warm-up: every worker builds its first views and caches.
    subprocess.run(["wrk", "-t2", "-c8", "-d3s", "-s", str(script), server.url + "/_dash-update-component"], capture_output=True)
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", "-s", str(script), server.url + "/_dash-update-component"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"refreshes failed:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def wait_caught_up(server, last_entry, timeout=120):
    """Wait until the server (every worker that answers) has applied the log up to `last_entry`."""
    deadline = time.monotonic() + timeout
    seen_ok = 0
    while time.monotonic() < deadline and seen_ok < 8:
        body = requests.get(server.url + "/healthz", timeout=5).json()
        seen_ok = seen_ok + 1 if body.get("last_entry") == last_entry else 0
        time.sleep(0.05)


def wait_idle(server, timeout=120):
    """Wait until the server's processes (workers, analysis processes) use under a tenth of a core: start-up is over."""
    group = [psutil.Process(server.process.pid)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes = group + group[0].children(recursive=True)
        for process in processes:
            process.cpu_percent(None)
        time.sleep(1.0)
        if sum(process.cpu_percent(None) for process in processes) < 10:
            return


def streams_held(server, attempts):
    """Open up to `attempts` streams and return how many the server keeps open (the rest get 503)."""
    clients, held = [], 0
    try:
        for _ in range(attempts):
            response = requests.get(server.url + "/realtime/stream", stream=True, timeout=(5, 10))
            clients.append(response)
            held += response.status_code == 200
    finally:
        for response in clients:
            response.close()
    return held


def borrow_to_visible(a, b, tool, count=40):
    """Return (latencies on the other process's stream, on the borrowing process's own stream), in seconds."""
    posted = {}
    in_status = []  # seconds from a borrow's answer until the other process's /licenses/status counts it
    seen = {"other": {}, "own": {}}
    stop = threading.Event()

    def watch(server, name):
        with SseClient(server.url + "/realtime/stream?delta=1", timeout=30) as client:
            while not stop.is_set():
                try:
                    message = client.next_message()
                except (StopIteration, requests.RequestException):
                    return  # the server is stopping
                now = time.perf_counter()
                for event in message["data"]["recent_events"].get("borrows", []):
                    seen[name].setdefault(event["id"], now)

    watchers = [threading.Thread(target=watch, args=(s, n), daemon=True) for s, n in ((b, "other"), (a, "own"))]
    for w in watchers:
        w.start()
    time.sleep(2.5)
    b_borrows = f"{b.url}/borrows?tool={tool}"
    with requests.Session() as session:
        session.headers.update(a.headers())
        for n in range(count):
            began = time.perf_counter()
            response = session.post(a.url + "/licenses/borrow", json={"tool": tool, "user": f"v{n}"}, timeout=5)
            posted[response.json()["id"]] = began
            answered = time.perf_counter()
            while not any(b["id"] == response.json()["id"] for b in requests.get(b_borrows, timeout=5).json()):
                pass
            in_status.append(time.perf_counter() - answered)
            session.post(a.url + "/licenses/return", json={"id": response.json()["id"]}, timeout=5)
            time.sleep(0.2 + 0.4 * (n % 5) / 4)
    time.sleep(2.5)
    stop.set()
    other, own = ([seen[name][i] - posted[i] for i in posted if i in seen[name]] for name in ("other", "own"))
    return other, own, in_status


def ms(values):
    return f"p50 {statistics.median(values) * 1000:6.0f} ms   p95 {p95(values) * 1000:6.0f} ms   ({len(values)} borrows)"


def main():
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    tools = workdir / "tools.json"
    inventory = estate_inventory(TOOLS)
    tools.write_text(json.dumps(inventory))
    specs = load_inventory(tools)
    redis_server = RedisServer(workdir)
    servers = []
    try:
        ops = backfill_ops(specs, time.time())
        shared, local = log_throughput(redis_server.url, specs, ops)
        print(f"events through the log ({len(ops):,} in batches of {BATCH:,}, until another process applied them)")
        print(f"  Redis Streams:                     {len(ops) / shared:10,.0f} events/s  ({shared:.2f} s)")
        raw = raw_stream(redis_server.url, ops)
        print(f"  baseline, a bare stream (XADD/XREAD): {len(ops) / raw:7,.0f} events/s  ({raw:.2f} s)  ours {raw / shared:.2f}x")
        print(f"  in one process, embedded hand-off: {len(ops) / local:10,.0f} events/s  ({local:.2f} s)")
        last_entry = RedisLedger(connect(redis_server.url), Keys("dash_app")).snapshot().last_id

        env = {
            "DASH_APP_TOOLS": str(tools),
            "DASH_APP_DB": str(workdir / "bench.db"),
            "DASH_APP_THREADS": str(THREADS),
            "DASH_APP_MAX_BORROWS": str(BORROWS),
            "DASH_APP_MAX_RETURNS": str(BORROWS),
        }
        print(f"dashboard refreshes per second (a new tab's refresh of {TOOLS} tools, {len(ops):,} events in the buffer)")
        rates = {}
        for workers in (1, 2, 4):
            server = ServerProcess({**env, "DASH_APP_REDIS_URL": redis_server.url, "DASH_APP_WORKERS": str(workers)}, workdir)
            servers.append(server)
            wait_caught_up(server, last_entry)
            wait_idle(server)
            rates[workers] = refreshes_per_second(server, workdir)
            capacity = stream_capacity(THREADS) * workers
            held = streams_held(server, capacity + 8 * workers)
            server.stop()
            servers.remove(server)
            print(
                f"  {workers} worker{'s' if workers > 1 else ' '} on Redis:  {rates[workers]:7.1f} refreshes/s "
                f"({rates[workers] / rates[1]:.2f}x)   streams held: {held} of {capacity} ({THREADS} threads each)"
            )
        # The store now holds every event (the lease holder wrote them): an embedded server restores the same buffer.
        embedded = ServerProcess(env, workdir)
        servers.append(embedded)
        wait_idle(embedded)
        alone = refreshes_per_second(embedded, workdir)
        print(f"  baseline, 1 embedded worker: {alone:7.1f} refreshes/s   (1 worker on Redis: {rates[1] / alone:.2f}x)")
        embedded.stop()
        servers.remove(embedded)

        pair = [ServerProcess({**env, "DASH_APP_REDIS_URL": redis_server.url}, workdir) for _ in range(2)]
        servers.extend(pair)
        roomy = max(inventory, key=lambda spec: spec["total"])["tool"]
        other, own, in_status = borrow_to_visible(*pair, roomy)
        print("borrow to visible in a stream (1 s ticks: both processes tick on the same wall-clock boundaries)")
        print(f"  on another process:          {ms(other)}")
        print(f"  baseline, the same process:  {ms(own)}   p50 ratio {statistics.median(other) / statistics.median(own):.2f}x")
        print(f"  in another process's /borrows, from the borrow's answer: {ms(in_status)}")
    finally:
        for server in servers:
            server.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
