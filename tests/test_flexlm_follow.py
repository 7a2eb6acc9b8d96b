"""Following FlexLM debug logs in the app: exact counts, buckets and in-use, rotation, truncation and restarts."""

import os
import sqlite3

from dash_app.sources.flexlm import follower_of
from dash_app.state import get_state
from tests.flexlm_expected import (
    LIC01,
    LIC01_BUCKETS,
    LIC01_COUNTS,
    LIC01_EVENTS,
    LIC01_FAILURES,
    LIC01_OPEN,
    LIC01_RETURNS,
    LIC01_STATUS,
    LIC02,
    LIC02_BUCKETS,
    LIC02_COUNTS,
    LIC02_FAILURES,
    LIC02_STATUS,
    LIC03,
    LIC03_BUCKETS,
    LIC03_COUNTS,
    LIC03_STATUS,
    RETENTION_HOURS,
    TOOLS_FILE,
    WINDOW,
    flows_by_local_minute,
    flows_by_utc_minute,
    status_of,
)

LIC01_LINES = LIC01.read_bytes().split(b"\n")[:-1]


def follow(make_app, paths, **config):
    """Build an app that follows `paths`; return its state and follower once everything written is read."""
    app = make_app(tools_file=str(TOOLS_FILE), retention_hours=RETENTION_HOURS, flexlm_logs=[str(p) for p in paths], **config)
    state = get_state(app)
    follower = follower_of(state)
    assert follower.wait_idle(15)
    return app, state, follower


def settle(follower):
    assert follower.wait_idle(15)
    return follower.snapshot()


def write(path, lines, mode="ab"):
    with open(path, mode) as fh:
        fh.write(b"".join(line + b"\n" for line in lines))


def totals_without_open(snapshot):
    totals = dict(snapshot["totals"])
    return totals, totals.pop("open_borrows")


def test_two_vendor_log_gives_exact_counts_buckets_and_in_use(make_app):
    app, state, follower = follow(make_app, [LIC01])
    totals, open_borrows = totals_without_open(follower.snapshot())
    assert totals == LIC01_COUNTS
    assert open_borrows == LIC01_OPEN
    assert status_of(state.pool, LIC01_STATUS) == LIC01_STATUS
    assert state.buffer.aggregate_tool_metrics(WINDOW) == LIC01_BUCKETS
    assert flows_by_local_minute(state.buffer, "returns") == LIC01_RETURNS
    assert flows_by_local_minute(state.buffer, "failures") == LIC01_FAILURES
    # Open borrows say who holds what; names are kept exactly, whatever their script.
    holders = sorted((b.tool, b.user) for b in state.pool.active_borrows())
    assert holders == [("MATLAB", "ADas"), ("MATLAB", "Jürgen"), ("Synopsys VCS", "dave")]


def test_the_route_shows_each_log_and_totals(make_app):
    app, state, follower = follow(make_app, [LIC02, LIC03])
    body = app.server.test_client().get("/sources/flexlm").get_json()
    assert body["enabled"] is True
    by_path = {entry["path"]: entry for entry in body["logs"]}
    for path, counts in ((LIC02, LIC02_COUNTS), (LIC03, LIC03_COUNTS)):
        entry = by_path[str(path)]
        assert entry["state"] == "following"
        assert entry["offset"] == entry["size"] == path.stat().st_size
        assert {name: entry[name] for name in counts} == counts
    assert by_path[str(LIC02)]["last_event_at"] == "2024-03-15T07:31:18.000Z"
    assert body["totals"] == {name: LIC02_COUNTS[name] + LIC03_COUNTS[name] for name in LIC02_COUNTS} | {"open_borrows": 3}
    assert status_of(state.pool, {**LIC02_STATUS, **LIC03_STATUS}) == {**LIC02_STATUS, **LIC03_STATUS}
    assert state.buffer.aggregate_tool_metrics(WINDOW) == {**LIC02_BUCKETS, **LIC03_BUCKETS}
    assert flows_by_utc_minute(state.buffer, "failures")["Spectre"] == LIC02_FAILURES


def test_route_without_logs_says_so(make_app):
    body = make_app().server.test_client().get("/sources/flexlm").get_json()
    assert body["enabled"] is False and body["logs"] == [] and body["totals"]["lines"] == 0


def test_follow_survives_a_late_file_a_partial_line_rotation_and_truncation(make_app, tmp_path):
    path = tmp_path / "lmgrd.log"
    app, state, follower = follow(make_app, [path], db=str(tmp_path / "dash.db"))
    assert follower.snapshot()["logs"][0]["state"] == "waiting"

    part_a, part_b1, part_b2, part_c = LIC01_LINES[:30], LIC01_LINES[30:34], LIC01_LINES[34:50], LIC01_LINES[50:]
    write(path, part_a, mode="wb")  # the log appears
    assert settle(follower)["totals"]["lines"] == 30

    half = len(part_b1[0]) // 2
    with open(path, "ab") as fh:
        fh.write(part_b1[0][:half])  # lmgrd is in the middle of writing a line
    assert settle(follower)["totals"]["lines"] == 30

    # Rotation by rename: lmgrd still writes to the old file for a moment, then a new file appears.
    os.rename(path, tmp_path / "lmgrd.log.1")
    with open(tmp_path / "lmgrd.log.1", "ab") as fh:
        fh.write(part_b1[0][half:] + b"\n" + b"".join(line + b"\n" for line in part_b1[1:]))
    write(path, part_b2, mode="wb")
    snapshot = settle(follower)
    assert snapshot["totals"]["lines"] == 50 and snapshot["logs"][0]["rotations"] == 1

    # Rotation by copy and truncate (logrotate's copytruncate): same file, shorter than where we were.
    assert sum(len(line) + 1 for line in part_c) < path.stat().st_size
    (tmp_path / "lmgrd.log.2").write_bytes(path.read_bytes())
    with open(path, "r+b") as fh:
        fh.truncate(0)
    write(path, part_c)
    snapshot = settle(follower)
    assert snapshot["logs"][0]["truncations"] == 1

    totals, open_borrows = totals_without_open(snapshot)
    assert totals == LIC01_COUNTS
    assert open_borrows == LIC01_OPEN
    assert status_of(state.pool, LIC01_STATUS) == LIC01_STATUS
    assert state.buffer.aggregate_tool_metrics(WINDOW) == LIC01_BUCKETS
    assert flows_by_local_minute(state.buffer, "returns") == LIC01_RETURNS


def test_a_restart_goes_on_where_it_stopped_without_counting_twice(make_app, tmp_path):
    path, db = tmp_path / "lmgrd.log", str(tmp_path / "dash.db")
    write(path, LIC01_LINES[:40], mode="wb")
    app, state, follower = follow(make_app, [path], db=db)
    # Open at the split: VCS x4, MATLAB x3, Signal_Toolbox and Design Compiler; anna's MATLAB came back.
    assert follower.snapshot()["totals"]["borrows"] == 10 and follower.snapshot()["totals"]["open_borrows"] == 9
    state.stop()

    write(path, LIC01_LINES[40:])
    app, state, follower = follow(make_app, [path], db=db)
    totals, open_borrows = totals_without_open(follower.snapshot())
    # Only the new lines are read; the IN lines among them end borrows checked out before the restart.
    assert totals["lines"] == len(LIC01_LINES) - 40
    assert totals["borrows"] == 14 - 10 and totals["returns"] == 5 and totals["ended_by_restart"] == 5
    assert open_borrows == LIC01_OPEN
    # (PrimeTime was only ever denied before the restart; a restarted pool lists tools with borrows.)
    expected = {tool: row for tool, row in LIC01_STATUS.items() if tool != "PrimeTime"}
    assert status_of(state.pool, expected) == expected
    assert state.buffer.aggregate_tool_metrics(WINDOW) == LIC01_BUCKETS  # restored from SQLite, then added to
    state.stop()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM events").fetchone()[0] == LIC01_EVENTS


def test_lines_read_again_after_a_lost_position_do_not_count_open_borrows_twice(make_app, tmp_path):
    path, db = tmp_path / "lmgrd.log", str(tmp_path / "dash.db")
    write(path, LIC01_LINES, mode="wb")
    app, state, follower = follow(make_app, [path], db=db)
    before = sorted(b.id for b in state.pool.active_borrows())
    state.stop()
    # As after a crash between writing events and writing the position: the position is behind.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE flexlm_offsets SET offset = 0, line = 0, day = NULL, last_tod = NULL")

    app, state, follower = follow(make_app, [path], db=db)
    assert sorted(b.id for b in state.pool.active_borrows()) == before
    # In use is exact; borrows that came and went in the lines read again are recorded again (README).
    in_use = {e["tool"]: e["borrowed"] for e in state.pool.status() if e["tool"] in LIC01_STATUS}
    assert in_use == {tool: borrowed for tool, (_total, borrowed, _charges) in LIC01_STATUS.items()}


def test_a_new_file_read_by_two_processes_without_a_saved_position_gives_the_same_ids(make_app, tmp_path):
    # As when the process that holds the sources (--redis) dies before a new file's first position is stored: its
    # successor reads the file from the start, and the shared log counts a line once only if its id is the same.
    path = tmp_path / "lmgrd.log"
    write(path, LIC01_LINES, mode="wb")
    ids = []
    for _ in range(2):
        _app, state, _follower = follow(make_app, [path])
        ids.append(sorted(b.id for b in state.pool.active_borrows()))
    assert ids[0] and ids[0] == ids[1]
    # Another file with the same first line is another file.
    other = tmp_path / "other.log"
    write(other, LIC01_LINES, mode="wb")
    _app, state, _follower = follow(make_app, [other])
    assert not set(ids[0]) & {b.id for b in state.pool.active_borrows()}
