"""Restore time of a full 6 h buffer from SQLite, and the database's size per day of demo traffic.

Run: python benchmarks/bench_persistence.py
"""

import tempfile
import time
from pathlib import Path

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import Event, borrow_event, failure_event, return_event
from dash_app.licenses import LicensePool, load_inventory
from dash_app.recording import EventRecorder
from dash_app.sources.demo import DemoTraffic
from dash_app.store import Store
from dash_app.store.history import HistoryKeeper
from dash_app.store.restore import restore_buffer
from dash_app.testing import FakeClock, full_buffer_events


def used_bytes(store):
    page_size = store.read("PRAGMA page_size")[0][0]
    pages = store.read("PRAGMA page_count")[0][0] - store.read("PRAGMA freelist_count")[0][0]
    return pages * page_size


def fill_store(path, end):
    """Write a full buffer's worth of events through the store's own writer."""
    store = Store(path)
    store.start()
    recorder = EventRecorder(RealtimeMetricsBuffer(clock=FakeClock(end)), listeners=[store])
    borrows = {}
    for ts, kind, args in full_buffer_events(end):
        if kind == "borrow":
            tool, user, over, bid = args
            borrows[bid] = (tool, user)
            recorder.record(borrow_event(tool, user, over, bid, ts))
        elif kind == "return":
            tool, user = borrows[args[0]]
            recorder.record(return_event(args[0], user, tool, ts))
        else:
            tool, user, reason = args
            recorder.record(failure_event(tool, user, reason, ts))
    store.stop()


def naive_restore(store, buffer):
    """Baseline: read every stored row in time order and replay it as an event through a recorder."""
    recorder = EventRecorder(buffer)
    for ts, kind, tool, user, borrow_id, over, reason in store.read(
        "SELECT ts, kind, tool, user, borrow_id, is_overage, reason FROM events ORDER BY ts"
    ):
        recorder.record(Event(ts, kind, tool, user, borrow_id, over, reason))


def main():
    end = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "full.db"
        fill_store(path, end)
        store = Store(path)

        buffer = RealtimeMetricsBuffer(clock=FakeClock(end))
        began = time.perf_counter()
        restored, _position = restore_buffer(store, buffer)
        ours = time.perf_counter() - began
        assert restored == 210_000, restored

        baseline_buffer = RealtimeMetricsBuffer(clock=FakeClock(end))
        began = time.perf_counter()
        naive_restore(store, baseline_buffer)
        baseline = time.perf_counter() - began
        assert baseline_buffer.aggregate_tool_metrics(21600) == buffer.aggregate_tool_metrics(21600)
        store.close()

        # A day of demo traffic, written through the real pool, recorder and writer.
        path = Path(tmp) / "demo.db"
        store = Store(path)
        keeper = HistoryKeeper(store, raw_keep_seconds=7 * 3600, history_seconds=30 * 86400)
        store.start()
        pool = LicensePool(load_inventory(), EventRecorder(RealtimeMetricsBuffer(), listeners=[store]), store=store)
        demo = DemoTraffic(pool, backfill_hours=24, seed=1)
        demo._seed_schedule(time.time() - 86400)
        demo.run_until(time.time(), backfill=True)
        store.flush()
        with store._conn_lock:
            keeper.aggregate(store._conn)
        day_bytes = used_bytes(store)
        events_per_day = store.read("SELECT count(*) FROM events")[0][0]
        with store._conn_lock:
            keeper.prune(store._conn)
        steady_raw_and_day_of_history = used_bytes(store)
        history_rows = store.read("SELECT (SELECT count(*) FROM minute_stats) + (SELECT count(*) FROM hour_stats)")[0][0]
        store.stop()

    print("Restore of a full 6 h buffer (100,000 borrows, 100,000 returns, 10,000 failures) from SQLite")
    print(f"restore, newest rows per kind into the buffer  {ours:>8.2f} s   (target <= 3 s)")
    print(f"baseline, replay every row as an event dict    {baseline:>8.2f} s   ratio {baseline / ours:.1f}x")
    print("Database size per day of demo traffic (36 users, bursts)")
    print(f"one day, raw events + aggregates               {day_bytes / 2**20:>8.2f} MB  ({events_per_day:,} events)")
    print(
        f"after pruning raw events past 7 h              {steady_raw_and_day_of_history / 2**20:>8.2f} MB  "
        f"({history_rows:,} minute+hour rows)"
    )


if __name__ == "__main__":
    main()
