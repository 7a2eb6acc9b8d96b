"""The store on each database, side by side: write throughput, restore of a full 6 h buffer, the 30-day capacity query.

For a SQLite file and for a PostgreSQL server (Debian's, started in a temporary directory as the tests start it):

- writes: a full 6 h buffer's events (100,000 borrows, 100,000 returns, 10,000 failures) recorded one call at a
  time through the recorder into the batched writer, timed until the last is committed. Baselines, in the same
  process, each on a database of its own: what one would write first, the same rows in batches of the writer's
  size (5,000 events a transaction) through SQLAlchemy Core's usual executemany (a list of dicts a statement), the
  stored rows asserted equal to the writer's; the writer's statements alone on those batches (no recorder, no
  queue); and the writer's own work with one transaction per event, as a writer without batching would.
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


def write_core_executemany(db: str, events: list[Event]) -> float:
    """Baseline: the same rows through SQLAlchemy Core's executemany (dicts), 5,000 events a transaction; the seconds."""
    from dash_app.events import source_of
    from dash_app.store.batch_writes import _writes
    from dash_app.store.writer_thread import BATCH_LIMIT

    store = Store(db)
    writes = _writes(store.dialect)
    began = time.perf_counter()
    for i in range(0, len(events), BATCH_LIMIT):
        batch = events[i : i + BATCH_LIMIT]
        charges: dict[str | None, int] = {}
        for e in batch:
            if e.kind == "borrow" and e.is_overage:
                charges[e.tool] = charges.get(e.tool, 0) + 1
        changed = i // BATCH_LIMIT + 1
        rows: dict[str, list[dict[str, Any]]] = {
            "borrow": [
                {"id": e.borrow_id, "tool": e.tool, "user": e.user, "borrowed_at": e.ts, "is_overage": e.is_overage}
                | {
                    "returned_at": None,
                    "source": source_of(e.borrow_id),
                    "host": e.host,
                    "version": e.version,
                    "changed": changed,
                }
                for e in batch
                if e.kind == "borrow"
            ],
            "returned": [
                {"id": e.borrow_id, "tool": e.tool, "user": e.user, "borrowed_at": e.ts, "is_overage": 0, "returned_at": e.ts}
                | {"source": source_of(e.borrow_id), "changed": changed}
                for e in batch
                if e.kind == "return"
            ],
            "charge": [{"tool": tool, "overage_borrows": n} for tool, n in charges.items()],
            "event": [e._asdict() for e in batch],
            "denial": [
                {"ts": e.ts, "tool": e.tool, "user": e.user, "reason": e.reason, "changed": changed}
                for e in batch
                if e.kind == "failure"
            ],
        }
        with store.engine.begin() as conn:
            for name, params in rows.items():
                if params:
                    conn.execute(writes[name], params)
    seconds = time.perf_counter() - began
    store.close()
    return seconds


def write_batches_directly(db: str, events: list[Event]) -> float:
    """The writer's own statements alone, on the same batches as the Core baseline (no recorder, no queue); the seconds."""
    from dash_app.store.writer_thread import BATCH_LIMIT

    store = Store(db)
    began = time.perf_counter()
    for i in range(0, len(events), BATCH_LIMIT):
        store._write([events[i : i + BATCH_LIMIT]])
    seconds = time.perf_counter() - began
    store.close()
    return seconds


# What both ways of writing must leave in the database (the write stamps and the writer's own marks aside).
STORED = {
    "borrows": 'SELECT id, tool, "user", borrowed_at, is_overage, returned_at, source, host, version FROM borrows ORDER BY id',
    "charges": "SELECT tool, overage_borrows FROM charges ORDER BY tool",
    "events": 'SELECT ts, kind, tool, "user", borrow_id, is_overage, reason, host, version FROM events ORDER BY rowid',
    "denials": 'SELECT ts, tool, "user", reason FROM denials ORDER BY rowid',
}


def stored_rows(db: str) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row the writes leave in the database `db`, table by table."""
    store = Store(db)
    try:
        return {table: [tuple(row) for row in store.scan(sql)] for table, sql in STORED.items()}
    finally:
        store.close()


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
    service = CapacityService(
        store, pool, history_days=config.history_days, billing_days=config.billing_days, clock=lambda: end
    )  # a file or a server: a process of its own
    try:
        began = time.perf_counter()
        report = service.report(start, end)  # the process starts, reads the history into its copy, analyses
        cold = time.perf_counter() - began
        began = time.perf_counter()
        service.report(start, end - 1)  # another period (not cached), the copy current
        current = time.perf_counter() - began
        began = time.perf_counter()
        CapacityService(
            store,
            pool,
            history_days=config.history_days,
            billing_days=config.billing_days,
            clock=lambda: end,
            runner=InProcessRunner(store),
        ).report(start, end)
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
                full = fresh("full")
                figures = measure(full, events, end)
                core = fresh("core")
                figures["writer_core"] = len(events) / write_core_executemany(core, events)
                assert stored_rows(core) == stored_rows(full), "the baseline must store what the writer stores"
                direct = fresh("direct")
                figures["writer_direct"] = len(events) / write_batches_directly(direct, events)
                assert stored_rows(direct) == stored_rows(full)
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
    row("the writer's statements alone, 5,000 events a transaction", "writer_direct", ",.0f", "/s")
    row("baseline: SQLAlchemy Core executemany, 5,000 events a transaction", "writer_core", ",.0f", "/s")
    for label, key in (("the batched writer", "writer"), ("its statements alone", "writer_direct")):
        ratios = "".join(f"{results[k][key] / results[k]['writer_core']:>11.2f} x " for k in kinds)
        print(f"{'  ' + label + ', times the Core baseline':<{width}} {ratios}")
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
