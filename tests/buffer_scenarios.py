"""The buffer's property scenarios: a fixed start, names, windows, and replaying operations on the buffer and its reference."""

import contextlib
import itertools

from hypothesis import strategies as st

from dash_app.buffer import event_log, ingest
from dash_app.timeutil import iso_utc, parse_iso

START = 1_800_000_000.0  # a minute edge: 1_800_000_000 / 60 is whole
TOOLS = ["Vector - DaVinci Configurator SE", "GreenHills Multi IDE", "CAN Bus Analyzer Pro"]
USERS = ["alice", "bob", "chen", "dörte", "<b>eve</b>"]
WINDOWS = [60, 61, 300, 600, 1800, 3600, 10800, 21600, 86400]

# Offsets from "now": whole seconds, minute edges and fractions, some late, some just outside retention.
offset = st.one_of(
    st.integers(-400, 5).map(float),
    st.integers(-400, 0).map(lambda s: s - 0.25),
    st.integers(-25, 0).map(lambda m: m * 60.0),
    st.sampled_from([-21600.0, -21599.999, -21600.5, -600.0, -599.5, 4.999, 5.0]),
)
fresh = st.just(0.0)
timestamp_offset = st.one_of(fresh, fresh, offset)
# Whole-minute eviction for chunks of one, two or three events, so it runs often; and batches of adds one by one
# that are added when they reach one, two or three events, or only at the next read.
small_chunks = {"bulk": st.sampled_from([1, 2, 3]), "pending": st.sampled_from([1, 2, 3, ingest.PENDING_LIMIT])}


@contextlib.contextmanager
def chunked(bulk, pending):
    """Run a block with whole-minute eviction from `bulk` events on, and batches of `pending` adds (for new buffers)."""
    original = event_log.BULK_EVICTION, ingest.PENDING_LIMIT
    event_log.BULK_EVICTION, ingest.PENDING_LIMIT = bulk, pending
    try:
        yield
    finally:
        event_log.BULK_EVICTION, ingest.PENDING_LIMIT = original


def check_same(real, ref, window, recent_seconds, tools=TOOLS, per_tool=TOOLS[:2]):
    """Compare every read; `tools` are asked for their history, `per_tool` (tools or series) for their recent events."""
    assert real.aggregate_tool_metrics(window) == ref.aggregate(window)
    for tool in tools:
        assert real.get_tool_history(tool, window) == ref.aggregate(window).get(tool, [])
    flows = {tool: [tuple(row) for row in rows] for tool, rows in real.get_minute_flows(window).items()}
    assert flows == ref.flows(window)

    expected = ref.recent(recent_seconds)
    got = real.get_recent_events(recent_seconds)
    for kind in ("borrows", "returns", "failures"):
        assert [parse_iso(e["timestamp"]) for e in got[kind]] == [parse_iso(iso_utc(e["ts"])) for e in expected[kind]]
        assert [{k: v for k, v in e.items() if k != "timestamp"} for e in got[kind]] == [
            {"type": kind[:-1], **{k: v for k, v in e.items() if k not in ("ts", "seq")}} for e in expected[kind]
        ]

    for tool in per_tool:
        # One tool's newest events, as the dashboard's table asks for them (a series: all the names it holds).
        mine = real.get_recent_events(recent_seconds, limit=3, tool=tool)
        for kind in ("borrows", "returns", "failures"):
            wanted = [e for e in expected[kind] if tool in (e["tool"], ref.series(e["tool"]))][-3:]
            assert [(e["id"] if kind != "failures" else e["reason"]) for e in mine[kind]] == [
                (e["id"] if kind != "failures" else e["reason"]) for e in wanted
            ]

    stats = real.get_stats_summary()
    ref_stats = ref.stats()
    oldest = ref_stats.pop("oldest_ts")
    assert stats.pop("oldest_event") == (iso_utc(oldest) if oldest is not None else None)
    assert stats == ref_stats


def replay(real, ref, clock, tools, n_borrowed, users, ops, check):
    """Apply `ops` to both buffers; borrows use the first `n_borrowed` of `tools`, failures any of them."""
    n_users = len(users)
    ids = itertools.count()
    for op in ops:
        kind = op[0]
        if kind == "advance":
            clock.advance(op[1])
        elif kind == "check":
            check(real, ref, op[1], op[2])
        else:
            ts = clock.now + op[-1]
            if kind == "borrow":
                borrow_id = f"b{next(ids)}"
                args = (tools[op[1] % n_borrowed], users[op[2] % n_users], op[3], borrow_id)
                expect = _call(ref.add_borrow, *args, timestamp=ts)
                assert _call(real.add_borrow, *args, timestamp=ts) == expect
            elif kind == "return":
                borrow_id = f"b{op[1]}"
                kwargs = {"user": "returner" if op[2] else None, "tool": TOOLS[0] if op[3] else None}
                expect = _call(ref.add_return, borrow_id, timestamp=ts, **kwargs)
                assert _call(real.add_return, borrow_id, timestamp=ts, **kwargs) == expect
            else:
                args = (tools[op[1] % len(tools)], users[op[2] % n_users], op[3])
                expect = _call(ref.add_failure, *args, timestamp=ts)
                assert _call(real.add_failure, *args, timestamp=ts) == expect
    for window in WINDOWS:
        check(real, ref, window, window)


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return "ValueError"
