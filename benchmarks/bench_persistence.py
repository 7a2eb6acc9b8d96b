"""The store on each database, side by side: write throughput, restore of a full 6 h buffer, the 30-day capacity query.

For a SQLite file and for a PostgreSQL server (Debian's, started in a temporary directory as the tests start it):

- writes: a full 6 h buffer's events (100,000 borrows, 100,000 returns, 10,000 failures) recorded one call at a
  time through the recorder into the batched writer, timed until the last is committed. Baseline, in the same
  process and database: the same statements with one transaction per event, as a writer without batching would.
- restore: the newest rows of each kind into the buffer (restore_buffer); baseline, every row replayed as an event.
- capacity: 30 days of 200 tools (synthetic_history) in the database, then the capacity report over all 30 days
  through CapacityService: once cold in the analysis process (which reads the history into its copy first), and
  in this process reading the store each time.
- with --size-day: the database size of a day of demo traffic (SQLite), as before.

Run: python benchmarks/bench_persistence.py [--sessions N] [--denials N] [--only sqlite|postgresql] [--size-day]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import Event, borrow_event, failure_event, return_event
from dash_app.recording import EventRecorder
from dash_app.store import Store
from dash_app.store.restore import restore_buffer
from dash_app.testing import FakeClock, PostgresServer, full_buffer_events

BASELINE_EVENTS = 3000  # one transaction each: enough for a steady rate, few enough to wait for


def buffer_events(end: float) -> list[Event]:
    """Return a full buffer's events, oldest first, as the recorder receives them."""
    borrows: dict[str, tuple[str, str]] = {}
    events = []
    for ts, kind, args in full_buffer_events(end):
        if kind == "borrow":
            tool, user, over, bid = args
            borrows[bid] = (tool, user)
            events.append(borrow_event(tool, user, over, bid, ts))
        elif kind == "return":
            tool, user = borrows[args[0]]
            events.append(return_event(args[0], user, tool, ts))
        else:
            tool, user, reason = args
            events.append(failure_event(tool, user, reason, ts))
    return events


def write_through_the_writer(db: str, events: list[Event], end: float) -> float:
    """Record `events` one call at a time into the store's writer; return the seconds until all are committed."""
    store = Store(db)
    store.start()
    recorder = EventRecorder(RealtimeMetricsBuffer(clock=FakeClock(end)), listeners=[store])
    began = time.perf_counter()
    for event in events:
        recorder.record(event)
    assert store.flush(600), store.last_error
    seconds = time.perf_counter() - began
    store.stop()
    return seconds


def write_one_transaction_each(db: str, events: list[Event]) -> float:
    """Baseline: the writer's own work for each event, in a transaction of its own; return the seconds taken."""
    store = Store(db)
    began = time.perf_counter()
    for event in events:
        with store.writing() as conn:
            store._write_rows(conn, [event], [])
    seconds = time.perf_counter() - began
    store.close()
    return seconds


def naive_restore(store: Store, buffer: RealtimeMetricsBuffer) -> None:
    """Baseline: read every stored row in time order and replay it as an event through a recorder."""
    recorder = EventRecorder(buffer)
    for row in store.scan('SELECT ts, kind, tool, "user", borrow_id, is_overage, reason FROM events ORDER BY ts'):
        recorder.record(Event(*row))


def capacity_query(db: str, history: Any, folder: Path) -> tuple[float, float, float, int]:
    """Return the seconds of the 30-day report: in a new analysis process (which first reads the history), in it with
    its copy current, and in this process reading the store; and the tools reported."""
    from dash_app.analytics.runners import InProcessRunner
    from dash_app.analytics.service import CapacityService
    from dash_app.config import Config
    from dash_app.licenses import LicensePool, load_inventory
    from dash_app.testing import estate_inventory

    _sessions, _denials, _specs, start, end = history
    tools_file = folder / "tools.json"
    tools_file.write_text(json.dumps(estate_inventory(200)))
    pool = LicensePool(load_inventory(str(tools_file)), EventRecorder(RealtimeMetricsBuffer()))
    config = Config(history_days=31)
    store = Store(db)
    service = CapacityService(store, pool, config, clock=lambda: end)  # a file or a server: a process of its own
    try:
        began = time.perf_counter()
        report = service.report(start, end)  # the process starts, reads the history into its copy, analyses
        cold = time.perf_counter() - began
        began = time.perf_counter()
        service.report(start, end - 1)  # another period (not cached), the copy current
        current = time.perf_counter() - began
        began = time.perf_counter()
        CapacityService(store, pool, config, clock=lambda: end, runner=InProcessRunner(store)).report(start, end)
        in_process = time.perf_counter() - began
    finally:
        service.stop()
        store.close()
    return cold, current, in_process, len(report.tools)


def measure(db: str, events: list[Event], end: float) -> dict[str, float]:
    """Return the writer's rate and the restore times, on the new, empty database `db`."""
    figures: dict[str, float] = {}
    figures["writer"] = len(events) / write_through_the_writer(db, events, end)
    store = Store(db)
    buffer = RealtimeMetricsBuffer(clock=FakeClock(end))
    began = time.perf_counter()
    restored, _position = restore_buffer(store, buffer)
    figures["restore"] = time.perf_counter() - began
    assert restored == 210_000, restored
    baseline_buffer = RealtimeMetricsBuffer(clock=FakeClock(end))
    began = time.perf_counter()
    naive_restore(store, baseline_buffer)
    figures["restore_baseline"] = time.perf_counter() - began
    assert baseline_buffer.aggregate_tool_metrics(21600) == buffer.aggregate_tool_metrics(21600)
    store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--denials", type=int, default=50_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--size-day", action="store_true", help="also the SQLite size of a day of demo traffic")
    args = parser.parse_args()

    from dash_app.testing.synthetic import store_history, synthetic_history

    end = time.time()
    events = buffer_events(end)
    history = synthetic_history(days=30, tools=200, sessions=args.sessions, denials=args.denials)
    results: dict[str, dict[str, float]] = {}
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = PostgresServer() if "postgresql" in kinds else None  # started, in a temporary directory
        try:
            for kind in kinds:
                fresh = (lambda name: str(folder / f"{name}.db")) if kind == "sqlite" else server.create_database  # type: ignore[union-attr]
                figures = measure(fresh("full"), events, end)
                baseline = events[:BASELINE_EVENTS]
                figures["writer_baseline"] = len(baseline) / write_one_transaction_each(fresh("baseline"), baseline)
                db = fresh("capacity")
                began = time.perf_counter()
                store = Store(db)
                store_history(store, history)
                store.close()
                figures["fill"] = time.perf_counter() - began
                figures["cold"], figures["current"], figures["in_process"], figures["tools"] = capacity_query(db, history, folder)
                results[kind] = figures
        finally:
            if server is not None:
                server.stop()

    width = 62
    print(f"{'':<{width}} " + "".join(f"{kind:>14}" for kind in kinds))

    def row(label: str, key: str, fmt: str, unit: str) -> None:
        print(f"{label:<{width}} " + "".join(f"{format(results[k][key], fmt):>11} {unit:<2}" for k in kinds))

    row("writes: 210,000 events recorded one by one, batched writer", "writer", ",.0f", "/s")
    row(f"baseline: one transaction per event ({BASELINE_EVENTS:,} events)", "writer_baseline", ",.0f", "/s")
    row("restore of a full 6 h buffer (target <= 3 s)", "restore", ".2f", "s")
    row("baseline: replay every row as an event", "restore_baseline", ".2f", "s")
    row(f"30-day capacity report, {args.sessions:,} sessions: new analysis process", "cold", ".2f", "s")
    row("the same, its copy current (target <= 3 s)", "current", ".2f", "s")
    row("baseline: in this process, reading the store each time", "in_process", ".2f", "s")
    row("(setup) the sessions and denials put in directly", "fill", ".1f", "s")
    if args.size_day:
        size_of_a_day()


def used_bytes(store: Store) -> int:
    page_size = store.read("PRAGMA page_size")[0][0]
    pages = store.read("PRAGMA page_count")[0][0] - store.read("PRAGMA freelist_count")[0][0]
    return int(pages * page_size)


def size_of_a_day() -> None:
    """Print the SQLite size of a day of demo traffic, and after the raw events past 7 h are pruned."""
    from dash_app.licenses import LicensePool, load_inventory
    from dash_app.licenses.pool_storage import PoolStorage
    from dash_app.sources.demo import DemoTraffic
    from dash_app.store.history import HistoryKeeper

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "demo.db")
        keeper = HistoryKeeper(store, raw_keep_seconds=7 * 3600, history_seconds=30 * 86400)
        store.start()
        pool = LicensePool(load_inventory(), EventRecorder(RealtimeMetricsBuffer(), listeners=[store]), store=PoolStorage(store))
        demo = DemoTraffic(pool, backfill_hours=24, seed=1)
        demo._seed_schedule(time.time() - 86400)
        demo.run_until(time.time(), backfill=True)
        store.flush()
        keeper.aggregate()
        day_bytes = used_bytes(store)
        events_per_day = store.read("SELECT count(*) FROM events")[0][0]
        keeper.prune()
        steady = used_bytes(store)
        history_rows = store.read("SELECT (SELECT count(*) FROM minute_stats) + (SELECT count(*) FROM hour_stats)")[0][0]
        store.stop()
    print("Database size per day of demo traffic (36 users, bursts), SQLite")
    print(f"one day, raw events + aggregates               {day_bytes / 2**20:>8.2f} MB  ({events_per_day:,} events)")
    print(f"after pruning raw events past 7 h              {steady / 2**20:>8.2f} MB  ({history_rows:,} minute+hour rows)")


if __name__ == "__main__":
    main()
