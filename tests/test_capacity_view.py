"""The Capacity view's callbacks in-process: what a tool's pick sends back, what the grid is made of, and names."""

import time

from dash_app.callbacks.estate import USERS_HIDDEN
from dash_app.layouts.capacity_grid import money_js, totals_row
from dash_app.layouts.capacity_user import NAMES_NEEDED
from dash_app.layouts.estate import CHANGES_SHOWN, recommendation_list
from dash_app.state import get_state
from tests.browser_helpers import GH
from tests.test_hardening import callback_body
from tests.test_privacy_page import (
    ANALYST_READER,
    HIDDEN_VIEWER,
    HOUR,
    PSEUDONYM_VIEWER,
    PSEUDONYMS,
    REAL_USER,
    as_reader,
)


def test_a_tool_pick_never_sends_the_grid_its_rows_again(make_app):
    dependencies = make_app().server.test_client().get("/_dash-dependencies").get_json()
    for callback in dependencies:
        inputs = {f"{d['id']}.{d['property']}" for d in callback["inputs"]}
        if "capacity-tool.value" in inputs or "capacity-table.cellClicked" in inputs:
            assert "capacity-table.rowData" not in callback["output"], callback["output"]


def test_the_currency_is_text_in_the_grids_money_formatter():
    assert money_js('EUR"); alert(1); ("').endswith(' + " EUR\\"); alert(1); (\\""')
    assert money_js("").endswith(' + ""')


def test_the_totals_row_names_all_tools_and_keeps_the_totals():
    totals = {"borrows": 1200, "overage_borrows": 30, "overage_cost": 2400.5, "denials": 9, "true_denials": 4}
    assert totals_row({**totals, "commit_cost": 1, "license_hours": 2}, 200) == [{"tool": "All tools (200)", **totals}]
    assert totals_row(None, 200) == []


def capacity_callback(client, output, values):
    """POST the Capacity view's callback that has `output`, with `values` {(id, property): value}; return its answer."""
    deps = client.get("/_dash-dependencies").get_json()
    (found,) = [d for d in deps if output in d["output"].strip(".").split("...") and d["clientside_function"] is None]
    response = client.post(
        "/_dash-update-component", json=callback_body(found, values, "{id}.{property}".format(**found["inputs"][0]))
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True), response.get_json()["response"]


def hrefs(tree):
    """Every link's href in a callback's answer (components as JSON), in order."""
    if isinstance(tree, dict):
        found = [tree["href"]] if isinstance(tree.get("href"), str) else []
        return found + [href for value in tree.values() for href in hrefs(value)]
    if isinstance(tree, list):
        return [href for value in tree for href in hrefs(value)]
    return []


def user_links(answer):
    """The links to users' pages in a callback's answer."""
    return [href for href in hrefs(answer) if "?user=" in href]


PERIOD = {
    ("capacity-period", "value"): "604800",
    ("tz-select", "value"): "UTC",
    ("browser-tz", "data"): "UTC",
    ("url", "pathname"): "/capacity",
}


def test_a_users_page_and_the_top_users_show_names_only_as_the_reader_may_see_them(make_app, tmp_path):
    app = make_app(db=str(tmp_path / "capacity.db"))
    state = get_state(app)
    reader = as_reader(app, ANALYST_READER)
    start = (time.time() // HOUR - 30) * HOUR
    state.pool.return_license(state.pool.borrow(GH, REAL_USER, at=start).id, at=start + HOUR)
    state.pool.borrow(GH, REAL_USER)  # held now
    state.store.flush()
    client = app.server.test_client()
    user_page = {**PERIOD, ("capacity-user", "data"): REAL_USER}

    text, answer = capacity_callback(client, "capacity-user-body.children", user_page)
    assert answer["capacity-user-title"]["children"] == REAL_USER and GH in text
    top, top_answer = capacity_callback(client, "capacity-top-users.children", PERIOD)
    assert user_links(top_answer) == [f"/capacity?user={REAL_USER}"]

    # A reader who may not see names cannot open a user's page by name, nor find the name among the top users.
    for viewer in (PSEUDONYM_VIEWER, HIDDEN_VIEWER):
        reader["viewer"] = viewer
        text, answer = capacity_callback(client, "capacity-user-body.children", user_page)
        assert answer["capacity-user-body"]["children"] == NAMES_NEEDED and REAL_USER not in text
        top, top_answer = capacity_callback(client, "capacity-top-users.children", PERIOD)
        assert REAL_USER not in top and user_links(top_answer) == []
    assert top_answer["capacity-top-users"]["children"] == USERS_HIDDEN
    reader["viewer"] = PSEUDONYM_VIEWER
    top, _ = capacity_callback(client, "capacity-top-users.children", PERIOD)
    assert PSEUDONYMS.user(REAL_USER) in top


def test_the_recommendations_list_the_biggest_changes_and_count_the_rest():
    drops = [{"tool": f"t{n}", "action": "drop", "licenses": 1, "reason": "never at total", "saving": 100 - n} for n in range(30)]
    keeps = [{"tool": "<b>kept</b>", "action": "keep", "licenses": 0, "reason": "at total", "saving": 0}]
    totals = {"saving": 1234.5, "licenses_to_buy": 0, "licenses_to_drop": 30}
    summary, listed, more, keep = recommendation_list({"tools": drops + keeps, "totals": totals}, "EUR")
    assert summary.children == "Buy 0, drop 30 licenses; saving 1,234.50 EUR over the period."
    links = [item.children for item in listed.children]
    assert [link.href for link in links] == [f"/capacity?tool=t{n}" for n in range(CHANGES_SHOWN)]
    assert links[0].children == "Drop 1 license · t0 — never at total — saves 100 EUR"
    assert more.children == "…and 5 smaller: GET /analytics/recommendations lists them all."
    assert keep.children[0].children == "Keep as they are: 1 tools" and keep.children[1] == "<b>kept</b>"  # text, not HTML


def post_callback(client, pick, values, changed):
    """POST the server-side callback `pick(dependency)` chooses, with `values`; return the response."""
    deps = client.get("/_dash-dependencies").get_json()
    (found,) = [d for d in deps if d["clientside_function"] is None and pick(d)]
    return client.post("/_dash-update-component", json=callback_body(found, values, changed))


def test_the_address_opens_the_view_with_its_rows_and_controls_set_to_them_fetch_nothing_again(make_app, tmp_path):
    app = make_app(db=str(tmp_path / "capacity.db"))
    state = get_state(app)
    start = (time.time() // HOUR - 30) * HOUR
    state.pool.return_license(state.pool.borrow(GH, "user0", at=start).id, at=start + HOUR)
    state.store.flush()
    client = app.server.test_client()

    def is_route(d):
        return "..capacity-period.value..." in d["output"]

    def is_period(d):  # show_period: it writes the grid's rows after route, hence as a duplicate output
        return "capacity-shown.data@" in d["output"]

    # One answer opens the view: the controls as the address says, and the grid's rows with what they show.
    address = {("url", "pathname"): "/capacity", ("url", "search"): "?window=604800", **PERIOD}
    route = post_callback(client, is_route, address, "url.pathname")
    assert route.status_code == 200
    answer = route.get_json()["response"]
    assert answer["capacity-period"]["value"] == "604800"
    assert [row["tool"] for row in answer["capacity-table"]["rowData"] if row["borrows"]] == [GH]
    shown = answer["capacity-shown"]["data"]
    assert shown[0] == "604800" and shown[2] - shown[1] == 604800 and shown[3] is None

    # The controls route set call show_period, which sends nothing (an empty answer): the grid shows that period.
    controls = {**PERIOD, ("capacity-shown", "data"): shown}
    same = post_callback(client, is_period, controls, "capacity-period.value")
    assert same.status_code == 200 and same.get_json()["response"] == {}
    # Another period (or what the grid shows unknown) fills the grid again, and says what it shows.
    for values in ({**controls, ("capacity-period", "value"): "2592000"}, {**controls, ("capacity-shown", "data"): None}):
        again = post_callback(client, is_period, values, "capacity-period.value")
        assert again.status_code == 200
        rows = next(v["rowData"] for k, v in again.get_json()["response"].items() if k == "capacity-table")
        assert [row["tool"] for row in rows if row["borrows"]] == [GH]

    # The live view's address changes nothing of the Capacity view's.
    live = post_callback(client, is_route, {**address, ("url", "pathname"): "/"}, "url.pathname")
    assert live.status_code == 200 and live.get_json()["response"] == {}


def test_the_report_of_a_capacity_pages_address_is_built_while_the_page_loads(make_app, caplog):
    from dash_app.callbacks.capacity_period import rolling_span
    from dash_app.testing import FakeClock
    from dash_app.timeutil import iso_second

    app = make_app()  # an in-memory store: its reports are built here, as the analysis process builds a file's
    state = get_state(app)
    service = state.analytics
    # The page's request and the view's callback in one minute, well before its end (a page asked for in its last
    # seconds leaves its report to the callback, which asks in the next minute).
    service.clock = clock = FakeClock(time.time() // 60 * 60 + 10)
    start = (clock.now // HOUR - 30) * HOUR
    state.pool.return_license(state.pool.borrow(GH, "user0", at=start).id, at=start + HOUR)
    state.store.flush()
    client = app.server.test_client()

    def is_route(d):
        return "..capacity-period.value..." in d["output"]

    def opened(search):
        """What the view's first answer fills the grid with for an address: its period, and GH's borrows."""
        address = {("url", "pathname"): "/capacity", ("url", "search"): search, **PERIOD}
        answer = post_callback(client, is_route, address, "url.pathname").get_json()["response"]
        borrows = [row["borrows"] for row in answer["capacity-table"]["rowData"] if row["tool"] == GH]
        return tuple(answer["capacity-shown"]["data"][1:3]), borrows

    # The span the address alone says is the one the view then asks for; none where the viewer's zone or a group
    # decides it.
    for search in (
        "",
        "?window=2592000",
        f"?window=86400&tool={GH}",
        "?period=range",
        "?window=999",
        "?user=user0&window=2592000",
        "?period=604800",
    ):
        assert rolling_span(search, clock.now, service.longest) == opened(search)[0], search
    for search in (
        "?period=this-month",
        "?period=last-month",
        "?from=2026-11-01&to=2026-11-05",
        "?group=eng",
        "?window=86400&group=x",
    ):
        assert rolling_span(search, clock.now, service.longest) is None, search

    caplog.set_level("DEBUG", logger="dash_app.callbacks.capacity_prefetch")
    clock.advance(60)  # a new minute: no report of it is built yet
    span = rolling_span("?window=2592000", clock.now, service.longest)
    built = f"built the report of {iso_second(span[0])} to {iso_second(span[1])} for a Capacity page"
    assert client.get("/capacity?window=2592000", headers={"Accept": "text/html"}).status_code == 200
    deadline = time.monotonic() + 30
    while built not in caplog.text:
        assert time.monotonic() < deadline, "the page's report was not built"
        time.sleep(0.01)
    # A session stored since: a report built when the view asks would count it; the one built as the page was asked for
    # (younger than REUSE_SECONDS) does not. So the view's first answer is that report.
    state.pool.return_license(state.pool.borrow(GH, "user1", at=start + 2 * HOUR).id, at=start + 3 * HOUR)
    state.store.flush()
    assert opened("?window=2592000") == (span, [1])
    # A period the page's address does not name is built when asked for: both sessions.
    assert opened("?window=604800")[1] == [2]
    # Only the Capacity page's GET starts one: not the API's /analytics/capacity, nor another path ending so.
    caplog.clear()
    clock.advance(60)
    for path in ("/analytics/capacity?window=2592000", "/assets/capacity?window=2592000"):
        client.get(path)
    assert opened("?window=2592000")[1] == [2]  # built by the callback, as of now
    assert "built the report of" not in caplog.text


def test_a_page_whose_report_cannot_be_built_says_so_in_a_log_line(make_app, caplog):
    from dash_app.testing import FakeClock

    app = make_app()
    get_state(app).analytics.clock = FakeClock(1_700_000_010.0)  # a span of this test's own in the log line
    get_state(app).store.close()  # the history cannot be read: building the report fails
    caplog.set_level("DEBUG", logger="dash_app.callbacks.capacity_prefetch")
    assert app.server.test_client().get("/capacity?window=86400").status_code == 200
    failed = "building the report of 2023-11-13T22:13:00Z to 2023-11-14T22:13:00Z for a Capacity page failed: "
    deadline = time.monotonic() + 60
    while not [r for r in caplog.records if r.getMessage().startswith(failed)]:
        assert time.monotonic() < deadline, "no log line for the report that failed"
        time.sleep(0.01)
    (record,) = [r for r in caplog.records if r.getMessage().startswith(failed)]
    assert record.levelname == "WARNING" and "\n" not in record.getMessage()
