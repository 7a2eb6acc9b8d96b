"""The page shows people's names only to readers who may see them: pseudonyms or nothing to the others.

Each test picks its reader with a `before_request` that sets `flask.g.viewer`, as the auth guard does for every request,
Dash's callback requests included (tests/test_auth_oidc.py signs in through a real provider instead).
"""

import json
import time
from urllib.parse import quote

import flask
import pytest
from dash._no_update import NoUpdate
from dash.testing.wait import until

from dash_app.alerts.engine import Alert
from dash_app.alerts.rules import HELD_LONGER_THAN, IN_USE_PERCENT, SOURCE_DOWN
from dash_app.auth.viewer import ADMIN, ANALYST, FULL, HIDDEN, PSEUDONYM, VIEWER, Names, Viewer
from dash_app.callbacks import page as page_module
from dash_app.callbacks.capacity import USERS_HIDDEN
from dash_app.callbacks.page import OUTPUTS, PageUpdater
from dash_app.layouts import parts, tables
from dash_app.state import get_state
from dash_app.testing import TEST_TOKEN
from dash_app.timeutil import iso_utc
from tests.browser_helpers import GH, table_users
from tests.test_estate_browser import grid_rows, trace_style
from tests.test_hardening import callback_body

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
REAL_USER, REAL_HOST = "alice.realname", "ws-secret-host"
KEY = b"test-pseudonym-key-0123456789"
PSEUDONYMS = Names(PSEUDONYM, KEY)
NO_NAMES = Names(HIDDEN, KEY)
PSEUDONYM_VIEWER = Viewer("vera", VIEWER, PSEUDONYMS)
HIDDEN_VIEWER = Viewer("vic", VIEWER, NO_NAMES)
ANALYST_READER = Viewer("ana", ANALYST, FULL)
ADMIN_READER = Viewer("adam", ADMIN, FULL)
HOUR = 3600
# Every page output's name in a callback answer, so a test can ask for every output the refresh callback has.
REFRESH_OUTPUTS = [{"id": i, "property": p} for i, p in OUTPUTS]
HELD_RULE = {"name": "held", "kind": "held_longer_than", "tool": "*", "seconds": 1}


def as_reader(app, viewer):
    """Make every request of `app` read as `viewer`; return the holder whose "viewer" a test may change."""
    holder = {"viewer": viewer}

    @app.server.before_request
    def _reader():
        flask.g.viewer = holder["viewer"]

    return holder


def borrow_as_alice(client, tool=GH):
    response = client.post("/licenses/borrow", json={"tool": tool, "user": REAL_USER, "host": REAL_HOST}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def dependency(client, output_part):
    """Return the server-side callback whose output names `output_part`."""
    deps = client.get("/_dash-dependencies").get_json()
    (found,) = [d for d in deps if output_part in d["output"].strip(".").split("...") and d["clientside_function"] is None]
    return found


def refresh(client, tool="__all__", window=1800, seen=None):
    """POST the page's refresh the way the browser does; return the answer's text and its outputs."""
    dep = dependency(client, "render-state.data")
    body = {
        "output": dep["output"],
        "outputs": REFRESH_OUTPUTS,
        "inputs": [
            {"id": "refresh", "property": "n_intervals", "value": 1},
            {"id": "tool-filter", "property": "value", "value": tool},
            {"id": "time-range", "property": "value", "value": window},
            {"id": "tz-select", "property": "value", "value": "UTC"},
            {"id": "browser-tz", "property": "data", "value": "UTC"},
        ],
        "state": [
            {"id": "render-state", "property": "data", "value": seen},
            {"id": "legend-hidden", "property": "data", "value": {}},
            {"id": "url", "property": "pathname", "value": "/"},
        ],
        "changedPropIds": ["refresh.n_intervals"],
    }
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True), response.get_json()["response"]


# ------------------------------------------------------------------------------------------------ browser


PAGE_JSON = """
    const plots = [...document.querySelectorAll('.js-plotly-plot')].map(gd => gd.data || []);
    const grids = [];
    for (const id of ['checkouts-table', 'tool-table']) {
        let api;
        try { api = window.dash_ag_grid.getApi(id); } catch (e) { return null; }  // not initialised yet
        const rows = [];
        api.forEachNode(node => rows.push({id: node.id, data: node.data}));
        grids.push(rows);
    }
    return JSON.stringify({plots, grids});
"""


def page_json(dash_duo):
    """Everything the browser holds of the page's figures and grids, as one text, once both grids are initialised."""
    # A page just loaded draws its charts before ag-grid has set up both grids: wait for them, or a grid's rows
    # would be left out of what the test reads.
    return until(lambda: dash_duo.driver.execute_script(PAGE_JSON), timeout=15)


def test_a_viewer_with_pseudonyms_sees_them_and_never_the_real_name_or_host(dash_duo, make_app):
    app = make_app(refresh_ms=1000)
    as_reader(app, PSEUDONYM_VIEWER)
    granted = borrow_as_alice(app.server.test_client())
    pseudonym = PSEUDONYMS.user(REAL_USER)
    dash_duo.start_server(app)

    until(lambda: table_users(dash_duo) == [pseudonym], timeout=15)
    until(lambda: len(grid_rows(dash_duo, "checkouts-table") or []) == 1, timeout=10)
    (row,) = grid_rows(dash_duo, "checkouts-table")
    assert (row["user"], row["host"], row["tool"]) == (pseudonym, "", GH)
    assert row["id"] == PSEUDONYMS.borrow_id(granted["id"]) != granted["id"]
    time.sleep(1.2)  # a few refreshes more: patches must not bring anything back
    for text in (dash_duo.driver.page_source, page_json(dash_duo)):
        assert pseudonym in text
        assert REAL_USER not in text and REAL_HOST not in text and granted["id"] not in text

    # The tool's view: its borrows chart lists the users of a bar, as pseudonyms.
    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/?tool={quote(GH)}")
    until(lambda: dash_duo.find_element("#tool-section").is_displayed(), timeout=10)
    until(lambda: dash_duo.find_elements("#tool-borrow-chart .point path"), timeout=10)
    shown = page_json(dash_duo)
    assert pseudonym in shown and REAL_USER not in shown
    # What its tooltip shows of a bar: the count of users, and their list (customdata as Plotly drew it).
    drawn = trace_style(dash_duo, "tool-borrow-chart")
    assert drawn["customdata"] == [[[1, 0, pseudonym]]]
    assert REAL_USER not in dash_duo.driver.page_source and REAL_HOST not in dash_duo.driver.page_source
    assert dash_duo.get_logs() == []


def test_an_analyst_sees_real_names_and_hosts_and_a_tab_turned_viewer_loses_them(dash_duo, make_app):
    app = make_app(refresh_ms=500)
    reader = as_reader(app, ANALYST_READER)
    granted = borrow_as_alice(app.server.test_client())
    dash_duo.start_server(app)

    until(lambda: table_users(dash_duo) == [REAL_USER], timeout=15)
    until(lambda: len(grid_rows(dash_duo, "checkouts-table") or []) == 1, timeout=10)
    (row,) = grid_rows(dash_duo, "checkouts-table")
    assert (row["user"], row["host"], row["id"]) == (REAL_USER, REAL_HOST, granted["id"])
    assert REAL_USER in dash_duo.driver.page_source and REAL_HOST in dash_duo.driver.page_source

    # The same tab, its reader now a viewer without names: the next refreshes send the tables whole, without them.
    reader["viewer"] = HIDDEN_VIEWER
    until(lambda: table_users(dash_duo) == ["—"], timeout=10)
    until(lambda: (grid_rows(dash_duo, "checkouts-table") or [{}])[0].get("user") is None, timeout=10)
    (row,) = grid_rows(dash_duo, "checkouts-table")
    assert row["host"] == "" and row["id"] == NO_NAMES.borrow_id(granted["id"])
    for text in (dash_duo.driver.page_source, page_json(dash_duo)):
        assert REAL_USER not in text and REAL_HOST not in text and granted["id"] not in text
    assert dash_duo.get_logs() == []


# ------------------------------------------------------------------------------------------------ callbacks


def test_the_refresh_answers_a_hidden_reader_without_names_and_a_full_reader_with_them(make_app):
    app = make_app()
    reader = as_reader(app, HIDDEN_VIEWER)
    client = app.server.test_client()
    granted = borrow_as_alice(client)
    secrets = (REAL_USER, REAL_HOST, granted["id"])

    for tool in ("__all__", GH):
        reader["viewer"] = HIDDEN_VIEWER
        text, out = refresh(client, tool)
        assert not [s for s in secrets if s in text], tool
        (row,) = out["checkouts-table"]["rowData"]
        assert (row["user"], row["host"], row["id"]) == (None, "", NO_NAMES.borrow_id(granted["id"]))
        assert out["render-state"]["data"]["names"] == HIDDEN
        reader["viewer"] = PSEUDONYM_VIEWER
        text, out = refresh(client, tool)
        assert not [s for s in secrets if s in text], tool
        assert PSEUDONYMS.user(REAL_USER) in text
        reader["viewer"] = ANALYST_READER
        text, _ = refresh(client, tool)
        assert all(s in text for s in secrets), tool

    # The borrows chart of the tool: the count of users stays, the list shows what the reader may see.
    for viewer, listed in ((HIDDEN_VIEWER, None), (PSEUDONYM_VIEWER, PSEUDONYMS.user(REAL_USER)), (ANALYST_READER, REAL_USER)):
        reader["viewer"] = viewer
        _, out = refresh(client, GH)
        (trace,) = out["tool-borrow-chart"]["figure"]["data"]
        assert [c[0] for c in trace["customdata"]] == [1]
        if listed is None:
            assert [c[2] for c in trace["customdata"]] == [""] and "users:" not in trace["hovertemplate"]
        else:
            assert [c[2] for c in trace["customdata"]] == [listed] and "users:<br>" in trace["hovertemplate"]


def test_a_tab_whose_reader_changed_gets_its_parts_whole_and_each_kind_of_reader_its_own_snapshots(make_app):
    app = make_app()
    state = get_state(app)
    borrow_as_alice(app.server.test_client())
    updater = PageUpdater(state)
    out, seen = updater.update("__all__", 1800, None, viewer=ANALYST_READER)
    assert REAL_USER in json.dumps(out[("events-table", "children")])
    # The analyst's render state, sent back by a tab whose reader is now a viewer: nothing of it is patched.
    out, seen_hidden = updater.update("__all__", 1800, seen, viewer=HIDDEN_VIEWER)
    events, checkouts = out[("events-table", "children")], out[("checkouts-table", "rowData")]
    assert isinstance(events, dict) and events.get("__dash_patch_update") is None
    assert REAL_USER not in json.dumps(events) and REAL_USER not in json.dumps(checkouts)
    assert seen_hidden["names"] == HIDDEN
    assert updater.snapshots_for(NO_NAMES) is not updater.snapshots_for(FULL)
    assert updater.snapshots_for(NO_NAMES) is updater.snapshots_for(Names(HIDDEN, KEY))
    # The analyst's own next refresh has nothing new to send: that reader's parts were kept apart.
    out, _ = updater.update("__all__", 1800, seen, viewer=ANALYST_READER)
    assert NoUpdate.is_no_update(out[("events-table", "children")])
    assert NoUpdate.is_no_update(out[("checkouts-table", "rowData")])


def test_the_buckets_download_lists_users_only_to_readers_of_real_names(make_app):
    app = make_app()
    reader = as_reader(app, HIDDEN_VIEWER)
    client = app.server.test_client()
    borrow_as_alice(client)
    download = dependency(client, "download.data")
    for button in ("download-csv", "download-json"):
        values = {(button, "n_clicks"): 1, ("tool-filter", "value"): "__all__", ("time-range", "value"): 1800}
        body = callback_body(download, values, f"{button}.n_clicks")
        answers = {}
        for name, viewer in (("hidden", HIDDEN_VIEWER), ("pseudonym", PSEUDONYM_VIEWER), ("full", ANALYST_READER)):
            reader["viewer"] = viewer
            response = client.post("/_dash-update-component", json=body)
            assert response.status_code == 200
            answers[name] = response.get_json()["response"]["download"]["data"]
        assert REAL_USER not in json.dumps(answers["hidden"]) and REAL_USER not in json.dumps(answers["pseudonym"])
        assert PSEUDONYMS.user(REAL_USER) in answers["pseudonym"]["content"]
        assert REAL_USER in answers["full"]["content"]
        assert answers["hidden"]["filename"] == answers["full"]["filename"] == f"licenses-buckets-all-tools-1800s.{button[9:]}"


def test_the_capacity_users_chart_shows_pseudonyms_or_nothing_to_viewers(make_app, tmp_path):
    app = make_app(db=str(tmp_path / "capacity.db"))
    state = get_state(app)
    reader = as_reader(app, HIDDEN_VIEWER)
    start = (time.time() // HOUR - 30) * HOUR
    held = state.pool.borrow(GH, REAL_USER, at=start, host=REAL_HOST)
    state.pool.return_license(held.id, at=start + HOUR)
    state.store.flush()
    client = app.server.test_client()
    update = dependency(client, "capacity-users.figure")
    values = {
        ("capacity-period", "value"): "604800",
        ("capacity-tool", "value"): GH,
        ("tz-select", "value"): "UTC",
        ("browser-tz", "data"): "UTC",
        ("url", "pathname"): "/capacity",
    }
    body = callback_body(update, values, "capacity-tool.value")

    def users_figure(viewer):
        reader["viewer"] = viewer
        response = client.post("/_dash-update-component", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True), response.get_json()["response"]["capacity-users"]["figure"]

    text, figure = users_figure(HIDDEN_VIEWER)
    assert REAL_USER not in text and REAL_HOST not in text
    assert figure["data"] == [] and USERS_HIDDEN in json.dumps(figure["layout"])
    text, figure = users_figure(PSEUDONYM_VIEWER)
    assert REAL_USER not in text and figure["data"][0]["y"] == [PSEUDONYMS.user(REAL_USER)]
    text, figure = users_figure(ANALYST_READER)
    assert figure["data"][0]["y"] == [REAL_USER]
    # The cached report was not changed by the pseudonyms: the hidden reader's answer still has none.
    text, _ = users_figure(PSEUDONYM_VIEWER)
    assert REAL_USER not in text


def test_held_too_long_alerts_show_users_and_borrow_ids_as_the_reader_may_see_them(make_app, tmp_path):
    rules = tmp_path / "alerts.json"
    rules.write_text(json.dumps({"notify": [], "rules": [HELD_RULE]}))
    app = make_app(alerts_file=str(rules), stream_interval=3600)
    state = get_state(app)
    reader = as_reader(app, HIDDEN_VIEWER)
    client = app.server.test_client()
    granted = borrow_as_alice(client)
    state.alerts.on_tick(time.time() + 10, state.pool.status(), True)
    assert [a.rule for a in state.alerts.firing()] == ["held"]

    answers = {}
    for name, viewer in (("hidden", HIDDEN_VIEWER), ("pseudonym", PSEUDONYM_VIEWER), ("full", ANALYST_READER)):
        reader["viewer"] = viewer
        answers[name] = refresh(client)
    for name, names in (("hidden", NO_NAMES), ("pseudonym", PSEUDONYMS)):
        text, out = answers[name]
        assert REAL_USER not in text and granted["id"] not in text, name
        banner = out["alerts-banner"]["children"]
        assert banner.startswith(f"1 alert firing: {GH}: ") and names.borrow_id(granted["id"]) in banner
        assert "has held a license for" in banner
        assert names.borrow_id(granted["id"]) in json.dumps(out["alerts-list"]["children"])
    assert f"{GH}: a user has held" in answers["hidden"][1]["alerts-banner"]["children"]
    assert f"{GH}: {PSEUDONYMS.user(REAL_USER)} has held" in answers["pseudonym"][1]["alerts-banner"]["children"]
    text, out = answers["full"]
    assert f"{REAL_USER} has held" in out["alerts-banner"]["children"] and granted["id"] in text


def test_the_source_strip_names_sources_and_errors_only_to_admins(make_app, monkeypatch):
    down = [
        {
            "kind": "lmstat",
            "name": "27000@lic-secret",
            "state": "down",
            "down_since": iso_utc(time.time() - 300),
            "last_error": f"Cannot connect to {REAL_HOST}",
        }
    ]
    monkeypatch.setattr(page_module, "down_sources", lambda state: down)
    app = make_app()
    reader = as_reader(app, ANALYST_READER)
    client = app.server.test_client()
    _, out = refresh(client)
    strip = out["source-strip"]["children"][0]
    assert "lmstat source down for 5 min" in strip and "lic-secret" not in strip and REAL_HOST not in strip
    reader["viewer"] = ADMIN_READER
    _, out = refresh(client)
    assert "lmstat 27000@lic-secret down for 5 min (Cannot connect to ws-secret-host)" in out["source-strip"]["children"][0]


# ------------------------------------------------------------------------------------------------ pieces


def held_alert(**extra):
    message = f"{GH}: {REAL_USER} has held a license for 2.0 h (limit 1 h; flexlm|{REAL_HOST}|7)"
    return Alert(f"held|flexlm|{REAL_HOST}|7", "held", GH, GH, "firing", 0.0, 7200.0, 3600.0, message, **extra)


@pytest.mark.parametrize("names", [PSEUDONYMS, NO_NAMES])
def test_alert_views_hide_users_and_ids_and_sources_by_reader(names):
    kinds = {"held": HELD_LONGER_THAN, "down": SOURCE_DOWN, "full": IN_USE_PERCENT}
    alert = held_alert()
    subject, text = parts.alert_view(alert, HELD_LONGER_THAN, names, sees_sources=True)
    user = names.user(REAL_USER) or "a user"
    assert (subject, text) == (
        GH,
        f"{GH}: {user} has held a license for 2.0 h (limit 1 h; {names.borrow_id(f'flexlm|{REAL_HOST}|7')})",
    )
    # The same from GET /alerts' dict, and from an alert that carries its user and id itself.
    assert parts.alert_view(alert.as_dict(), HELD_LONGER_THAN, names)[1] == text
    alert.user, alert.borrow_id = REAL_USER, f"flexlm|{REAL_HOST}|7"
    alert.message = "something else entirely"
    assert parts.alert_view(alert, HELD_LONGER_THAN, names)[1] == text
    # A message of another shape names nobody: the user is left out.
    odd = Alert("held|x", "held", GH, GH, "firing", 0.0, 7200.0, 3600.0, f"{REAL_USER} held it")
    assert REAL_USER not in parts.alert_view(odd, HELD_LONGER_THAN, names)[1]

    source = Alert(
        "down|27000@lic-secret",
        "down",
        "27000@lic-secret",
        None,
        "firing",
        0.0,
        60.0,
        0.0,
        f"lmstat 27000@lic-secret is down: exit status 1: {REAL_USER} {REAL_HOST}",  # as an older release said it
    )
    # A source's error reaches readers below admins of real names as its kind and license server, never its own words.
    said = "lmstat 27000@lic-secret is down: exit status 1"
    assert parts.alert_view(source, SOURCE_DOWN, FULL, sees_sources=False) == (None, said)
    assert parts.alert_view(source, SOURCE_DOWN, names, sees_sources=True) == ("27000@lic-secret", said)
    assert parts.alert_view(source, SOURCE_DOWN, FULL, sees_sources=True) == ("27000@lic-secret", source.message)
    assert parts.alert_view(source, None, names, sees_sources=True) == (None, "alert down")
    shown = parts.shown_alerts([source.as_dict(), held_alert().as_dict()], kinds, names, sees_sources=False)
    assert REAL_USER not in json.dumps(shown) and REAL_HOST not in json.dumps(shown) and said in json.dumps(shown)
    # A log's path is no server: only readers of the sources' details see it.
    log = Alert("down|/var/log/lmgrd.log", "down", "/var/log/lmgrd.log", None, "firing", 0.0, 60.0, 0.0, "")
    log.message = "flexlm /var/log/lmgrd.log is down: reading failed"
    assert parts.alert_view(log, SOURCE_DOWN, FULL, sees_sources=False) == (None, "a flexlm source is down: reading failed")
    assert parts.alert_view(log, SOURCE_DOWN, names, sees_sources=True) == ("/var/log/lmgrd.log", log.message)
    assert parts.alerts_banner_text([held_alert()], kinds, FULL, True) == f"1 alert firing: {held_alert().message}."


def test_checkout_and_event_rows_show_names_as_the_reader_may_see_them():
    class Borrow:
        id, tool, user, host, version, borrowed_at, is_overage = (
            f"lmstat|27000@lic01|{REAL_HOST}|1",
            GH,
            REAL_USER,
            REAL_HOST,
            "",
            0.0,
            False,
        )

    (row,) = tables.checkout_rows([Borrow()], 60.0, names=NO_NAMES)
    assert (row["id"], row["user"], row["host"], row["source"]) == (
        NO_NAMES.borrow_id(Borrow.id),
        None,
        "",
        "27000@lic01 (lmstat)",
    )
    (row,) = tables.checkout_rows([Borrow()], 60.0)
    assert (row["id"], row["user"], row["host"]) == (Borrow.id, REAL_USER, REAL_HOST)
    event = {"timestamp": "2027-01-15T07:41:00Z", "type": "borrow", "tool": GH, "user": REAL_USER, "is_overage": False}
    assert REAL_USER not in json.dumps(tables.event_row(event, "#000", names=PSEUDONYMS).to_plotly_json(), default=str)
    assert PSEUDONYMS.user(REAL_USER) in str(tables.event_row(event, "#000", names=PSEUDONYMS))
