"""RealtimeMetricsBuffer.in_use_series against a brute-force replay of the retained events."""

import itertools
import math
import random
from bisect import bisect_left, bisect_right

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.buffer import InUseBin, RealtimeMetricsBuffer, event_log
from dash_app.testing import FakeClock
from tests.buffer_reference import ReferenceBuffer
from tests.buffer_scenarios import START, chunked, small_chunks

TOOLS = ["Vector - DaVinci Configurator SE", "GreenHills Multi IDE", "typo one", "typo two"]
OTHER = "(other unknown tools)"


def fold(tool):
    """The series of a tool name in these tests: the two inventory tools keep theirs, every other name shares one."""
    return tool if tool in TOOLS[:2] else OTHER


def brute_force(ref, now, window, retention, levels_now, tools=None):
    """Replay the retained borrows (+1) and returns (-1) of each series in time order and read every minute off the steps."""
    moves = {}
    for kind, step in (("borrow", 1), ("return", -1)):
        for e in ref.sorted_events(kind):
            if e["tool"] is not None:
                moves.setdefault(fold(e["tool"]), []).append((e["ts"], step))
    window = min(window, retention)
    first = math.ceil((now - window) / 60)
    current = math.floor(now / 60)
    if first > current:
        return {}
    out = {}
    for series in sorted(set(moves) | {s for s, level in levels_now.items() if level}):
        if tools is not None and series not in tools:
            continue
        events = sorted(moves.get(series, []))
        level_now = levels_now.get(series, 0)
        if not level_now and not any(ts >= first * 60 for ts, _ in events):
            continue
        # The level before every retained event, then after each instant (events at one instant count together).
        level = level_now - sum(step for _, step in events)
        instants, after = [], []
        for ts, group in itertools.groupby(events, key=lambda e: e[0]):
            level += sum(step for _, step in group)
            instants.append(ts)
            after.append(level)
        before_all = level_now - sum(step for _, step in events)

        def at(t, instants=instants, after=after, before_all=before_all):
            """The level at instant t, its own events counted."""
            i = bisect_right(instants, t)
            return after[i - 1] if i else before_all

        def just_before(t, instants=instants, after=after, before_all=before_all):
            i = bisect_left(instants, t)
            return after[i - 1] if i else before_all

        rows = []
        for m in range(first, current + 1):
            begin, stop = m * 60, m * 60 + 60
            until = now if m == current else stop
            inside = [t for t in instants if begin <= t < stop]
            peak = max([max(0, just_before(begin))] + [max(0, at(t)) for t in inside])
            end = max(0, just_before(stop))
            if until > begin:
                edges = sorted({begin, until, *[t for t in inside if t < until]})
                area = sum(max(0, at(a)) * (b - a) for a, b in zip(edges, edges[1:]))
                average = area / (until - begin)
            else:
                average = float(max(0, at(begin)))
            rows.append((begin, peak, average, end))
        out[series] = rows
    return out


def assert_matches(got, expected):
    assert set(got) == set(expected)
    for series, rows in expected.items():
        mine = got[series]
        assert [(b.minute, b.peak, b.end) for b in mine] == [(r[0], r[1], r[3]) for r in rows], series
        assert [b.average for b in mine] == pytest.approx([r[2] for r in rows], rel=1e-9, abs=1e-9), series
        assert all(type(b) is InUseBin for b in mine)


offset = st.one_of(
    st.just(0.0),
    st.just(0.0),
    st.integers(-400, 5).map(float),
    st.integers(-7200, 0).map(lambda s: s - 0.25),  # late and backfilled events, inserted out of order
    st.integers(-30, 0).map(lambda m: m * 60.0),  # on minute edges
    st.sampled_from([-21600.0, -21599.5, -599.5, 4.999, 5.0]),
)
operation = st.one_of(
    st.tuples(st.just("borrow"), st.integers(0, 3), offset),
    st.tuples(st.just("borrow"), st.integers(0, 3), offset),
    st.tuples(st.just("return"), st.integers(0, 40), st.booleans(), offset),
    st.tuples(st.just("return"), st.integers(0, 40), st.booleans(), offset),
    st.tuples(st.just("failure"), st.integers(0, 3), offset),
    st.tuples(
        st.just("advance"), st.one_of(st.integers(0, 90).map(float), st.sampled_from([0.5, 59.75, 600.0, 3600.0, 21600.0]))
    ),
    st.tuples(
        st.just("check"),
        st.sampled_from([30, 60, 61, 300, 1800, 3600, 21600, 86400]),
        st.sampled_from([0, 0, 0, 1, -2, 7]),  # added to the true count: 0 keeps the cached rows valid
        st.sampled_from([None, None, (TOOLS[0],), (TOOLS[1], OTHER, "not a series")]),
    ),
)
SCENARIO = {
    "retention": st.sampled_from([300, 900, 21600]),
    "caps": st.tuples(*[st.sampled_from([0, 1, 2, 3, 5, 8, 1000])] * 2),
    "ops": st.lists(operation, min_size=1, max_size=70),
}


def run_scenario(retention, caps, ops):
    clock = FakeClock(START + 17.5)
    real = RealtimeMetricsBuffer(retention, caps[0], caps[1], 10, clock=clock, series_of=fold)
    ref = ReferenceBuffer(retention, caps[0], caps[1], 10, clock=clock)
    ids = itertools.count()
    borrowed_tool = {}
    net = {}  # series -> borrows - returns of every kept event: the pool's count, were it fed the same
    checked = 0
    for op in ops:
        kind = op[0]
        if kind == "advance":
            clock.advance(op[1])
            continue
        if kind == "check":
            _, window, shift, tools = op
            levels = {series: n + shift for series, n in net.items()}
            expected = brute_force(ref, clock.now, window, retention, levels, tools)
            assert_matches(real.in_use_series(window, levels, tools), expected)
            checked += 1
            continue
        ts = clock.now + op[-1]
        if kind == "borrow":
            borrow_id = f"b{next(ids)}"
            tool = TOOLS[op[1]]
            kept = call(ref.add_borrow, tool, "u", False, borrow_id, ts)
            assert call(real.add_borrow, tool, "u", False, borrow_id, timestamp=ts) == kept
            if kept is True:
                borrowed_tool[borrow_id] = tool
                net[fold(tool)] = net.get(fold(tool), 0) + 1
        elif kind == "return":
            borrow_id = f"b{op[1]}"
            tool = TOOLS[0] if op[2] else None
            held = [e for e in ref.sorted_events("borrow") if e["id"] == borrow_id]
            resolved = tool if tool is not None else (held[-1]["tool"] if held else None)
            kept = call(ref.add_return, borrow_id, timestamp=ts, tool=tool)
            assert call(real.add_return, borrow_id, timestamp=ts, tool=tool) == kept
            if kept is True and resolved is not None:
                net[fold(resolved)] = net.get(fold(resolved), 0) - 1
        else:
            tool = TOOLS[op[1]]
            assert call(real.add_failure, tool, "u", "exhausted", timestamp=ts) == call(
                ref.add_failure, tool, "u", "exhausted", ts
            )
    for window in (60, 3600, 21600):
        levels = dict(net)
        assert_matches(real.in_use_series(window, levels), brute_force(ref, clock.now, window, retention, levels))
    return checked


def call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return "ValueError"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SCENARIO)
def test_in_use_series_matches_a_brute_force_replay(retention, caps, ops):
    run_scenario(retention, caps, ops)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SCENARIO, **small_chunks)
def test_in_use_series_matches_with_whole_minute_evictions(retention, caps, ops, bulk, pending):
    """The same, with whole-minute eviction for chunks of one to three events and adds one by one in small batches."""
    with chunked(bulk, pending):
        run_scenario(retention, caps, ops)


@pytest.mark.parametrize("bulk", [1, 32])
def test_borrows_evicted_by_the_cap_from_cached_minutes_that_keep_their_returns(bulk, monkeypatch):
    monkeypatch.setattr(event_log, "BULK_EVICTION", bulk)
    clock = FakeClock(START + 30)
    real = RealtimeMetricsBuffer(21600, 12, 1000, 10, clock=clock)
    ref = ReferenceBuffer(21600, 12, 1000, 10, clock=clock)
    for buffer in (real, ref):
        for k in range(10):
            at = START - 3000 + 60 * k
            buffer.add_borrow(TOOLS[0], "u", False, f"x{k}", timestamp=at + 5)
            buffer.add_return(f"x{k}", timestamp=at + 40)
    levels = {TOOLS[0]: 0}
    assert_matches(real.in_use_series(3600, levels), brute_force(ref, clock.now, 3600, 21600, levels))
    clock.advance(1)
    for buffer in (real, ref):
        for k in range(5):
            buffer.add_borrow(TOOLS[0], "u", False, f"y{k}", timestamp=clock.now)
    levels = {TOOLS[0]: 5}
    assert_matches(real.in_use_series(3600, levels), brute_force(ref, clock.now, 3600, 21600, levels))


def test_late_events_in_order_within_minutes_already_read():
    """A borrow and its return arrive late, each after the other events of its (already read) minute."""
    clock = FakeClock(START + 30)
    real = RealtimeMetricsBuffer(clock=clock)
    ref = ReferenceBuffer(21600, 1000, 1000, 10, clock=clock)
    for buffer in (real, ref):
        buffer.add_borrow(TOOLS[0], "u", False, "early", timestamp=START - 170)
        buffer.add_borrow(TOOLS[0], "u", False, "mid", timestamp=START - 110)
    levels = {TOOLS[0]: 2}
    assert_matches(real.in_use_series(600, levels), brute_force(ref, clock.now, 600, 21600, levels))
    for buffer in (real, ref):
        buffer.add_borrow(TOOLS[0], "u", False, "late", timestamp=START - 125)
        buffer.add_return("late", timestamp=START - 70)
    assert_matches(real.in_use_series(600, levels), brute_force(ref, clock.now, 600, 21600, levels))


def test_busy_buffer_read_every_few_adds_stays_exact():
    """Hours of traffic with late events and caps, read again and again: the cached rows never drift."""
    rng = random.Random(5)
    clock = FakeClock(START)
    real = RealtimeMetricsBuffer(3 * 3600, 900, 800, 10, clock=clock, series_of=fold)
    ref = ReferenceBuffer(3 * 3600, 900, 800, 10, clock=clock)
    open_ids, net, n = [], {}, 0
    for step in range(4000):
        clock.advance(rng.choice([0.0, 0.4, 1.5, 7.0, 31.0]))
        late = rng.random() < 0.05
        ts = clock.now - (rng.uniform(0, 5400) if late else 0.0)
        if open_ids and rng.random() < 0.48:
            borrow_id, tool = open_ids.pop(rng.randrange(len(open_ids)))
            real.add_return(borrow_id, timestamp=ts)
            held = [e for e in ref.sorted_events("borrow") if e["id"] == borrow_id]
            if ref.add_return(borrow_id, timestamp=ts) and held:
                net[fold(tool)] -= 1
        else:
            tool = rng.choice(TOOLS)
            borrow_id = f"x{n}"
            n += 1
            real.add_borrow(tool, "u", False, borrow_id, timestamp=ts)
            if ref.add_borrow(tool, "u", False, borrow_id, ts):
                net[fold(tool)] = net.get(fold(tool), 0) + 1
                open_ids.append((borrow_id, tool))
        if step % 97 == 0:
            window = rng.choice([600, 3600, 10800])
            assert_matches(real.in_use_series(window, net), brute_force(ref, clock.now, window, 3 * 3600, net))


def test_spikes_to_the_total_show_in_their_minutes_at_six_hours():
    """A tool of total 10 at 3 in use, up to 10 for 30 s nine times in 6 h: each spike's minute peaks at 10."""
    clock = FakeClock(START + 30)
    buffer = RealtimeMetricsBuffer(clock=clock)
    tool = TOOLS[0]
    begin = START - 6 * 3600 + 60
    for i in range(3):
        buffer.add_borrow(tool, "base", False, f"base{i}", timestamp=begin)
    spikes = [begin + 1800 + k * 2350.5 for k in range(9)]
    for k, at in enumerate(spikes):
        for i in range(7):
            buffer.add_borrow(tool, "ci", True, f"s{k}-{i}", timestamp=at)
        for i in range(7):
            buffer.add_return(f"s{k}-{i}", timestamp=at + 30)
    bins = buffer.in_use_series(21600, {tool: 3})[tool]
    assert len(bins) == 360
    peaks = {b.minute: b.peak for b in bins}
    for at in spikes:
        assert peaks[int(at // 60) * 60] == 10
    assert sum(1 for b in bins if b.peak == 10) in range(9, 19)  # a spike may straddle two minutes
    assert {b.end for b in bins if b.minute >= begin} <= {3, 10}  # a minute ends inside a spike when it straddles two
    assert min(b.average for b in bins if b.minute >= begin) == 3.0
    assert max(b.average for b in bins) <= 3 + 7 * 30 / 60 + 1e-9


def test_flat_series_for_licenses_held_without_events_and_nothing_for_idle_tools():
    clock = FakeClock(START + 30)
    buffer = RealtimeMetricsBuffer(clock=clock)
    buffer.add_failure(TOOLS[1], "u", "exhausted")
    series = buffer.in_use_series(600, {TOOLS[0]: 4, TOOLS[1]: 0, "elsewhere": 0})
    assert list(series) == [TOOLS[0]]
    assert series[TOOLS[0]] == [InUseBin(int(START) - 540 + 60 * k, 4, 4.0, 4) for k in range(10)]


def test_the_current_minute_averages_over_its_elapsed_part():
    clock = FakeClock(START + 40)
    buffer = RealtimeMetricsBuffer(clock=clock)
    buffer.add_borrow(TOOLS[0], "u", False, "a", timestamp=START + 10)
    (row,) = buffer.in_use_series(40, {TOOLS[0]: 1})[TOOLS[0]]
    assert row == InUseBin(int(START), 1, 30 / 40, 1)
    clock.now = START  # the minute's very first instant: its mean is the level then
    buffer2 = RealtimeMetricsBuffer(clock=clock)
    buffer2.add_borrow(TOOLS[0], "u", False, "a", timestamp=START)
    assert buffer2.in_use_series(30, {TOOLS[0]: 1})[TOOLS[0]] == [InUseBin(int(START), 1, 1.0, 1)]


def test_steady_state_call_is_cheap_with_a_full_buffer():
    """Not a timing test: it checks that a second call reuses the closed minutes instead of rebuilding them."""
    clock = FakeClock(START + 20)
    buffer = RealtimeMetricsBuffer(clock=clock)
    for i in range(3000):
        buffer.add_borrow(TOOLS[i % 2], "u", False, f"b{i}", timestamp=START - 21000 + i * 7)
        if i % 3:
            buffer.add_return(f"b{i}", timestamp=START - 21000 + i * 7 + 5)
    levels = {TOOLS[0]: 600, TOOLS[1]: 600}
    first = buffer.in_use_series(21600, levels)
    cached = {tool: buffer._levels[tool].rows for tool in first}
    clock.advance(1)
    buffer.add_borrow(TOOLS[0], "u", False, "new")
    levels[TOOLS[0]] += 1
    second = buffer.in_use_series(21600, levels)
    for tool in second:
        assert buffer._levels[tool].rows is cached[tool]
        assert second[tool][:-1] == first[tool][:-1]
