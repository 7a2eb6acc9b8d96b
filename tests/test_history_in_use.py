"""Licenses in use in the stored history (minute and hour rows, long-window bins) against a brute-force replay."""

import itertools
import json
import sqlite3
from bisect import bisect_left, bisect_right
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from dash_app.events import Event
from dash_app.store import Store
from dash_app.store.history import (
    HistoryKeeper,
    bin_seconds_for,
    estimated_levels,
    history_series,
    rebuild_hours_from,
)
from dash_app.testing import FakeClock
from dash_app.timeutil import parse_iso

NOW = 1_800_000_000.0 + 2 * 3600 + 17 * 60 + 23.5  # inside an hour, inside a minute
TOOLS = ["Vector - DaVinci Configurator SE", "GreenHills Multi IDE", "typo one", "typo two"]
OTHER = "(other unknown tools)"
DAY = 86400


def fold(tool):
    """The series of a tool name: the two inventory tools keep theirs, every other name shares one."""
    return tool if tool in TOOLS[:2] else OTHER


@contextmanager
def history_store(db, clock, series_of=fold):
    """A real Store on the new database `db`, with its writer thread and a HistoryKeeper that never prunes."""
    store = Store(db)
    keeper = HistoryKeeper(store, raw_keep_seconds=10**9, history_seconds=10**9, clock=clock, series_of=series_of)
    store.start()
    try:
        yield store, keeper
    finally:
        store.stop()


def write(store, events):
    """Write events through the store's writer, then fold them into the aggregates as its periodic task does."""
    store.on_events(events)
    store.run_tasks_now()


class Replay:
    """Every event written, replayed per series in time order (ties in write order) from 0, never below 0."""

    def __init__(self, events):
        steps = {"borrow": 1, "return": -1, "failure": 0}
        self.moves = {}
        for e in sorted(events, key=lambda e: e.ts):  # stable: write order within an instant
            self.moves.setdefault(fold(e.tool), []).append((e.ts, steps[e.kind], e))
        self.steps = {}
        for series, moves in self.moves.items():
            level, instants, after = 0, [], []
            for ts, group in itertools.groupby(moves, key=lambda m: m[0]):
                for _, step, _e in group:
                    level = max(0, level + step)
                instants.append(ts)
                after.append(level)
            self.steps[series] = (instants, after)

    def at(self, series, t):
        """The level at instant t, its own events counted."""
        instants, after = self.steps[series]
        i = bisect_right(instants, t)
        return after[i - 1] if i else 0

    def before(self, series, t):
        instants, after = self.steps[series]
        i = bisect_left(instants, t)
        return after[i - 1] if i else 0

    def series(self, window, now):
        """Return (bin size, {series: [(start, count, returns, failures, peak, average)]}) as history_series should."""
        size = bin_seconds_for(window)
        unit = 3600 if size >= 3600 else 60
        start = int((now - window) // size) * size
        stop_all = (int(now // unit) + 1) * unit  # the unit under way counts whole, its last level held
        out = {}
        for series, moves in self.moves.items():
            instants, _after = self.steps[series]
            points = []
            for begin in range(start, int(stop_all), size):
                stop = min(begin + size, stop_all)
                inside = [m for m in moves if begin <= m[0] < stop]
                entering = self.before(series, begin)
                if not inside and not entering:
                    continue
                times = [t for t in instants if begin <= t < stop]
                peak = max([entering] + [self.at(series, t) for t in times])
                edges = sorted({begin, stop, *times})
                area = sum(self.at(series, a) * (b - a) for a, b in zip(edges, edges[1:]))
                points.append(
                    (
                        begin,
                        sum(1 for m in inside if m[1] == 1),
                        sum(1 for m in inside if m[1] == -1),
                        sum(1 for m in inside if m[1] == 0),
                        peak,
                        area / (stop - begin),
                    )
                )
            if points:
                out[series] = points
        return size, out


def assert_series_match(store, replay, window, now):
    size, got = history_series(store, window, now=now)
    want_size, want = replay.series(window, now)
    assert size == want_size
    assert set(got) == set(want)
    for series, points in want.items():
        mine = got[series]
        assert [int(parse_iso(p["timestamp"])) for p in mine] == [w[0] for w in points], (series, window)
        assert [(p["count"], p["returns"], sum(p["failures"].values()), p["peak"]) for p in mine] == [w[1:5] for w in points]
        assert [p["avg_in_use"] for p in mine] == pytest.approx([w[5] for w in points], rel=1e-9, abs=1e-9)


def assert_rows_match(store, replay):
    """Every minute and hour row's peak, mean and end level, against the replay."""
    for table, unit in (("minute_stats", 60), ("hour_stats", 3600)):
        for series, at, peak, average, end in store.read(f"SELECT tool, {table[:-6]}, peak, avg_in_use, level_end FROM {table}"):
            begin, stop = at * unit, at * unit + unit
            times = [t for t in replay.steps[series][0] if begin <= t < stop]
            assert peak == max([replay.before(series, begin)] + [replay.at(series, t) for t in times]), (table, series, at)
            assert end == replay.before(series, stop)
            edges = sorted({begin, stop, *times})
            area = sum(replay.at(series, a) * (b - a) for a, b in zip(edges, edges[1:]))
            assert average == pytest.approx(area / unit, rel=1e-9, abs=1e-9), (table, series, at)


# Events within the last three days, clustered on a few minutes and hours so that instants, minutes and hours repeat.
event_time = st.one_of(
    st.tuples(st.integers(0, 3 * 24 - 1), st.integers(0, 59), st.sampled_from([0.0, 0.5, 12.0, 30.25, 59.75])),
    st.tuples(st.sampled_from([0, 1, 5, 30]), st.sampled_from([0, 16, 17, 59]), st.floats(0, 59.99).map(lambda s: round(s, 2))),
).map(lambda hms: NOW - 3 * DAY + 3600 + hms[0] * 3600 + hms[1] * 60 + hms[2])
event = st.tuples(st.sampled_from(["borrow", "borrow", "return", "return", "failure"]), st.integers(0, 3), event_time)
SCENARIO = {"batches": st.lists(st.lists(event, min_size=1, max_size=25), min_size=1, max_size=4)}


def as_events(batch):
    return [
        Event(
            min(ts, NOW),
            kind,
            TOOLS[t],
            "u",
            "id" if kind != "failure" else None,
            False if kind == "borrow" else None,
            "exhausted" if kind == "failure" else None,
        )
        for kind, t, ts in batch
    ]


@pytest.fixture
def as_new(databases_at_head):
    """Return a function that sets one database at the newest schema back to what Store() made of it, and names it.

    Each of a property's examples starts from a database as new without making one (a PostgreSQL CREATE DATABASE, a
    SQLite file's upgrade): every table but alembic_version is emptied, and the rows the upgrade wrote are put back.
    """
    db = databases_at_head()
    store = Store(db)
    try:
        tables = [t for t in inspect(store.engine).get_table_names() if t != "alembic_version"]
        with store.snapshot() as conn:
            first = {t: [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {t}"))] for t in tables}
    finally:
        store.close()

    def as_new_again():
        store = Store(db)
        try:
            with store.writing() as conn:
                for table in tables:
                    conn.execute(text(f"DELETE FROM {table}"))
                    for row in first[table]:
                        columns, values = ", ".join(row), ", ".join(f":{name}" for name in row)
                        conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)
        finally:
            store.close()
        return db

    return as_new_again


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**SCENARIO)
def test_stored_levels_match_a_brute_force_replay(as_new, batches):
    """Batches written and folded one after another, later ones often reaching back before earlier ones."""
    clock = FakeClock(NOW)
    written = []
    with history_store(as_new(), clock) as (store, _keeper):
        for batch in batches:
            events = as_events(batch)
            write(store, events)
            written.extend(events)
        replay = Replay(written)
        assert_rows_match(store, replay)
        for window in (8 * 3600, DAY, 7 * DAY, 30 * DAY):
            assert_series_match(store, replay, window, NOW)


def test_spikes_to_the_total_show_in_the_two_hour_and_hour_bins(database):
    """A tool of total 10 at 3 in use hits 10 for 30 s nine times in 6 h: its bins say 10 at 30 d and at 7 d."""
    clock = FakeClock(NOW)
    tool = TOOLS[0]
    base = NOW - 7 * 3600
    events = [Event(base, "borrow", tool, "base", f"base{i}", False, None) for i in range(3)]
    spikes = [NOW - 6 * 3600 + 600 + k * 2400 + 13.5 for k in range(9)]
    for k, at in enumerate(spikes):
        events += [Event(at, "borrow", tool, "ci", f"s{k}-{i}", True, None) for i in range(7)]
        events += [Event(at + 30, "return", tool, "ci", f"s{k}-{i}", None, None) for i in range(7)]
    with history_store(database, clock) as (store, _keeper):
        write(store, events)
        for window, size in ((30 * DAY, 7200), (7 * DAY, 3600), (DAY, 300)):
            got_size, series = history_series(store, window, now=NOW)
            assert got_size == size
            points = {int(parse_iso(p["timestamp"])): p for p in series[tool]}
            for at in spikes:
                assert points[int(at // size) * size]["peak"] == 10
            # Between the spikes 3 are held; the mean moves by 7 licenses x 30 s per spike only.
            assert {p["peak"] for p in points.values()} <= {3, 10}
            unit = 3600 if size >= 3600 else 60
            for begin, p in points.items():
                spikes_in = sum(1 for at in spikes if int(at // size) * size == begin)
                span = min(begin + size, (int(NOW // unit) + 1) * unit) - begin
                if begin >= base:
                    assert p["avg_in_use"] == pytest.approx(3 + spikes_in * 7 * 30 / span)
        # The old view (the level at each bin's end) never saw them.
        (ends,) = zip(*store.read("SELECT level_end FROM hour_stats WHERE tool = :tool", {"tool": tool}))
        assert set(ends) == {3}


def test_a_license_held_without_events_fills_every_bin_of_the_window(database):
    clock = FakeClock(NOW)
    with history_store(database, clock) as (store, _keeper):
        write(store, [Event(NOW - 10 * DAY, "borrow", TOOLS[1], "u", "held", False, None)])
        size, series = history_series(store, 7 * DAY, now=NOW)
        points = series[TOOLS[1]]
        start = int((NOW - 7 * DAY) // size) * size
        assert [int(parse_iso(p["timestamp"])) for p in points] == list(range(start, int(NOW), size))
        assert all(p["peak"] == 1 and p["avg_in_use"] == 1.0 and p["count"] == 0 for p in points)
        # A window wholly before the borrow shows nothing; one holding it starts with the borrow's bin.
        _size, before = history_series(store, DAY, now=NOW - 11 * DAY)
        assert before == {}


def test_an_old_event_arriving_after_its_raw_neighbours_were_pruned_moves_the_later_rows(database):
    clock = FakeClock(NOW)
    tool = TOOLS[0]
    with history_store(database, clock) as (store, _keeper):
        write(store, [Event(NOW - 5 * 3600 + 10, "borrow", tool, "u", "a", False, None)])
        write(store, [Event(NOW - 3 * 3600 + 10, "borrow", tool, "u", "b", False, None)])
        store.read("DELETE FROM events")  # pruned, as raw events are after the retention plus an hour
        # A FlexLM backfill brings an older borrow (and no return) after the fact.
        write(store, [Event(NOW - 6 * 3600 + 10, "borrow", tool, "u", "old", False, None)])
        rows = store.read(
            "SELECT minute, count, peak, level_end FROM minute_stats WHERE tool = :tool ORDER BY minute", {"tool": tool}
        )
        assert [(count, peak, end) for _m, count, peak, end in rows] == [(1, 1, 1), (1, 2, 2), (1, 3, 3)]
        hours = store.read("SELECT level_end FROM hour_stats WHERE tool = :tool ORDER BY hour", {"tool": tool})
        assert [end for (end,) in hours] == [1, 2, 3]


OLD_SCHEMA = """
CREATE TABLE events (ts REAL NOT NULL, kind TEXT NOT NULL, tool TEXT, user TEXT, borrow_id TEXT, is_overage INTEGER, reason TEXT);
CREATE TABLE minute_stats (
    tool TEXT NOT NULL, minute INTEGER NOT NULL, count INTEGER NOT NULL, overage_count INTEGER NOT NULL,
    users TEXT NOT NULL, returns INTEGER NOT NULL, failures TEXT NOT NULL, PRIMARY KEY (tool, minute)
) WITHOUT ROWID;
CREATE TABLE hour_stats (
    tool TEXT NOT NULL, hour INTEGER NOT NULL, count INTEGER NOT NULL, overage_count INTEGER NOT NULL,
    users TEXT NOT NULL, returns INTEGER NOT NULL, failures TEXT NOT NULL, PRIMARY KEY (tool, hour)
) WITHOUT ROWID;
"""


def test_migration_adds_the_columns_to_an_old_database_and_keeps_its_rows(tmp_path):
    db = tmp_path / "old.db"
    tool = TOOLS[1]
    old_minute = int((NOW - 2 * DAY) // 60)
    recent = NOW - 3600 + 0.5  # raw events still cover this minute
    conn = sqlite3.connect(db)
    conn.executescript(OLD_SCHEMA)
    minute_rows = [
        (tool, old_minute, 3, 1, json.dumps(["ann", "bob"]), 1, "{}"),  # 3 borrows, 1 return: 2 held after
        (tool, old_minute + 5, 0, 0, "[]", 0, json.dumps({"exhausted": 2})),
        (tool, int(recent // 60), 1, 0, json.dumps(["cy"]), 0, "{}"),
    ]
    conn.executemany("INSERT INTO minute_stats VALUES (?, ?, ?, ?, ?, ?, ?)", minute_rows)
    hour_rows = [
        (tool, old_minute // 60, 3, 1, json.dumps(["ann", "bob"]), 1, json.dumps({"exhausted": 2})),
        (tool, int(recent // 3600), 1, 0, json.dumps(["cy"]), 0, "{}"),
    ]
    conn.executemany("INSERT INTO hour_stats VALUES (?, ?, ?, ?, ?, ?, ?)", hour_rows)
    # Pruning may have cut into the oldest raw event's minute: that one keeps its stored row (it has none here).
    conn.execute("INSERT INTO events VALUES (?, 'failure', ?, 'cy', NULL, NULL, 'exhausted')", (recent - 60, tool))
    conn.execute("INSERT INTO events VALUES (?, 'borrow', ?, 'cy', 'c1', 0, NULL)", (recent, tool))
    conn.execute("INSERT INTO events VALUES (?, 'return', ?, 'cy', 'c1', NULL, NULL)", (recent + 15, tool))
    conn.commit()
    conn.close()

    store = Store(db)  # revision 7 adds the columns, estimated, and leaves the minutes raw events cover to the keeper
    try:
        estimated = store.read("SELECT peak, avg_in_use, level_end FROM minute_stats ORDER BY minute")
        assert estimated[2] == estimated_levels(2, 1, 0)
        HistoryKeeper(store, raw_keep_seconds=7 * 3600, history_seconds=30 * DAY, clock=FakeClock(NOW)).aggregate()
        for table in ("minute_stats", "hour_stats"):
            columns = [row[1] for row in store.read(f"PRAGMA table_info({table})")]
            assert columns[-3:] == ["peak", "avg_in_use", "level_end"]
        kept = store.read("SELECT tool, minute, count, overage_count, users, returns, failures FROM minute_stats ORDER BY minute")
        assert kept[:2] == minute_rows[:2]  # rows without raw events are kept as they were
        levels = store.read("SELECT peak, avg_in_use, level_end FROM minute_stats ORDER BY minute")
        # Estimated from counts, walked from 0: 0 -> 2, then 2 held; then rebuilt from the raw events: 2 -> 3 -> 2.
        assert levels[0] == estimated_levels(0, 3, 1) == (2, 1.0, 2)
        assert levels[1] == (2, 2.0, 2)
        assert levels[2] == (3, pytest.approx(2 + 15 / 60), 2)
        assert kept[2][2:6] == (1, 0, '["cy"]', 1)  # the raw events had a return the old row missed
        hours = store.read("SELECT hour, count, peak, avg_in_use, level_end FROM hour_stats ORDER BY hour")
        assert hours[0][:2] == (old_minute // 60, 3) and hours[0][2] == 2 and hours[0][4] == 2
        assert hours[1][2:] == (3, pytest.approx(2 + 15 / 3600), 2)
        assert store.read("SELECT key FROM history_meta WHERE key = 'unaggregated_since'") == []  # rebuilt once
        _size, series = history_series(store, 7 * DAY, now=NOW)
        assert max(p["peak"] for p in series[tool]) == 3
    finally:
        store.close()

    # The file opens again as it is.
    store = Store(db)
    try:
        HistoryKeeper(store, raw_keep_seconds=7 * 3600, history_seconds=30 * DAY, clock=FakeClock(NOW))
        assert store.read("SELECT peak, avg_in_use, level_end FROM minute_stats ORDER BY minute") == levels
    finally:
        store.close()


def test_rows_inserted_without_levels_are_estimated_when_read(database):
    """A row written by an older version's code path (no levels) still reads, estimated from its counts."""
    clock = FakeClock(NOW)
    tool = TOOLS[0]
    with history_store(database, clock) as (store, _keeper):
        minute = int((NOW - 3 * 3600) // 60)
        store.read(
            "INSERT INTO minute_stats (tool, minute, count, overage_count, users, returns, failures) "
            "VALUES (:tool, :minute, 4, 0, '[]', 1, '{}')",
            {"tool": tool, "minute": minute},
        )
        with store.writing() as conn:
            rebuild_hours_from(conn, minute)
        _size, series = history_series(store, DAY, now=NOW)
        (first, *rest) = series[tool]
        # Estimated: 0 -> 3 (4 borrows, 1 return), a mean of 1.5 in its minute; the bin's minutes before it held 0.
        assert (first["count"], first["peak"]) == (4, 3)
        before, after = minute % 5, 4 - minute % 5
        assert first["avg_in_use"] == pytest.approx((before * 0 + 1.5 + after * 3) / 5)
        assert all(p["peak"] == 3 and p["avg_in_use"] == 3.0 for p in rest)
        hour = store.read("SELECT peak, avg_in_use, level_end FROM hour_stats WHERE tool = :tool", {"tool": tool})
        assert hour == [(3, pytest.approx((minute % 60 * 0 + 1.5 + (59 - minute % 60) * 3) / 60), 3)]
