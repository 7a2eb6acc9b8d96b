"""A source's error names no one below admin: a failed poll's last line (a checkout line, user and client host) is shown
in full only to admins of real names; /sources, the page, the alerts and their e-mails say the error's kind and server.
"""

import json
import time

import pytest
import requests

from dash_app.auth.viewer import ADMIN, PSEUDONYM, VIEWER, Names, Viewer
from dash_app.services import FLEXLM, POLLER
from dash_app.state import get_state
from dash_app.testing import ServerProcess
from dash_app.testing.receivers import SmtpReceiver
from tests.test_privacy_page import as_reader, refresh
from tests.test_server_polling import FAKE_LMUTIL, lmstat_output, start_time, wait_for

ALICE, HOST = "alice.realname", "ws-secret-host"
SECRETS = (ALICE, HOST)
LIC01 = "27000@lic01"
KIND = "exit status 1"
PSEUDONYM_KEY = "source-errors-pseudonym-key"
POLL_SECONDS = 10  # also each poll's timeout: ample for the fake lmutil to start on a busy machine


def failing_poll(fakes):
    """Make every poll of LIC01 print a report whose last line is alice's checkout on her host, and exit 1."""
    fakes.mkdir(exist_ok=True)
    output = lmstat_output(LIC01, [(ALICE, HOST, 1, start_time(5))])
    (fakes / f"{LIC01}.txt").write_text(output)
    (fakes / f"{LIC01}.exit").write_text("1")
    line = output.strip().splitlines()[-1].strip()
    assert ALICE in line and HOST in line  # what the poll's error quotes
    return line


def assert_names_no_one(text, where):
    for secret in SECRETS:
        assert secret not in text, (where, secret, text[:2000])


class Reader:
    """GET and POST to a real server as one reader, answering like Flask's test client (what refresh() takes)."""

    def __init__(self, url, headers):
        self.url, self.headers = url, headers

    def get(self, path):
        return Answer(requests.get(self.url + path, headers=self.headers, timeout=10))

    def post(self, path, json):
        return Answer(requests.post(self.url + path, json=json, headers=self.headers, timeout=10))


class Answer:
    def __init__(self, response):
        self.status_code, self.response = response.status_code, response

    def get_json(self):
        return self.response.json()

    def get_data(self, as_text=False):
        return self.response.text if as_text else self.response.content


# ------------------------------------------------------------------ --auth proxy, a real server, a real SMTP receiver


@pytest.fixture(scope="module")
def smtp():
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def estate(tmp_path_factory, smtp):
    """A real server behind a trusted sign-in proxy, with pseudonyms, polling LIC01 (failing) and mailing its alerts."""
    tmp_path = tmp_path_factory.mktemp("proxy")
    line = failing_poll(tmp_path / "fake")
    rules = tmp_path / "alerts.json"
    rules.write_text(json.dumps({"notify": [smtp.url()], "rules": [{"name": "down", "kind": "source_down"}]}))
    server = ServerProcess(
        {
            "DASH_APP_AUTH": "proxy",
            "DASH_APP_TRUSTED_PROXIES": "127.0.0.1/32",
            "DASH_APP_PROXY_GROUPS_HEADER": "X-Forwarded-Groups",
            "DASH_APP_PSEUDONYMIZE_USERS": "1",
            "DASH_APP_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "DASH_APP_LMSTAT": LIC01,
            "DASH_APP_LMUTIL": str(FAKE_LMUTIL),
            "DASH_APP_POLL_SECONDS": str(POLL_SECONDS),
            "DASH_APP_ALERTS": str(rules),
            "DASH_APP_STREAM_INTERVAL": "0.2",
            "FAKE_LMUTIL_DIR": str(tmp_path / "fake"),
        },
        tmp_path,
    )
    try:
        yield server, line
    finally:
        server.stop()


def reader(server, role):
    return Reader(server.url, {"X-Forwarded-User": f"{role}-person", "X-Forwarded-Groups": role})


def lic01_entry(client):
    """Return LIC01's /sources entry once it is down, else None."""
    entries = client.get("/sources").get_json()["sources"]
    return next((e for e in entries if e["kind"] == "lmstat" and e["state"] == "down"), None)


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_sources_tell_readers_below_admin_the_errors_kind_and_server_only(estate, role):
    server, _line = estate
    client = reader(server, role)
    entry = wait_for(lambda: lic01_entry(client), "LIC01 down")
    assert set(entry) == {"kind", "state", "down_since", "error"} and entry["down_since"]
    assert entry["error"] == {"kind": KIND, "server": LIC01}
    assert_names_no_one(client.get("/sources").get_data(as_text=True), f"/sources as {role}")


def test_sources_tell_admins_the_whole_error(estate):
    server, line = estate
    client = reader(server, "admin")
    entry = wait_for(lambda: lic01_entry(client), "LIC01 down")
    assert (entry["name"], entry["state"]) == (LIC01, "down")
    assert entry["error"] == {"kind": KIND, "server": LIC01, "detail": line}
    assert entry["last_error"] == f"{KIND}: {line}"


def test_the_source_down_mail_names_no_one(estate, smtp):
    server, _line = estate
    [mail] = smtp.wait_for(1, timeout=30)
    assert "FIRING" in mail.subject and LIC01 in mail.subject
    assert f"lmstat {LIC01} is down: {KIND}." in mail.body
    assert_names_no_one(mail.subject + "\n" + mail.body + "\n" + mail.raw.decode(errors="replace"), "the mail")
    for role in ("viewer", "analyst", "admin"):
        alerts = wait_for(lambda: reader(server, role).get("/alerts").get_json()["firing"], "the alert firing")  # noqa: B023
        assert_names_no_one(json.dumps(alerts), f"/alerts as {role}")
        assert [a["message"] for a in alerts] == [f"lmstat {LIC01} is down: {KIND}"]


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_the_page_tells_readers_below_admin_the_errors_kind_and_server(estate, role):
    server, _line = estate
    client = reader(server, role)
    wait_for(lambda: lic01_entry(client), "LIC01 down")
    text, out = refresh(client)
    assert_names_no_one(text, f"the page's answer to {role}")
    strip = out["source-strip"]["children"][0]
    assert f"lmstat {LIC01} down for " in strip and f"({KIND})" in strip


def test_the_page_tells_admins_the_whole_error(estate):
    server, line = estate
    client = reader(server, "admin")
    wait_for(lambda: lic01_entry(client), "LIC01 down")
    _text, out = refresh(client)
    assert f"({KIND}: {line})" in out["source-strip"]["children"][0]


# ------------------------------------------------------------------ --auth none with pseudonyms: everyone an admin


@pytest.fixture
def open_app(make_app, tmp_path, monkeypatch):
    """An app without sign-in (everyone reads as an admin) but with pseudonyms, polling LIC01 (failing)."""
    line = failing_poll(tmp_path / "fake")
    monkeypatch.setenv("FAKE_LMUTIL_DIR", str(tmp_path / "fake"))
    log = tmp_path / "lmgrd.log"
    log.write_text("")
    rules = tmp_path / "alerts.json"
    rules.write_text(json.dumps({"rules": [{"name": "down", "kind": "source_down"}]}))
    app = make_app(
        pseudonymize_users=True,
        pseudonym_key=PSEUDONYM_KEY,
        lmstat_servers=(LIC01,),
        lmutil=str(FAKE_LMUTIL),
        poll_seconds=POLL_SECONDS,
        flexlm_logs=(str(log),),
        alerts_file=str(rules),
        stream_interval=3600,
    )
    state = get_state(app)
    assert state.service(POLLER).wait_rounds(1)
    return app, state, line, log


def log_fails(state, why):
    """Make the followed log's reading fail with an exception saying `why` (the follower stopped: so it stays failed)."""
    follower = state.service(FLEXLM)
    follower.stop()
    [tail] = follower.tails
    tail.fail(ValueError(why))


def test_without_sign_in_pseudonyms_keep_errors_to_their_kind_and_server(open_app):
    app, state, line, log = open_app
    client = app.server.test_client()
    # A log that cannot be read any more, for a reason that quotes one of its lines.
    log_fails(state, f'unexpected line: 9:14:07 (vendor) OUT: "GH" {ALICE}@{HOST}')
    state.alerts.on_tick(time.time(), state.pool.status(), True)

    raw = client.get("/sources").get_data(as_text=True)
    assert_names_no_one(raw, "/sources")
    entries = {e["name"]: e for e in json.loads(raw)["sources"]}
    assert entries[LIC01]["error"] == {"kind": KIND, "server": LIC01}
    assert entries[LIC01]["last_error"] == KIND
    assert entries[str(log)]["error"] == {"kind": "reading failed", "server": None}
    assert entries[str(log)]["last_error"] == "reading failed"
    flexlm = client.get("/sources/flexlm").get_data(as_text=True)
    assert_names_no_one(flexlm, "/sources/flexlm")
    assert [entry["state"] for entry in json.loads(flexlm)["logs"]] == ["error: reading failed"]

    alerts = client.get("/alerts").get_data(as_text=True)
    assert_names_no_one(alerts, "/alerts")
    assert f"lmstat {LIC01} is down: {KIND}" in alerts and f"flexlm {log} is down: reading failed" in alerts

    text, out = refresh(client)
    assert_names_no_one(text, "the page's answer")
    assert f"lmstat {LIC01} down for 0 min ({KIND})" in out["source-strip"]["children"][0]
    assert "(reading failed)" in out["source-strip"]["children"][0]


def test_admins_of_real_names_read_a_logs_whole_error(open_app):
    app, state, line, log = open_app
    log_fails(state, f"unexpected line naming {ALICE}@{HOST}")
    as_reader(app, Viewer("root", ADMIN))  # signed in, as with --auth proxy or oidc: real names
    client = app.server.test_client()
    entries = {e["name"]: e for e in client.get("/sources").get_json()["sources"]}
    assert entries[LIC01]["last_error"] == f"{KIND}: {line}"
    assert entries[str(log)]["error"] == {
        "kind": "reading failed",
        "server": None,
        "detail": f"unexpected line naming {ALICE}@{HOST}",
    }
    [followed] = client.get("/sources/flexlm").get_json()["logs"]
    assert followed["state"] == f"error: reading failed: unexpected line naming {ALICE}@{HOST}"


def test_a_viewer_of_a_log_learns_the_errors_kind_but_not_the_logs_path(open_app):
    app, state, _line, log = open_app
    log_fails(state, f"unexpected line naming {ALICE}@{HOST}")
    as_reader(app, Viewer("vic", VIEWER, Names(PSEUDONYM, PSEUDONYM_KEY.encode())))
    client = app.server.test_client()
    raw = client.get("/sources").get_data(as_text=True)
    assert_names_no_one(raw, "/sources")
    assert str(log) not in raw and log.name not in raw  # a log's path is no server: admins only, as before
    [entry] = [e for e in json.loads(raw)["sources"] if e["kind"] == "flexlm"]
    assert (entry["state"], entry["error"]) == ("down", {"kind": "reading failed", "server": None})
    text, out = refresh(client)
    assert_names_no_one(text, "the page's answer")
    assert log.name not in text
    assert "flexlm source down (reading failed)" in out["source-strip"]["children"][0]
