"""The analyses' copy of the stored sessions and denials equals what the store's own readers return, whatever was written."""

import os
import shutil
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from dash_app.analytics import mirror_file
from dash_app.analytics.capacity import capacity, commit_advice
from dash_app.analytics.mirror import HistoryMirror
from dash_app.analytics.runners import FileSnapshots, snapshots_for
from dash_app.analytics.saved_copies import saved_copy_path
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
    st.booleans(),  # then save it, and go on with a new copy loaded from that file (a restart)
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
def test_the_copy_follows_writes_late_returns_and_prunes(databases_at_head, steps, tmp_path_factory):
    db = databases_at_head()
    saved = str(tmp_path_factory.mktemp("copy") / "saved.npz")
    clock = FakeClock(NOW)
    store = Store(db)
    HistoryKeeper(store, raw_keep_seconds=HOUR, history_seconds=HISTORY, clock=clock)
    store.start()
    # Read as the analysis process reads it: on connections of its own, by path or URL.
    snapshots = [snapshots_for(db), snapshots_for(db)]
    mirror = HistoryMirror(snapshots[0])
    try:
        for writes, advance, prune, refresh, restart in steps:
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
                if restart:
                    mirror_file.save(mirror.saved(), saved)
                    mirror = HistoryMirror(snapshots[0])
                    mirror.adopt(mirror_file.load(saved))
                    assert not mirror.refresh() and mirror.whole_reads == 0  # of this database, and current
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


def _store_with(path, events):
    store = Store(path)
    store.start()
    store.on_events(events)
    assert store.flush()
    return store


def _restarted(db, saved):
    """Return a new mirror of `db` loaded from the copy at `saved`, as the analysis process starts."""
    mirror = HistoryMirror(snapshots_for(str(db)))
    mirror.adopt(mirror_file.load(str(saved)))
    return mirror


def test_a_saved_copy_of_another_database_at_the_same_path_is_read_again_whole(tmp_path):
    db = tmp_path / "site.db"
    store = _store_with(db, [borrow_event("Roomy", "ann", False, "a", NOW)])
    mirror = HistoryMirror(store.snapshot)
    mirror.refresh()
    store.stop()
    saved = saved_copy_path(str(db))
    mirror_file.save(mirror.saved(), saved)
    db.unlink()  # a new database at the same path: its stamps start again, and it has a number of its own
    store = _store_with(db, [borrow_event("Roomy", "bob", False, "b", NOW), borrow_event("Tight", "cy", False, "c", NOW)])
    try:
        mirror = _restarted(db, saved)
        assert mirror.refresh() and mirror.whole_reads == 1
        assert mirror.load_sessions(NOW - 1, NOW + 1)["user"].tolist() == ["bob", "cy"]
        same_as_the_store(mirror, store, NOW)
    finally:
        store.stop()


def test_a_saved_copy_newer_than_its_database_is_read_again_whole(tmp_path):
    """A file put back by hand from a backup keeps its number, but its stamps are behind the copy's."""
    db, backup = tmp_path / "site.db", tmp_path / "backup.db"
    store = _store_with(db, [borrow_event("Roomy", "ann", False, "a", NOW)])
    store.stop()
    shutil.copy(db, backup)
    store = _store_with(db, [return_event("a", "ann", "Roomy", NOW + 60), borrow_event("Roomy", "bob", False, "b", NOW)])
    mirror = HistoryMirror(store.snapshot)
    mirror.refresh()
    store.stop()
    mirror_file.save(mirror.saved(), saved_copy_path(str(db)))
    shutil.copy(backup, db)
    store = Store(db)
    try:
        mirror = _restarted(db, saved_copy_path(str(db)))
        mirror.refresh()
        assert mirror.whole_reads == 1
        frame = mirror.load_sessions(NOW - 1, NOW + 100)
        assert frame["user"].tolist() == ["ann"] and frame["returned_at"].isna().all()  # the backup's state
        same_as_the_store(mirror, store, NOW)
    finally:
        store.close()


def test_a_pruned_users_name_leaves_the_saved_copy(database, tmp_path):
    clock = FakeClock(NOW)
    store = Store(database)
    HistoryKeeper(store, raw_keep_seconds=HOUR, history_seconds=HISTORY, clock=clock)
    store.start()
    saved = str(tmp_path / "copy.npz")
    try:
        left = "zelda-left"
        store.on_events([borrow_event("Roomy", left, False, "a", NOW), return_event("a", left, "Roomy", NOW + 60)])
        store.on_events([failure_event("Tight", left, "exhausted", NOW + 30)])
        store.on_events([borrow_event("Roomy", "bob", False, "b", NOW + 3 * DAY)])
        assert store.flush()
        mirror = HistoryMirror(store.snapshot)
        mirror.refresh()
        mirror_file.save(mirror.saved(), saved)
        assert left in mirror_file.load(saved).names
        clock.advance(3 * DAY)
        store.run_tasks_now()  # her session and denial are older than the history kept
        mirror.refresh()
        mirror_file.save(mirror.saved(), saved)
        with open(saved, "rb") as held:
            assert left.encode() not in held.read()
        assert mirror_file.load(saved).names == ["Roomy", "bob"]
        same_as_the_store(_restarted(database, saved) if "://" not in database else mirror, store, clock())
    finally:
        store.stop()


def test_the_file_is_written_whole_and_readable_by_its_owner_alone(tmp_path):
    db = tmp_path / "site.db"
    store = _store_with(db, [borrow_event("Roomy", "ann", False, "a", NOW), failure_event("Tight", "bob", "queued", NOW)])
    try:
        mirror = HistoryMirror(store.snapshot)
        mirror.refresh()
        saved = saved_copy_path(str(db))
        assert saved == str(db) + "-analysis.npz"
        mirror_file.save(mirror.saved(), saved)
        assert os.stat(saved).st_mode & 0o777 == 0o600
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]  # no temporary file left
        same_as_the_store(_restarted(db, saved), store, NOW)
        assert saved_copy_path(":memory:", "/cache") is None and saved_copy_path("postgresql://u@h/db") is None
    finally:
        store.stop()


def test_a_damaged_or_foreign_file_is_refused_in_one_line(tmp_path):
    import numpy as np
    import pytest

    db = tmp_path / "site.db"
    store = _store_with(db, [borrow_event("Roomy", "ann", False, "a", NOW)])
    mirror = HistoryMirror(store.snapshot)
    mirror.refresh()
    store.stop()
    good = tmp_path / "good.npz"
    mirror_file.save(mirror.saved(), str(good))
    whole = good.read_bytes()
    held = dict(np.load(good))
    cases = {
        "truncated": whole[: len(whole) // 2],
        "not a zip": b"hello",
        "other format": {**held, "format": np.array([99])},
        "a code out of range": {**held, "index.user": held["index.user"] + 5},
        "a column of another type": {**held, "index.level": held["index.level"].astype(np.float64)},
        "columns of unequal length": {**held, "denials.ts": np.zeros(7)},
        "a pickle": {**held, "names": np.array([object()], dtype=object)},
        "a missing column": {k: v for k, v in held.items() if k != "index.seq"},
        "no stamp": {**held, "stamp": np.zeros(0, dtype=np.int64)},
        "name ends of another type": {**held, "name_ends": held["name_ends"].astype(np.float64)},
    }
    for name, content in cases.items():
        bad = tmp_path / "bad.npz"
        if isinstance(content, bytes):
            bad.write_bytes(content)
        else:
            np.savez(bad, allow_pickle=True, **content)
        with pytest.raises(mirror_file.CopyUnusable) as refused:
            mirror_file.load(str(bad))
        assert str(refused.value).startswith(str(bad)) and "\n" not in str(refused.value), name
    with pytest.raises(FileNotFoundError):
        mirror_file.load(str(tmp_path / "none.npz"))


def test_the_analysis_process_saves_its_copy_and_the_next_one_starts_from_it(database, tmp_path, capfd):
    """Saved after its first whole read and when SIGTERM stops it; the next process loads it and reads the rest.

    A file's copy sits beside it; a server's goes to --analysis-dir, a folder the process makes private to its user.
    """
    import signal

    from dash_app.analytics.runners import analysis_runner, started_if_analysed_before

    cache = tmp_path / "cache" / "dash_app"
    store = _store_with(database, [borrow_event("Roomy", "ann", False, "a", NOW), return_event("a", "ann", "Roomy", NOW + HOUR)])
    saved = saved_copy_path(database, str(cache))
    if "://" not in database:
        assert saved == database + "-analysis.npz"
    query = {"start": NOW - DAY, "end": NOW + DAY, "tools": None, "gap": 0.0, "limit": 10}
    try:
        assert started_if_analysed_before(database, str(cache)) is None  # nothing saved yet: started on demand
        first = analysis_runner(store, str(cache))
        first.start()
        assert [u["user"] for u in first.run("users", **query)] == ["ann"]
        deadline = time.monotonic() + 30  # saved once idle after the whole read (a query never waits for it)
        while not os.path.exists(saved) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mirror_file.load(saved).names == ["Roomy", "ann"]
        if "://" in database:
            assert os.path.dirname(saved) == str(cache) and os.stat(cache).st_mode & 0o777 == 0o700
        store.on_events([borrow_event("Tight", "bob", False, "b", NOW), return_event("b", "bob", "Tight", NOW + 2 * HOUR)])
        assert store.flush()
        assert [u["user"] for u in first.run("users", **query)] == ["bob", "ann"]  # read; saved within SAVE_SECONDS
        os.kill(first.pid, signal.SIGTERM)
        first._process.join(timeout=30)
        assert first._process.exitcode == 0
        first.stop()
        assert sorted(mirror_file.load(saved).names) == ["Roomy", "Tight", "ann", "bob"]  # saved as it stopped

        store.on_events([borrow_event("Roomy", "cy", False, "c", NOW), return_event("c", "cy", "Roomy", NOW + 3 * HOUR)])
        assert store.flush()
        capfd.readouterr()
        second = started_if_analysed_before(database, str(cache))  # as a server starts: the copy is there
        assert second is not None
        try:
            assert [u["user"] for u in second.run("users", **query)] == ["cy", "bob", "ann"]
        finally:
            second.stop()
        logged = capfd.readouterr().err
        assert "loaded the saved copy of the history (2 sessions)" in logged and "reading it whole" not in logged
    finally:
        store.stop()


def test_a_servers_copy_is_named_after_its_database_never_its_password():
    """The same database however its URL is spelled finds one copy; another database, user, host or port its own."""
    same = {
        saved_copy_path(url, "/cache")
        for url in (
            "postgresql://ann:one@db.example:5432/licenses",
            "postgresql+psycopg://ann:two@db.example:5432/licenses",
            "postgres://ann@DB.example/licenses",  # the default port, the host in capitals
            "postgresql://ann@db.example/licenses?password=three&sslmode=verify-full&connect_timeout=10",
            "postgresql://ann@db.example/licenses?sslpassword=four&passfile=/home/ann/.pgpass&application_name=x",
        )
    }
    assert len(same) == 1
    [path] = same
    assert path.startswith("/cache/licenses-") and path.endswith("-analysis.npz")
    others = {
        saved_copy_path(url, "/cache")
        for url in (
            "postgresql://ann@db.example:5432/other",
            "postgresql://bob@db.example:5432/licenses",
            "postgresql://ann@db2.example:5432/licenses",
            "postgresql://ann@db.example:5433/licenses",
            "postgresql://ann@db.example:5432/licenses?host=/run/postgresql",
        )
    }
    assert len(others) == 5 and path not in others
    assert saved_copy_path("postgresql://ann@db.example/db/../x", "/cache").startswith("/cache/db_.._x-")  # one file name
    assert saved_copy_path("postgresql://ann@db.example/licenses", "") is None  # --analysis-dir none: none kept
    assert saved_copy_path("postgresql://ann@db.example:port/licenses", "/cache") is None  # the store says what is wrong
    assert saved_copy_path("~/site.db", "/cache") == "~/site.db-analysis.npz"  # a file's copy sits beside it


def test_the_folder_of_a_servers_copy_comes_from_the_flag_or_the_environment_and_none_keeps_none():
    import argparse

    from dash_app.config import add_arguments, from_args

    parser = add_arguments(argparse.ArgumentParser())
    assert from_args(parser.parse_args([]), environ={}).analysis_dir == "~/.cache/dash_app"
    assert from_args(parser.parse_args([]), environ={"DASH_APP_ANALYSIS_DIR": "/var/cache/x"}).analysis_dir == "/var/cache/x"
    assert from_args(parser.parse_args([]), environ={"DASH_APP_ANALYSIS_DIR": "None"}).analysis_dir == ""
    assert from_args(parser.parse_args(["--analysis-dir", "none"]), environ={}).analysis_dir == ""


def test_a_folder_others_may_write_to_keeps_no_copy(postgres, tmp_path, capfd):
    """Anyone who may write to the folder could put a copy in place of ours: none is kept there, in one WARNING line."""
    from dash_app.analytics.runners import AnalysisProcess

    url = postgres.create_database("shared_folder")
    store = _store_with(url, [borrow_event("Roomy", "ann", False, "a", NOW)])
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    saved = saved_copy_path(url, str(shared))
    process = AnalysisProcess(url, saved)
    try:
        query = {"start": NOW - DAY, "end": NOW + DAY, "tools": None, "gap": 0.0, "limit": 10}
        assert [u["user"] for u in process.run("users", **query)] == ["ann"]  # analyses go on without it
    finally:
        process.stop()
        store.stop()
    assert os.listdir(shared) == []
    [line] = [line for line in capfd.readouterr().err.splitlines() if "WARNING" in line]
    assert line.endswith(f"not kept: {shared} is not a folder of this user's that only it may write to")


def test_a_copy_that_cannot_be_saved_or_loaded_costs_a_log_line_and_a_whole_read(tmp_path, caplog):
    from dash_app.analytics.saved_copies import SavedCopies

    db = tmp_path / "site.db"
    store = _store_with(db, [borrow_event("Roomy", "ann", False, "a", NOW)])
    try:
        mirror = HistoryMirror(store.snapshot)
        copies = SavedCopies(mirror, str(tmp_path / "gone" / "site.db-analysis.npz"))  # its folder does not exist
        mirror.refresh()
        copies.save()
        [saving] = [r for r in caplog.records if r.levelname == "WARNING"]
        assert saving.getMessage().startswith("saving the copy of the history failed: ")
        caplog.clear()
        damaged = tmp_path / "damaged.npz"
        damaged.write_bytes(b"PK\x03\x04 not a whole file")
        again = HistoryMirror(store.snapshot)
        SavedCopies(again, str(damaged)).load()
        [loading] = [r for r in caplog.records if r.levelname == "WARNING"]
        assert loading.getMessage().startswith(f"the saved copy of the history is not used: {damaged}: ")
        assert again.refresh() and again.whole_reads == 1
        same_as_the_store(again, store, NOW)
    finally:
        store.stop()


def test_a_save_cut_short_leaves_no_file_behind_at_the_next_start(tmp_path):
    """A process killed while saving leaves its temporary file; the next start deletes it (not a live process's)."""
    import subprocess
    import sys

    saved = str(tmp_path / "site.db-analysis.npz")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = f"{saved}.{int(ended.stdout)}.tmp", f"{saved}.{os.getpid()}.tmp"
    for leftover in (dead, alive, str(tmp_path / "other.npz.1.tmp")):
        open(leftover, "wb").close()
    assert mirror_file.remove_leftovers(saved) == [os.path.basename(dead)]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in (alive, str(tmp_path / "other.npz.1.tmp")))


@pytest.mark.parametrize("per_transaction", [1, 100])  # 100: more than the check reads of one transaction
def test_a_saved_copy_of_a_history_gone_back_to_a_backup_and_on_again_is_read_again_whole(tmp_path, caplog, per_transaction):
    """The backup's new writes number rows and transactions as the copy's did, up to its stamp and beyond: their
    content tells them apart, and the rejected file is deleted at once (it must not pass later)."""
    import logging

    from dash_app.analytics.saved_copies import SavedCopies

    db, backup = tmp_path / "site.db", tmp_path / "backup.db"
    store = _store_with(db, [borrow_event("Roomy", "ann", False, "a", NOW)])
    store.stop()
    shutil.copy(db, backup)
    store = Store(db)
    store.start()
    for n in range(3):  # a transaction each
        store.on_events([borrow_event("Roomy", "bob", False, f"b{n}-{k}", NOW + n) for k in range(per_transaction)])
        assert store.flush()
    mirror = HistoryMirror(store.snapshot)
    mirror.refresh()
    store.stop()
    saved = saved_copy_path(str(db))
    mirror_file.save(mirror.saved(), saved)
    accepted = _restarted(db, saved)  # the database the copy was read from: the copy is taken as it is
    assert not accepted.refresh() and accepted.whole_reads == 0
    shutil.copy(backup, db)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"site.db{suffix}").unlink(missing_ok=True)
    store = Store(db)
    store.start()
    try:
        for n in range(3):  # the same transactions and row ids, other rows
            store.on_events([borrow_event("Roomy", "cy", False, f"c{n}-{k}", NOW + 10 + n) for k in range(per_transaction)])
            assert store.flush()
        again = HistoryMirror(snapshots_for(str(db)))
        copies = SavedCopies(again, saved)
        copies.load()
        assert again.stamp == mirror.stamp and again.database_id == mirror.database_id
        with caplog.at_level(logging.INFO, logger="dash_app.analytics.mirror"):
            again.refresh()
        copies.checked()
        assert again.whole_reads == 1 and "not of this database's history" in caplog.text
        assert sorted(again.load_sessions(NOW - 1, NOW + 100)["user"]) == ["ann"] + ["cy"] * 3 * per_transaction
        same_as_the_store(again, store, NOW)
        assert not os.path.exists(saved)
    finally:
        store.stop()


def test_null_names_of_old_denials_go_through_the_saved_copy(tmp_path):
    """A denial of the first releases may have no tool or user (NULL): saved and loaded, it reads as the database's."""
    db = tmp_path / "site.db"
    store = _store_with(db, [failure_event("Tight", "bob", "queued", NOW), failure_event("Roomy", "cy", "queued", NOW + 1)])
    try:
        with store.writing() as conn:
            conn.exec_driver_sql("UPDATE denials SET \"user\" = NULL WHERE tool = 'Tight'")
            conn.exec_driver_sql("UPDATE denials SET tool = NULL WHERE tool = 'Roomy'")
        mirror = HistoryMirror(store.snapshot)
        mirror.refresh()
        saved = str(tmp_path / "copy.npz")
        mirror_file.save(mirror.saved(), saved)
        loaded = _restarted(db, saved)
        assert not loaded.refresh() and loaded.whole_reads == 0
        assert_frame_equal(loaded.load_denials(NOW - 1, NOW + 2), load_denials(store, NOW - 1, NOW + 2), check_index_type=False)
    finally:
        store.stop()
