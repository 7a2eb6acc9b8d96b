"""Polling license servers through the real server and a fake lmutil: checkouts appear and end, a failed poll returns
nothing, a restart counts nothing twice, and two servers of the same feature add up."""

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
import requests
from dash import no_update

from dash_app.testing import TEST_TOKEN
from dash_app.testing.commands import run_refused

FAKE_LMUTIL = Path(__file__).parent / "fixtures" / "fake_lmutil"
FAKE_RLMUTIL = Path(__file__).parent / "fixtures" / "fake_rlmutil"
TOOL = "Vector - DaVinci Configurator SE"  # the tools file below maps feature DaVinciCfg to it
FEATURE = "DaVinciCfg"


def start_time(minutes_ago):
    """Return a checkout's start as lmstat prints it (local time, no year), `minutes_ago` before now."""
    t = time.localtime(time.time() - 60 * minutes_ago)
    return f"{time.strftime('%a', t)} {t.tm_mon}/{t.tm_mday} {t.tm_hour}:{t.tm_min:02d}"


def lmstat_output(server, checkouts, issued=10, vendor="vector"):
    """Return `lmutil lmstat -a` output of one server with one feature and the given (user, host, count, start)."""
    port, host = server.split("@")
    in_use = sum(count for _user, _host, count, _start in checkouts)
    lines = [
        "lmutil - Copyright (c) 1989-2023 Flexera. All Rights Reserved.",
        "Flexible License Manager status on Tue 12/1/2026 09:30",
        "",
        f"License server status: {server}",
        f"    License file(s) on {host}: /opt/flexlm/{host}.lic:",
        "",
        f"{host}: license server UP (MASTER) v11.19.0",
        "",
        f"Vendor daemon status (on {host}):",
        "",
        f"    {vendor}: UP v11.19.0",
        "",
        "Feature usage info:",
        "",
        f"Users of {FEATURE}:  (Total of {issued} licenses issued;  Total of {in_use} licenses in use)",
        "",
        f'  "{FEATURE}" v5.0, vendor: {vendor}, expiry: 31-dec-2026',
        "  floating license",
        "",
    ]
    for n, (user, where, count, start) in enumerate(checkouts):
        suffix = f", {count} licenses" if count > 1 else ""
        lines.append(f"    {user} {where} {where} (v5.0) ({host}/{port} {4200 + n}), start {start}{suffix}")
    lines.append("")
    return "\n".join(lines) + "\n"


def wait_for(condition, what, timeout=30):
    """Poll `condition` (a cheap HTTP read) until it returns a truthy value, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def polls_of(server_url, name):
    entries = requests.get(server_url + "/sources", timeout=5).json()["sources"]
    return next(e for e in entries if e["name"] == name)


def after_next_poll(server, name):
    """Wait until `name` has been polled twice more (one poll may have started before the change)."""
    seen = polls_of(server.url, name)["counters"]["polls"]
    return wait_for(lambda: (e := polls_of(server.url, name))["counters"]["polls"] >= seen + 2 and e, f"two polls of {name}")


def borrows_of(server, tool):
    return requests.get(server.url + "/borrows", params={"tool": tool}, timeout=5).json()


def start_polling(start_server, tmp_path, servers):
    fakes = tmp_path / "fake"
    fakes.mkdir(exist_ok=True)
    tools = tmp_path / "tools.json"
    entry = {"tool": TOOL, "feature": FEATURE, "total": 20, "commit_qty": 10, "max_overage": 10}
    tools.write_text(json.dumps([{**entry, "commit_price": 1000, "overage_price_per_license": 50}]))
    server = start_server(
        DASH_APP_LMSTAT=",".join(servers),
        DASH_APP_LMUTIL=str(FAKE_LMUTIL),
        DASH_APP_POLL_SECONDS="1",
        DASH_APP_TOOLS=str(tools),
        FAKE_LMUTIL_DIR=str(fakes),
    )
    return server, fakes


def starts():
    """Return three checkouts' starts (50, 40 and 5 minutes ago), as of now: a test takes them once, when it begins.

    Not at import: a full run collects this module many minutes before it runs a test here, which would put the
    checkouts outside the windows the tests read.
    """
    return start_time(50), start_time(40), start_time(5)


def test_checkouts_appear_end_and_survive_a_failed_poll_and_a_restart(start_server, tmp_path):
    start_a, start_b, start_c = starts()
    lic01 = "27000@lic01"
    fakes = tmp_path / "fake"
    fakes.mkdir()
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-17", 1, start_a), ("bob", "ws-18", 2, start_b)]))
    server, _ = start_polling(start_server, tmp_path, [lic01])
    held = wait_for(lambda: len(b := borrows_of(server, TOOL)) == 3 and b, "three borrows")
    assert sorted((b["user"], b["host"], b["version"], b["source"]) for b in held) == [
        ("ann", "ws-17", "5.0", "lmstat"),
        ("bob", "ws-18", "5.0", "lmstat"),
        ("bob", "ws-18", "5.0", "lmstat"),
    ]
    # The export's events carry host, version and source (the stream's are the same dicts: test_observed_checkouts).
    # A poll's events reach the buffer together when its batch ends (pool.recording_batch), just after the pool
    # shows its borrows: wait for that batch.
    exported = wait_for(
        lambda: (
            len(e := requests.get(server.url + "/realtime/export?kind=events&format=json&window=3600", timeout=5).json()) == 3
            and e
        ),
        "the poll's three events in the export",
    )
    assert {(e["type"], e["user"], e["host"], e["source"]) for e in exported} == {
        ("borrow", "ann", "ws-17", "lmstat"),
        ("borrow", "bob", "ws-18", "lmstat"),
    }
    entry = polls_of(server.url, lic01)
    assert (entry["kind"], entry["state"], entry["counters"]["borrows"]) == ("lmstat", "up", 3)
    assert entry["features"][FEATURE]["expiry"] == "2026-12-31"

    # The server stops answering: it is down, and nothing is returned.
    (fakes / f"{lic01}.txt").unlink()
    entry = wait_for(lambda: (e := polls_of(server.url, lic01))["state"] == "down" and e, "the server marked down")
    assert "Cannot connect to license server" in entry["last_error"]
    after_next_poll(server, lic01)
    assert len(borrows_of(server, TOOL)) == 3
    assert polls_of(server.url, lic01)["counters"]["returns"] == 0

    # Back, with bob gone: bob's two licenses are returned, ann's checkout is the same borrow as before.
    ann_id = next(b["id"] for b in held if b["user"] == "ann")
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-17", 1, start_a)]))
    now_held = wait_for(lambda: len(b := borrows_of(server, TOOL)) == 1 and b, "bob's returns")
    assert [b["id"] for b in now_held] == [ann_id]
    assert polls_of(server.url, lic01)["state"] == "up"

    # A restart over the same database: ann still holds hers (not counted twice), cy came while the app was down.
    server.stop()
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-17", 1, start_a), ("cy", "ws-2", 1, start_c)]))
    again = start_server(
        DASH_APP_LMSTAT=lic01,
        DASH_APP_LMUTIL=str(FAKE_LMUTIL),
        DASH_APP_POLL_SECONDS="1",
        DASH_APP_TOOLS=str(tmp_path / "tools.json"),
        FAKE_LMUTIL_DIR=str(fakes),
    )
    after_next_poll(again, lic01)
    assert sorted((b["id"] == ann_id, b["user"]) for b in borrows_of(again, TOOL)) == [(False, "cy"), (True, "ann")]
    status = requests.get(again.url + f"/licenses/{TOOL}/status", timeout=5).json()
    assert status["borrowed"] == 2
    assert status["expiry"] == "2026-12-31"
    # The stored sessions: ann's one session (open), bob's two (returned), cy's new one; each with host and source.
    again.stop()
    with sqlite3.connect(tmp_path / "server.db") as db:
        rows = db.execute("SELECT user, host, version, source, returned_at IS NULL FROM borrows ORDER BY user").fetchall()
    assert rows == [
        ("ann", "ws-17", "5.0", "lmstat", 1),
        ("bob", "ws-18", "5.0", "lmstat", 0),
        ("bob", "ws-18", "5.0", "lmstat", 0),
        ("cy", "ws-2", "5.0", "lmstat", 1),
    ]


def test_two_servers_of_the_same_feature_add_up_and_one_down_leaves_the_other(start_server, tmp_path):
    start_a, start_b, start_c = starts()
    lic01, lic02 = "27000@lic01", "27001@lic02"
    fakes = tmp_path / "fake"
    fakes.mkdir()
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-1", 1, start_a)]))
    (fakes / f"{lic02}.txt").write_text(lmstat_output(lic02, [("ann", "ws-1", 1, start_a), ("bob", "ws-2", 3, start_b)]))
    server, _ = start_polling(start_server, tmp_path, [lic01, lic02])
    wait_for(lambda: len(borrows_of(server, TOOL)) == 5, "five borrows from two servers")
    (fakes / f"{lic02}.txt").unlink()
    wait_for(lambda: polls_of(server.url, lic02)["state"] == "down", "lic02 down")
    after_next_poll(server, lic01)
    assert len(borrows_of(server, TOOL)) == 5  # lic02's checkouts stay while it cannot be asked
    states = {e["name"]: e["state"] for e in requests.get(server.url + "/sources", timeout=5).json()["sources"]}
    assert states[lic01] == "up" and states[lic02] == "down" and states["/licenses"] == "up"


def test_a_server_down_opens_the_pages_source_strip_and_its_return_closes_it(make_app, tmp_path, monkeypatch):
    start_a, start_b, start_c = starts()
    from dash_app.callbacks.page import PageUpdater
    from dash_app.services import POLLER
    from dash_app.state import get_state

    lic09 = "27000@lic09"
    monkeypatch.setenv("FAKE_LMUTIL_DIR", str(tmp_path))  # no output file yet: the server cannot be reached
    app = make_app(lmstat_servers=(lic09,), lmutil=str(FAKE_LMUTIL), poll_seconds=1)
    state = get_state(app)
    poller = state.service(POLLER)
    assert poller.wait_rounds(1)
    updater = PageUpdater(state)
    out, seen = updater.update("__all__", 3600, None)
    strip, _, link = out[("source-strip", "children")]
    assert out[("source-strip", "is_open")] is True and link.href == "/sources"
    assert strip.startswith("Sources down") and f"lmstat {lic09} down for 0 min (" in strip
    assert "Cannot connect to license server" in strip
    out, seen = updater.update("__all__", 3600, seen)
    assert out[("source-strip", "is_open")] is no_update  # unchanged: nothing sent again

    (tmp_path / f"{lic09}.txt").write_text(lmstat_output(lic09, [("ann", "ws-1", 1, start_a)]))
    assert poller.wait_rounds(2)
    out, _ = updater.update("__all__", 3600, seen)
    assert (out[("source-strip", "children")], out[("source-strip", "is_open")]) == ("", False)
    [row] = out[("checkouts-table", "rowData")]
    assert (row["user"], row["host"], row["version"], row["source"]) == ("ann", "ws-1", "5.0", f"{lic09} (lmstat)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lmstat", "nonsense"], "--lmstat: expected PORT@HOST, got 'nonsense'"),
        (["--rlmstat", "5053@"], "--rlmstat: expected PORT@HOST, got '5053@'"),
        (["--poll-seconds", "0.5"], "--poll-seconds: must be at least 1, got 0.5"),
        (["--poll-confirm", "0"], "--poll-confirm: must be at least 1, got 0"),
        (["--poll-max-bytes", "0"], "--poll-max-bytes: must be at least 1, got 0"),
    ],
)
def test_bad_server_flags_get_one_line_and_exit_status_2(args, message):
    done = run_refused(args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"python -m dash_app: error: {message}"]


def test_servers_come_from_repeated_flags_or_a_comma_separated_variable():
    import argparse

    from dash_app.config import add_arguments, from_args

    parser = add_arguments(argparse.ArgumentParser())
    flags = from_args(parser.parse_args(["--lmstat", "27000@lic01", "--lmstat", "27001@lic02"]), environ={})
    assert flags.lmstat_servers == ("27000@lic01", "27001@lic02")
    environ = {"DASH_APP_RLMSTAT": "5053@rlm01, 5053@rlm02", "DASH_APP_RLMUTIL": "/opt/rlm/rlmutil"}
    env = from_args(parser.parse_args([]), environ=environ)
    assert (env.rlmstat_servers, env.rlmutil, env.poll_seconds) == (("5053@rlm01", "5053@rlm02"), "/opt/rlm/rlmutil", 30.0)
    assert (env.poll_confirm, env.poll_max_bytes) == (3, 32 << 20)
    limits = from_args(parser.parse_args(["--poll-confirm", "5"]), environ={"DASH_APP_POLL_MAX_BYTES": "1048576"})
    assert (limits.poll_confirm, limits.poll_max_bytes) == (5, 1 << 20)


def test_an_rlm_server_is_polled_with_rlmutil_and_its_products_totals_and_expiry_come_from_it(start_server, tmp_path):
    rlm01 = "5053@rlmsrv1"
    fakes = tmp_path / "fake_rlm"
    fakes.mkdir()
    fixture = (Path(__file__).parent / "fixtures" / "rlmstat" / "rlm_v12_one_isv.txt").read_text()
    t = time.localtime(time.time() - 600)
    # Every checkout started ten minutes ago (the fixture's own dates are a year old by now).
    text = re.sub(r" at \d\d/\d\d \d\d:\d\d ", f" at {t.tm_mon:02d}/{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d} ", fixture)
    (fakes / f"{rlm01}.txt").write_text(text)
    server = start_server(
        DASH_APP_RLMSTAT=rlm01, DASH_APP_RLMUTIL=str(FAKE_RLMUTIL), DASH_APP_POLL_SECONDS="1", FAKE_RLMUTIL_DIR=str(fakes)
    )
    held = wait_for(lambda: len(b := borrows_of(server, "sculpt")) == 6 and b, "sculpt's six licenses")
    assert {(b["user"], b["host"], b["version"], b["source"]) for b in held} == {
        ("mjovanovic", "studio-14", "3.1", "rlmstat"),
        ("nokeke", "studio-02", "3.1", "rlmstat"),
        ("lucia.ferreira", "studio-21", "3.1", "rlmstat"),
    }
    status = requests.get(server.url + "/licenses/sculpt/status", timeout=5).json()
    assert (status["total"], status["borrowed"], status["expiry"]) == (25, 6, "2026-12-31")
    entry = polls_of(server.url, rlm01)
    assert (entry["kind"], entry["state"]) == ("rlmstat", "up")
    assert entry["features"]["sculpt_render"]["expiry"] == "permanent"


def test_a_slow_answer_a_failing_exit_or_unreadable_output_is_a_failed_poll_that_changes_nothing(tmp_path, monkeypatch):
    start_a, start_b, start_c = starts()
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.licenses import LicensePool
    from dash_app.recording import EventRecorder
    from dash_app.sources.polling import ServerPoll
    from dash_app.sources.servers import LMSTAT

    monkeypatch.setenv("FAKE_LMUTIL_DIR", str(tmp_path))
    lic01 = "27000@lic01"
    pool = LicensePool({}, EventRecorder(RealtimeMetricsBuffer()))
    poll = ServerPoll(LMSTAT, str(FAKE_LMUTIL), lic01, pool, time.time)
    output = tmp_path / f"{lic01}.txt"
    output.write_text(lmstat_output(lic01, [("ann", "ws-1", 2, start_a)]))
    assert poll.poll(timeout=10)
    assert len(pool.active_borrows()) == 2

    for setup, expected in (
        (lambda: (tmp_path / f"{lic01}.sleep").write_text("3"), "no answer within 1 s"),
        (lambda: (tmp_path / f"{lic01}.exit").write_text("7"), "exit status 7"),
        (lambda: output.write_text("lmutil - Copyright (c) 1989-2023 Flexera.\nsegmentation fault\n"), "output unreadable"),
    ):
        for leftover in (tmp_path / f"{lic01}.sleep", tmp_path / f"{lic01}.exit"):
            leftover.unlink(missing_ok=True)
        setup()
        assert not poll.poll(timeout=1)
        assert poll.health.state == "down"
        assert len(pool.active_borrows()) == 2  # a failed poll returns nothing
        assert expected in poll.health.last_error
    assert poll.health.counters["returns"] == 0


def test_sources_lists_the_api_the_demo_and_each_flexlm_log(make_app, tmp_path):
    log_path = tmp_path / "lmgrd.log"
    log_path.write_text("")
    app = make_app(demo=True, demo_speed=0.01, flexlm_logs=(str(log_path),))
    client = app.server.test_client()
    client.post(
        "/licenses/borrow",
        json={"tool": "GreenHills Multi IDE", "user": "ann"},
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
    )
    entries = {(e["kind"], e["name"]): e for e in client.get("/sources").get_json()["sources"]}
    assert set(entries) == {("api", "/licenses"), ("demo", "demo traffic"), ("flexlm", str(log_path))}
    assert entries[("api", "/licenses")]["counters"]["borrows"] == 1
    assert entries[("api", "/licenses")]["state"] == "up"
    assert set(entries[("flexlm", str(log_path))]) >= {"state", "last_ok", "last_error", "counters"}
