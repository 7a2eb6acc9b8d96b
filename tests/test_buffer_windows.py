"""Windows rebuilt per changed series give exactly what a rebuild of every series gives, whatever the traffic."""

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dash_app.buffer import RealtimeMetricsBuffer, reads
from dash_app.callbacks.window_data import BufferWindows
from dash_app.pressure import true_denials_by_tool
from dash_app.testing import FakeClock
from dash_app.timeutil import first_minute_at_or_after, parse_iso

START = 1_800_000_000.0
TOOLS = ["A", "B", "C", "D"]
GAP = 60  # true denials: a user's denials of a tool within a minute of the last counted one count once

step = st.one_of(
    st.tuples(st.just("borrow"), st.sampled_from(TOOLS), st.floats(0, 90)),
    st.tuples(st.just("return"), st.integers(0, 200), st.floats(0, 90)),
    st.tuples(st.just("failure"), st.sampled_from(TOOLS), st.floats(0, 90)),
    st.tuples(st.just("wait"), st.floats(0.1, 400), st.just(0.0)),
)


def window_data(data):
    """Everything a window holds, its averages to 9 places: a carried average may differ in the last bit."""
    in_use = {tool: [(m, peak, round(average, 9)) for m, peak, average in bins] for tool, bins in data.in_use.items()}
    return (data.buckets, data.flows, in_use, data.sums, data.failing, data.bucket_sums, data.peak_bins)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=60), st.sampled_from([300, 1800]))
# The current minute's average runs up to now: a second later it is another, with no new event.
@example([("wait", 1.0, 0.0), ("borrow", "A", 0.0), ("wait", 1.0, 0.0)], 300)
def test_per_series_windows_match_a_full_rebuild_after_every_step(steps, window):
    clock = FakeClock(START)
    # Small caps and retention: adds evict old events and time expires them, both of which change series.
    buffer = RealtimeMetricsBuffer(retention_seconds=1800, max_borrows=25, max_returns=25, max_failures=10, clock=clock)
    kept = BufferWindows(buffer, denial_gap=GAP)
    open_borrows, levels, n = [], dict.fromkeys(TOOLS, 0), 0
    for kind, what, back in steps:
        at = clock.now - back  # events up to 90 s in the past arrive out of order
        if kind == "borrow":
            n += 1
            buffer.add_borrow(what, f"u{n}", False, f"b{n}", timestamp=at)
            open_borrows.append((f"b{n}", what))
            levels[what] += 1
        elif kind == "return" and open_borrows:
            borrow_id, tool = open_borrows.pop(what % len(open_borrows))
            buffer.add_return(borrow_id, timestamp=at)
            levels[tool] -= 1
        elif kind == "failure":
            # On whole eighths of a second, which GET /events' millisecond times keep exactly.
            buffer.add_failure(what, f"u{int(back) % 2}", "exhausted", timestamp=math.floor(at * 8) / 8)
        elif kind == "wait":
            clock.advance(what)
        fresh = BufferWindows(buffer, denial_gap=GAP).get(window, clock.now, levels)
        assert window_data(kept.get(window, clock.now, levels)) == window_data(fresh)
        assert {t: s.true_denials for t, s in fresh.sums.items() if s.true_denials} == true_denials(buffer, window, clock.now)


def true_denials(buffer, window, now):
    """The true denials of the window's minutes, by dash_app.pressure over the buffer's failures as GET /events has them."""
    start = first_minute_at_or_after(now - window) * 60
    failures = buffer.get_recent_events(buffer.retention_seconds)["failures"]
    denials = [(parse_iso(e["timestamp"]), e["tool"], e["user"]) for e in failures if parse_iso(e["timestamp"]) >= start]
    expected = true_denials_by_tool(denials, GAP)
    # Read minute by minute (a few series) or in one pass (many): the same failures either way.
    one_pass = reads.FEW_SERIES
    try:
        reads.FEW_SERIES = 0
        assert buffer.failure_users(window, TOOLS) == {
            tool: [
                (parse_iso(e["timestamp"]), e["user"])
                for e in failures
                if e["tool"] == tool and parse_iso(e["timestamp"]) >= start
            ]
            for tool in expected
        }
    finally:
        reads.FEW_SERIES = one_pass
    return expected


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=60))
def test_a_series_stamp_moves_whenever_its_data_does(steps):
    clock = FakeClock(START)
    buffer = RealtimeMetricsBuffer(retention_seconds=1800, max_borrows=25, max_returns=25, max_failures=10, clock=clock)

    def seen():
        return buffer.aggregate_tool_metrics(1800), buffer.get_minute_flows(1800)

    before, stamps, n = seen(), buffer.series_stamps(), 0
    for kind, what, back in steps:
        at = clock.now - back
        if kind == "borrow":
            n += 1
            buffer.add_borrow(what, f"u{n}", False, f"b{n}", timestamp=at)
        elif kind == "return":
            buffer.add_return(f"b{what}", timestamp=at)
        elif kind == "failure":
            buffer.add_failure(what, "u", "max_overage", timestamp=at)
        else:
            clock.advance(what)
        after, now_stamps = seen(), buffer.series_stamps()
        for tool in TOOLS:
            changed = (before[0].get(tool), before[1].get(tool)) != (after[0].get(tool), after[1].get(tool))
            if changed and tool in now_stamps:
                assert now_stamps[tool] != stamps.get(tool), (kind, tool)
        before, stamps = after, now_stamps


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=60), st.sampled_from([300, 1800]))
def test_failure_stamps_move_with_the_failures_and_window_counts_sum_the_flows(steps, window):
    clock = FakeClock(START)
    buffer = RealtimeMetricsBuffer(retention_seconds=1800, max_borrows=25, max_returns=25, max_failures=10, clock=clock)

    def retained_failures():
        failures = buffer.get_recent_events(buffer.retention_seconds)["failures"]
        return {tool: [(e["timestamp"], e["user"]) for e in failures if e["tool"] == tool] for tool in TOOLS}

    before, stamps, n = retained_failures(), buffer.failure_stamps(), 0
    for kind, what, back in steps:
        at = clock.now - back
        if kind == "borrow":
            n += 1
            buffer.add_borrow(what, f"u{n}", False, f"b{n}", timestamp=at)
        elif kind == "return":
            buffer.add_return(f"b{what}", timestamp=at)
        elif kind == "failure":
            buffer.add_failure(what, f"u{n % 3}", "exhausted", timestamp=at)
        else:
            clock.advance(what)
        # A series' failure stamp moves whenever one of its retained failures comes or goes (arrival, cap, expiry).
        after, now_stamps = retained_failures(), buffer.failure_stamps()
        for tool in TOOLS:
            if before[tool] != after[tool] and after[tool]:
                assert now_stamps[tool] != stamps.get(tool), (kind, tool)
        before, stamps = after, now_stamps
        flows = buffer.get_minute_flows(window, tools=TOOLS)
        assert buffer.window_counts(window, TOOLS) == {
            tool: (
                sum(f.borrows for f in rows),
                sum(f.overage for f in rows),
                sum(f.returns for f in rows),
                sum(sum(f.failures.values()) for f in rows),
                [(f.minute, 0, 0, 0, f.failures) for f in rows if f.failures],
            )
            for tool, rows in flows.items()
        }
