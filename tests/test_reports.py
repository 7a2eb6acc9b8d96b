"""Reports that arrive by themselves: real servers deliver to the real local SMTP receiver, once per report and period,
with two workers on one Redis, across a restart over the due time, and through a failing mail server."""

import csv
import email
import email.policy
import io
import json
import time
from datetime import UTC, datetime, timedelta
from html import escape as html_escape

import pytest
import requests
from flask import g, request

from dash_app.alerts.redaction import check_url
from dash_app.analytics.service import Report
from dash_app.auth.viewer import ADMIN, ANALYST, VIEWER, Viewer
from dash_app.reports.content import Figures, compose
from dash_app.reports.rules import parse_reports
from dash_app.reports.scheduler import ReportScheduler
from dash_app.reports.storage import Claim, ReportStorage
from dash_app.store import Store
from dash_app.store import tables as t
from dash_app.testing import RedisServer, ServerProcess
from dash_app.testing.clock import FakeClock
from dash_app.testing.receivers import SmtpReceiver, WebhookReceiver
from dash_app.testing.servers import stop_all
from dash_app.timeutil import iso_second

SIM, CAD = 'Sim <X> & "Y"', "CAD"
TOOLS = [
    {"tool": SIM, "total": 2, "commit_qty": 1, "max_overage": 2, "commit_price": 3000, "overage_price_per_license": 250},
    {"tool": CAD, "total": 3, "commit_qty": 3, "max_overage": 0, "commit_price": 900, "overage_price_per_license": 0},
]
REPORT_NAME = "Daily <costs> & more"


def wait_for(condition, what, timeout=30.0):
    """Return condition()'s first true value, polling; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture(scope="module")
def smtp():
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def tools_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tools") / "tools.json"
    path.write_text(json.dumps(TOOLS))
    return str(path)


def yesterday_utc():
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=1)).timestamp()


def yesterday_period():
    """Yesterday (UTC) as GET /reports shows a period."""
    start = yesterday_utc()
    return {"from": iso_second(start), "to": iso_second(start + 86400)}


def history_db(path, since=None, names=()):
    """A database holding yesterday's sessions (UTC) of both tools and a denial; each of `names` configured at `since`."""
    day = yesterday_utc()
    hour = 3600.0
    sessions = [
        ("s1", SIM, "ann", day + 8 * hour, 0, day + 12 * hour),
        ("s2", SIM, "bob", day + 9 * hour, 1, day + 10 * hour),  # an overage borrow
        ("s3", SIM, "cy", day + 9.5 * hour, 1, day + 11 * hour),
        ("s4", CAD, "ann", day + 13 * hour, 0, day + 15.5 * hour),
    ]
    store = Store(path)
    try:
        with store.writing() as conn:
            conn.execute(
                t.borrows.insert(),
                [
                    {"id": i, "tool": tool, "user": user, "borrowed_at": at, "is_overage": over, "returned_at": back}
                    for i, tool, user, at, over, back in sessions
                ],
            )
            conn.execute(t.denials.insert(), [{"ts": day + 9.7 * hour, "tool": SIM, "user": "dee", "reason": "exhausted"}])
            if names:
                conn.execute(t.report_schedules.insert(), [{"report": name, "since": since} for name in names])
    finally:
        store.close()
    return str(path)


def daily(name, at, urls, **more):
    return {"name": name, "every": "day", "at": at.strftime("%H:%M:%S"), "tz": "UTC", "period": "yesterday", "to": urls, **more}


def groups_file(tmp_path):
    """ann in eng, bob in a group whose name is markup; cy in none."""
    path = tmp_path / "groups.csv"
    path.write_text('user,group\nann,eng\nbob,"ops & <sales>"\n')
    return str(path)


def reports_file(tmp_path, reports):
    path = tmp_path / "reports.json"
    path.write_text(json.dumps(reports))
    return str(path)


def get_reports(server):
    response = requests.get(server.url + "/reports", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def report_state(server, name):
    return next(entry for entry in get_reports(server)["reports"] if entry["name"] == name)


def last_pass(server):
    seen = get_reports(server)["last_pass"]
    return datetime.fromisoformat(seen.replace("Z", "+00:00")).timestamp() if seen else 0.0


def parse(mail):
    message = email.message_from_bytes(mail.raw, policy=email.policy.default)
    html = message.get_body(preferencelist=("html",)).get_content()
    attachments = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    return message, html, attachments


def test_a_report_arrives_once_from_two_workers_with_the_apis_tables(tmp_path, smtp, tools_file):
    """Two workers on one Redis and one database, each running the reports' thread: the report is sent once, when due."""
    db = history_db(tmp_path / "shared.db", since=time.time() - 3600, names=[REPORT_NAME])
    # Due a few seconds from now (sent at start instead, should the start take longer: once, either way).
    at = datetime.now(UTC) + timedelta(seconds=3)
    redis = RedisServer(tmp_path)
    servers = []
    try:
        env = {
            "DASH_APP_DB": db,
            "DASH_APP_TOOLS": tools_file,
            "DASH_APP_REDIS_URL": redis.url,
            "DASH_APP_WORKERS": "2",
            "DASH_APP_CURRENCY": "EUR",
            "DASH_APP_USER_GROUPS": groups_file(tmp_path),
            "DASH_APP_REPORTS": reports_file(tmp_path, [daily(REPORT_NAME, at, [smtp.url(to="finance@example.com")])]),
        }
        server = ServerProcess(env, tmp_path)
        servers.append(server)
        before = len(smtp.messages)
        mail = smtp.wait_for(before + 1, timeout=40)[before]
        assert mail.to == ("finance@example.com",)
        message, html, attachments = parse(mail)
        day = datetime.fromtimestamp(yesterday_utc(), UTC).date().isoformat()
        assert message["Subject"] == f"[licenses] {REPORT_NAME}: {day}"
        # Names are text: escaped in the HTML, never markup.
        assert "Sim &lt;X&gt; &amp; &quot;Y&quot;" in html and "<X>" not in html
        assert "Daily &lt;costs&gt; &amp; more" in html
        state = wait_for(lambda: (s := report_state(server, REPORT_NAME))["state"] == "sent" and s, "the report recorded as sent")
        period = state["last_period"]
        assert period == {
            "from": f"{day}T00:00:00Z",
            "to": datetime.fromtimestamp(yesterday_utc() + 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        assert state["tries"] == 1 and state["last_error"] is None and state["last_sent"] is not None
        assert len(state["to"]) == 1 and f"127.0.0.1:{smtp.port}" in state["to"][0]
        # Tomorrow at the same time.
        assert state["next_run"] == (at + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        # The attachments are the API's own CSV of the same period, figure for figure.
        query = {"from": period["from"], "to": period["to"], "format": "csv"}
        assert sorted(attachments) == ["capacity.csv", "chargeback.csv", "recommendations.csv"]
        for name, route in (
            ("capacity.csv", "capacity"),
            ("recommendations.csv", "recommendations"),
            ("chargeback.csv", "chargeback"),
        ):
            api = requests.get(f"{server.url}/analytics/{route}", params=query, timeout=30)
            assert api.status_code == 200 and attachments[name] == api.text, name
        rows = {row["tool"]: row for row in csv.DictReader(io.StringIO(attachments["capacity.csv"]))}
        assert rows[SIM]["peak_in_use"] == "3" and rows[SIM]["overage_borrows"] == "2" and rows[SIM]["denials"] == "1"
        assert rows[CAD]["borrows"] == "1"
        # The summary's total is the API's commit and overage cost for the period.
        figures = requests.get(f"{server.url}/analytics/capacity", params={**query, "format": "json"}, timeout=30).json()
        totals = figures["totals"]
        assert totals["overage_cost"] == 500.0
        assert f'<td align="right">{totals["commit_cost"] + totals["overage_cost"]:,.2f} EUR</td>' in html
        # The cost per group: the chargeback's groups and totals, to the cent.
        split = requests.get(f"{server.url}/analytics/chargeback", params={**query, "format": "json"}, timeout=30).json()
        assert split["groups"] and split["totals"]["total"] == pytest.approx(totals["commit_cost"] + totals["overage_cost"])
        assert {group["group"] for group in split["groups"]} == {"eng", "ops & <sales>", "(unassigned)"}
        assert "ops &amp; &lt;sales&gt;" in html
        for group in split["groups"]:
            assert f"<td>{html_escape(group['group'])}</td>" in html and f"{group['total']:,.2f} EUR</td>" in html
        # Passes of the workers' threads ended after it was sent (a pass delivers before it ends): still one.
        sent = time.time()
        wait_for(lambda: last_pass(server) >= sent + 1.1, "later passes of the reports' threads")
        assert len(smtp.messages) == before + 1
        stored = Store(db)
        try:
            assert stored.read("SELECT report, tries, sent_at IS NOT NULL FROM report_runs") == [(REPORT_NAME, 1, 1)]
        finally:
            stored.close()
    finally:
        stop_all(servers)
        redis.stop()


def test_a_report_due_while_the_server_was_down_is_sent_at_start_once_and_a_failing_one_is_retried(tmp_path, tools_file):
    """Down at the due time, started after: sent once; started again: not again. A mail server refusing the first try:
    retried after the back-off, the error shown in GET /reports, then delivered."""
    with SmtpReceiver() as good, SmtpReceiver(refuse=1) as flaky:
        missed, failing = "missed", "failing"
        db = history_db(tmp_path / "server.db", since=time.time() - 3600, names=[missed, failing])
        at = datetime.now(UTC) - timedelta(seconds=1)  # due a second ago, while no server ran
        env = {
            "DASH_APP_DB": db,
            "DASH_APP_TOOLS": tools_file,
            "DASH_APP_REPORTS": reports_file(
                tmp_path,
                [daily(missed, at, [good.url()], content=["summary"]), daily(failing, at, [flaky.url()], content=["capacity"])],
            ),
        }
        server = ServerProcess(env, tmp_path)
        try:
            mail = good.wait_for(1, timeout=30)[0]
            _, html, attachments = parse(mail)
            assert attachments == {} and "Cost" in html  # the summary only
            # The failing one: its error shows while it is retried, then it arrives.
            retrying = wait_for(lambda: (s := report_state(server, failing))["last_error"] and s, "the failure in GET /reports")
            assert retrying["last_error"] == f'{retrying["to"][0]}: Sending email to "ops@example.com" failed.'
            assert retrying["state"] in ("retrying", "sent") and retrying["last_period"] == yesterday_period()
            flaky.wait_for(1, timeout=30)
            done = wait_for(lambda: (s := report_state(server, failing))["state"] == "sent" and s, "the retried report sent")
            assert done["tries"] == 2 and flaky.refused == 1 and done["last_error"] == retrying["last_error"]
            assert list(parse(flaky.messages[0])[2]) == ["capacity.csv"]
        finally:
            server.stop()
        # Started again: both periods are recorded as sent, neither goes out again.
        server = ServerProcess(env, tmp_path)
        try:
            wait_for(lambda: get_reports(server)["last_pass"], "a pass of the restarted server's reports thread")
            states = {entry["name"]: entry["state"] for entry in get_reports(server)["reports"]}
            assert states == {missed: "sent", failing: "sent"}
            assert len(good.messages) == 1 and len(flaky.messages) == 1 and flaky.refused == 1
        finally:
            server.stop()


# ---------------------------------------------------------------------------------------------------- in process


@pytest.fixture
def store(database):
    opened = Store(database)
    yield opened
    opened.close()


def test_a_claim_is_taken_once_and_a_crashed_claim_is_taken_over_after_its_lease(store):
    """Two processes' storages on one database: one claim per period; a claim not renewed past its lease is taken over,
    with the channels delivered so far; a sent period is never claimed again."""
    first, second = ReportStorage(store, "a", lease_seconds=60), ReportStorage(store, "b", lease_seconds=60)
    now = 1_800_000_000.0
    assert first.since(["r"], now) == {"r": now}
    assert second.since(["r"], now + 5) == {"r": now}  # the first to see it
    claim = first.claim("r", 100.0, 200.0, 250.0, now)
    assert claim == Claim(frozenset(), 0)
    assert second.claim("r", 100.0, 200.0, 250.0, now + 1) is None  # held
    assert first.record("r", 100.0, Claim(frozenset({0}), 1), "channel 2: down", now + 2, sent=False)
    # "a" crashed: past its lease "b" takes the period over, with channel 1 delivered.
    assert second.claim("r", 100.0, 200.0, 250.0, now + 30) is None
    taken = second.claim("r", 100.0, 200.0, 250.0, now + 63)
    assert taken == Claim(frozenset({0}), 1)
    assert not first.record("r", 100.0, Claim(frozenset({0, 1}), 2), None, now + 64, sent=True)  # no longer its own
    assert second.record("r", 100.0, Claim(frozenset({0, 1}), 2), None, now + 65, sent=True)
    assert first.claim("r", 100.0, 200.0, 250.0, now + 1000) is None and second.sent("r", 100.0)
    run = first.latest()["r"]
    assert (run.sent_at, run.tries, run.error) == (now + 65, 2, "channel 2: down")  # the last error is kept
    # A stopping process lets go of its claims at once.
    assert first.claim("r", 200.0, 300.0, 350.0, now) is not None
    first.release()
    assert second.claim("r", 200.0, 300.0, 350.0, now + 1) is not None


READER_HEADER = "X-Test-Reader"
READERS = {"admin": Viewer("root", ADMIN), "analyst": Viewer("ann", ANALYST), "viewer": Viewer("vic", VIEWER)}


def test_get_reports_and_the_sources_pages_card_are_for_admins_only(make_app, tmp_path):
    url = "json://127.0.0.1:9/x?+Authorization=secret-token"
    path = reports_file(tmp_path, [daily("r <b>", datetime.now(UTC) + timedelta(hours=1), [url])])
    app = make_app(reports_file=path)

    @app.server.before_request
    def set_viewer():
        g.viewer = READERS[request.headers[READER_HEADER]]

    client = app.server.test_client()
    for reader in ("analyst", "viewer"):
        response = client.get("/reports", headers={READER_HEADER: reader})
        assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
        page = client.get("/sources?format=html", headers={READER_HEADER: reader}).get_data(as_text=True)
        assert "Scheduled reports" not in page and "r &lt;b&gt;" not in page
    answer = client.get("/reports", headers={READER_HEADER: "admin"}).get_json()
    assert [entry["name"] for entry in answer["reports"]] == ["r <b>"]
    assert "secret-token" not in json.dumps(answer)  # channels are shown redacted
    page = client.get("/sources?format=html", headers={READER_HEADER: "admin"}).get_data(as_text=True)
    card = page[page.index('id="scheduled-reports"') :]
    assert "<td>r &lt;b&gt;</td>" in card and "<b>" not in card and "secret-token" not in page
    assert f"<td>{answer['reports'][0]['next_run']}</td>" in card


def quiet_figures(report, start, end):
    """Figures of an estate without tools: what the scheduler's tests need of a period's analyses."""
    return Figures(start, end, "EUR", Report(start, end, 30, [], [], {"commit_cost": 0.0, "overage_cost": 0.0}))


def test_the_scheduler_sends_the_latest_missed_period_once_and_takes_over_a_crashed_claim(tmp_path):
    """In process, on a fake clock: nothing for a period due before the report was configured; of several missed
    periods only the latest; a period a crashed process claimed is sent once its lease has run out."""
    store = Store(tmp_path / "reports.db")
    clock = FakeClock(utc_at(2026, 12, 7, 12, 0))
    with WebhookReceiver() as hook:
        rule = parse_reports([daily("d", datetime(2026, 1, 1, 7, 0), [hook.url()], content=["summary"])], check_url)[0]

        def scheduler(owner):
            return ReportScheduler((rule,), ReportStorage(store, owner), quiet_figures, "http://dash", clock=clock)

        try:
            live = scheduler("live")
            live.run_once()  # configured now: today's 07:00 was before, nothing is sent
            assert hook.requests == []
            clock.now = utc_at(2026, 12, 10, 9, 0)  # three days later: the 8th, 9th and 10th were missed
            live.run_once()
            (sent,) = hook.wait_for(1)
            assert "2026-12-09" in sent.body["title"]  # yesterday's, for the 10th; not the 8th's or 9th's
            live.run_once()
            assert len(hook.requests) == 1
            # A process claimed the 11th's period, then crashed.
            clock.now = utc_at(2026, 12, 11, 7, 0, 1)
            start, end = utc_at(2026, 12, 10, 0, 0), utc_at(2026, 12, 11, 0, 0)
            assert ReportStorage(store, "crashed").claim("d", start, end, clock.now - 1, clock.now) is not None
            other = scheduler("other")
            other.run_once()
            assert len(hook.requests) == 1  # its lease holds
            clock.advance(61)
            other.run_once()
            assert len(hook.wait_for(2)) == 2 and "2026-12-10" in hook.requests[1].body["title"]
            live.run_once()
            other.run_once()
            assert len(hook.requests) == 2
            assert [entry["state"] for entry in other.status()] == ["sent"]
        finally:
            store.close()


def utc_at(*args):
    return datetime(*args, tzinfo=UTC).timestamp()


def test_the_summary_names_the_five_most_pressed_tools_what_to_buy_and_drop_and_the_groups_all_escaped():
    """content.compose over made-up figures: only the first five tools (most pressed first), every name escaped."""
    rule = parse_reports([daily("<r>", datetime(2026, 1, 1, 7, 0), ["json://h/x"], content=["summary"])], check_url)[0]
    tools = [
        {
            "tool": f"<t{n}>",
            "total": 4,
            "peak_in_use": 4 - n % 2,
            "seconds_at_total": 3600.0 * n,
            "denials": n,
            "true_denials": n // 2,
            "overage_cost": 10.0 * n,
            "coverage": None,
        }
        for n in range(7)
    ]
    capacity = Report(0.0, 86400.0, 30, tools, [], {"commit_cost": 1000.0, "overage_cost": 210.0, "overage_borrows": 3})
    recommendations = {
        "tools": [
            {"tool": "<t0>", "action": "buy", "licenses": 2, "reason": "denied <often>", "saving": 0.0},
            {"tool": "<t1>", "action": "keep", "licenses": 0, "reason": "fine", "saving": 0.0},
            {"tool": "<t2>", "action": "drop", "licenses": 1, "reason": "idle & unused", "saving": 500.0},
        ]
    }
    split = {
        "by": "group",
        "groups": [{"group": "a&b", "license_hours": 3.0, "commit_share": 900.0, "overage_cost": 10.0, "total": 910.0}],
    }
    html = compose(rule, Figures(0.0, 86400.0, "EUR", capacity, recommendations, split), "http://dash/?a=1&b=<2>").html
    assert "&lt;r&gt;" in html and "<r>" not in html
    shown = [f"&lt;t{n}&gt;" for n in range(7) if f"<td>&lt;t{n}&gt;</td>" in html]
    assert shown == [f"&lt;t{n}&gt;" for n in range(5)]  # the five most pressed, in order; <t5> and <t6> not
    assert '<td align="right">1,210.00 EUR</td>' in html
    assert "<td>buy</td>" in html and "<td>drop</td>" in html and "<td>keep</td>" not in html
    assert "denied &lt;often&gt;" in html and "idle &amp; unused" in html
    assert "<td>a&amp;b</td>" in html and '<td align="right">910.00 EUR</td>' in html
    assert 'href="http://dash/?a=1&amp;b=&lt;2&gt;"' in html
