"""Distinct tool names outside the inventory: past --max-unknown-tools they share one series, so memory stays bounded."""

import json
import threading
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app import build_state
from dash_app.buffer import RealtimeMetricsBuffer, ingest
from dash_app.callbacks.snapshots import Snapshots
from dash_app.config import Config
from dash_app.events import failure_event
from dash_app.licenses import OTHER_UNKNOWN_TOOLS, BorrowDenied, SeriesNames
from dash_app.state import get_state
from dash_app.store.history import history_series
from dash_app.stream.snapshot import take_tick
from dash_app.testing import FakeClock
from tests.buffer_reference import ReferenceBuffer
from tests.buffer_scenarios import START, USERS, WINDOWS, check_same, chunked, replay, small_chunks, timestamp_offset

FLOOD = 20_000
LIMIT = 50  # the default of --max-unknown-tools
INVENTORY_TOOL = "GreenHills Multi IDE"


# ------------------------------------------------------------------ the rule


def test_inventory_names_keep_their_series_and_the_first_unknown_names_are_admitted():
    series = SeriesNames(["A", "B"], 2)
    assert [series(name) for name in ["A", "x", "B", "y", "z", "x", "w", "y"]] == [
        "A",
        "x",
        "B",
        "y",
        OTHER_UNKNOWN_TOOLS,
        "x",
        OTHER_UNKNOWN_TOOLS,
        "y",
    ]
    assert series.admitted == ["x", "y"]
    assert series("z") == OTHER_UNKNOWN_TOOLS  # folded stays folded
    assert series.in_inventory("A") and not series.in_inventory("x")


def test_the_shared_series_name_itself_never_takes_a_slot_and_zero_folds_everything():
    series = SeriesNames(["A"], 1)
    assert series(OTHER_UNKNOWN_TOOLS) == OTHER_UNKNOWN_TOOLS
    assert series("x") == "x"
    assert series.admitted == ["x"]
    none = SeriesNames(["A"], 0)
    assert (none("A"), none("x")) == ("A", OTHER_UNKNOWN_TOOLS)
    with pytest.raises(ValueError):
        SeriesNames([], -1)


def test_names_admitted_by_an_earlier_run_come_first():
    series = SeriesNames(["A"], 2, admitted=["A", "old", OTHER_UNKNOWN_TOOLS])
    assert series.admitted == ["old"]
    assert (series("new"), series("later"), series("old")) == ("new", OTHER_UNKNOWN_TOOLS, "old")


def test_concurrent_callers_admit_exactly_the_limit_and_agree_on_every_name():
    series = SeriesNames(["A"], 100)
    names = [f"name {i}" for i in range(2000)]
    answers = [None] * 8
    start = threading.Barrier(8)

    def work(n):
        start.wait()
        answers[n] = {name: series(name) for name in (names if n % 2 else reversed(names))}

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(series.admitted) == 100
    assert all(answer == answers[0] for answer in answers)
    assert {name for name, s in answers[0].items() if s == name} == set(series.admitted)


# --------------------------------------------------------- the buffer alone


def test_the_buffer_bins_folded_names_together_and_keeps_exact_names_in_events():
    clock = FakeClock(START)
    buffer = RealtimeMetricsBuffer(clock=clock, max_failures=1000, series_of=SeriesNames([INVENTORY_TOOL], 2))
    for i in range(10):
        buffer.add_failure(f"typo {i}", f"user {i}", "unknown_tool")
    buffer.add_borrow("typo 7", "eve", False, "b1")  # a folded name from a log source
    flows = buffer.get_minute_flows(600)
    assert sorted(flows) == sorted(["typo 0", "typo 1", OTHER_UNKNOWN_TOOLS])
    assert flows[OTHER_UNKNOWN_TOOLS][0].failures == {"unknown_tool": 8}
    assert buffer.aggregate_tool_metrics(600)[OTHER_UNKNOWN_TOOLS][0]["users"] == ["eve"]
    assert [e["tool"] for e in buffer.get_recent_events(600)["failures"]] == [f"typo {i}" for i in range(10)]
    # The folded series' events are those of every name in it, each with its own name.
    mine = buffer.get_recent_events(600, limit=3, tool=OTHER_UNKNOWN_TOOLS)
    assert [e["tool"] for e in mine["failures"]] == ["typo 7", "typo 8", "typo 9"]
    assert [e["tool"] for e in mine["borrows"]] == ["typo 7"]
    assert buffer.get_recent_events(600, tool="typo 1")["failures"][0]["user"] == "user 1"
    assert buffer.add_return("b1")
    assert buffer.get_minute_flows(600)[OTHER_UNKNOWN_TOOLS][0].returns == 1


def test_name_caches_stay_bounded_however_many_distinct_names_arrive():
    clock = FakeClock(START)
    buffer = RealtimeMetricsBuffer(clock=clock, max_failures=100, series_of=SeriesNames([], 5))
    buffer.add_events([failure_event(f"t{i}", f"u{i}", "unknown_tool", START) for i in range(30_000)])
    assert len(buffer._tool_keys) <= ingest.TOOL_KEY_LIMIT + 1
    assert len(buffer._interned) <= ingest.INTERN_LIMIT + 1
    # The five admitted names' failures were evicted with the oldest; the last 100 are all folded.
    assert list(buffer._bins) == [OTHER_UNKNOWN_TOOLS]
    assert buffer.get_minute_flows(600)[OTHER_UNKNOWN_TOOLS][0].failures == {"unknown_tool": 100}


# Few names per example so repeats, admissions and folds all happen; one is the shared series' own name.
NAMES = ["Vector - DaVinci Configurator SE", "GreenHills Multi IDE", "typo", "ghs", "x 1", "x 2", "x 3", OTHER_UNKNOWN_TOOLS]
INVENTORY = NAMES[:2]

folding_operation = st.one_of(
    st.tuples(st.just("borrow"), st.integers(0, 7), st.integers(0, 4), st.booleans(), timestamp_offset),
    st.tuples(st.just("return"), st.integers(0, 40), st.booleans(), st.booleans(), timestamp_offset),
    st.tuples(
        st.just("failure"), st.integers(0, 7), st.integers(0, 4), st.sampled_from(["exhausted", "unknown_tool"]), timestamp_offset
    ),
    st.tuples(st.just("advance"), st.one_of(st.integers(0, 90).map(float), st.sampled_from([59.75, 600.0, 30000.0]))),
    st.tuples(st.just("check"), st.sampled_from(WINDOWS), st.integers(1, 22000)),
)

FOLDING = {
    "retention": st.sampled_from([300, 900, 21600]),
    "caps": st.tuples(*[st.sampled_from([0, 1, 2, 3, 5, 8, 1000])] * 3),
    "limit": st.integers(0, 3),
    "order": st.permutations(NAMES),
    "ops": st.lists(folding_operation, min_size=1, max_size=60),
}


def run_folding(retention, caps, limit, order, ops):
    clock = FakeClock(START)
    real = RealtimeMetricsBuffer(retention, *caps, clock=clock, series_of=SeriesNames(INVENTORY, limit))
    ref = ReferenceBuffer(retention, *caps, clock=clock, inventory=INVENTORY, max_unknown_tools=limit)

    def check(real, ref, window, recent_seconds):
        # Every name and every series: a folded name has no bins of its own, and its series holds its events.
        check_same(real, ref, window, recent_seconds, tools=NAMES, per_tool=NAMES)

    replay(real, ref, clock, order, len(order), USERS[:3], ops, check)
    assert len(real.get_minute_flows(21600)) <= len(INVENTORY) + limit + 1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**FOLDING)
def test_folded_bins_match_a_reference_that_folds_names(retention, caps, limit, order, ops):
    run_folding(retention, caps, limit, order, ops)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**FOLDING, **small_chunks)
def test_folded_bins_match_the_reference_with_whole_minute_eviction(retention, caps, limit, order, ops, bulk, pending):
    with chunked(bulk, pending):
        run_folding(retention, caps, limit, order, ops)


# ------------------------------------------------- the whole data path, SQLite included


def brute_series(names_in_order, inventory, limit):
    """The rule from the issue, applied by hand: the first `limit` distinct unknown names keep their own series."""
    admitted = []
    mapping = {}
    for name in names_in_order:
        if name in mapping:
            continue
        if name in inventory:
            mapping[name] = name
        elif name != OTHER_UNKNOWN_TOOLS and len(admitted) < limit:
            admitted.append(name)
            mapping[name] = name
        else:
            mapping[name] = OTHER_UNKNOWN_TOOLS
    return mapping


def make_state(db):
    return build_state(Config(db=str(db), demo=False, api_token="t" * 24, max_failures=FLOOD + 1000))


def flood(state, now, n=FLOOD, prefix="no such tool"):
    """Record `n` failed borrows of distinct unknown tools by distinct users, spread over the hour before `now`."""
    pool = state.pool
    with pool.recording_batch():
        for i in range(n):
            with pytest.raises(BorrowDenied):
                pool.borrow(f"{prefix} {i}", f"user {prefix} {i}", at=now - 3600 + (i + 1) * 3600 / (n + 1))
        # The inventory's own traffic, among the flood: half an hour back, so that a failure recorded afterwards never
        # shares its minute (a minute is folded again whole, every tool in it).
        for i in range(10):
            pool.borrow(INVENTORY_TOOL, f"engineer {i}", at=now - 1800)


def stored_failures(store, table):
    """Return {tool: failures} summed over a stored aggregate table."""
    totals = Counter()
    for tool, failures in store.read(f"SELECT tool, failures FROM {table}"):
        totals[tool] += sum(json.loads(failures).values())
    return totals


@pytest.fixture
def flooded(tmp_path):
    state = make_state(tmp_path / "flood.db")
    state.store.start()
    now = time.time()
    flood(state, now)
    state.store.run_tasks_now()
    yield state, now
    state.stop()


def test_a_flood_of_distinct_unknown_names_keeps_bins_and_history_bounded_and_exact(flooded):
    state, now = flooded
    inventory = set(state.pool.tools)
    bound = len(inventory) + LIMIT + 1
    names = [f"no such tool {i}" for i in range(FLOOD)]
    mapping = brute_series(names, inventory, LIMIT)
    expected = Counter(mapping[name] for name in names)
    assert expected[OTHER_UNKNOWN_TOOLS] == FLOOD - LIMIT

    # The buffer: one bin series per tool of the inventory, admitted name, and the shared series.
    buffer = state.buffer
    flows = buffer.get_minute_flows(21600)
    assert len(flows) <= bound and len(buffer._bins) <= bound
    assert set(flows) - inventory == set(names[:LIMIT]) | {OTHER_UNKNOWN_TOOLS}
    got = Counter({tool: sum(sum(f.failures.values()) for f in rows) for tool, rows in flows.items()})
    assert got == expected
    assert len(buffer.aggregate_tool_metrics(21600)) <= bound

    # Raw events keep what was typed.
    failures = buffer.get_recent_events(21600)["failures"]
    assert [e["tool"] for e in failures] == names
    assert failures[-1]["user"] == f"user no such tool {FLOOD - 1}"
    stored_names = state.store.read("SELECT tool FROM events WHERE kind = 'failure' ORDER BY ts")
    assert [tool for (tool,) in stored_names] == names

    # The stored aggregates: the same series and the same counts, minute and hour.
    for table in ("minute_stats", "hour_stats"):
        (series_count,) = state.store.read(f"SELECT COUNT(DISTINCT tool) FROM {table}")[0]
        assert series_count <= bound
        assert stored_failures(state.store, table) == expected
    for window in (86400, 7 * 86400, 30 * 86400):
        _size, series = history_series(state.store, window, now=now)
        assert len(series) <= bound
        assert sum(sum(p["failures"].values()) for p in series[OTHER_UNKNOWN_TOOLS]) == FLOOD - LIMIT


def test_one_more_failure_after_a_flood_touches_a_few_rows_and_reads_stay_small(flooded):
    state, now = flooded
    conn = state.store._conn
    before = conn.total_changes
    with pytest.raises(BorrowDenied):
        state.pool.borrow("yet another typo", "mallory")
    state.store.run_tasks_now()
    # Its minute row and hour row (plus the raw event): not one row per name seen in this hour.
    assert conn.total_changes - before <= 6

    tick = take_tick(1, state.buffer, state.pool)
    assert set(tick.tool_metrics) <= set(state.pool.tools) | {OTHER_UNKNOWN_TOOLS}
    assert tick.recent_events["failures"][-1]["tool"] == "yet another typo"
    pool_view, _tool, parts = Snapshots(state.buffer, state.pool, state.history).get(None, 3600, time.time())
    assert len(pool_view.tools) <= len(state.pool.tools) + LIMIT + 1
    assert "failure-chart" in parts


def test_a_restart_keeps_each_names_series_and_counts_stay_exact(tmp_path):
    db = tmp_path / "restart.db"
    now = time.time()
    first = make_state(db)
    first.store.start()
    flood(first, now, n=200, prefix="before")
    first.stop()

    second = make_state(db)
    second.store.start()
    try:
        # The earlier run's own series come back first; a new name finds the slots taken.
        assert sorted(second.buffer._series_of.admitted) == sorted(f"before {i}" for i in range(LIMIT))
        with second.pool.recording_batch():
            for name in ("before 3", "before 150", "after 1"):
                with pytest.raises(BorrowDenied):
                    second.pool.borrow(name, "late", at=now - 1)
        second.store.run_tasks_now()
        rows = second.store.read("SELECT tool FROM events WHERE kind = 'failure' ORDER BY ts, rowid")
        names = [tool for (tool,) in rows]
        mapping = brute_series(names, set(second.pool.tools), LIMIT)
        expected = Counter(mapping[name] for name in names)
        assert mapping["before 3"] == "before 3" and mapping["after 1"] == OTHER_UNKNOWN_TOOLS
        for table in ("minute_stats", "hour_stats"):
            assert stored_failures(second.store, table) == expected
        flows = second.buffer.get_minute_flows(21600)
        assert Counter({tool: sum(sum(f.failures.values()) for f in rows) for tool, rows in flows.items()}) == expected
    finally:
        second.stop()


def test_names_a_log_reports_outside_the_inventory_cannot_grow_the_status_list(make_app):
    state = get_state(make_app(max_unknown_tools=3))
    pool, now = state.pool, time.time()
    with pool.recording_batch():
        for n in range(500):
            pool.observe_failure(f"feature{n}", "u", "exhausted", now)
        held = [pool.observe_borrow(f"other{n}", "u", now) for n in range(10)]
    names = [entry["tool"] for entry in pool.status()]
    assert len(names) == len(pool.tools) + 3 + 1 and names[-1] == OTHER_UNKNOWN_TOOLS
    assert pool.tool_status(OTHER_UNKNOWN_TOOLS)["borrowed"] == 10
    for borrow in held:
        pool.observe_return(borrow.id, now)
    assert pool.tool_status(OTHER_UNKNOWN_TOOLS)["borrowed"] == 0
