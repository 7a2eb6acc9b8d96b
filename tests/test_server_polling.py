"""Polling license servers through the real server and a fake lmutil: checkouts appear and end, a failed poll returns
nothing, a restart counts nothing twice, and two servers of the same feature add up."""

import json
import time
from pathlib import Path

import requests

FAKE_LMUTIL = Path(__file__).parent / "fixtures" / "fake_lmutil"
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


START_A, START_B, START_C = start_time(50), start_time(40), start_time(5)


def test_checkouts_appear_end_and_survive_a_failed_poll_and_a_restart(start_server, tmp_path):
    lic01 = "27000@lic01"
    fakes = tmp_path / "fake"
    fakes.mkdir()
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-17", 1, START_A), ("bob", "ws-18", 2, START_B)]))
    server, _ = start_polling(start_server, tmp_path, [lic01])
    held = wait_for(lambda: len(b := borrows_of(server, TOOL)) == 3 and b, "three borrows")
    assert sorted((b["user"], b["host"], b["version"], b["source"]) for b in held) == [
        ("ann", "ws-17", "5.0", "lmstat"),
        ("bob", "ws-18", "5.0", "lmstat"),
        ("bob", "ws-18", "5.0", "lmstat"),
    ]
    # The export's events carry host, version and source (the stream's are the same dicts: test_observed_checkouts).
    exported = requests.get(server.url + "/realtime/export?kind=events&format=json&window=3600", timeout=5).json()
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
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-17", 1, START_A)]))
    now_held = wait_for(lambda: len(b := borrows_of(server, TOOL)) == 1 and b, "bob's returns")
    assert [b["id"] for b in now_held] == [ann_id]
    assert polls_of(server.url, lic01)["state"] == "up"

    # A restart over the same database: ann still holds hers (not counted twice), cy came while the app was down.
    server.stop()
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-17", 1, START_A), ("cy", "ws-2", 1, START_C)]))
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


def test_two_servers_of_the_same_feature_add_up_and_one_down_leaves_the_other(start_server, tmp_path):
    lic01, lic02 = "27000@lic01", "27001@lic02"
    fakes = tmp_path / "fake"
    fakes.mkdir()
    (fakes / f"{lic01}.txt").write_text(lmstat_output(lic01, [("ann", "ws-1", 1, START_A)]))
    (fakes / f"{lic02}.txt").write_text(lmstat_output(lic02, [("ann", "ws-1", 1, START_A), ("bob", "ws-2", 3, START_B)]))
    server, _ = start_polling(start_server, tmp_path, [lic01, lic02])
    wait_for(lambda: len(borrows_of(server, TOOL)) == 5, "five borrows from two servers")
    (fakes / f"{lic02}.txt").unlink()
    wait_for(lambda: polls_of(server.url, lic02)["state"] == "down", "lic02 down")
    after_next_poll(server, lic01)
    assert len(borrows_of(server, TOOL)) == 5  # lic02's checkouts stay while it cannot be asked
    states = {e["name"]: e["state"] for e in requests.get(server.url + "/sources", timeout=5).json()["sources"]}
    assert states[lic01] == "up" and states[lic02] == "down" and states["/licenses"] == "up"
