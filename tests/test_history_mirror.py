"""The analyses' copy of the stored sessions and denials equals what the store's own readers return, whatever was written."""

import os
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from dash_app.analytics.capacity import capacity, commit_advice
from dash_app.analytics.mirror import HistoryMirror
from dash_app.analytics.runners import FileSnapshots, snapshots_for
from dash_app.analytics.spec import Spec
from dash_app.events import borrow_event, failure_event, return_event
from dash_app.store import Store
from dash_app.store.history import HistoryKeeper
from dash_app.store.sessions import load_denials, load_sessions
from dash_app.testing import FakeClock

NOW = 1_800_000_000.0
HOUR, DAY = 3600.0, 86400.0
HISTORY = 2 * DAY
TOOLS = ("Tight", "Roomy", "Odd tool")
USERS = ("ann", "bob", "cy")
SPECS = {"Tight": Spec(1, 1, 300.0, 20.0), "Roomy": Spec(4, 2, 300.0, 20.0)}


# One step: a batch of writes, then maybe a prune after the clock moved, then maybe a refresh of the copy.
def write(kind, ids):
    """One write of `kind` on a borrow id from `ids`, by a tool and user, at an offset from now (late ones too)."""
    return st.tuples(st.just(kind), ids, st.sampled_from(TOOLS), st.sampled_from(USERS), st.floats(-3 * DAY, 0))


# One step: a batch of writes, then maybe a prune after the clock moved, then maybe a refresh of the copy. A return
# may name any id, seen or not (a return written before its borrow), and a borrow an id seen before (an upsert).
step = st.tuples(
    st.lists(
        st.one_of(write("borrow", st.integers(0, 30)), write("return", st.integers(0, 30)), write("deny", st.just(0))),
        max_size=12,
    ),
    st.floats(0, DAY),  # how far the clock moves before the prune
    st.booleans(),  # prune
    st.booleans(),  # refresh the copy now
)


def same_as_the_store(mirror, store, now):
    """Check every period's sessions and denials (all tools, and one tool) against the store's readers."""
    for start, end in ((now - 6 * DAY, now + 1), (now - DAY, now - HOUR), (now - 2 * DAY, now - DAY)):
        for tools in (None, ("Roomy",), ("Roomy", "Odd tool")):
            expected = load_sessions(store, start, end, tools, details=False)
            sessions = mirror.load_sessions(start, end, tools)
            assert_frame_equal(sessions, expected, check_index_type=False)
            expected_denials = load_denials(store, start, end, tools)
            denials = mirror.load_denials(start, end, tools)
            assert_frame_equal(denials, expected_denials, check_index_type=False)
            if start == now - 6 * DAY and tools is None:
                # The figures of the copy's frames come from its index sorted by tool (kept up to date tool by tool).
                got = capacity(sessions, denials, SPECS, start, end), commit_advice(sessions, SPECS, start, end)
                assert got == (capacity(expected, denials, SPECS, start, end), commit_advice(expected, SPECS, start, end))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=6))
def test_the_copy_follows_writes_late_returns_and_prunes(databases_at_head, steps):
    db = databases_at_head()
    clock = FakeClock(NOW)
    store = Store(db)
    HistoryKeeper(store, raw_keep_seconds=HOUR, history_seconds=HISTORY, clock=clock)
    store.start()
    # Read as the analysis process reads it: on connections of its own, by path or URL.
    snapshots = [snapshots_for(db), snapshots_for(db)]
    mirror = HistoryMirror(snapshots[0])
    try:
        for writes, advance, prune, refresh in steps:
            events = []
            for kind, n, tool, user, offset in writes:
                ts = clock() + offset
                if kind == "borrow":
                    events.append(borrow_event(tool, user, n % 3 == 0, f"id-{n}", ts))
                elif kind == "return":
                    events.append(return_event(f"id-{n}", user, tool, ts))
                else:
                    events.append(failure_event(tool, user, "exhausted", ts))
            store.on_events(events)
            assert store.flush()
            if prune:
                clock.advance(advance)
                store.run_tasks_now()
            if refresh:
                mirror.refresh()
                same_as_the_store(mirror, store, clock())
        mirror.refresh()
        same_as_the_store(mirror, store, clock())
        # A copy read from scratch is the same as the one kept up to date.
        fresh = HistoryMirror(snapshots[1])
        fresh.refresh()
        same_as_the_store(fresh, store, clock())
    finally:
        store.stop()
        for each in snapshots:
            each.close()


def test_a_refresh_reads_only_what_changed_and_nothing_when_nothing_did(database):
    store = Store(database)
    store.start()
    try:
        store.on_events([borrow_event("Roomy", f"u{n}", False, f"b{n}", NOW + n) for n in range(100)])
        assert store.flush()
        mirror = HistoryMirror(store.snapshot)
        assert mirror.refresh()
        assert not mirror.refresh()  # nothing changed
        store.on_events([return_event("b7", "u7", "Roomy", NOW + 500), failure_event("Roomy", "zed", "exhausted", NOW)])
        assert store.flush()
        seen = []
        original = mirror._session_columns
        mirror._session_columns = lambda rows: seen.append(len(rows)) or original(rows)
        assert mirror.refresh()
        assert seen == [1]  # the one row the return changed
        frame = mirror.load_sessions(NOW, NOW + 1000)
        assert frame.loc[frame["user"] == "u7", "returned_at"].tolist() == [NOW + 500]
        assert mirror.load_denials(NOW, NOW + 1)["user"].tolist() == ["zed"]
    finally:
        store.stop()


def test_an_in_memory_database_is_copied_through_the_stores_own_connection():
    store = Store(":memory:")
    store.start()
    try:
        store.on_events([borrow_event("Roomy", "ann", True, "a", NOW), failure_event("Tight", "bob", "queued", NOW)])
        assert store.flush()
        mirror = HistoryMirror(store.snapshot)
        mirror.refresh()
        same_as_the_store(mirror, store, NOW)
    finally:
        store.stop()


def test_a_replaced_file_is_read_again_whole(tmp_path):
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    for path, user in ((first, "ann"), (second, "bob")):
        store = Store(path)
        store.start()
        store.on_events([borrow_event("Roomy", user, False, f"id-{user}", NOW)])
        assert store.flush()
        store.stop()
    live = tmp_path / "live.db"
    shutil.copy(first, live)
    snapshots = FileSnapshots(str(live))
    mirror = HistoryMirror(snapshots)
    mirror.refresh()
    assert mirror.load_sessions(NOW - 1, NOW + 1)["user"].tolist() == ["ann"]
    os.replace(shutil.copy(second, tmp_path / "incoming.db"), live)
    mirror.refresh()
    assert snapshots.replaced  # the runner then resets the copy and reads the new file whole
    snapshots.replaced = False
    mirror.reset()
    mirror.refresh()
    assert mirror.load_sessions(NOW - 1, NOW + 1)["user"].tolist() == ["bob"]


def test_a_copy_behind_the_log_of_pruned_rows_reads_everything_again(database):
    clock = FakeClock(NOW)
    store = Store(database)
    HistoryKeeper(store, raw_keep_seconds=HOUR, history_seconds=HISTORY, clock=clock)
    store.start()
    try:
        store.on_events([borrow_event("Roomy", "ann", False, "a", NOW), return_event("a", "ann", "Roomy", NOW + 60)])
        store.on_events([borrow_event("Roomy", "bob", False, "b", NOW + 3 * DAY)])
        assert store.flush()
        mirror = HistoryMirror(store.snapshot)
        mirror.refresh()
        clock.advance(3 * DAY)
        store.run_tasks_now()  # ann's session goes, and its id is logged
        assert store.read('SELECT tbl, "row" FROM pruned_rows') == [("borrows", 1)]
        clock.advance(2 * DAY)
        store.on_events([borrow_event("Roomy", "cy", False, "c", NOW + 5 * DAY)])
        store.run_tasks_now()  # the log forgets that prune: a copy from before it cannot catch up from the log
        assert store.read("SELECT COUNT(*) FROM pruned_rows") == [(0,)]
        resets = []
        original = mirror.reset
        mirror.reset = lambda: resets.append(1) or original()
        mirror.refresh()
        assert resets == [1]
        assert sorted(mirror.load_sessions(NOW - DAY, NOW + 6 * DAY)["user"]) == ["bob", "cy"]
        same_as_the_store(mirror, store, clock())
    finally:
        store.stop()
