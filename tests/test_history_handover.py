"""The long history of a file that several processes write: events reach it whichever process aggregates, and when."""

import json
import random
import signal
import subprocess
import sys
import threading

import pytest

from dash_app.events import Event, borrow_event, failure_event, return_event
from dash_app.store import Store
from dash_app.store.database import UNAGGREGATED_SINCE
from dash_app.store.history import HistoryKeeper
from dash_app.testing import ROOT, FakeClock

NOW = 1_800_000_000.0 + 3 * 3600 + 41 * 60 + 7.25  # inside an hour, inside a minute
HOUR, DAY = 3600.0, 86400.0
TOOLS = ("Tight", "Roomy")
USERS = ("ann", "bob", "cy", "dee")


def traffic(seed, count, start, seconds):
    """Return `count` events in time order from `start` over `seconds`: borrows, returns of open ones, failures."""
    rng = random.Random(seed)
    times = sorted(start + rng.uniform(0, seconds) for _ in range(count))
    open_borrows: list[Event] = []
    events = []
    for n, ts in enumerate(times):
        roll = rng.random()
        if roll < 0.5 or not open_borrows and roll < 0.85:
            tool, user = rng.choice(TOOLS), rng.choice(USERS)
            events.append(borrow_event(tool, user, rng.random() < 0.2, f"b{seed}-{n}", ts))
            open_borrows.append(events[-1])
        elif roll < 0.85:
            borrow = open_borrows.pop(rng.randrange(len(open_borrows)))
            events.append(return_event(str(borrow.borrow_id), borrow.user, borrow.tool, ts))
        else:
            events.append(failure_event(rng.choice(TOOLS), rng.choice(USERS), rng.choice(("exhausted", "queued")), ts))
    return events


def batches(events, seed, size=7):
    """Split `events` into batches written in shuffled order, so later batches bring earlier (late) events."""
    parts = [events[i : i + size] for i in range(0, len(events), size)]
    random.Random(seed).shuffle(parts)
    return parts


def expected_rows(events, unit):
    """Brute force: {(tool, minute or hour): (count, overage, users, returns, failures, peak, avg_in_use, level_end)}.

    Every event replayed per tool in time order from 0; the level at an instant counts that instant's events.
    """
    rows = {}
    for tool in {e.tool for e in events}:
        mine = sorted((e for e in events if e.tool == tool), key=lambda e: e.ts)
        steps = [(e.ts, {"borrow": 1, "return": -1, "failure": 0}[e.kind]) for e in mine]

        def level_at(t, inclusive=True, steps=steps):
            level = 0
            for ts, step in steps:
                if ts > t or (ts == t and not inclusive):
                    break
                level = max(0, level + step)
            return level

        for key in sorted({int(e.ts // unit) for e in mine}):
            start, stop = key * unit, key * unit + unit
            inside = [e for e in mine if start <= e.ts < stop]
            instants = sorted({e.ts for e in inside})
            edges = [start, *[t for t in instants if t > start], stop]
            area = sum(level_at(a) * (b - a) for a, b in zip(edges, edges[1:]))
            failures: dict[str, int] = {}
            for e in inside:
                if e.kind == "failure":
                    failures[e.reason] = failures.get(e.reason, 0) + 1
            rows[(tool, key)] = (
                sum(e.kind == "borrow" for e in inside),
                sum(bool(e.is_overage) for e in inside if e.kind == "borrow"),
                sorted({e.user for e in inside if e.kind == "borrow"}),
                sum(e.kind == "return" for e in inside),
                failures,
                max([level_at(start, inclusive=False)] + [level_at(t) for t in instants]),
                pytest.approx(area / unit),
                level_at(stop, inclusive=False),
            )
    return rows


def stored_rows(store, table, unit_name):
    """The rows of minute_stats or hour_stats, in the shape of expected_rows."""
    return {
        (tool, key): (count, overage, json.loads(users), returns, json.loads(failures), peak, average, end)
        for tool, key, count, overage, users, returns, failures, peak, average, end in store.read(
            f"SELECT tool, {unit_name}, count, overage_count, users, returns, failures, peak, avg_in_use, level_end FROM {table}"
        )
    }


def assert_history_is(store, events):
    """Check the store's minute and hour rows against a replay of `events`, and that nothing is left to aggregate."""
    assert stored_rows(store, "minute_stats", "minute") == expected_rows(events, 60)
    assert stored_rows(store, "hour_stats", "hour") == expected_rows(events, 3600)
    assert unaggregated(store) is None


def unaggregated(store):
    """The file's durable mark: the earliest event time written and not yet aggregated, or None."""
    rows = store.read("SELECT value FROM history_meta WHERE key = ?", (UNAGGREGATED_SINCE,))
    return rows[0][0] if rows else None


def keeper(store, clock, **kwargs):
    """A HistoryKeeper as the app builds one: raw events kept an hour, history for 30 days."""
    return HistoryKeeper(store, raw_keep_seconds=HOUR, history_seconds=30 * DAY, clock=clock, **kwargs)


# A leader process: its store and HistoryKeeper write the events it is given (from stdin), then it is killed with
# SIGKILL before its aggregate is due (the period is made long, so the kill always comes first).
KILLED_LEADER = """
import json, os, signal, sys
from dash_app.events import Event
from dash_app.store import Store
from dash_app.store import history

history.AGGREGATE_EVERY_SECONDS = history.PRUNE_EVERY_SECONDS = 10**6
path, now = sys.argv[1], float(sys.argv[2])
store = Store(path)
history.HistoryKeeper(store, raw_keep_seconds=3600, history_seconds=30 * 86400, clock=lambda: now)
store.start()
for batch in json.load(sys.stdin):
    store.on_events([Event(*fields) for fields in batch])
    assert store.flush() and store.persisted
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_events_of_a_leader_killed_before_it_aggregated_reach_the_next_leaders_history(tmp_path):
    path = tmp_path / "shared.db"
    Store(path).close()  # the file exists, as the deployment's does
    events = traffic(seed=1, count=160, start=NOW - 50 * 60, seconds=45 * 60)  # across an hour's edge
    parts = batches(events, seed=1)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_LEADER, str(path), repr(NOW)],
        input=json.dumps([[list(e) for e in part] for part in parts]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    store = Store(path)
    history = keeper(store, FakeClock(NOW))
    store.start()
    try:
        # What the killed leader left: every event, none aggregated, and the mark of where they start.
        assert store.read("SELECT COUNT(*) FROM events") == [(len(events),)]
        assert store.read("SELECT COUNT(*) FROM minute_stats") == [(0,)]
        assert unaggregated(store) == min(e.ts for e in events)
        generation = history.generation
        store.run_tasks_now()
        assert_history_is(store, events)
        assert history.generation > generation  # readers that cache on it see the new rows
    finally:
        store.stop()


def test_a_process_that_does_not_lead_leaves_aggregating_and_pruning_to_the_leader(tmp_path):
    path = tmp_path / "shared.db"
    clock = FakeClock(NOW)
    # Like ingest-flexlm beside a server: it writes events to the file, but does not hold the lease.
    writer = Store(path)
    follower = keeper(writer, clock)
    follower.leading = lambda: False
    writer.start()
    old = traffic(seed=2, count=40, start=NOW - 3 * HOUR, seconds=HOUR)  # past the raw events' keep time
    recent = traffic(seed=3, count=60, start=NOW - 40 * 60, seconds=30 * 60)
    for part in batches(old + recent, seed=2):
        writer.on_events(part)
    assert writer.flush()
    generation = follower.generation
    writer.stop()  # runs every periodic task once more: they do nothing here
    assert writer.persisted
    assert follower.generation == generation

    store = Store(path)
    try:
        assert store.read("SELECT COUNT(*) FROM events") == [(len(old) + len(recent),)]  # nothing pruned
        assert store.read("SELECT COUNT(*) FROM minute_stats") == [(0,)]  # nothing aggregated
        assert unaggregated(store) == min(e.ts for e in old)  # left for the leader
    finally:
        store.close()

    # The lease holder (another process's store on the same file) folds them all in, then prunes raw events.
    store = Store(path)
    leader = keeper(store, clock)
    store.start()
    try:
        store.run_tasks_now()
        assert_history_is(store, old + recent)
        assert store.read("SELECT COUNT(*) FROM events WHERE ts < ?", (NOW - HOUR,)) == [(0,)]
        assert store.read("SELECT COUNT(*) FROM events") == [(sum(e.ts >= NOW - HOUR for e in old + recent),)]
        assert leader.generation > 0
    finally:
        store.stop()


def test_leading_is_asked_at_each_run(tmp_path):
    store = Store(tmp_path / "h.db")
    leads = [False]
    history = keeper(store, FakeClock(NOW))
    history.leading = lambda: leads[0]
    store.start()
    try:
        events = traffic(seed=4, count=50, start=NOW - 20 * 60, seconds=15 * 60)
        store.on_events(events)
        store.run_tasks_now()
        assert store.read("SELECT COUNT(*) FROM minute_stats") == [(0,)]
        assert unaggregated(store) == events[0].ts
        leads[0] = True  # this process took the lease
        store.run_tasks_now()
        assert_history_is(store, events)
    finally:
        store.stop()


def test_the_embedded_app_aggregates_what_it_writes_late_events_included(tmp_path):
    """One process, no lease: the default keeper leads, and each run folds in what was written since the last."""
    store = Store(tmp_path / "h.db")
    keeper(store, FakeClock(NOW))
    store.start()
    try:
        events = traffic(seed=5, count=200, start=NOW - 55 * 60, seconds=50 * 60)
        written = []
        for part in batches(events, seed=5, size=13):
            store.on_events(part)
            written.extend(part)
            store.run_tasks_now()
            assert_history_is(store, written)
    finally:
        store.stop()


def test_a_failed_aggregation_leaves_the_mark_for_the_next_run(tmp_path):
    failing = [True]

    def series_of(tool):
        if failing[0]:
            raise RuntimeError("series unavailable")
        return tool

    store = Store(tmp_path / "h.db")
    keeper(store, FakeClock(NOW), series_of=series_of)
    store.start()
    try:
        events = traffic(seed=6, count=40, start=NOW - 20 * 60, seconds=15 * 60)
        store.on_events(events)
        store.run_tasks_now()  # the failure is logged and shown, not raised: the writer goes on
        assert not store.persisted and "series unavailable" in str(store.last_error)
        assert store.read("SELECT COUNT(*) FROM minute_stats") == [(0,)]
        assert unaggregated(store) == events[0].ts
        failing[0] = False
        store.run_tasks_now()
        assert_history_is(store, events)
    finally:
        store.stop()


def test_events_written_while_another_process_aggregates_are_never_lost(tmp_path):
    """A writer's batches and the leader's runs interleave on one file; every event ends in the history."""
    path = tmp_path / "shared.db"
    clock = FakeClock(NOW)
    writer = Store(path)
    keeper(writer, clock).leading = lambda: False
    leader_store = Store(path)
    leader = keeper(leader_store, clock)
    writer.start()
    leader_store.start()
    done = threading.Event()
    runs = [0]

    def lead():
        # The leader's aggregate, run as its writer thread runs it, as often as it can: a millisecond apart.
        while not done.wait(0.001):
            with leader_store._conn_lock:
                leader.aggregate()
            runs[0] += 1

    thread = threading.Thread(target=lead)
    thread.start()
    try:
        events = traffic(seed=7, count=400, start=NOW - 58 * 60, seconds=55 * 60)
        for part in batches(events, seed=7, size=5):
            writer.on_events(part)
            assert writer.flush()
        done.set()
        thread.join()
        leader_store.run_tasks_now()  # the leader's next run, after the last write
        assert runs[0] > 0 and writer.persisted and leader_store.persisted
        assert_history_is(leader_store, events)
    finally:
        done.set()
        thread.join()
        writer.stop()
        leader_store.stop()
