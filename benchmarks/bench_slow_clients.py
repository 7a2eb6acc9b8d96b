"""Latency of GET /licenses/status and GET / while slow clients hold partial requests, with its baseline.

Run: python benchmarks/bench_slow_clients.py [--seconds 60] [--setups production,module]

Two setups, each measured for --seconds with no slow clients (the baseline) and then with them:
the production setup (deploy/run: nginx in front of `python -m dash_app --threads 1016`), with 1,000 partial
requests and 1,000 open delta streams; and `python -m dash_app` alone (256 threads), with 1,000 partial requests,
then with 5,000 partial requests and 300 slow bodies. Each partial request is a request line and part of its
headers, held; each slow body is a whole head of a Dash callback request and the first bytes of its body, held.
When a server cuts one (its deadline, 10 s), it opens another, so they are held the whole time. The slow clients
and streams run in a child process, so their sockets do not share a GIL with the measuring client, which sends 5
GET /licenses/status and 5 GET / a second, at random times, each on a new connection, as a browser's first visit
does. Demo traffic is on, so the streams carry live deltas.
"""

import argparse
import http.client
import multiprocessing
import random
import statistics
import tempfile
import time
from pathlib import Path

from dash_app.testing import p95
from dash_app.testing.slow_clients import (
    SLOW_BODY,
    PartialClients,
    StreamClients,
    raise_open_file_limit,
    start_module_server,
    start_production,
)

PATHS = ("/licenses/status", "/")
REQUESTS_PER_SECOND = 10
REQUEST_TIMEOUT = 30.0


def hold_load(port, partial, streams, bodies, ready, stop, report):
    """Child process: open the streams, then the partial requests and slow bodies; hold them until `stop`, then report."""
    stream_clients = StreamClients(port, streams) if streams else None
    started = stream_clients.started(timeout=120) if stream_clients else True
    clients = PartialClients(port, partial, reopen=True)
    body_clients = PartialClients(port, bodies, reopen=True, request=SLOW_BODY)
    ready.set()
    stop.wait()
    answered = body_clients.answered
    report.send(
        {
            "held": clients.held(),
            "cuts": clients.cuts,
            "bodies_held": body_clients.held(),
            "bodies_cut": body_clients.cuts,
            "bodies_408": sum(answer.startswith(b"HTTP/1.1 408") for answer in answered),
            "streams_started": started,
            "streams_ended": stream_clients.ended if stream_clients else 0,
            "stream_bytes": stream_clients.received if stream_clients else 0,
        }
    )
    clients.close()
    body_clients.close()
    if stream_clients:
        stream_clients.close()


def get(port, path):
    """GET `path` on a new connection; return its latency in seconds, or None on an error or a non-200."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        ok = False
    finally:
        conn.close()
    return time.perf_counter() - start if ok else None


def measure(port, seconds, seed=1):
    """Send REQUESTS_PER_SECOND requests a second, alternating PATHS, for `seconds`; return latencies per path and failures.

    The requests arrive at random times (a Poisson process), as users' do: on a fixed 100 ms schedule they would be
    locked in phase with the server's 1 s stream tick, and each path would either always or never meet the tick.
    """
    rng = random.Random(seed)
    latencies = {path: [] for path in PATHS}
    failed = 0
    start = time.perf_counter()
    due, n = start, 0
    while due - start < seconds:
        # A slow answer is not made up for with a burst: the schedule runs on regardless.
        time.sleep(max(0.0, due - time.perf_counter()))
        path = PATHS[n % len(PATHS)]
        took = get(port, path)
        if took is None:
            failed += 1
        else:
            latencies[path].append(took)
        n += 1
        due += rng.expovariate(REQUESTS_PER_SECOND)
    return latencies, failed


def run_loaded(server, seconds, partial, streams, bodies):
    """Measure while a child process holds `partial` partial requests, `streams` delta streams and `bodies` slow bodies."""
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=hold_load, args=(server.port, partial, streams, bodies, ready, stop, sender))
    child.start()
    try:
        if not ready.wait(timeout=300):
            raise RuntimeError("the slow clients did not start")
        clients = json_get(server.port, "/realtime/stream/clients")["clients"] if streams else 0
        latencies, failed = measure(server.port, seconds)
        stop.set()
        counts = receiver.recv() if receiver.poll(60) else {}
    finally:
        stop.set()
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    counts["stream_clients"] = clients
    return latencies, failed, counts


def json_get(port, path):
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def p99(values):
    """Return the 99th percentile."""
    return statistics.quantiles(values, n=100)[-1] if len(values) > 1 else values[0]


def row(label, latencies, failed, note=""):
    cells = []
    for path in PATHS:
        values = [v * 1000 for v in latencies[path]]
        cells.append(f"{statistics.median(values):6.1f} {p95(values):6.1f} {p99(values):6.1f}" if values else f"{'-':>20}")
    return f"{label:<44}| {cells[0]}  | {cells[1]}  | {failed:>6}  {note}"


def note_of(counts, seconds, streams, bodies):
    """Return what the slow clients saw: held at the end, cut (and reopened), streams served, bodies answered 408."""
    note = f"held at end {counts.get('held', '?')}, cut and reopened {counts.get('cuts', '?')}"
    if bodies:
        note += (
            f"; bodies held at end {counts.get('bodies_held', '?')}, cut {counts.get('bodies_cut', '?')} "
            f"({counts.get('bodies_408', '?')} with a 408)"
        )
    if streams:
        rate = counts.get("stream_bytes", 0) / streams / seconds / 1000
        ended = counts.get("streams_ended", "?")
        note += f"; streams served {counts['stream_clients']}, ended {ended}, {rate:.1f} KB/s each"
    return note


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per measurement (default 60)")
    parser.add_argument("--partial", type=int, default=1000, help="slow clients holding partial requests (default 1000)")
    parser.add_argument("--streams", type=int, default=1000, help="open delta streams in the production setup (default 1000)")
    parser.add_argument("--many", type=int, default=5000, help="partial requests of the plain server's last row (default 5000)")
    parser.add_argument("--bodies", type=int, default=300, help="slow bodies of the plain server's last row (default 300)")
    parser.add_argument("--setups", default="production,module", help="which setups to run (default production,module)")
    args = parser.parse_args()
    raise_open_file_limit(max(args.partial + args.streams, args.many + args.bodies) + 1024)
    # fork: the child inherits the imports and the raised limit.
    multiprocessing.set_start_method("fork")

    # Each setup: how to start it, then its loads as (partial requests, streams, slow bodies).
    setups = {
        "production": (
            "production: nginx + gunicorn, 1,016 threads",
            lambda tmp: start_production(tmp, DASH_APP_DEMO="1"),
            [(args.partial, args.streams, 0)],
        ),
        "module": (
            "python -m dash_app alone, 256 threads",
            lambda tmp: start_module_server(tmp, DASH_APP_DEMO="1"),
            [(args.partial, 0, 0), (args.many, 0, args.bodies)],
        ),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for key in args.setups.split(","):
            name, start, loads = setups[key]
            server = start(tmp)
            try:
                latencies, failed = measure(server.port, args.seconds)
                rows.append(row(f"{name}", latencies, failed, "baseline, no slow clients"))
                for partial, streams, bodies in loads:
                    latencies, failed, counts = run_loaded(server, args.seconds, partial, streams, bodies)
                    load = f"+ {partial:,} partial" + (f", {streams:,} streams" if streams else "")
                    load += f", {bodies:,} slow bodies" if bodies else ""
                    rows.append(row(f"  {load}", latencies, failed, note_of(counts, args.seconds, streams, bodies)))
            finally:
                server.stop()

    print(
        "Slow clients: connections each holding a partial request head or a slow body (reopened when cut), "
        f"{args.seconds:g} s per row."
    )
    print(
        f"Latency on a new connection, {REQUESTS_PER_SECOND // len(PATHS)} requests/s per path at random times, in ms; "
        "failed = errors or timeouts (30 s)."
    )
    print()
    print(f"{'setup':<44}| {'/licenses/status':>20}  | {'/ (page)':>20}  | failed")
    print(f"{'':<44}| {'p50':>6} {'p95':>6} {'p99':>6}  | {'p50':>6} {'p95':>6} {'p99':>6}  |")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
