"""Unit tests of the buffer contract's edges, and a concurrency test."""

import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.testing import FakeClock

NOW = 1_800_000_030.0  # half a minute past a minute edge


@pytest.fixture
def clock():
    return FakeClock(NOW)


def test_bucket_shape_and_users_sorted_unique(clock):
    buf = RealtimeMetricsBuffer(clock=clock)
    buf.add_borrow("GreenHills Multi IDE", "zoe", False, "1")
    buf.add_borrow("GreenHills Multi IDE", "adam", True, "2")
    buf.add_borrow("GreenHills Multi IDE", "zoe", True, "3")
    assert buf.aggregate_tool_metrics(60) == {
        "GreenHills Multi IDE": [{"timestamp": "2027-01-15T08:00:00Z", "count": 3, "users": ["adam", "zoe"], "overage_count": 2}]
    }


def test_timestamps_accept_epoch_and_aware_datetime_but_not_naive(clock):
    buf = RealtimeMetricsBuffer(clock=clock)
    aware = datetime.fromtimestamp(NOW - 90, tz=timezone(timedelta(hours=2)))
    assert buf.add_borrow("T", "u", False, "a", timestamp=aware)
    assert buf.add_borrow("T", "u", False, "b", timestamp=NOW - 1)
    with pytest.raises(ValueError):
        buf.add_borrow("T", "u", False, "c", timestamp=datetime(2027, 1, 1))
    events = buf.get_recent_events(120)["borrows"]
    assert [e["timestamp"] for e in events] == ["2027-01-15T07:59:00.000Z", "2027-01-15T08:00:29.000Z"]


def test_future_beyond_five_seconds_raises_and_stores_nothing(clock):
    buf = RealtimeMetricsBuffer(clock=clock)
    assert buf.add_failure("T", "u", "exhausted", timestamp=NOW + 5)
    for add in (
        lambda: buf.add_borrow("T", "u", False, "x", timestamp=NOW + 5.001),
        lambda: buf.add_return("x", timestamp=NOW + 60),
        lambda: buf.add_failure("T", "u", "exhausted", timestamp=NOW + 3600),
    ):
        with pytest.raises(ValueError):
            add()
    assert buf.get_stats_summary()["total_events"] == 1


def test_events_older_than_retention_are_not_stored(clock):
    buf = RealtimeMetricsBuffer(retention_seconds=600, clock=clock)
    assert buf.add_borrow("T", "u", False, "old", timestamp=NOW - 600.5) is False
    assert buf.add_borrow("T", "u", False, "edge", timestamp=NOW - 600) is True
    assert buf.get_stats_summary()["borrow_count"] == 1


def test_retention_expires_without_new_events(clock):
    buf = RealtimeMetricsBuffer(retention_seconds=600, clock=clock)
    buf.add_borrow("T", "u", False, "1")
    buf.add_failure("T", "u", "exhausted")
    clock.advance(600)
    assert buf.get_stats_summary()["total_events"] == 2
    clock.advance(0.001)
    assert buf.get_stats_summary() == {
        "total_events": 0,
        "borrow_count": 0,
        "return_count": 0,
        "failure_count": 0,
        "retention_hours": 600 / 3600,
        "oldest_event": None,
    }
    assert buf.aggregate_tool_metrics(21600) == {}
    assert buf.get_recent_events(21600) == {"borrows": [], "returns": [], "failures": []}


def test_cap_drops_oldest_by_time_even_when_it_arrived_late(clock):
    buf = RealtimeMetricsBuffer(max_borrows=2, clock=clock)
    buf.add_borrow("T", "a", False, "1", timestamp=NOW - 10)
    buf.add_borrow("T", "b", False, "2", timestamp=NOW - 5)
    buf.add_borrow("T", "c", False, "3", timestamp=NOW - 120)  # late, and the oldest: dropped at once
    assert [e["id"] for e in buf.get_recent_events(300)["borrows"]] == ["1", "2"]
    buf.add_borrow("T", "d", False, "4")
    assert [e["id"] for e in buf.get_recent_events(300)["borrows"]] == ["2", "4"]
    assert buf.aggregate_tool_metrics(300) == {
        "T": [{"timestamp": "2027-01-15T08:00:00Z", "count": 2, "users": ["b", "d"], "overage_count": 0}]
    }


def test_return_takes_tool_and_user_from_its_borrow(clock):
    buf = RealtimeMetricsBuffer(clock=clock)
    buf.add_borrow("CAN Bus Analyzer Pro", "ida", False, "b-1")
    buf.add_return("b-1")
    buf.add_return("unknown-id")
    buf.add_return("b-1", user="someone", tool="Other")
    returns = buf.get_recent_events()["returns"]
    assert [(r["id"], r["user"], r["tool"], r["type"]) for r in returns] == [
        ("b-1", "ida", "CAN Bus Analyzer Pro", "return"),
        ("unknown-id", None, None, "return"),
        ("b-1", "someone", "Other", "return"),
    ]


def test_window_keeps_buckets_whose_minute_starts_inside_it_and_caps_at_retention(clock):
    buf = RealtimeMetricsBuffer(retention_seconds=3600, clock=clock)
    minute = NOW - 30  # start of the current minute
    for back in (0, 1, 2, 59):
        buf.add_borrow("T", "u", False, f"id{back}", timestamp=minute - back * 60 + 1)
    assert len(buf.get_tool_history("T", 60)) == 1  # the minute that started 30 s ago
    assert len(buf.get_tool_history("T", 90)) == 2  # minute-1 started exactly 90 s ago
    assert len(buf.get_tool_history("T", 89.9)) == 1
    assert len(buf.get_tool_history("T", 21600)) == 4
    assert buf.get_tool_history("missing", 21600) == []


def test_returned_buckets_do_not_change_under_later_adds(clock):
    buf = RealtimeMetricsBuffer(clock=clock)
    buf.add_borrow("T", "a", False, "1")
    first = buf.aggregate_tool_metrics(60)
    buf.add_borrow("T", "b", True, "2")
    assert first["T"][0]["count"] == 1
    assert buf.aggregate_tool_metrics(60)["T"][0]["count"] == 2


@pytest.fixture(params=[None, 1e-6], ids=["default-switching", "switching-every-microsecond"])
def switching(request):
    """Run a test as threads usually switch, then switching about every microsecond (between any two steps of an add)."""
    previous = sys.getswitchinterval()
    if request.param is not None:
        sys.setswitchinterval(request.param)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_concurrent_writers_and_readers_end_with_exact_totals(switching):
    # Adds one by one queue without the lock; readers and full batches take from the queue under it.
    buf = RealtimeMetricsBuffer()
    writers, per_writer = 6, 3000
    stop = threading.Event()
    errors = []

    def write(n):
        for i in range(per_writer):
            buf.add_borrow(f"tool{i % 3}", f"user{n}", i % 4 == 0, f"{n}-{i}")
            if i % 2:
                buf.add_return(f"{n}-{i}")
            if i % 10 == 0:
                buf.add_failure(f"tool{i % 3}", f"user{n}", "exhausted")

    def read():
        try:
            while not stop.is_set():
                metrics = buf.aggregate_tool_metrics(21600)
                stats = buf.get_stats_summary()
                buf.get_recent_events(60, limit=10)
                counted = sum(b["count"] for buckets in metrics.values() for b in buckets)
                assert counted <= stats["borrow_count"] + writers * per_writer
        except Exception as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()

    assert errors == []
    stats = buf.get_stats_summary()
    assert stats["borrow_count"] == writers * per_writer
    assert stats["return_count"] == writers * per_writer // 2
    assert stats["failure_count"] == writers * per_writer // 10
    metrics = buf.aggregate_tool_metrics(21600)
    assert sum(b["count"] for buckets in metrics.values() for b in buckets) == writers * per_writer
    assert sum(b["overage_count"] for buckets in metrics.values() for b in buckets) == writers * per_writer // 4
    assert {u for buckets in metrics.values() for b in buckets for u in b["users"]} == {f"user{n}" for n in range(writers)}
    returns = buf.get_recent_events(21600)["returns"]
    assert all(r["tool"] == f"tool{int(r['id'].split('-')[1]) % 3}" for r in returns)


def test_rates_count_the_last_minute_and_overage_share(clock):
    buf = RealtimeMetricsBuffer(clock=clock)
    buf.add_borrow("T", "a", True, "old", timestamp=NOW - 61)
    for n in range(3):
        buf.add_borrow("T", "a", n == 0, f"b{n}", timestamp=NOW - 60 + n)
    buf.add_return("b0")
    buf.add_failure("T", "a", "exhausted", timestamp=NOW - 59)
    assert buf.get_rates(60) == {"borrow_per_min": 3, "return_per_min": 1, "failure_per_min": 1, "overage_percent": 33.3}
    clock.advance(3600)
    assert buf.get_rates(60) == {"borrow_per_min": 0, "return_per_min": 0, "failure_per_min": 0, "overage_percent": 0}


def test_adds_one_by_one_take_effect_as_of_when_they_were_made(clock):
    """A return finds its borrow as the buffer stood at the return, though both wait in a batch until a read."""
    buf = RealtimeMetricsBuffer(retention_seconds=300, clock=clock)
    assert buf.add_borrow("GreenHills Multi IDE", "ann", False, "b1")
    clock.advance(200)
    assert buf.add_return("b1")  # the borrow is retained now: the return takes its tool and user
    clock.advance(200)  # the borrow is past retention from here on, the return is not
    assert buf.add_failure("GreenHills Multi IDE", "bob", "exhausted")
    returns = buf.get_recent_events(600)["returns"]
    assert [(e["tool"], e["user"]) for e in returns] == [("GreenHills Multi IDE", "ann")]
    assert buf.get_minute_flows(600)["GreenHills Multi IDE"][0].returns == 1
    assert buf.get_recent_events(600)["borrows"] == []
