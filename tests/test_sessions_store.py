"""Every checkout session and denial kept for --history-days, read back as DataFrames; the schema version and upgrade."""

import logging
import math
import sqlite3
import threading

import numpy as np
import pytest

from dash_app.analytics.capacity import DENIAL_COLUMNS, SESSION_COLUMNS
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import borrow_event, failure_event, return_event
from dash_app.licenses import BorrowDenied, LicensePool
from dash_app.licenses.inventory import parse_inventory
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.recording import EventRecorder
from dash_app.sources import flexlm
from dash_app.state import get_state
from dash_app.store import Store, StoreError
from dash_app.store import schema as schema_module
from dash_app.store.history import HistoryKeeper
from dash_app.store.history_counts import data_version
from dash_app.store.schema import BASE_SCHEMA, FLEXLM_ID_PREFIX, MIGRATIONS, SCHEMA_VERSION
from dash_app.store.sessions import load_denials, load_sessions
from dash_app.testing import TEST_TOKEN, FakeClock
from tests.test_flexlm_follow import LIC01_LINES, follow, write

NOW = 1_800_000_000.0
HOUR, DAY = 3600.0, 86400.0
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
INVENTORY = [
    {"tool": "Tight", "total": 2, "commit_qty": 1, "max_overage": 1, "commit_price": 100, "overage_price_per_license": 7},
    {"tool": "Roomy", "total": 50, "commit_qty": 40, "max_overage": 10, "commit_price": 10, "overage_price_per_license": 1},
]
SESSION_DTYPES = {
    "tool": "object",
    "user": "object",
    "host": "object",
    "version": "object",
    "source": "object",
    "borrowed_at": "float64",
    "returned_at": "float64",
    "is_overage": "bool",
    "seq": "int64",
}
DENIAL_DTYPES = {"ts": "float64", "tool": "object", "user": "object", "reason": "object", "seq": "int64"}


@pytest.fixture
def store(database):
    """A started store on a new database, of each kind in turn."""
    store = Store(database)
    store.start()
    yield store
    store.stop()


def make_pool(store, clock=None):
    recorder = EventRecorder(RealtimeMetricsBuffer(clock=clock or FakeClock(NOW)), listeners=[store])
    return LicensePool(parse_inventory(INVENTORY), recorder, store=PoolStorage(store), clock=clock or FakeClock(NOW))


def flexlm_id(n):
    return f"{FLEXLM_ID_PREFIX}lic01|vendor|feature|ws{n}|log:{n}"


def by_user(frame):
    return {row["user"]: row for row in frame.to_dict("records")}


def check_shape(frame, dtypes):
    assert list(frame.columns) == list(dtypes)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == dtypes
    assert list(frame.index) == list(range(len(frame)))


# ------------------------------------------------------------------ sessions


def test_sessions_from_the_pool_and_a_flexlm_log_round_trip_with_their_details(store):
    pool = make_pool(store)
    ann = pool.borrow("Tight", "ann", at=NOW - 5 * HOUR, host="ws-17.lab", version="2024.1")
    pool.borrow("Tight", "bob", at=NOW - 4 * HOUR)  # overage: commit is 1
    pool.return_license(ann.id, at=NOW - 3 * HOUR)
    # Observed in a FlexLM log: its id has the follower's prefix, and the line names the host.
    cy = pool.observe_borrow("Roomy", "cy", NOW - 2 * HOUR, flexlm_id(1), host="build-3")
    pool.observe_return(cy.id, NOW - HOUR)
    pool.observe_borrow("Roomy", "dee", NOW - HOUR / 2, flexlm_id(2), host="build-4", version="11.19")
    assert store.flush()

    frame = load_sessions(store, NOW - DAY, NOW)
    check_shape(frame, SESSION_DTYPES)
    assert list(frame["user"]) == ["ann", "bob", "cy", "dee"]  # in borrowed_at order
    rows = by_user(frame)
    assert rows["ann"] == {
        "tool": "Tight",
        "user": "ann",
        "host": "ws-17.lab",
        "version": "2024.1",
        "source": "pool",
        "borrowed_at": NOW - 5 * HOUR,
        "returned_at": NOW - 3 * HOUR,
        "is_overage": False,
        "seq": rows["ann"]["seq"],
    }
    assert (rows["bob"]["host"], rows["bob"]["version"], rows["bob"]["source"]) == (None, None, "pool")
    assert rows["bob"]["is_overage"] is True and math.isnan(rows["bob"]["returned_at"])
    assert (rows["cy"]["host"], rows["cy"]["version"], rows["cy"]["source"]) == ("build-3", None, "flexlm")
    assert rows["cy"]["returned_at"] == NOW - HOUR
    assert (rows["dee"]["host"], rows["dee"]["version"], rows["dee"]["source"]) == ("build-4", "11.19", "flexlm")
    assert math.isnan(rows["dee"]["returned_at"])
    # seq is the order first recorded: a return (an upsert of the same row) keeps it.
    assert [rows[u]["seq"] for u in ("ann", "bob", "cy", "dee")] == sorted(rows[u]["seq"] for u in ("ann", "bob", "cy", "dee"))
    assert isinstance(rows["ann"]["tool"], str) and frame["seq"].is_unique
    # Without details the same sessions come back, their host, version and source left out.
    bare = load_sessions(store, NOW - DAY, NOW, details=False)
    check_shape(bare, SESSION_DTYPES)
    kept = [c for c in SESSION_COLUMNS if c not in ("host", "version", "source")]
    assert bare[kept].equals(frame[kept])
    assert set(bare["host"]) == set(bare["version"]) == set(bare["source"]) == {None}


def test_the_period_takes_sessions_overlapping_it_and_the_tools_filter_names_them(store):
    start, end = NOW - 10 * HOUR, NOW - 2 * HOUR
    spans = {
        "before": (start - 3 * HOUR, start - HOUR),  # returned before the period
        "ends_at_start": (start - HOUR, start),  # returned exactly at its start: not in [start, end)
        "across_start": (start - HOUR, start + HOUR),
        "inside": (start + HOUR, start + 2 * HOUR),
        "across_end": (end - HOUR, end + HOUR),
        "across_both": (start - HOUR, end + HOUR),
        "starts_at_end": (end, end + HOUR),  # borrowed exactly at its end: not in it
        "after": (end + HOUR, end + 2 * HOUR),
        "open_before": (start - 5 * HOUR, None),
        "open_inside": (start + 3 * HOUR, None),
        "open_after": (end + 0.5, None),
    }
    events = []
    for n, (user, (borrowed, returned)) in enumerate(spans.items()):
        tool = "Roomy" if n % 2 else "Tight"
        events.append(borrow_event(tool, user, False, f"id-{user}", borrowed))
        if returned is not None:
            events.append(return_event(f"id-{user}", user, tool, returned))
    store.on_events(events)
    assert store.flush()

    expected = {"across_start", "inside", "across_end", "across_both", "open_before", "open_inside"}
    frame = load_sessions(store, start, end)
    assert set(frame["user"]) == expected and len(frame) == len(expected)
    assert list(frame["borrowed_at"]) == sorted(frame["borrowed_at"])
    tools = {user: tool for user, tool in zip(frame["user"], frame["tool"])}
    roomy = load_sessions(store, start, end, tools=["Roomy"])
    assert set(roomy["user"]) == {user for user in expected if tools[user] == "Roomy"}
    assert set(load_sessions(store, start, end, tools={"Roomy", "Tight", "Nope"})["user"]) == expected
    empty = load_sessions(store, start, end, tools=[])
    assert empty.empty
    check_shape(empty, SESSION_DTYPES)
    # A period reaching back over everything stored takes the one-pass read: the same rows.
    everything = load_sessions(store, NOW - 30 * DAY, end)
    assert set(everything["user"]) == expected | {"before", "ends_at_start"}
    assert set(load_sessions(store, NOW - 30 * DAY, NOW)["user"]) == set(spans)


def test_a_return_recorded_before_its_borrow_ends_the_same_and_the_borrow_brings_its_details(store):
    store.on_events([return_event("late", "ann", "Roomy", NOW - HOUR)])
    assert store.flush()
    store.on_events([borrow_event("Roomy", "ann", True, "late", NOW - 2 * HOUR)])
    pool = make_pool(store)
    # A log backfill records its events when the batch ends; the host travels with the borrow event.
    with pool.recording_batch():
        pool.observe_borrow("Roomy", "bob", NOW - HOUR, flexlm_id(7), host="ws-7")
        assert store.flush()
        assert store.read("SELECT host FROM borrows WHERE id = :id", {"id": flexlm_id(7)}) == []
    assert store.flush()
    rows = by_user(load_sessions(store, NOW - DAY, NOW))
    assert (rows["ann"]["borrowed_at"], rows["ann"]["returned_at"], rows["ann"]["is_overage"]) == (
        NOW - 2 * HOUR,
        NOW - HOUR,
        True,
    )
    assert (rows["bob"]["host"], rows["bob"]["source"], rows["bob"]["borrowed_at"]) == ("ws-7", "flexlm", NOW - HOUR)
    assert math.isnan(rows["bob"]["returned_at"])


def test_rest_borrows_and_returns_are_kept_as_sessions(make_app, database):
    app = make_app(db=database)
    client = app.server.test_client()
    state = get_state(app)
    body = {"tool": "GreenHills Multi IDE", "user": "ann", "host": "ws-17.lab", "version": "2024.1"}
    granted = client.post("/licenses/borrow", json=body, headers=AUTH).get_json()
    client.post("/licenses/borrow", json={"tool": "GreenHills Multi IDE", "user": "bob"}, headers=AUTH)
    assert client.post("/licenses/return", json={"id": granted["id"]}, headers=AUTH).status_code == 200
    assert client.post("/licenses/borrow", json={"tool": "No such tool", "user": "cy"}, headers=AUTH).status_code == 404
    assert state.store.flush()
    now = state.pool.clock()
    rows = by_user(load_sessions(state.store, now - HOUR, now + 1))
    assert set(rows) == {"ann", "bob"}
    assert (rows["ann"]["host"], rows["ann"]["version"], rows["ann"]["source"]) == ("ws-17.lab", "2024.1", "pool")
    assert not math.isnan(rows["ann"]["returned_at"]) and math.isnan(rows["bob"]["returned_at"])
    denials = load_denials(state.store, now - HOUR, now + 1)
    assert list(zip(denials["tool"], denials["user"], denials["reason"])) == [("No such tool", "cy", "unknown_tool")]


def test_a_flexlm_log_gives_flexlm_sessions_with_their_hosts(make_app, tmp_path, database):
    path = tmp_path / "lmgrd.log"
    write(path, LIC01_LINES, mode="wb")
    _app, state, _follower = follow(make_app, [path], db=database)
    assert state.store.flush()
    frame = load_sessions(state.store, 0, 4e9)
    assert len(frame) and set(frame["source"]) == {"flexlm"} and frame["host"].notna().all()
    open_now = {(b.user, b.host) for b in state.pool.active_borrows()}
    still_open = frame[frame["returned_at"].isna()]
    assert set(zip(still_open["user"], still_open["host"])) == open_now
    assert FLEXLM_ID_PREFIX == f"{flexlm.ID_PREFIX}|"  # the store knows a FlexLM id by the follower's own prefix


# ------------------------------------------------------------------ denials


def test_denials_round_trip_in_their_period_and_tools(store):
    pool = make_pool(store)
    pool.borrow("Tight", "ann", at=NOW - 50)
    pool.borrow("Tight", "bob", at=NOW - 40)
    with pytest.raises(BorrowDenied):
        pool.borrow("Tight", "cy", at=NOW - 30)  # exhausted
    with pytest.raises(BorrowDenied):
        pool.borrow("Typo", "dee", at=NOW - 20)  # unknown_tool
    pool.observe_failure("Roomy", "eve", "queued", NOW - 10)
    store.on_events([failure_event("Roomy", "fay", "exhausted", NOW)])  # exactly at the end: outside [start, end)
    assert store.flush()

    frame = load_denials(store, NOW - 30, NOW)
    check_shape(frame, DENIAL_DTYPES)
    assert list(zip(frame["ts"], frame["tool"], frame["user"], frame["reason"])) == [
        (NOW - 30, "Tight", "cy", "exhausted"),
        (NOW - 20, "Typo", "dee", "unknown_tool"),
        (NOW - 10, "Roomy", "eve", "queued"),
    ]
    assert list(frame["seq"]) == sorted(frame["seq"])
    assert list(load_denials(store, NOW - 60, NOW + 1, tools=["Roomy"])["user"]) == ["eve", "fay"]
    assert load_denials(store, NOW - 60, NOW + 1, tools=[]).empty
    # Written with their events, in the same transactions.
    assert store.read("SELECT COUNT(*) FROM events WHERE kind = 'failure'") == store.read("SELECT COUNT(*) FROM denials")


# ------------------------------------------------------------------ pruning


def test_sessions_and_denials_are_kept_for_history_days_then_pruned_with_their_details(database):
    clock = FakeClock(NOW)
    store = Store(database)
    keeper = HistoryKeeper(store, raw_keep_seconds=7 * HOUR, history_seconds=30 * DAY, clock=clock)
    store.start()
    try:
        pool = make_pool(store, clock)
        spans = {
            "gone": (NOW - 32 * DAY, NOW - 31 * DAY),
            "kept_29d": (NOW - 29.5 * DAY, NOW - 29 * DAY),
            "kept_8h": (NOW - 9 * HOUR, NOW - 8 * HOUR),  # past the raw events' 7 h: kept all the same
            "open_40d": (NOW - 40 * DAY, None),
        }
        for user, (borrowed, returned) in spans.items():
            borrow = pool.observe_borrow("Roomy", user, borrowed, flexlm_id(len(user)) + user, host=f"h-{user}")
            if returned is not None:
                pool.observe_return(borrow.id, returned)
        pool.observe_failure("Roomy", "old", "exhausted", NOW - 31 * DAY)
        pool.observe_failure("Roomy", "new", "exhausted", NOW - 29 * DAY)
        assert store.flush()
        before = data_version(store)
        store.run_tasks_now()
        assert data_version(store) != before  # the prune removed some

        frame = load_sessions(store, NOW - 60 * DAY, NOW + 1)
        assert set(frame["user"]) == {"kept_29d", "kept_8h", "open_40d"}
        assert set(frame["host"]) == {"h-kept_29d", "h-kept_8h", "h-open_40d"}
        assert list(load_denials(store, 0, NOW + 1)["user"]) == ["new"]
        assert store.read("SELECT COUNT(*) FROM events WHERE ts < :t", {"t": NOW - 7 * HOUR}) == [(0,)]
        assert store.read("SELECT COUNT(*) FROM borrows") == [(3,)]  # the host went with its session's row

        # Nothing past its time: a prune changes nothing, and the version stays.
        unchanged = data_version(store)
        store.run_tasks_now()
        assert data_version(store) == unchanged
        clock.advance(2 * DAY)
        store.run_tasks_now()
        assert set(load_sessions(store, 0, clock() + 1)["user"]) == {"kept_8h", "open_40d"}
        assert load_denials(store, 0, clock() + 1).empty
        assert data_version(store) != unchanged
    finally:
        store.stop()
    assert keeper.history_seconds == 30 * DAY


# ------------------------------------------------------------------ schema version and upgrade


def make_v0_database(path):
    """A file as the app wrote it before versions were recorded: the schema of HEAD's Store and its rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(BASE_SCHEMA)
    insert = "INSERT INTO borrows (id, tool, user, borrowed_at, is_overage, returned_at) VALUES (?, ?, ?, ?, ?, ?)"
    borrows = [
        ("rest-open", "Tight", "ann", NOW - 3 * HOUR, 0, None),
        ("rest-back", "Tight", "bob", NOW - 4 * HOUR, 1, NOW - 2 * HOUR),
        (flexlm_id(1), "Roomy", "cy", NOW - 5 * HOUR, 0, None),
        (flexlm_id(2), "Roomy", "dee", NOW - 6 * HOUR, 0, NOW - HOUR),
        ("FLEXLM|not|ours", "Roomy", "eve", NOW - 6 * HOUR, 0, None),  # the prefix is case-sensitive
    ]
    conn.executemany(insert, borrows)
    conn.executemany(
        "INSERT INTO checkout_details (id, host, version) VALUES (?, ?, ?)",
        [("rest-open", "ws-17.lab", "2024.1"), (flexlm_id(1), "build-3", None)],
    )
    conn.execute("INSERT INTO charges VALUES ('Tight', 1)")
    events = [
        (NOW - 6 * HOUR, "borrow", "Roomy", "dee", flexlm_id(2), 0, None),
        (NOW - 5 * HOUR, "failure", "Tight", "fay", None, None, "exhausted"),
        (NOW - 4 * HOUR, "borrow", "Tight", "bob", "rest-back", 1, None),
        (NOW - 2 * HOUR, "failure", "Typo", "gus", None, None, "unknown_tool"),
        (NOW - 2 * HOUR, "return", "Tight", "bob", "rest-back", None, None),
        (NOW - HOUR, "failure", "Roomy", "fay", None, None, "queued"),
    ]
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", events)
    conn.execute("INSERT INTO minute_stats VALUES (?, ?, 1, 0, '[\"dee\"]', 0, '{}')", ("Roomy", int((NOW - 6 * HOUR) // 60)))
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    conn.close()
    return borrows, events


def dump(path, unstamped=False):
    """Every table's rows (sorted), for comparing a file before and after; `unstamped` leaves out the write stamps."""
    conn = sqlite3.connect(path)
    try:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = {table: conn.execute(f"SELECT * FROM {table}").fetchall() for table in tables}
        if unstamped:
            rows = {t: [row[:-1] if t in ("borrows", "denials") else row for row in r] for t, r in rows.items()}
        return {table: sorted(r, key=repr) for table, r in rows.items()}
    finally:
        conn.close()


def test_the_base_schema_is_the_one_files_without_a_version_have():
    """BASE_SCHEMA must stay what Store.SCHEMA was before versions (the HEAD it was taken from, when git has it)."""
    import subprocess

    from dash_app.testing import ROOT

    try:
        old = subprocess.run(
            ["git", "show", "e2009c2:dash_app/store/sqlite_store.py"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history here")
    start = old.index('SCHEMA = """') + len('SCHEMA = """')
    assert old[start : old.index('"""', start)] == BASE_SCHEMA


def test_an_unversioned_file_is_upgraded_in_place_keeping_every_row(tmp_path, caplog):
    path = tmp_path / "v0.db"
    borrows, events = make_v0_database(path)
    caplog.set_level(logging.INFO, logger=schema_module.__name__)

    store = Store(path)
    store.start()
    try:
        assert store.read("PRAGMA user_version") == [(SCHEMA_VERSION,)]
        upgraded = [r for r in caplog.records if "schema upgraded from version 0 to 1" in r.getMessage()]
        assert len(upgraded) == 1
        assert store.read("SELECT id, tool, user, borrowed_at, is_overage, returned_at FROM borrows ORDER BY rowid") == borrows
        assert store.read("SELECT * FROM events ORDER BY rowid") == [(*e, None, None) for e in events]  # host, version
        assert store.read("SELECT name FROM sqlite_master WHERE name = 'checkout_details'") == []  # moved into borrows
        assert PoolStorage(store).load_charges() == {"Tight": 1}
        assert store.read("SELECT COUNT(*) FROM minute_stats") == [(1,)]

        frame = load_sessions(store, NOW - DAY, NOW)
        rows = {row["user"]: row for row in frame.to_dict("records")}
        assert {u: (r["source"], r["host"], r["version"]) for u, r in rows.items()} == {
            "ann": ("pool", "ws-17.lab", "2024.1"),
            "bob": ("pool", None, None),
            "cy": ("flexlm", "build-3", None),
            "dee": ("flexlm", None, None),
            "eve": ("pool", None, None),
        }
        denials = load_denials(store, 0, NOW + 1)
        assert list(zip(denials["ts"], denials["tool"], denials["user"], denials["reason"])) == [
            (e[0], e[2], e[3], e[6]) for e in events if e[1] == "failure"
        ]
        # The pool starts from it as before: open borrows with their host and version.
        pool = make_pool(store)
        held = {b.user: (b.host, b.version) for b in pool.active_borrows()}
        assert held == {"ann": ("ws-17.lab", "2024.1"), "cy": ("build-3", None), "eve": (None, None)}
        # New writes go to the new columns and table.
        pool.borrow("Roomy", "hal", at=NOW)
        pool.observe_failure("Roomy", "ivy", "queued", NOW)
        assert store.flush()
    finally:
        store.stop()
    after = dump(path)

    # Opening it again changes nothing and logs nothing.
    caplog.clear()
    Store(path).close()
    assert dump(path) == after
    assert not [r for r in caplog.records if "schema upgraded" in r.getMessage()]
    # Each migration is idempotent on its own, too. (Version 1's denial backfill, run again on a later file,
    # writes its rows anew without version 2's write stamp; the rows themselves are the same.)
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS:
        migration(conn)
    conn.close()
    assert dump(path, unstamped=True) == {
        table: sorted((row[:-1] if table in ("borrows", "denials") else row for row in rows), key=repr)
        for table, rows in after.items()
    }


def test_a_new_file_starts_at_the_latest_version_without_an_upgrade_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=schema_module.__name__)
    store = Store(tmp_path / "new.db")
    assert store.read("PRAGMA user_version") == [(SCHEMA_VERSION,)]
    store.close()
    assert not [r for r in caplog.records if "schema upgraded" in r.getMessage()]
    assert Store(":memory:").read("PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_file_from_a_newer_version_is_refused_in_one_line_and_left_alone(tmp_path):
    path = tmp_path / "newer.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = dump(path)
    with pytest.raises(StoreError) as refused:
        Store(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this app's ({SCHEMA_VERSION})" in message
    assert dump(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
    conn.close()


# ------------------------------------------------------------------ data version and reads


def test_data_version_moves_with_every_write_of_sessions_or_denials(store, tmp_path):
    first = data_version(store)
    assert data_version(store) == first  # nothing written: it stands
    store.on_events([borrow_event("Roomy", "ann", False, "a", NOW)])
    assert store.flush()
    after_borrow = data_version(store)
    assert after_borrow != first
    store.on_events([return_event("a", "ann", "Roomy", NOW + 1)])
    assert store.flush() and data_version(store) not in (first, after_borrow)
    seen = data_version(store)
    store.on_events([failure_event("Roomy", "bob", "exhausted", NOW + 2)])
    assert store.flush() and data_version(store) != seen
    # Another store never hands out a number this one did.
    other = Store(tmp_path / "other.db")
    assert data_version(other) not in (first, after_borrow, seen, data_version(store))
    other.close()


def test_a_long_read_does_not_wait_for_the_writers_connection(store):
    store.on_events([borrow_event("Roomy", f"u{n}", False, f"id{n}", NOW + n) for n in range(100)])
    assert store.flush()
    result = {}
    with store._conn_lock:  # the writer (or anyone on its connection) is busy
        reader = threading.Thread(target=lambda: result.update(frame=load_sessions(store, NOW, NOW + 1000)))
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "load_sessions waited for the writer's connection"
    assert len(result["frame"]) == 100
    assert np.array_equal(result["frame"]["borrowed_at"].to_numpy(), NOW + np.arange(100.0))


def test_reads_go_on_after_the_file_is_deleted_and_written_back(tmp_path):
    store = Store(tmp_path / "deleted.db")  # a file's own trouble: a server's database has no file to lose
    store.start()
    store.on_events([borrow_event("Roomy", "ann", False, "a", NOW), failure_event("Roomy", "bob", "queued", NOW)])
    assert store.flush()
    assert len(load_sessions(store, NOW - 1, NOW + 1)) == 1  # a read connection is open on the first file
    import os
    import time

    os.remove(store.path)
    deadline = time.monotonic() + 10
    while store.recreations == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.recreations == 1
    store.on_events([borrow_event("Roomy", "cy", False, "c", NOW)])
    assert store.flush()
    assert sorted(load_sessions(store, NOW - 1, NOW + 1)["user"]) == ["ann", "cy"]
    assert list(load_denials(store, NOW - 1, NOW + 1)["user"]) == ["bob"]
    store.stop()


def test_an_in_memory_store_reads_the_same_shapes():
    store = Store(":memory:")
    store.start()
    try:
        store.on_events([borrow_event("Roomy", "ann", False, "a", NOW), failure_event("Roomy", "bob", "queued", NOW)])
        assert store.flush()
        check_shape(load_sessions(store, NOW - 1, NOW + 1), SESSION_DTYPES)
        check_shape(load_denials(store, NOW - 1, NOW + 1), DENIAL_DTYPES)
        assert list(SESSION_DTYPES) == list(SESSION_COLUMNS) and list(DENIAL_DTYPES) == list(DENIAL_COLUMNS)
    finally:
        store.stop()


def test_others_version_moves_for_another_processes_commits_and_not_for_our_own(database):
    """What the history keeper watches to drop its caches: commits by other stores (processes) on the database."""
    ours, other = Store(database), Store(database)
    ours.start()
    other.start()
    try:
        first = ours.others_version()
        ours.on_events([borrow_event("Roomy", "ann", False, "a", NOW)])
        assert ours.flush()
        assert ours.others_version() == first  # our own commit
        other.on_events([borrow_event("Roomy", "bob", False, "b", NOW)])
        assert other.flush()
        moved = ours.others_version()
        assert moved != first
        assert ours.others_version() == moved  # nothing since
    finally:
        ours.stop()
        other.stop()


def test_a_write_whose_commit_answer_was_lost_is_not_written_again(postgres):
    """The writer asks the server whether an interrupted transaction committed before it writes its items again."""
    store = Store(postgres.create_database("unsettled"))
    try:
        first = [borrow_event("Roomy", "ann", True, "a", NOW), failure_event("Roomy", "bob", "queued", NOW)]
        later = [borrow_event("Roomy", "cy", True, "c", NOW + 1)]
        assert store._write_what_can_be([first]) == []
        # The write's own id: the transaction that inserted its rows. Not "the next id less one": any transaction on the
        # server (autovacuum's ANALYZE, another test's writer) may take an id in between. A new cluster's epoch is 0,
        # so the 32-bit xmin is the whole id.
        [(committed,)] = store.read("SELECT DISTINCT xmin::text::bigint FROM events")
        # As if the connection had dropped while that commit's answer was on the way, with one more item queued since.
        store.commits.unsettled = (committed, 1)
        assert store._write_what_can_be([first, later]) == [later]  # the first is in, the later one still to write
        assert store._write_what_can_be([later]) == []
        assert store.read("SELECT COUNT(*) FROM events")[0][0] == 3  # nothing twice
        assert PoolStorage(store).load_charges() == {"Roomy": 2}
        # A transaction that did not commit: its items are written again.
        with store.engine.connect() as conn:
            aborted = conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one()
            conn.rollback()
        store.commits.unsettled = (aborted, 1)
        assert store._write_what_can_be([later]) == [] and store.read("SELECT COUNT(*) FROM events")[0][0] == 4
    finally:
        store.close()


def test_a_write_lock_held_elsewhere_ends_in_a_retry_not_a_hang(postgres):
    """Another process holding the database's write lock (stopped mid-transaction): the writer says so and goes on."""
    import time

    import psycopg

    from dash_app.store.database import WRITE_LOCK

    store = Store(postgres.create_database("held"))
    store.start()
    try:
        with psycopg.connect(postgres.dsn_for("held")) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # held until this transaction ends
            store.on_events([borrow_event("Roomy", "ann", False, "a", NOW)])
            deadline = time.monotonic() + 30
            while store.persisted and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not store.persisted and "lock timeout" in store.last_error
            holder.rollback()
        assert store.flush(30) and store.persisted
        assert store.read("SELECT COUNT(*) FROM events")[0][0] == 1
    finally:
        store.stop()
