"""Demo traffic: realistic sessions and bursts, through the pool's own borrow path."""

import time
from collections import Counter

from dash_app.__main__ import build_parser
from dash_app.config import from_args
from dash_app.sources.demo import CI_PREFIX, RESERVED_FOR_CI, ROSTER, DemoTraffic
from dash_app.state import get_state


def test_backfill_fills_hours_of_history_through_the_pool(make_app):
    state = get_state(make_app())
    demo = DemoTraffic(state.pool, speed=1.0, backfill_hours=4, seed=3)
    started = time.time()
    demo.start()
    demo.stop()

    events = state.buffer.get_recent_events(21600)
    borrows, failures = events["borrows"], events["failures"]
    assert len(borrows) == demo.counts["borrows"] > 500
    assert len(failures) == demo.counts["failures"]
    assert len(events["returns"]) == demo.counts["returns"]
    span_minutes = len({b["timestamp"][:16] for b in borrows})
    assert span_minutes > 150  # spread over the 4 h, not piled on "now"
    assert state.buffer.get_stats_summary()["oldest_event"] < time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started - 3.5 * 3600))
    reasons = Counter(f["reason"] for f in failures)
    assert reasons["exhausted"] > 0 and reasons["unknown_tool"] > 0
    assert any(b["is_overage"] for b in borrows)
    assert len({b["user"] for b in borrows} & set(ROSTER)) >= 30
    assert sum(e["borrowed"] for e in state.pool.status()) == len(state.pool.active_borrows())
    # Reserved: the CI runners' licenses of the largest tool that no runner uses now; queued: the people denied who
    # are due to ask again (their next attempt is scheduled), as the pool shows them.
    assert demo.reserved_tool == "Vector - DaVinci Configurator SE"
    waiting = Counter(payload[1] for _, _, action, payload in demo._queue if action == "attempt" and payload[2] > 0)
    runners = Counter(b.tool for b in state.pool.active_borrows() if b.user.startswith(CI_PREFIX))
    for entry in state.pool.status():
        reserved = max(RESERVED_FOR_CI - runners[entry["tool"]], 0) if entry["tool"] == demo.reserved_tool else 0
        assert (entry["tool"], entry["reserved"], entry["queued"]) == (entry["tool"], reserved, waiting[entry["tool"]])


def test_live_traffic_runs_faster_with_a_speed_factor(make_app):
    state = get_state(make_app())
    demo = DemoTraffic(state.pool, speed=300.0, seed=5)
    demo.start()
    try:
        deadline = time.monotonic() + 20
        while demo.counts["returns"] < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        demo.stop()
    recent = state.buffer.get_recent_events(60)
    assert demo.counts["returns"] >= 20
    assert len(recent["borrows"]) == demo.counts["borrows"]


def test_demo_is_on_by_default_and_off_with_the_flag(make_app):
    parser = build_parser()
    assert from_args(parser.parse_args([]), environ={}).demo is True
    assert from_args(parser.parse_args(["--no-demo"]), environ={}).demo is False
    assert from_args(parser.parse_args([]), environ={"DASH_APP_DEMO": "0"}).demo is False
    assert isinstance(get_state(make_app(demo=True)).service("demo"), DemoTraffic)
    assert get_state(make_app(demo=False)).service("demo") is None


def test_demo_with_an_empty_tools_file_stays_off_quietly(make_app, tmp_path):
    tools = tmp_path / "none.json"
    tools.write_text("[]")
    state = get_state(make_app(tools_file=str(tools)))
    demo = DemoTraffic(state.pool, backfill_hours=1, seed=1)
    demo.start()
    demo.stop()
    assert demo.counts == {"borrows": 0, "returns": 0, "failures": 0, "unavailable": 0}


def test_a_restart_over_the_same_database_does_not_backfill_a_second_past(make_app, tmp_path):
    from dash_app.services import DEMO

    db = str(tmp_path / "demo.db")
    first = get_state(make_app(db=db, demo=True, backfill_hours=1))
    backfilled = first.service(DEMO).backfill_hours
    first.store.flush()
    first.stop()
    second = get_state(make_app(db=db, demo=True, backfill_hours=1))
    assert backfilled == 1 and second.service(DEMO).backfill_hours == 0
    # No tool holds more than its total at any minute rebuilt from the restored hour.
    levels = {entry["tool"]: entry["borrowed"] for entry in second.pool.status()}
    totals = {entry["tool"]: entry["total"] for entry in second.pool.status()}
    for tool, bins in second.buffer.in_use_series(3600, levels).items():
        assert max(b.peak for b in bins) <= totals[tool], tool
