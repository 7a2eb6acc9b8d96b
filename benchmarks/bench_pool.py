"""Borrow+return round trips per second: in process and over HTTP to the Procfile's gunicorn.

Run: python benchmarks/bench_pool.py
"""

import http.client
import json
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool, load_inventory
from dash_app.recording import EventRecorder
from dash_app.store import Store
from dash_app.testing import TEST_TOKEN, ServerProcess

TOOL = "Vector - DaVinci Configurator SE"


class CommitPerEventStore:
    """Baseline: what one writes first, each event committed on the request path as it is recorded.

    The same row (an Event is a row of the store's events table) and the same pragmas as the store (WAL,
    synchronous=NORMAL, so a commit does not wait for the disk); what differs is one transaction per event, written
    by the caller's thread, where the store queues events for its writer thread, which commits them in batches.
    """

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS events (ts REAL, kind TEXT, tool TEXT, user TEXT, borrow_id TEXT,"
            " is_overage INTEGER, reason TEXT, host TEXT, version TEXT)"
        )
        self.rows = 0

    def on_events(self, events):
        for event in events:
            with self.conn:  # BEGIN ... COMMIT (isolation_level=None: explicit, one per event)
                self.conn.execute("BEGIN")
                self.conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", event)
            self.rows += 1


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
    headers = {"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/json"}
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
        store = Store(Path(tmp) / "bench.db")
        store.start()
        ours = in_process(store)
        store.stop()
        committing = CommitPerEventStore(str(Path(tmp) / "baseline.db"))
        baseline = in_process(committing)
        if committing.rows == 0:
            raise RuntimeError("the baseline wrote no events: its figure would measure nothing")

        # The Procfile's gunicorn, demo off, its database and log in tmp.
        server = ServerProcess({}, Path(tmp))
        try:
            http_results = {n: http_rate(server.port, n, 4.0, borrow_return) for n in (1, 4)}
            floor = http_rate(server.port, 4, 4.0, two_health_checks)
        finally:
            server.stop()

    print("borrow+return round trips per second")
    print(f"in process, batched SQLite writer       {ours:>9,.0f} /s   (target >= 2,000)")
    print(f"in process, commit per event (baseline) {baseline:>9,.0f} /s   ratio {ours / baseline:.1f}x")
    for n, rate in http_results.items():
        print(f"HTTP to gunicorn, {n} client(s)           {rate:>9,.0f} /s   (target >= 500)")
    print(f"HTTP floor: two GET /healthz, 4 clients {floor:>9,.0f} /s   API cost vs floor {floor / http_results[4]:.2f}x")


if __name__ == "__main__":
    main()
