"""Borrow+return round trips per second: in process and over HTTP to the Procfile's gunicorn.

Run: python benchmarks/bench_pool.py
"""

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dash_app.buffer import RealtimeMetricsBuffer  # noqa: E402
from dash_app.licenses import LicensePool, load_inventory  # noqa: E402
from dash_app.recording import EventRecorder  # noqa: E402
from dash_app.store import SQLiteStore  # noqa: E402
from tests.conftest import free_port, procfile_command  # noqa: E402

TOOL = "Vector - DaVinci Configurator SE"
TOKEN = "bench-token"


class CommitPerEventStore:
    """Baseline: the simple way, one SQLite transaction per event, on the request path."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS events (ts REAL, kind TEXT, tool TEXT, user TEXT, borrow_id TEXT)")

    def on_events(self, events):
        for event in events:
            self.conn.execute("BEGIN")
            self.conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", (event["ts"], event["type"], event["tool"], event["user"], event.get("id")))
            self.conn.execute("COMMIT")


def in_process(store_listener, seconds=3.0):
    pool = LicensePool(load_inventory(), EventRecorder(RealtimeMetricsBuffer(), listeners=[store_listener]))
    pairs = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(100):
            pool.return_license(pool.borrow(TOOL, "bench").id)
        pairs += 100
    return pairs / (time.perf_counter() - start)


def start_server(tmp):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
    env.update(PORT=str(port), DASH_APP_DB=str(Path(tmp) / "http.db"), DASH_APP_API_TOKEN=TOKEN, DASH_APP_DEMO="0")
    process = subprocess.Popen(["bash", "-c", "exec " + procfile_command()], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def http_rate(port, clients, seconds, pair):
    done = []

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pair(conn)
            n += 1
        done.append(n)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def call(conn, method, path, body=None):
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return data


def borrow_return(conn):
    borrowed = json.loads(call(conn, "POST", "/licenses/borrow", {"tool": TOOL, "user": "bench"}))
    call(conn, "POST", "/licenses/return", {"id": borrowed["id"]})


def two_health_checks(conn):
    call(conn, "GET", "/healthz")
    call(conn, "GET", "/healthz")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        store.start()
        ours = in_process(store)
        store.stop()
        baseline = in_process(CommitPerEventStore(str(Path(tmp) / "baseline.db")))

        process, port = start_server(tmp)
        try:
            http_results = {n: http_rate(port, n, 4.0, borrow_return) for n in (1, 4)}
            floor = http_rate(port, 4, 4.0, two_health_checks)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)

    print("borrow+return round trips per second")
    print(f"in process, batched SQLite writer       {ours:>9,.0f} /s   (target >= 2,000)")
    print(f"in process, commit per event (baseline) {baseline:>9,.0f} /s   ratio {ours / baseline:.1f}x")
    for n, rate in http_results.items():
        print(f"HTTP to gunicorn, {n} client(s)           {rate:>9,.0f} /s   (target >= 500)")
    print(f"HTTP floor: two GET /healthz, 4 clients {floor:>9,.0f} /s   API cost vs floor {floor / http_results[4]:.2f}x")


if __name__ == "__main__":
    main()
