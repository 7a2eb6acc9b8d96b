"""`python -m dash_app ingest-flexlm`, the --flexlm-log setting, and a real server following logs."""

import os
import sqlite3
import subprocess
import sys
import time

import requests

from dash_app import config as config_module
from dash_app.__main__ import build_parser, main
from dash_app.sources.flexlm import follower_of
from dash_app.state import get_state
from dash_app.testing import ROOT
from dash_app.testing.commands import run_main
from tests.flexlm_expected import (
    LIC01,
    LIC01_BUCKETS,
    LIC01_EVENTS,
    LIC01_STATUS,
    LIC02,
    LIC02_COUNTS,
    LIC02_STATUS,
    LIC03,
    LIC03_COUNTS,
    LIC03_STATUS,
    RETENTION_HOURS,
    TOOLS_FILE,
    WINDOW,
    status_of,
)

PROG = "python -m dash_app ingest-flexlm"


def ingest(*args, env=None):
    command = [sys.executable, "-m", "dash_app", "ingest-flexlm", *map(str, args)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
    environment.update(env or {})
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def ingest_here(*args):
    """Run the command's main(argv) in this process: for its refusals, whose subject is the messages, not the process."""
    return run_main(main, ["ingest-flexlm", *map(str, args)])


def rotated_pair(tmp_path):
    """Split lic01 as a rotation would: lmgrd.log.1 (older) and lmgrd.log; borrows stay open across the cut."""
    lines = LIC01.read_bytes().split(b"\n")[:-1]
    (tmp_path / "lmgrd.log.1").write_bytes(b"".join(line + b"\n" for line in lines[:40]))
    (tmp_path / "lmgrd.log").write_bytes(b"".join(line + b"\n" for line in lines[40:]))
    return tmp_path / "lmgrd.log.1", tmp_path / "lmgrd.log"


def test_backfill_reads_rotated_logs_once_and_the_follower_goes_on(tmp_path, make_app):
    older, current = rotated_pair(tmp_path)
    db = tmp_path / "dash.db"
    # The fixtures are from 2024: keep raw events that old (they are pruned past the retention otherwise).
    keep = ("--retention-hours", RETENTION_HOURS, "--history-days", RETENTION_HOURS / 24 + 1)
    done = ingest(older, current, "--db", db, "--tools", TOOLS_FILE, *keep)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith(
        f"{older}: 40 lines: 10 borrows, 1 returns, 2 denials, 1 queued, 1 dequeued, 0 ended by a daemon restart, 1 malformed"
    )
    assert out[1].startswith(
        f"{current}: 18 lines: 4 borrows, 5 returns, 1 denials, 0 queued, 0 dequeued, 5 ended by a daemon restart, 2 malformed"
    )
    assert out[2].startswith("total: 58 lines: 14 borrows, 6 returns, 3 denials") and "3 licenses still checked out" in out[2]
    assert "100%" in done.stderr  # the progress bar

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == LIC01_EVENTS
        assert conn.execute("SELECT COUNT(*) FROM borrows WHERE returned_at IS NULL").fetchone()[0] == 3
        assert conn.execute("SELECT overage_borrows FROM charges WHERE tool = 'MATLAB'").fetchone()[0] == 2

    again = ingest(older, current, "--db", db, "--tools", TOOLS_FILE, *keep)
    assert again.returncode == 0, again.stderr
    assert "total: 0 lines: 0 borrows" in again.stdout and "resuming after line 40" in again.stdout

    # The live follower picks up where the backfill stopped; a new IN ends a borrow from the backfill.
    with open(current, "ab") as fh:
        fh.write(b' 0:41:09 (MLM) IN: "MATLAB" ADas@ws-ad  \n')
    app = make_app(
        db=str(db),
        tools_file=str(TOOLS_FILE),
        retention_hours=RETENTION_HOURS,
        history_days=RETENTION_HOURS / 24 + 1,
        flexlm_logs=[str(current)],
    )
    state = get_state(app)
    assert follower_of(state).wait_idle(15)
    totals = follower_of(state).snapshot()["totals"]
    assert (totals["lines"], totals["returns"], totals["open_borrows"]) == (1, 1, 2)
    assert status_of(state.pool, LIC01_STATUS)["MATLAB"] == (3, 1, 2)
    assert state.buffer.aggregate_tool_metrics(WINDOW) == LIC01_BUCKETS


def test_bad_paths_end_with_one_line_and_write_nothing(tmp_path):
    db = tmp_path / "dash.db"
    for path, problem in ((tmp_path / "missing.log", "no such file"), (tmp_path, "is a directory")):
        result = ingest_here(LIC01, path, "--db", db)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [f"{PROG}: error: {path}: {problem}"]
        assert result.stdout == ""
    assert not db.exists()


def test_bad_settings_end_with_one_line(tmp_path):
    result = ingest_here(LIC01, "--db", tmp_path / "no" / "such" / "dash.db")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"{PROG}: error: database ")


def test_flexlm_log_flag_repeats_and_the_variable_splits_on_pathsep():
    parse = build_parser().parse_args
    twice = config_module.from_args(parse(["--flexlm-log", "a.log", "--flexlm-log", "b.log"]), environ={})
    assert twice.flexlm_logs == ("a.log", "b.log")
    env = {"DASH_APP_FLEXLM_LOGS": os.pathsep.join(["/var/log/lic01.log", "/var/log/lic02.log", ""])}
    assert config_module.from_args(parse([]), environ=env).flexlm_logs == ("/var/log/lic01.log", "/var/log/lic02.log")
    assert config_module.from_args(parse(["--flexlm-log", "c.log"]), environ=env).flexlm_logs == ("c.log",)
    assert config_module.from_args(parse([]), environ={}).flexlm_logs == ()
    assert config_module.coerce({"flexlm_logs": ["x.log"], "demo": False}).flexlm_logs == ("x.log",)


def test_a_real_server_follows_two_logs(start_server, tmp_path):
    late = tmp_path / "lic03.log"  # appears after the server started
    server = start_server(
        DASH_APP_FLEXLM_LOGS=os.pathsep.join([str(LIC02), str(late)]),
        DASH_APP_TOOLS=str(TOOLS_FILE),
        DASH_APP_RETENTION_HOURS=str(RETENTION_HOURS),
    )
    late.write_bytes(LIC03.read_bytes())
    deadline = time.monotonic() + 30
    while True:
        body = requests.get(server.url + "/sources/flexlm", timeout=5).json()
        if body["totals"]["lines"] == LIC02_COUNTS["lines"] + LIC03_COUNTS["lines"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [entry["state"] for entry in body["logs"]] == ["following", "following"]
    expected_totals = {name: LIC02_COUNTS[name] + LIC03_COUNTS[name] for name in LIC02_COUNTS}
    assert {name: body["totals"][name] for name in LIC02_COUNTS} == expected_totals
    entries = requests.get(server.url + "/licenses/status", timeout=5).json()
    status = {e["tool"]: (e["total"], e["borrowed"], e["overage_borrows"]) for e in entries}
    assert {tool: status[tool] for tool in {**LIC02_STATUS, **LIC03_STATUS}} == {**LIC02_STATUS, **LIC03_STATUS}
