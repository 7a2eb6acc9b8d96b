"""Benchmark FlexLM debug-log ingestion on a generated 1,000,000-line log, against a competent baseline, in one process.

Run: python benchmarks/bench_flexlm.py [--lines N]

Every path reads the same generated file (5.5 h of a busy two-vendor server, so every event lands in the
buffer's 6 h window and the buffer runs at its caps):
  baseline              a competent first reader: one regex a line, the time from the day's date, IN matched
                        to the oldest OUT, each chunk's events handed to the buffer in one add_events call
  events dropped        our reader, parser and LogIngest (IN matched to OUT, restarts), events thrown away
  parse + buffer        the same, each chunk's events handed to the buffer in one add_events call, as the
                        pool's recording_batch does (no pool, no store)
  parse + pool + buffer LogIngest -> LicensePool.observe_* -> EventRecorder -> buffer, no SQLite
  server path           the wiring create_app builds (pool, recorder, buffer, SQLite writer, Prometheus
                        counters), timed until SQLite has committed every event
"""

import argparse
import gc
import os
import random
import re
import tempfile
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import borrow_event, failure_event, return_event
from dash_app.sources.flexlm.ingest import LogIngest
from dash_app.sources.flexlm.parse import LineParser
from dash_app.sources.flexlm.tailing import LogTail
from dash_app.store import Store
from dash_app.store.checkpoints import Checkpoints

FEATURES = {
    "MLM": ["MATLAB", "SIMULINK", "Signal_Toolbox", "Control_Toolbox", "Optimization_Toolbox", "Stateflow"],
    "snpslmd": ["VCSRuntime_Net", "DesignCompiler", "PrimeTime", "Verdi"],
    "vector": ["DaVinci_Configurator_SE", "CANoe", "CANalyzer"],
}
USERS = [f"{name}{n}" for n in range(60) for name in ("anna", "jürgen", "li", "omar", "sofia")]
TARGET = 200_000  # lines/s into the buffer (issue 7)


def generate(path, lines, end, seed=11):
    """Write a realistic debug log of `lines` lines ending at local time `end` (a datetime); return the counts by kind."""
    rng = random.Random(seed)
    span = timedelta(hours=5.5)  # inside the buffer's 6 h, so every event lands in it
    start = end - span
    step = span / lines
    kinds = {"OUT": 0, "IN": 0, "DENIED": 0, "QUEUED": 0, "DEQUEUED": 0, "other": 0}
    open_ = []
    out = []
    t = start
    out.append(
        f"{t:%H:%M:%S} (lmgrd) FlexNet Licensing (v11.19.4.0 build 301532 x64_lsb) started on lic01 (linux) "
        f"({t.month}/{t.day}/{t.year})"
    )
    out.append(f"{t:%H:%M:%S} (lmgrd) TIMESTAMP {t.month}/{t.day}/{t.year}")
    next_stamp = t + timedelta(hours=6)
    vendors = list(FEATURES)
    while len(out) < lines:
        t += step
        stamp = f"{t.hour:2d}:{t.minute:02d}:{t.second:02d}"
        if t >= next_stamp:
            out.append(f"{stamp} (lmgrd) TIMESTAMP {t.month}/{t.day}/{t.year}")
            next_stamp += timedelta(hours=6)
            continue
        r = rng.random()
        if r < 0.01:
            out.append(f"{stamp} ({rng.choice(vendors)}) SLOG: Statistics Log Frequency is 240 minute(s).")
            kinds["other"] += 1
        elif r < 0.04:
            v = rng.choice(vendors)
            out.append(
                f'{stamp} ({v}) DENIED: "{rng.choice(FEATURES[v])}" {rng.choice(USERS)}@ws-{rng.randrange(400)}  '
                "(Licensed number of users already reached. (-4,342))"
            )
            kinds["DENIED"] += 1
        elif r < 0.05:
            v = rng.choice(vendors)
            who = f'"{rng.choice(FEATURES[v])}" {rng.choice(USERS)}@ws-{rng.randrange(400)}  '
            out.append(f"{stamp} ({v}) QUEUED: {who}")
            out.append(f"{stamp} ({v}) DEQUEUED: {who}")
            kinds["QUEUED"] += 1
            kinds["DEQUEUED"] += 1
        elif (r < 0.53 and len(open_) < 400) or not open_:
            v = rng.choice(vendors)
            who = f'"{rng.choice(FEATURES[v])}" {rng.choice(USERS)}@ws-{rng.randrange(400)}'
            extra = "  (2 licenses)" if rng.random() < 0.02 else "  "
            out.append(f"{stamp} ({v}) OUT: {who}{extra}")
            open_.append((v, who, extra))
            kinds["OUT"] += 1
        else:
            v, who, extra = open_.pop(rng.randrange(len(open_)))
            out.append(f"{stamp} ({v}) IN: {who}{extra}")
            kinds["IN"] += 1
    Path(path).write_text("\n".join(out[:lines]) + "\n", encoding="utf-8")
    return kinds


class BufferOnly:
    """The pool's observe_* interface writing straight into the buffer: what 'parse + buffer' measures.

    Like the pool, it hands each fed chunk's events to the buffer in one add_events call.
    """

    def __init__(self, buffer):
        self.buffer = buffer
        self.open = {}
        self.held = []

    @contextmanager
    def recording_batch(self):
        yield
        held, self.held = self.held, []
        self.buffer.add_events(held)

    def active_borrows(self):
        return []

    def tool_for_feature(self, feature):
        return feature

    def observe_borrow(self, tool, user, at, borrow_id=None, host=None, version=None):
        # Like the pool, remember whose borrow it is, so the return event carries its tool and user.
        self.open[borrow_id] = (tool, user)
        self.held.append(borrow_event(tool, user, False, borrow_id, at, host, version))

    def observe_return(self, borrow_id, at):
        tool, user = self.open.pop(borrow_id, (None, None))
        self.held.append(return_event(borrow_id, user, tool, at))

    def observe_failure(self, tool, user, reason, at, event_id=None):
        self.held.append(failure_event(tool, user, reason, at))


class Discard(BufferOnly):
    """The pool's observe_* interface doing nothing: the cost of reading, parsing and matching alone."""

    def observe_borrow(self, tool, user, at, borrow_id=None, host=None, version=None):
        pass

    def observe_return(self, borrow_id, at):
        pass

    def observe_failure(self, tool, user, reason, at, event_id=None):
        pass


_BASELINE_LINE = re.compile(
    r"\s*(\d+):(\d+):(\d+) \(([^)]+)\) "
    r"(?:(OUT|IN|DENIED|QUEUED|DEQUEUED): \"([^\"]+)\" ([^@\s]+)@(\S+)(.*)|TIMESTAMP (\d+)/(\d+)/(\d+))"
)
_BASELINE_COUNT = re.compile(r"\((\d+) licenses\)")
BASELINE_BATCH = 10_000  # lines whose events go to the buffer in one add_events call, as our reader's chunks do


def baseline_ingest(path, buffer):
    """A competent first reader: one regex a line, the time from the day's date, IN matched to the oldest OUT."""
    day = last = None
    open_ = {}  # (daemon, feature, user, host) -> borrow id groups, oldest first
    events = []
    n = 0
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh):
            if number % BASELINE_BATCH == 0 and events:
                buffer.add_events(events)
                events = []
            m = _BASELINE_LINE.match(line)
            if m is None:
                continue
            h, mi, sec, daemon, verb, feature, user, host, rest, month, mday, year = m.groups()
            if verb is None:
                day = date(int(year), int(month), int(mday))
                continue
            moment = datetime(day.year, day.month, day.day, int(h), int(mi), int(sec))
            if last is not None and moment < last - timedelta(hours=1):  # the time went back: the next day
                day += timedelta(days=1)
                moment += timedelta(days=1)
            last = moment
            ts = moment.timestamp()
            key = (daemon, feature, user, host)
            if verb == "OUT":
                count = _BASELINE_COUNT.search(rest)
                ids = []
                for _ in range(int(count.group(1)) if count else 1):
                    n += 1
                    ids.append(f"b{n}")
                    events.append(borrow_event(feature, user, False, ids[-1], ts))
                open_.setdefault(key, []).append((ids, feature, user))
            elif verb == "IN" and open_.get(key):
                ids, tool, who = open_[key].pop(0)
                events.extend(return_event(borrow_id, who, tool, ts) for borrow_id in ids)
            elif verb == "DENIED":
                events.append(failure_event(feature, user, "exhausted", ts))
    buffer.add_events(events)


def ours_into_buffer(path, target, store):
    """Read the whole file through LogTail and LogIngest into `target` (a pool or a stand-in for one)."""
    ingest = LogIngest(target, "bench", name=path)
    tail = LogTail(path, ingest, Checkpoints(store), store)
    tail.open()
    tail.read_available()
    tail.close()
    return ingest


def pool_path(path, target_buffer, store):
    """Our ingestion through a pool and recorder into the buffer, without SQLite (a pool built without a store)."""
    from dash_app.licenses import LicensePool, load_inventory
    from dash_app.recording import EventRecorder

    ours_into_buffer(path, LicensePool(load_inventory(), EventRecorder(target_buffer)), store)


def server_path(path, db_path):
    """Build the server's wiring (create_app), then ingest through its pool until SQLite has every event."""
    from dash_app import create_app
    from dash_app.state import get_state

    state = get_state(create_app({"demo": False, "db": db_path, "api_token": "bench-token-0123456789"}))
    began = time.perf_counter()
    ingest = LogIngest(state.pool, "bench-server", name=path)
    tail = LogTail(path, ingest, Checkpoints(state.store), state.store)
    tail.open()
    tail.read_available()
    state.store.flush(timeout=600)
    seconds = time.perf_counter() - began
    tail.close()
    rows = state.store.read("SELECT COUNT(*) FROM events")[0][0]
    state.stop()
    return ingest, seconds, rows


def timed_into_buffer(run, path, repeat):
    """Return the best wall time of `run(path, buffer, store)` over `repeat` fresh buffers, and what the last buffer held."""
    best = None
    for _ in range(repeat):
        buffer = RealtimeMetricsBuffer()
        store = Store(":memory:")  # holds only the read position; every run starts at the file's beginning
        store.start()
        gc.collect()
        began = time.perf_counter()
        run(path, buffer, store)
        seconds = time.perf_counter() - began
        store.stop()
        best = seconds if best is None else min(best, seconds)
        held = (buffer.get_stats_summary(), buffer.aggregate_tool_metrics(21600))
        del buffer
    return best, held


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per in-memory path; the best is shown")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-flexlm-")
    log_path = os.path.join(workdir, "lmgrd.log")
    end = datetime.now().replace(microsecond=0) - timedelta(minutes=1)
    began = time.perf_counter()
    kinds = generate(log_path, args.lines, end)
    size = os.path.getsize(log_path)
    print(
        f"generated {args.lines:,} lines ({size / 1e6:.1f} MB) in {time.perf_counter() - began:.1f} s: "
        + ", ".join(f"{k} {v:,}" for k, v in kinds.items())
    )

    lines = Path(log_path).read_text(encoding="utf-8").split("\n")
    parse_seconds = None
    for _ in range(args.repeat):
        parser_only = LineParser()
        began = time.perf_counter()
        for line in lines:
            parser_only.parse(line)
        seconds = time.perf_counter() - began
        parse_seconds = seconds if parse_seconds is None else min(parse_seconds, seconds)
    del lines

    base_seconds, base_held = timed_into_buffer(lambda p, b, _store: baseline_ingest(p, b), log_path, args.repeat)
    ours_seconds, ours_held = timed_into_buffer(
        lambda p, b, store: ours_into_buffer(p, BufferOnly(b), store), log_path, args.repeat
    )
    discard_seconds, _ = timed_into_buffer(lambda p, b, store: ours_into_buffer(p, Discard(b), store), log_path, args.repeat)
    pool_seconds, pool_held = timed_into_buffer(pool_path, log_path, args.repeat)
    assert base_held == ours_held, "both readers must leave the same events and buckets in the buffer"
    assert pool_held[0] == ours_held[0], "the pool path holds the same events"
    gc.collect()
    ingest, server_seconds, rows = server_path(log_path, os.path.join(workdir, "bench.db"))

    stats = ours_held[0]
    print(f"counters: {ingest.counts}")
    print(
        f"buffer after ingest: {stats['borrow_count']:,} borrows, {stats['return_count']:,} returns, "
        f"{stats['failure_count']:,} failures (caps 100,000 / 100,000 / 10,000); SQLite events rows: {rows:,}"
    )
    print()

    def rate(seconds):
        return args.lines / seconds

    print(f"{'parse only (LineParser.parse)':46s} {rate(parse_seconds):>10,.0f} lines/s")
    print(f"{'ours: read + parse + match, events dropped':46s} {rate(discard_seconds):>10,.0f} lines/s")
    print(f"{'baseline: read + parse + buffer':46s} {rate(base_seconds):>10,.0f} lines/s")
    print(f"{'ours: read + parse + buffer':46s} {rate(ours_seconds):>10,.0f} lines/s   (target >= {TARGET:,})")
    print(f"{'speed-up against the baseline':46s} {base_seconds / ours_seconds:>10.1f} x   (the same buffer)")
    print(f"{'ours: read + parse + pool + buffer':46s} {rate(pool_seconds):>10,.0f} lines/s   (no SQLite)")
    print(
        f"{'ours: server path, until SQLite committed':46s} {rate(server_seconds):>10,.0f} lines/s   "
        f"(pool + buffer + SQLite + Prometheus; {server_seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
