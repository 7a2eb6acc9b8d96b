"""Alerts end to end: rules evaluated per tick fire, repeat and resolve, notify real webhook and SMTP receivers, survive
a restart without notifying again, and show in GET /alerts, /metrics and the page."""

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests

from dash_app.callbacks.page import PageUpdater
from dash_app.state import get_state
from dash_app.testing import TEST_TOKEN
from dash_app.testing.receivers import SmtpReceiver, TricklingReceiver, WebhookReceiver
from tests.test_server_polling import wait_for

GH = "GreenHills Multi IDE"  # total 15 in the bundled tools file
PUBLIC = "https://licenses.example.com"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
FAKE_LMUTIL = Path(__file__).parent / "fixtures" / "fake_lmutil"


def write_rules(path, rules, notify, repeat_seconds=600):
    path.write_text(json.dumps({"notify": notify, "repeat_seconds": repeat_seconds, "rules": rules}))
    return str(path)


def closed_port_url():
    """Return a json:// URL whose port nothing listens on: a dead channel."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"json://127.0.0.1:{port}/dead"


def titles(receiver):
    return [r.body["title"] for r in receiver.requests]


def test_an_alert_fires_after_for_seconds_repeats_resolves_without_flapping_and_survives_a_restart(make_app, tmp_path, database):
    with WebhookReceiver() as hook, SmtpReceiver() as smtp:
        dead = closed_port_url()
        rules = write_rules(
            tmp_path / "alerts.json",
            [{"name": "near-full", "kind": "in_use_percent", "tool": GH, "above": 90, "for_seconds": 300}],
            [hook.url("/hook"), smtp.url(to="ops@example.com"), dead],
        )
        db = database
        # The ticker ticks once at start; the test then ticks the engine itself at the times it chooses.
        app = make_app(db=db, alerts_file=rules, public_url=PUBLIC, stream_interval=3600)
        state = get_state(app)
        engine, pool = state.alerts, state.pool
        held = [pool.borrow(GH, f"user{n}") for n in range(14)]  # 93 %
        t0 = time.time()

        engine.on_tick(t0, pool.status(), True)
        engine.on_tick(t0 + 299, pool.status(), True)
        assert engine.firing() == [] and engine.snapshot()["firing"] == []  # pending: not yet 300 s
        engine.on_tick(t0 + 300, pool.status(), True)
        [fired] = engine.snapshot()["firing"]
        assert (fired["rule"], fired["tool"], fired["key"], fired["state"]) == ("near-full", GH, f"near-full|{GH}", "firing")
        assert fired["threshold"] == 90 and fired["value"] == pytest.approx(100 * 14 / 15)
        [first] = hook.wait_for(1)
        assert first.body["title"] == f"[licenses] FIRING near-full: {GH}"
        assert "14 of 15 licenses in use (93.3 %)" in first.body["message"]
        assert "threshold 90, for 300 s" in first.body["message"]
        assert f"{PUBLIC}/?tool=GreenHills+Multi+IDE" in first.body["message"]
        [mail] = smtp.wait_for(1)
        assert mail.subject == first.body["title"] and "14 of 15 licenses" in mail.body

        # The dead channel is retried and given up on its own; the others were not held up by it.
        client = app.server.test_client()
        metrics = client.get("/metrics").get_data(as_text=True)
        assert f'license_alert_firing{{rule="near-full",tool="{GH}"}} 1.0' in metrics

        engine.on_tick(t0 + 899, pool.status(), True)
        assert len(hook.requests) == 1  # 599 s since the last notification: no repeat yet
        engine.on_tick(t0 + 900, pool.status(), True)
        assert hook.wait_for(2)[1].body["title"] == f"[licenses] STILL FIRING near-full: {GH}"

        # A restart: the firing alert comes back from the database and is not notified again.
        state.store.flush()
        app2 = make_app(db=db, alerts_file=rules, public_url=PUBLIC, stream_interval=3600)
        state2 = get_state(app2)
        state.stop()
        engine, pool = state2.alerts, state2.pool
        assert [a.key for a in engine.firing()] == [f"near-full|{GH}"]
        engine.on_tick(t0 + 901, pool.status(), True)
        assert len(hook.requests) == 2

        # False for one tick, then true again: no resolve (no flapping).
        pool.return_license(held[0].id)  # 13 of 15: 86.7 %
        engine.on_tick(t0 + 902, pool.status(), True)
        held[0] = pool.borrow(GH, "user0")
        engine.on_tick(t0 + 1300, pool.status(), True)
        assert [a.state for a in engine.firing()] == ["firing"]
        # False from t0 + 1301: it resolves only once false for 300 s.
        pool.return_license(held[0].id)
        engine.on_tick(t0 + 1301, pool.status(), True)
        engine.on_tick(t0 + 1600, pool.status(), True)
        assert engine.firing() != []
        engine.on_tick(t0 + 1601, pool.status(), True)
        assert engine.firing() == []
        assert hook.wait_for(3)[2].body["title"] == f"[licenses] RESOLVED near-full: {GH}"
        mails = smtp.wait_for(3)
        assert [m.subject.split(" near-full")[0] for m in mails] == [
            "[licenses] FIRING",
            "[licenses] STILL FIRING",
            "[licenses] RESOLVED",
        ]
        body = get_state(app2).alerts.snapshot()
        assert body["firing"] == [] and body["recent"][0]["state"] == "resolved"
        assert body["recent"][0]["resolved_at"] is not None

        # Every delivery was kept: the good channels delivered each notification once, the dead one failed and was
        # to be retried. Its later tries would take the back-off's 1 + 2 + 4 + 8 s; the giving up after them is
        # test_alert_delivery's (on a short back-off), so the wait here ends once the rows asserted are stored.
        read = state2.store.read

        def stored():
            state2.store.flush()
            rows = read("SELECT event, channel, ok FROM alert_deliveries WHERE ok = 1 ORDER BY at")
            hook_events = [event for event, channel, ok in rows if channel.startswith(f"json://127.0.0.1:{hook.port}")]
            dead_errors = [error for (error,) in read("SELECT error FROM alert_deliveries WHERE ok = 0")]
            return len(hook_events) >= 3 and dead_errors and (hook_events, dead_errors)

        hook_events, dead_errors = wait_for(stored, "the deliveries' records", timeout=30)
        episodes = read("SELECT state, fired_at IS NOT NULL, resolved_at IS NOT NULL FROM alerts")
        assert hook_events == ["fire", "repeat", "resolve"]  # each delivered once, by whichever app sent it
        assert any(error.endswith("; retrying in 1s") for error in dead_errors)  # tried again, not given up at once
        assert episodes == [("resolved", True, True)]  # (True == 1: SQLite's answer passes too)


def test_a_trickling_channel_delays_no_other_and_its_tries_end_at_the_rules_files_deadline(make_app, tmp_path):
    with TricklingReceiver(interval=2.0) as slow, WebhookReceiver() as healthy:
        path = tmp_path / "alerts.json"
        rules = [{"name": f"near-full-{n}", "kind": "in_use_percent", "tool": GH, "above": 90} for n in range(4)]
        path.write_text(json.dumps({"notify": [slow.url(), healthy.url()], "delivery_deadline_seconds": 3, "rules": rules}))
        app = make_app(alerts_file=str(path), stream_interval=3600)
        state = get_state(app)
        for n in range(14):
            state.pool.borrow(GH, f"user{n}")
        # One tick fires four alerts: four notifications to each channel, more than the old queue had workers.
        state.alerts.on_tick(time.time(), state.pool.status(), True)

        # The healthy channel gets all four while the trickling one still hangs on its first try.
        delivered = healthy.wait_for(4, 10.0)
        assert len(slow.requests) == 1
        assert all(end.at > delivered[-1].at for end in slow.ends)
        # That try is cut at the file's deadline (3 s, not the default 15 s) and kept as failed, to be retried.
        slow.wait_for_ends(1, 30)

        def slow_rows():
            assert state.store.flush()
            return state.store.read(
                "SELECT ok, error FROM alert_deliveries WHERE channel = :channel ORDER BY at", {"channel": slow.url()}
            )

        deadline = time.monotonic() + 30
        while not slow_rows():
            assert time.monotonic() < deadline, "the cut try was not stored"
            time.sleep(0.05)
        [(ok, error)] = slow_rows()[:1]
        assert not ok
        assert error == "no answer within the delivery deadline of 3s; retrying in 1s"


def test_the_page_shows_a_banner_while_an_alert_fires_and_lists_recent_alerts(make_app, tmp_path):
    rules = write_rules(
        tmp_path / "alerts.json", [{"name": "full", "kind": "in_use_percent", "tool": GH, "above": 100}], notify=[]
    )
    app = make_app(alerts_file=rules, stream_interval=3600)
    state = get_state(app)
    updater = PageUpdater(state)
    out, seen = updater.update("__all__", 3600, None)
    assert out[("alerts-banner", "is_open")] is False
    borrows = [state.pool.borrow(GH, f"u{n}") for n in range(15)]
    now = time.time()
    state.alerts.on_tick(now, state.pool.status(), True)
    out, seen = updater.update("__all__", 3600, seen)
    assert out[("alerts-banner", "is_open")] is True
    assert out[("alerts-banner", "children")] == f"1 alert firing: {GH}: 15 of 15 licenses in use (100 %), at or above 100 %."
    assert "full" in json.dumps(out[("alerts-list", "children")].to_plotly_json(), default=str)
    for borrow in borrows:
        state.pool.return_license(borrow.id)
    state.alerts.on_tick(now + 1, state.pool.status(), True)
    state.alerts.on_tick(now + 2, state.pool.status(), True)
    out, _ = updater.update("__all__", 3600, seen)
    assert (out[("alerts-banner", "children")], out[("alerts-banner", "is_open")]) == ("", False)


def wait_titles(hook, wanted, timeout=30):
    """Wait until every title in `wanted` arrived at `hook`; return all titles in arrival order."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = titles(hook)
        if all(title in got for title in wanted):
            return got
        time.sleep(0.05)
    raise AssertionError(f"missing {sorted(set(wanted) - set(titles(hook)))}; got {titles(hook)}")


def test_each_kind_fires_and_resolves_through_the_real_server(start_server, tmp_path):
    lic01 = "27000@lic01"
    fakes = tmp_path / "fake"
    fakes.mkdir()  # no output yet: lic01 cannot be reached
    tools = tmp_path / "tools.json"
    tiny = {"tool": "Tiny", "total": 1, "commit_qty": 0, "max_overage": 1, "commit_price": 0, "overage_price_per_license": 700}
    tools.write_text(json.dumps([tiny]))
    with WebhookReceiver() as hook:
        rules = write_rules(
            tmp_path / "alerts.json",
            [
                {"name": "tiny-full", "kind": "in_use_percent", "tool": "Tiny", "above": 100, "for_seconds": 1},
                {"name": "denied", "kind": "denials", "tool": "*", "count": 2, "within_seconds": 3},
                {"name": "held", "kind": "held_longer_than", "tool": "Tiny", "seconds": 1},
                {"name": "budget", "kind": "overage_cost", "tool": "*", "above": 500, "period": "day"},
                {"name": "down", "kind": "source_down", "for_seconds": 1},
                {"name": "expiring", "kind": "expires_within", "days": 14},
            ],
            [hook.url()],
        )
        server = start_server(
            DASH_APP_ALERTS=rules,
            DASH_APP_TOOLS=str(tools),
            DASH_APP_STREAM_INTERVAL="0.2",
            DASH_APP_LMSTAT=lic01,
            DASH_APP_LMUTIL=str(FAKE_LMUTIL),
            DASH_APP_POLL_SECONDS="1",
            DASH_APP_PUBLIC_URL=PUBLIC,
            FAKE_LMUTIL_DIR=str(fakes),
        )
        borrowed_at = time.monotonic()
        borrow = requests.post(server.url + "/licenses/borrow", json={"tool": "Tiny", "user": "ann"}, headers=AUTH, timeout=5)
        borrow_id = borrow.json()["id"]
        for _ in range(2):
            assert (
                requests.post(
                    server.url + "/licenses/borrow", json={"tool": "Tiny", "user": "bob"}, headers=AUTH, timeout=5
                ).status_code
                == 409
            )
        wait_titles(
            hook,
            [
                "[licenses] FIRING tiny-full: Tiny",
                "[licenses] FIRING denied: Tiny",
                "[licenses] FIRING held: Tiny",
                "[licenses] FIRING budget: Tiny",
                f"[licenses] FIRING down: {lic01}",
            ],
        )
        # Not before its for_seconds: the held alert came at least a second after the borrow.
        assert time.monotonic() - borrowed_at >= 1
        body = requests.get(server.url + "/alerts", timeout=5).json()
        firing = {a["key"]: a for a in body["firing"]}
        assert set(firing) == {"tiny-full|Tiny", "denied|Tiny", f"held|{borrow_id}", "budget|Tiny", f"down|{lic01}"}
        assert firing["budget|Tiny"]["value"] == 700 and firing["budget|Tiny"]["threshold"] == 500
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert 'license_alert_firing{rule="held",tool="Tiny"} 1.0' in metrics

        # The server answers, with a license that expires in ten days: down resolves, expiring fires.
        expiry = time.strftime("%d-%b-%Y", time.gmtime(time.time() + 10 * 86400)).lower()
        (fakes / f"{lic01}.txt").write_text(
            "lmutil - Copyright (c) 1989-2023 Flexera. All Rights Reserved.\n"
            "Flexible License Manager status on Tue 12/1/2026 09:30\n\n"
            f"License server status: {lic01}\n    License file(s) on lic01: /opt/lic01.lic:\n\n"
            "   lic01: license server UP (MASTER) v11.19.0\n\nVendor daemon status (on lic01):\n\n"
            "    vector: UP v11.19.0\n\nFeature usage info:\n\n"
            "Users of DaVinciCfg:  (Total of 10 licenses issued;  Total of 0 licenses in use)\n\n"
            f'  "DaVinciCfg" v5.0, vendor: vector, expiry: {expiry}\n  floating license\n\n'
        )
        # The return ends tiny-full and held; the denials age out of their 3 s.
        requests.post(server.url + "/licenses/return", json={"id": borrow_id}, headers=AUTH, timeout=5)
        got = wait_titles(
            hook,
            [
                f"[licenses] RESOLVED down: {lic01}",
                "[licenses] FIRING expiring: DaVinciCfg",
                "[licenses] RESOLVED tiny-full: Tiny",
                "[licenses] RESOLVED held: Tiny",
                "[licenses] RESOLVED denied: Tiny",
            ],
        )
        # Each alert was notified once when it fired and once when it resolved, in that order.
        for rule in ("tiny-full", "held", "denied"):
            mine = [t for t in got if f" {rule}: " in t]
            assert mine == [f"[licenses] FIRING {rule}: Tiny", f"[licenses] RESOLVED {rule}: Tiny"]
        assert "budget|Tiny" in {a["key"] for a in requests.get(server.url + "/alerts", timeout=5).json()["firing"]}


def test_writes_failing_fire_not_persisting_and_its_end_resolves_it(start_server, tmp_path):
    with WebhookReceiver() as hook:
        rules = write_rules(
            tmp_path / "alerts.json", [{"name": "disk", "kind": "not_persisting", "for_seconds": 1}], [hook.url()]
        )
        server = start_server(DASH_APP_ALERTS=rules, DASH_APP_STREAM_INTERVAL="0.2")
        # Another process holds the database's write lock: the server's writes fail once its busy timeout passes.
        blocker = sqlite3.connect(tmp_path / "server.db", isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN EXCLUSIVE")
        released = threading.Event()
        try:
            requests.post(server.url + "/licenses/borrow", json={"tool": GH, "user": "ann"}, headers=AUTH, timeout=5)
            wait_titles(hook, ["[licenses] FIRING disk"], timeout=60)
            assert requests.get(server.url + "/realtime/stats", timeout=5).json()["persisted"] is False
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
            released.set()
        got = wait_titles(hook, ["[licenses] RESOLVED disk"], timeout=60)
        assert got == ["[licenses] FIRING disk", "[licenses] RESOLVED disk"]
        assert "writes to the database are failing" in hook.requests[0].body["message"]


def test_denials_read_from_a_flexlm_log_fire_an_alert_that_resolves_when_they_age_out(start_server, tmp_path):
    log = tmp_path / "lmgrd.log"
    today = time.strftime("%m/%d/%Y", time.localtime()).lstrip("0").replace("/0", "/")
    log.write_text(f"{time.strftime('%H:%M:%S')} (lmgrd) TIMESTAMP {today}\n")
    with WebhookReceiver() as hook:
        rules = write_rules(
            tmp_path / "alerts.json",
            [{"name": "denied", "kind": "denials", "tool": "MATLAB", "count": 2, "within_seconds": 10}],
            [hook.url()],
        )
        server = start_server(DASH_APP_ALERTS=rules, DASH_APP_STREAM_INTERVAL="0.2", DASH_APP_FLEXLM_LOGS=str(log))
        with open(log, "a") as fh:
            for user in ("ann", "bob"):
                now = time.strftime("%H:%M:%S")
                fh.write(f'{now} (MLM) DENIED: "MATLAB" {user}@ws-1  (Licensed number of users already reached. (-4,342))\n')
        got = wait_titles(hook, ["[licenses] FIRING denied: MATLAB", "[licenses] RESOLVED denied: MATLAB"])
        assert got == ["[licenses] FIRING denied: MATLAB", "[licenses] RESOLVED denied: MATLAB"]
        assert "2 denials in the last 10 s" in hook.requests[0].body["message"]
        assert requests.get(server.url + "/alerts", timeout=5).json()["recent"][0]["state"] == "resolved"
