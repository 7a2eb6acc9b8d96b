"""Benchmark the write outage after Redis is killed (kill -9) under load and started again, and count lost borrows.

Run: python benchmarks/bench_redis_recovery.py [KILLS]   (needs Debian's redis-server; ./scripts/test installs it)

One deployment of two workers (the Procfile's gunicorn, DASH_APP_WORKERS=2) on a real redis-server, four client
threads borrowing and returning through it. Redis is killed with SIGKILL and started again on the same port, KILLS
times (10 by default); for each kill the figure is the time from Redis answering PING again to the first write
(borrow or return) sent after that and answered 200, and to the moment every client thread has had one (both
workers accept writes).

Baseline, in the same run: the same deployment on a Redis that keeps an append-only file synced on every write, so
it comes back with all its data and the workers need only reconnect; what is measured is the same. This is a system
property with no algorithm to compare against: the baseline is the configuration one would deploy first for
durability, and the ratio printed is what losing Redis's data costs over merely reconnecting. The figures of
the empty restarts (`--appendonly no --save ""`: a cache-only Redis, or a failover to a replica that missed the last
writes) minus the baseline's are what rebuilding the pool costs. After the last kill every acknowledged open borrow is
returned: a 404 there (or at a first return) is an acknowledged borrow the pool lost. BENCH_KEEP_LOG=1 prints the
servers' logs (what each worker did on each kill).
"""

import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from dash_app.testing import RedisServer, ServerProcess, p95

TOOL = "Bench"
THREADS = 4
SETTLE_SECONDS = 2.0  # writes must have flowed this long before the next kill


class Load:
    """Client threads that borrow and return through `server` until stopped; each keeps every third borrow open."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.accepted: list[tuple[float, float, int]] = []  # (monotonic times a write was sent and answered 200, thread)
        self.open: set[str] = set()  # acknowledged borrows not returned
        self.lost: set[str] = set()  # acknowledged borrows a return found unknown
        self.borrows = 0  # acknowledged borrows
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(THREADS)]
        for thread in self.threads:
            thread.start()

    def run(self, n: int) -> None:
        with requests.Session() as session:
            session.headers.update(self.server.headers())
            i = 0
            while not self.stop.is_set():
                i += 1
                sent = time.monotonic()
                try:
                    r = session.post(self.server.url + "/licenses/borrow", json={"tool": TOOL, "user": f"u{n}"}, timeout=10)
                except requests.RequestException:
                    continue
                if r.status_code != 200:
                    time.sleep(0.01)
                    continue
                borrow_id = r.json()["id"]
                with self.lock:
                    self.accepted.append((sent, time.monotonic(), n))
                    self.open.add(borrow_id)
                    self.borrows += 1
                if i % 3 == 0:
                    continue
                # A return answered 503 may have been applied all the same (its answer was not kept): it is sent
                # again until it answers 200, or 404 (it had been applied).
                first_try = True
                while not self.stop.is_set():
                    sent = time.monotonic()
                    try:
                        r = session.post(self.server.url + "/licenses/return", json={"id": borrow_id}, timeout=10)
                    except requests.RequestException:
                        continue
                    if r.status_code in (200, 404):
                        with self.lock:
                            if r.status_code == 200:
                                self.accepted.append((sent, time.monotonic(), n))
                            elif first_try:
                                self.lost.add(borrow_id)  # acknowledged, and unknown at the first return
                            self.open.discard(borrow_id)
                        break
                    first_try = False
                    time.sleep(0.01)

    def since(self, t0: float) -> list[tuple[float, int]]:
        """Return (when answered, thread) of the writes sent at or after `t0` and accepted."""
        with self.lock:
            return [(t, n) for sent, t, n in self.accepted if sent >= t0]

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


def outages(persistent: bool, kills: int) -> tuple[list[float], list[float], int, int]:
    """Return (seconds to the first accepted write, to every client's, per kill), acknowledged borrows, lost ones."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tools = tmp_path / "tools.json"
        tools.write_text(
            json.dumps(
                [
                    {
                        "tool": TOOL,
                        "total": 10**6,
                        "commit_qty": 10**6,
                        "max_overage": 0,
                        "commit_price": 1,
                        "overage_price_per_license": 1,
                    }
                ]
            )
        )
        redis_server = RedisServer(tmp_path, persistent=persistent)
        env = {"DASH_APP_WORKERS": "2", "DASH_APP_REDIS_URL": redis_server.url, "DASH_APP_DB": str(tmp_path / "db.sqlite")}
        server = ServerProcess({**env, "DASH_APP_TOOLS": str(tools)}, tmp_path)
        load = Load(server)
        first, every = [], []
        try:
            for _ in range(kills):
                wait_flowing(load)
                redis_server.stop(signal.SIGKILL)
                redis_server.start()  # returns once PING answers
                answered = time.monotonic()
                deadline = answered + 60
                while time.monotonic() < deadline:
                    got = load.since(answered)
                    if len({n for _t, n in got}) == THREADS:
                        break
                    time.sleep(0.01)
                got = load.since(answered)
                first.append(min(t for t, _n in got) - answered if got else float("inf"))
                every.append(max(min(t for t, m in got if m == n) for n in range(THREADS)) - answered if got else float("inf"))
                print(f"  kill: first write after {first[-1]:.2f} s, every client's after {every[-1]:.2f} s", flush=True)
            wait_flowing(load)
        finally:
            load.close()
        lost = len(load.lost)
        with requests.Session() as session:
            session.headers.update(server.headers())
            for borrow_id in sorted(load.open):
                r = session.post(server.url + "/licenses/return", json={"id": borrow_id}, timeout=10)
                lost += r.status_code == 404
        server.stop()
        redis_server.stop()
        if "BENCH_KEEP_LOG" in os.environ:
            print(server.log_path.read_text())
        return first, every, load.borrows, lost


def wait_flowing(load: Load) -> None:
    """Wait until every client thread has had writes accepted for SETTLE_SECONDS."""
    began = time.monotonic()
    while time.monotonic() - began < 120:
        now = time.monotonic()
        recent = load.since(now - SETTLE_SECONDS)
        if len({n for _t, n in recent}) == THREADS and load.since(now - 0.2) and now - began >= SETTLE_SECONDS:
            return
        time.sleep(0.05)
    raise RuntimeError("writes do not flow")


def main() -> None:
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(f"Redis killed (SIGKILL) under load and started again, {kills} times; two workers, {THREADS} client threads")
    figures = {}
    baseline, empty = "baseline: Redis with its AOF (appendfsync always)", "Redis back empty"
    for name, persistent in ((baseline, True), (empty, False)):
        print(name, flush=True)
        figures[name] = outages(persistent, kills)
    print()
    print(f"{'':52} {'first write p50/p95/max':>26} {'every client p95':>17} {'acked borrows':>13} {'lost':>5}")
    for name, (first, every, acked, lost) in figures.items():
        ordered = sorted(first)
        print(
            f"{name:52} {ordered[len(ordered) // 2]:7.2f} {p95(first):7.2f} {max(first):7.2f} s"
            f" {p95(every):15.2f} s {acked:13} {lost:5}"
        )
    medians = {name: sorted(first)[len(first) // 2] for name, (first, _every, _acked, _lost) in figures.items()}
    print(f"first write after an empty restart vs the baseline's (p50): {medians[empty] / medians[baseline]:.2f}x")


if __name__ == "__main__":
    main()
