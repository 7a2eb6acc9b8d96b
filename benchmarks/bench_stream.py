"""Benchmark /realtime/stream at full buffer: server CPU per tick and bytes per client, against per-client serialization.

Run: python benchmarks/bench_stream.py [--seconds 8]

The server is the real one (gunicorn gthread, one worker) in a child process, with a full buffer
(as in bench_buffer.py) and live traffic through the pool at the full buffer's own rate. The baseline is
served by the same process at /baseline/stream, built competently: every event kept as NumPy columns as it comes,
one shared tick a second whose per-minute buckets are found by np.unique over (tool, minute) and rebuilt only where
a minute's count changed, each message serialized once per tick and mode and sent to every client. Its buckets are
checked against the buffer's before the live traffic starts.
"""

import argparse
import http.client
import json
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from dash_app.stream import sse
from dash_app.stream.snapshot import RATES_SECONDS, RECENT_LIMIT, RECENT_SECONDS
from dash_app.testing import ROOT, TOOLS, USERS, feed, free_port, full_buffer_events
from dash_app.timeutil import iso_minute, iso_utc

# The full buffer holds 100,000 borrows, 100,000 returns and 10,000 failures of 6 h; live traffic keeps that rate.
LIVE_PER_SECOND = {"borrow": 100_000 / 21600, "return": 100_000 / 21600, "failure": 10_000 / 21600}
# Licenses in use at once in the live traffic: about ten per tool, past the bundled pools' commits.
LIVE_HELD = 60
# Two whole minutes: the open minute's buckets, in every delta, grow from nothing to the minute's users.
STEADY_SECONDS = 120


# ------------------------------------------------------------------ server side (child process)


def serve(port):
    """Serve the app with a full buffer, live traffic and the baseline route; print the worker's pid when ready."""
    from flask import Response, request

    from dash_app.config import Config
    from dash_app.serve import DashboardServer
    from dash_app.state import get_state
    from dash_app.testing.columns import EventColumns

    class BenchServer(DashboardServer):
        def load(self):
            from dash_app import create_app

            app = create_app(self.dashboard_config)
            state = get_state(app)
            history = full_buffer_events(time.time())
            feed(state.buffer, history)
            columns = EventColumns(TOOLS)
            columns.feed(history)  # the buffer was fed directly; what the pool records from now on reaches both
            state.recorder.add_listener(columns)
            ticker = ColumnTicker(state, columns)
            retention = state.buffer.retention_seconds
            metrics, _changed, _expired = ticker.metrics(state.buffer.clock())
            assert metrics == state.buffer.aggregate_tool_metrics(retention), "the baseline's buckets differ from ours"
            threading.Thread(target=live_traffic, args=(state.pool,), daemon=True).start()
            threading.Thread(target=ticker.run, daemon=True).start()

            @app.server.get("/baseline/stream")
            def baseline_stream():
                return Response(ticker.stream(request.args.get("delta") == "1"), content_type="text/event-stream")

            print("READY", os.getpid(), flush=True)
            return app.server

    config = Config(port=port, db=":memory:", demo=False, api_token="bench-token-0123456789", threads=256)
    BenchServer(config).run()


def live_traffic(pool):
    """Borrow, return and fail through the pool at the full buffer's rate, so pool status changes as in a real run."""
    rng = random.Random(11)
    due = {kind: 0.0 for kind in LIVE_PER_SECOND}
    borrowed = [pool.observe_borrow(rng.choice(TOOLS), rng.choice(USERS), at=time.time()).id for _ in range(LIVE_HELD)]
    while True:
        time.sleep(0.1)
        for kind, rate in LIVE_PER_SECOND.items():
            due[kind] += rate * 0.1
            while due[kind] >= 1:
                due[kind] -= 1
                if kind == "borrow":
                    borrowed.append(pool.observe_borrow(rng.choice(TOOLS), rng.choice(USERS), at=time.time()).id)
                elif kind == "return" and len(borrowed) > LIVE_HELD:
                    # Licenses are held a while: a return ends some earlier borrow, not the one just made.
                    pool.observe_return(borrowed.pop(rng.randrange(len(borrowed))), at=time.time())
                elif kind == "failure":
                    pool.observe_failure(rng.choice(TOOLS), rng.choice(USERS), "exhausted", at=time.time())


class ColumnTicker:
    """The baseline's ticker: one tick a second for every client, its buckets from the NumPy columns."""

    def __init__(self, state, columns):
        self.state, self.columns = state, columns
        self.keys = np.zeros(0, dtype=np.int64)  # the last tick's (tool code << 32 | minute) cells, sorted
        self.counts = np.zeros(0, dtype=np.int64)
        self.buckets = {}  # cell -> its bucket, rebuilt only when its count changes
        self.tick = None  # (id, {tool: buckets}, {tool: changed buckets}, {tool: expired timestamps}, the rest)
        self.messages = {}  # (tick id, delta) -> serialized message, built once for every client
        self.clients = 0
        self.changed = threading.Condition()

    def metrics(self, now):
        """Return ({tool: buckets}, {tool: changed buckets}, {tool: expired timestamps}) of the window ending `now`."""
        first = math.ceil((now - self.state.buffer.retention_seconds) / 60)
        borrows = self.columns.window("borrow", first * 60, math.inf)
        cells = (borrows["tool"] << 32) | (borrows["ts"] // 60).astype(np.int64)
        keys, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
        overage = np.bincount(inverse, weights=borrows["overage"], minlength=len(keys)).astype(np.int64)
        at = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        same = (at < len(self.keys)) & (self.keys[at] == keys) & (self.counts[at] == counts) if len(self.keys) else None
        fresh = np.flatnonzero(~same) if same is not None else np.arange(len(keys))
        # Distinct users of the changed cells: one np.unique over (cell, user) pairs.
        n_users = max(len(self.columns.users.names), 1)
        picked = np.isin(inverse, fresh)
        pairs = np.unique(inverse[picked] * n_users + borrows["user"][picked])
        cell_of = pairs // n_users
        starts, ends = np.searchsorted(cell_of, fresh), np.searchsorted(cell_of, fresh, side="right")
        names, tools = self.columns.users.names, self.columns.tools.names
        changed = {}
        key_list, count_list, overage_list = keys.tolist(), counts.tolist(), overage.tolist()
        for n, k in enumerate(fresh.tolist()):
            users = sorted(names[u] for u in (pairs[starts[n] : ends[n]] % n_users).tolist())
            key = key_list[k]
            bucket = self.buckets[key] = {
                "timestamp": iso_minute(key & 0xFFFFFFFF),
                "count": count_list[k],
                "users": users,
                "overage_count": overage_list[k],
            }
            changed.setdefault(tools[key >> 32], []).append(bucket)
        expired = {}
        for key in self.keys[np.isin(self.keys, keys, invert=True)].tolist():
            expired.setdefault(tools[key >> 32], []).append(self.buckets.pop(key)["timestamp"])
        self.keys, self.counts = keys, counts
        per_tool = {}
        for key in key_list:
            per_tool.setdefault(tools[key >> 32], []).append(self.buckets[key])
        return {tool: per_tool[tool] for tool in sorted(per_tool)}, changed, expired

    def run(self):
        """Tick once a second while a client listens."""
        number, deadline = 0, time.monotonic()
        while True:
            deadline += self.state.config.stream_interval
            time.sleep(max(0.0, deadline - time.monotonic()))
            if not self.clients:
                continue
            now = self.state.buffer.clock()
            metrics, changed, expired = self.metrics(now)
            rest = {
                "timestamp": iso_utc(now),
                "tools": self.state.pool.status(),
                "rates": self.state.buffer.get_rates(RATES_SECONDS),
                "recent_events": self.state.buffer.get_recent_events(RECENT_SECONDS, limit=RECENT_LIMIT),
                "buffer_stats": self.state.buffer.get_stats_summary(),
            }
            with self.changed:
                number += 1
                self.tick = (number, metrics, changed, expired, rest)
                self.messages = {}
                self.changed.notify_all()

    def message(self, tick, delta):
        """Return the serialized message of `tick` (full, or the delta from the tick before), built once per tick."""
        number, metrics, changed, expired, rest = tick
        with self.changed:
            sent = self.messages.get((number, delta))
            if sent is None:
                if delta:
                    payload = {"mode": "delta", **rest, "tools_full": True, "recent_events_full": True}
                    payload.update(tool_metrics=changed, expired=expired)
                else:
                    payload = {"mode": "full", **rest, "tool_metrics": metrics}
                sent = self.messages[(number, delta)] = sse.event(number, payload)
            return sent

    def stream(self, delta):
        """Yield one client's stream: the retry line, a full message, then a message each tick."""
        yield sse.RETRY
        with self.changed:
            self.clients += 1
        try:
            seen = None
            while True:
                with self.changed:
                    while self.tick is None or self.tick[0] == seen:
                        self.changed.wait()
                    tick = self.tick
                yield self.message(tick, delta and seen is not None)
                seen = tick[0]
        finally:
            with self.changed:
                self.clients -= 1


# ------------------------------------------------------------------ client side (this process)


class Reader(threading.Thread):
    """One stream client on a raw socket that counts the bytes it receives."""

    def __init__(self, port, path, gzip):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        encoding = "gzip" if gzip else "identity"
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: {encoding}\r\n\r\n".encode())
        self.gzip = gzip
        self.received = 0
        self.blocks = 0  # blank lines seen (uncompressed only): 2 once the retry line and the first message are in
        self.running = True

    def run(self):
        chunk = bytearray(1 << 20)
        try:
            while self.running:
                n = self.sock.recv_into(chunk)
                if not n:
                    return
                self.received += n
                if not self.gzip:
                    self.blocks += chunk.count(b"\n\n", 0, n)
        except OSError:
            return

    def close(self):
        self.running = False
        self.sock.close()


def cpu_seconds(pid):
    """Return the CPU time of a process, summed over its threads, in nanosecond resolution (Linux schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended just now
    return total / 1e9


def measure(port, pid, path, clients, seconds, gzip=False, warmup=3.0):
    """Open `clients` streams, let them settle, then return (CPU share of one core, bytes per client per second)."""
    readers = [Reader(port, path, gzip) for _ in range(clients)]
    for reader in readers:
        reader.start()
    time.sleep(warmup)
    # Past the first, full messages: a hundred of them are 100 MB, which takes the server a while to send.
    deadline = time.monotonic() + 60
    while any(not r.gzip and r.blocks < 2 for r in readers) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    received, cpu, start = sum(r.received for r in readers), cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    cpu_share = (cpu_seconds(pid) - cpu) / elapsed
    per_client = (sum(r.received for r in readers) - received) / max(clients, 1) / elapsed
    for reader in readers:
        reader.close()
    time.sleep(2)  # let the server notice and free the streams
    return cpu_share, per_client


def delta_breakdown(port, seconds):
    """Return the mean bytes of a delta message and of its parts ({part: bytes}), how many, and the bytes per second."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/realtime/stream?delta=1", headers={"Accept-Encoding": "identity"})
    response = connection.getresponse()
    parts = {"tool_metrics + expired": ("tool_metrics", "expired"), "recent_events": ("recent_events",), "tools": ("tools",)}
    sizes, messages, pending = dict.fromkeys([*parts, "the rest", "whole message"], 0), 0, b""
    start = None
    stop_at = time.monotonic() + seconds + 5
    while time.monotonic() < stop_at:
        pending += response.read1(1 << 16)
        *blocks, pending = pending.split(b"\n\n")
        for block in blocks:
            data = next((line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")), None)
            message = json.loads(data) if data else None
            if message is None or message["mode"] != "delta":
                continue  # the retry line, and the first, full message
            if start is None:
                start, stop_at = time.monotonic(), time.monotonic() + seconds
                continue  # counted from here: whole messages over whole seconds
            messages, last = messages + 1, time.monotonic()
            sizes["whole message"] += len(block) + 2
            counted = 0
            for part, keys in parts.items():
                size = sum(len(json.dumps({key: message[key]}, separators=(",", ":"))) - 2 for key in keys)
                sizes[part] += size
                counted += size
            sizes["the rest"] += len(data) - counted
    connection.close()
    # Each counted message ends one interval after the first delta, which was not counted.
    return {part: total / max(messages, 1) for part, total in sizes.items()}, messages, sizes["whole message"] / (last - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per row")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        line = server.stdout.readline().split()
        if not line or line[0] != "READY":
            raise SystemExit("the benchmark server did not start")
        pid = int(line[1])
        time.sleep(1)
        seconds = args.seconds
        idle, _ = measure(port, pid, "/realtime/stream", 0, seconds, warmup=0)
        print("Full buffer (100,000 borrows + 100,000 returns over 6 h, 10,000 failures), live traffic at that rate, 1 tick/s.")
        print("Server CPU per tick (ms, and % of one core at 1 Hz); bytes per client per second on the wire, uncompressed.")
        print(f"Idle ticker, no client: {idle * 1000:.1f} ms/tick")
        print()
        print(
            f"{'mode':<5} {'clients':>7} | {'shared ms/tick':>14} {'% core':>6} {'B/client/s':>11} | "
            f"{'baseline ms/tick':>18} {'% core':>6} {'B/client/s':>11} | {'ratio':>6}"
        )
        rows = {}
        for mode, query in (("full", ""), ("delta", "?delta=1")):
            for clients in (1, 10, 100):
                shared = rows[(mode, clients)] = measure(port, pid, "/realtime/stream" + query, clients, seconds)
                baseline = measure(port, pid, "/baseline/stream" + query, clients, seconds)
                print(
                    f"{mode:<5} {clients:>7} | {shared[0] * 1000:>14.1f} {shared[0] * 100:>5.1f}% {shared[1]:>11,.0f} | "
                    f"{baseline[0] * 1000:>18.1f} {baseline[0] * 100:>5.1f}% {baseline[1]:>11,.0f} | "
                    f"{baseline[0] / shared[0]:>5.1f}x",
                    flush=True,
                )
        print()
        print("With Accept-Encoding: gzip (what browsers send): one compression per variant per tick, shared by its clients")
        for mode, query, clients in (("full", "", 10), ("delta", "?delta=1", 100)):
            cpu, sent = rows[(mode, "gzip")] = measure(port, pid, "/realtime/stream" + query, clients, seconds, gzip=True)
            print(f"{mode:<5} {clients:>7} | {cpu * 1000:>14.1f} {cpu * 100:>5.1f}% {sent:>11,.0f}", flush=True)
        print()
        # The open minute's buckets grow through the minute, so a steady state is measured over whole minutes.
        breakdown, messages, per_second = delta_breakdown(port, STEADY_SECONDS)
        print(f"One delta client for {STEADY_SECONDS} s ({messages} messages), mean bytes per message by part, uncompressed:")
        print("  " + ", ".join(f"{part} {size:,.0f}" for part, size in breakdown.items()))
        print()
        print(f"100 delta clients: {rows[('delta', 100)][0] * 100:.1f} % of one core (target <= 25 %)")
        print(
            f"steady-state delta client: {per_second / 1000:.1f} KB/s uncompressed over {STEADY_SECONDS} s, "
            f"{rows[('delta', 'gzip')][1] / 1000:.1f} KB/s gzip (target <= 5 KB/s); "
            f"full client {rows[('full', 10)][1] / 1e6:.2f} MB/s"
        )
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
