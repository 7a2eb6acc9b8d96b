"""The dashboard as a license administrator uses it, in headless Chromium against a real server: hidden series,
links, an estate of 200 tools, who holds what, denials per tool, cards of the view, stale data, time zones, a phone.
"""

import json
import re
import time
from urllib.parse import quote

from dash.testing.wait import until
from selenium.webdriver.common.keys import Keys

from dash_app.figures.text import legend_name
from dash_app.state import get_state
from dash_app.testing import ServerProcess
from dash_app.testing.traffic import estate_inventory
from tests.browser_helpers import GH, VECTOR, XSS, click_legend, feed, figure, span

# Reads a dash-ag-grid through its API: rows after filtering, in display order.
GRID_JS = """
let api = null;
try { api = window.dash_ag_grid && window.dash_ag_grid.getApi(arguments[0]); } catch (e) { return null; }
if (!api) return null;
const rows = [];
api.forEachNodeAfterFilterAndSort(node => rows.push(node.data));
return rows;
"""
TRACE_STYLE_JS = """
const gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!gd || !gd._fullData) return null;
return {
  colors: gd._fullData.map(t => (t.marker && t.marker.color) || (t.line && t.line.color)),
  plotHeight: gd._fullLayout._size.h,
  xTitle: gd._fullLayout.xaxis && gd._fullLayout.xaxis.title ? gd._fullLayout.xaxis.title.text : null,
  customdata: gd.data.map(t => t.customdata || null),
};
"""


STATUS_TEXT_JS = "return document.getElementById('connection-status').textContent"


def grid_rows(dash_duo, grid_id):
    return dash_duo.driver.execute_script(GRID_JS, grid_id)


def trace_style(dash_duo, graph_id):
    return dash_duo.driver.execute_script(TRACE_STYLE_JS, graph_id)


def traces(dash_duo, graph_id):
    return (figure(dash_duo, graph_id) or {}).get("traces") or []


def trace_named(dash_duo, graph_id, name):
    """The trace of a tool (by the name its legend shows) or of another series (by its name)."""
    return next((t for t in traces(dash_duo, graph_id) if t["name"] in (name, legend_name(name))), None)


def location_search(dash_duo):
    return dash_duo.driver.execute_script("return window.location.search")


def tools_file(tmp_path, tools):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    return str(path)


def test_a_hidden_tool_stays_hidden_through_data_changes_and_window_changes(dash_duo, make_app):
    app = make_app()
    state = get_state(app)
    feed(state)
    dash_duo.start_server(app)
    # The first load fetches and starts plotly.js: on a busy machine (the suite runs in three processes) that alone
    # can take many seconds, so this first wait is long.
    until(lambda: [t["name"] for t in traces(dash_duo, "borrow-chart")] == [GH, legend_name(VECTOR)], timeout=30)

    # The legend lists the traces in order: hide GreenHills.
    click_legend(dash_duo, "borrow-chart", 0)
    until(lambda: trace_named(dash_duo, "borrow-chart", GH)["visible"] == "legendonly", timeout=5)
    borrows = sum(trace_named(dash_duo, "borrow-chart", GH)["y"])
    for change in range(1, 4):
        # Each borrow changes the hidden series' data; the page gets the new trace, still hidden.
        state.pool.borrow(GH, f"more{change}")
        until(lambda change=change: sum(trace_named(dash_duo, "borrow-chart", GH)["y"]) == borrows + change, timeout=10)
        assert trace_named(dash_duo, "borrow-chart", GH)["visible"] == "legendonly"
        assert trace_named(dash_duo, "borrow-chart", VECTOR)["visible"] is True

    dash_duo.select_dcc_dropdown("#time-range", value="Last 1 hour")
    until(lambda: abs(span(figure(dash_duo, "borrow-chart")) - 3_600_000) < 5_000, timeout=10)
    assert trace_named(dash_duo, "borrow-chart", GH)["visible"] == "legendonly"

    # Shown again by the user: it stays shown.
    click_legend(dash_duo, "borrow-chart", 0)
    until(lambda: trace_named(dash_duo, "borrow-chart", GH)["visible"] is True, timeout=5)
    state.pool.borrow(GH, "after")
    until(lambda: sum(trace_named(dash_duo, "borrow-chart", GH)["y"]) == borrows + 4, timeout=10)
    assert trace_named(dash_duo, "borrow-chart", GH)["visible"] is True
    assert dash_duo.get_logs() == []


def test_the_view_lives_in_the_url(dash_duo, make_app):
    app = make_app()
    feed(get_state(app))
    dash_duo.start_server(app)
    base = dash_duo.server_url

    dash_duo.wait_for_page(url=f"{base}/?tool={quote(GH)}&window=3600&tz=UTC")
    until(lambda: dash_duo.find_element("#tool-section").is_displayed(), timeout=10)
    dash_duo.wait_for_contains_text("#tool-info", GH)
    assert "Last 1 hour" in dash_duo.find_element("#time-range").text
    until(lambda: (trace_style(dash_duo, "tool-borrow-chart") or {}).get("xTitle") == "time (UTC)", timeout=10)
    entries = dash_duo.driver.execute_script("return window.history.length")

    # A control changes the address in place: no new history entry.
    dash_duo.select_dcc_dropdown("#time-range", value="Last 3 hours")
    until(lambda: location_search(dash_duo) == f"?tool={quote_plus(GH)}&window=10800&tz=UTC", timeout=10)
    assert dash_duo.driver.execute_script("return window.history.length") == entries

    # A reload opens the same view.
    dash_duo.driver.refresh()
    until(lambda: dash_duo.find_element("#tool-section").is_displayed(), timeout=10)
    dash_duo.wait_for_contains_text("#time-range", "Last 3 hours")
    dash_duo.wait_for_contains_text("#tool-info", GH)

    # Values that name nothing fall back to the defaults, and the address says so; a tool no one has, in words on the
    # page, its name as text (markup in it stays text).
    dash_duo.wait_for_page(url=f"{base}/?tool={quote(XSS)}&window=7&tz=moon")
    until(lambda: dash_duo.find_element("#overview-section").is_displayed(), timeout=10)
    dash_duo.wait_for_contains_text("#time-range", "Last 30 minutes")
    dash_duo.wait_for_contains_text("#tz-select", "Local time")
    until(lambda: location_search(dash_duo) == "", timeout=10)
    dash_duo.wait_for_text_to_equal("#tool-notice", f"No tool named “{XSS}”; showing all tools.")
    assert dash_duo.driver.execute_script("return document.querySelector('#tool-notice img')") is None
    assert dash_duo.get_logs() == []


def quote_plus(text):
    return quote(text, safe="").replace("%20", "+")


def test_an_estate_of_200_tools_stays_readable_and_every_tool_is_in_the_table(dash_duo, make_app, tmp_path):
    inventory = estate_inventory(200)
    app = make_app(tools_file=tools_file(tmp_path, inventory), demo=True, backfill_hours=1)
    busy = inventory[0]
    for n in range(busy["commit_qty"] + 1):  # one borrow past the commit: an overage checkout
        get_state(app).pool.borrow(busy["tool"], f"overage-user-{n}")
    dash_duo.driver.set_window_size(1280, 800)
    dash_duo.start_server(app)

    for graph_id in ("borrow-chart", "inuse-chart", "overage-chart"):
        until(lambda graph_id=graph_id: traces(dash_duo, graph_id), timeout=20)
        drawn = traces(dash_duo, graph_id)
        assert len(drawn) <= 11, graph_id
        style = trace_style(dash_duo, graph_id)
        named = [c for t, c in zip(drawn, style["colors"]) if not t["name"].startswith("Other tools")]
        assert len(set(named)) == len(named), f"{graph_id}: tools share a colour"
        # The legend of at most eleven entries leaves the plot most of the chart.
        assert style["plotHeight"] >= 150, graph_id
    assert traces(dash_duo, "borrow-chart")[-1]["name"].startswith("Other tools (")

    # Open checkouts at 1280 px: each tool named once, above its checkouts; users and times whole, their zone named.
    until(lambda: len(grid_rows(dash_duo, "checkouts-table") or []) > busy["commit_qty"], timeout=10)
    checkouts = grid_rows(dash_duo, "checkouts-table")
    named = [r["tool"] for r in checkouts if r["tool_label"]]
    assert named == list(dict.fromkeys(r["tool"] for r in checkouts))  # once each, on its first row
    for column in ("user", "since"):
        cells = dash_duo.driver.execute_script(CUT_CELLS_JS, column)
        assert cells["cells"] and cells["cut"] == [], column
    assert re.fullmatch(r"Since \([\w/+-]+\)", cells["header"]) and not cells["headerCut"], cells["header"]

    until(lambda: len(grid_rows(dash_duo, "tool-table") or []) == 200, timeout=10)
    rows = grid_rows(dash_duo, "tool-table")
    assert {r["tool"] for r in rows} == {t["tool"] for t in inventory}
    # Most pressed first (read until a refresh's row updates are all in: the demo's traffic moves ranks).
    until(lambda: [r["rank"] for r in grid_rows(dash_duo, "tool-table")] == list(range(1, 201)), timeout=10)

    # Filter by name in the Tool column, then open a tool by clicking its row.
    search = dash_duo.find_element("#tool-table .ag-floating-filter input")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", search)
    search.send_keys("MATLAB")
    until(lambda: len(grid_rows(dash_duo, "tool-table")) == 10, timeout=5)
    assert all("MATLAB" in r["tool"] for r in grid_rows(dash_duo, "tool-table"))
    first = grid_rows(dash_duo, "tool-table")[0]["tool"]
    cell = dash_duo.find_element("#tool-table .ag-center-cols-container .ag-row[row-index='0'] .ag-cell")
    # Clear of the sticky header; instantly, as Bootstrap would scroll smoothly and the click would come first.
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", cell)
    cell.click()
    until(lambda: dash_duo.find_element("#tool-section").is_displayed(), timeout=10)
    dash_duo.wait_for_contains_text("#tool-info", first)
    until(lambda: f"tool={quote_plus(first)}" in location_search(dash_duo), timeout=5)
    # Live -> Capacity keeps the tool.
    until(lambda: capacity_link(dash_duo) == f"/capacity?tool={quote(first, safe='')}", timeout=5)

    # The tool picker: a dozen of its 201 options at once, by name; typing right after opening it finds, Enter picks.
    dash_duo.find_element("#tool-filter").click()
    until(lambda: len(picker_options(dash_duo)["shown"]) >= 8, timeout=5)
    # The options drawn (the list draws those near its scroll position), bar the selected one, which it lists first.
    listed = [name for name in picker_options(dash_duo)["all"] if name not in (first, "All tools")]
    assert len(listed) >= 8 and listed == sorted(listed, key=str.casefold)
    dash_duo.driver.switch_to.active_element.send_keys("feature 03")
    until(lambda: (found := picker_options(dash_duo)["all"]) and all("feature 03" in name for name in found), timeout=5)
    match = picker_options(dash_duo)["all"][0]
    dash_duo.driver.switch_to.active_element.send_keys(Keys.ENTER)
    dash_duo.wait_for_contains_text("#tool-info", match)
    until(lambda: capacity_link(dash_duo) == f"/capacity?tool={quote(match, safe='')}", timeout=5)
    assert dash_duo.get_logs() == []


PICKER_JS = """
const menu = document.querySelector('.dash-dropdown-options');
if (!menu) return {all: [], shown: []};
const box = menu.getBoundingClientRect();
const options = [...menu.querySelectorAll('.dash-dropdown-option')];
const inside = o => { const b = o.getBoundingClientRect(); return b.top >= box.top - 1 && b.bottom <= box.bottom + 1; };
return {all: options.map(o => o.textContent), shown: options.filter(inside).map(o => o.textContent)};
"""


def picker_options(dash_duo):
    """The open dropdown's options (those rendered) and those wholly in sight."""
    return dash_duo.driver.execute_script(PICKER_JS)


def capacity_link(dash_duo):
    return dash_duo.driver.execute_script("return document.getElementById('nav-capacity').getAttribute('href')")


# Each checkouts cell of a column whose text is cut (wider than its cell), and the column's header text.
CUT_CELLS_JS = """
const column = '[col-id="' + arguments[0] + '"]';
const cells = [...document.querySelectorAll('#checkouts-table .ag-center-cols-container .ag-cell' + column)];
const header = document.querySelector('#checkouts-table .ag-header-cell' + column + ' .ag-header-cell-text');
return {cut: cells.filter(c => c.scrollWidth > c.clientWidth).map(c => c.textContent), cells: cells.length,
        header: header ? header.textContent : null, headerCut: header ? header.scrollWidth > header.clientWidth : null};
"""


def spec(tool, total, commit, commit_price, overage_price):
    return {
        "tool": tool,
        "total": total,
        "commit_qty": commit,
        "max_overage": total - commit,
        "commit_price": commit_price,
        "overage_price_per_license": overage_price,
    }


def test_who_holds_a_tool_its_denials_and_cards_of_the_view(dash_duo, make_app, tmp_path):
    inventory = [spec("Solo Tool", 2, 1, 900, 75), spec(GH, 15, 10, 8000, 800)]
    app = make_app(tools_file=tools_file(tmp_path, inventory), currency="EUR")
    state = get_state(app)
    now = time.time()
    state.pool.borrow("Solo Tool", "ann", at=now - 3 * 3600 - 120)
    state.pool.borrow("Solo Tool", "bob", at=now - 600)
    for _ in range(2):  # the pool is at its total: denied
        try:
            state.pool.borrow("Solo Tool", "cy")
        except Exception:
            pass
    state.pool.borrow(GH, "dee", at=now - 1200)
    try:
        state.pool.borrow("GreenHils Multi IDE", "eve")  # a typo: an unknown tool
    except Exception:
        pass
    dash_duo.start_server(app)

    # The overview: every open checkout, each tool's together, the longest held first; the unknown-tool denial names
    # what was asked for; the denials card counts the true denials beside all (cy's second try is no new one).
    until(lambda: [r["user"] for r in grid_rows(dash_duo, "checkouts-table") or []] == ["ann", "bob", "dee"], timeout=10)
    held = [r["held"] for r in grid_rows(dash_duo, "checkouts-table")]
    assert held[0] == "3 h 02 min" and held[1] == "10 min"
    dash_duo.wait_for_text_to_equal("#failure-rate-hint", "per minute · last 30 min · 3 in all, 2 true")
    until(lambda: trace_named(dash_duo, "failure-chart", "Unknown tool"), timeout=10)
    style = trace_style(dash_duo, "failure-chart")
    assert any("GreenHils Multi IDE (1)" in str(c) for c in style["customdata"])
    dash_duo.wait_for_text_to_equal("#active-licenses", "3")

    # The tool view: its cards, its checkouts, its denials by reason, costs with their currency and period.
    dash_duo.select_dcc_dropdown("#tool-filter", value="Solo Tool")
    until(lambda: dash_duo.find_element("#tool-section").is_displayed(), timeout=10)
    dash_duo.wait_for_text_to_equal("#active-licenses", "2")
    dash_duo.wait_for_contains_text("#active-licenses-hint", "of 2 · this tool")
    dash_duo.wait_for_text_to_equal("#overage-rate-hint", "1 of 1 borrows · last 30 min")
    until(lambda: [r["user"] for r in grid_rows(dash_duo, "checkouts-table") or []] == ["ann", "bob"], timeout=10)
    until(lambda: sum(sum(t["y"]) for t in traces(dash_duo, "tool-failure-chart")) == 2, timeout=10)
    info = dash_duo.find_element("#tool-info").text
    assert "900 EUR" in info and "per term" in info and "75 EUR" in info and "to date" in info
    assert "DENIALS\n2\n1 true denials · last 30 min" in info
    assert dash_duo.get_logs() == []


def banner_text(dash_duo):
    # Read in one script: the page adds and removes the banner on its own timer, between two WebDriver calls.
    return dash_duo.driver.execute_script("const b = document.getElementById('stale-banner'); return b ? b.innerText : ''")


def staleness(dash_duo):
    """(banner text, whether the page is faded), read in one script: the page's timer changes both at once."""
    return tuple(
        dash_duo.driver.execute_script(
            "const b = document.getElementById('stale-banner');"
            "return [b ? b.innerText : '', document.getElementById('page').classList.contains('page-stale')]"
        )
    )


def test_stale_data_is_obvious_and_clears_when_data_returns(dash_duo, tmp_path):
    server = ServerProcess({"DASH_APP_REFRESH_MS": "500"}, tmp_path)
    try:
        dash_duo.driver.get(server.url)
        # Waited for together: on a busy machine an answer slower than three refreshes shows the banner for a moment.
        until(
            lambda: dash_duo.find_element("#connection-status").text.startswith("Live") and not banner_text(dash_duo), timeout=20
        )
        port = server.port
        server.stop()
        # The banner fades in: wait until its text is shown. (An answer the server sent while stopping may still come
        # after the page went stale, and make it live again for a moment: both are read at one instant.)
        banner, faded = until(lambda: (seen := staleness(dash_duo))[0] and seen, timeout=10)
        assert banner.startswith("No answer from the server for ") and banner.endswith("; retrying.") and faded
        # Cards fade out over a short transition.
        opacity = "return getComputedStyle(document.querySelector('.metric-card')).opacity"
        until(lambda: float(dash_duo.driver.execute_script(opacity)) < 0.6, timeout=5)
        server = ServerProcess({"DASH_APP_REFRESH_MS": "500"}, tmp_path, port=port)
        until(lambda: staleness(dash_duo) == ("", False), timeout=20)
    finally:
        server.stop()


def header_text(dash_duo):
    """The events table's header as written (the page shows it in capitals)."""
    return dash_duo.driver.execute_script(
        "const h = document.querySelector('#events-table thead'); return h ? h.textContent : ''"
    )


def test_times_show_in_the_browsers_zone_or_utc(dash_duo, make_app):
    dash_duo.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    app = make_app()
    state = get_state(app)
    borrow = state.pool.borrow(GH, "ann")
    dash_duo.start_server(app)

    until(lambda: "Time (Asia/Tokyo)" in header_text(dash_duo), timeout=10)
    local = time.strftime("%H:%M:%S", time.gmtime(borrow.borrowed_at + 9 * 3600))
    assert dash_duo.find_element("#events-table tbody td").text == local
    until(lambda: (trace_style(dash_duo, "borrow-chart") or {}).get("xTitle") == "time (Asia/Tokyo)", timeout=10)

    dash_duo.select_dcc_dropdown("#tz-select", value="UTC")
    until(lambda: "Time (UTC)" in header_text(dash_duo), timeout=10)
    assert dash_duo.find_element("#events-table tbody td").text == time.strftime("%H:%M:%S", time.gmtime(borrow.borrowed_at))
    until(lambda: location_search(dash_duo) == "?tz=UTC", timeout=5)
    assert dash_duo.get_logs() == []


def test_a_phone_scrolls_nothing_sideways_and_the_header_stays_small(dash_duo, make_app, tmp_path):
    dash_duo.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    app = make_app(tools_file=tools_file(tmp_path, estate_inventory(40)), demo=True, backfill_hours=0.5)
    dash_duo.start_server(app)
    for view in ("", f"?tool={quote(estate_inventory(40)[0]['tool'])}"):
        dash_duo.wait_for_page(url=f"{dash_duo.server_url}/{view}")
        until(lambda: grid_rows(dash_duo, "checkouts-table") is not None, timeout=10)
        # On a phone the status shows as its dot: its words are in the page, not drawn.
        until(lambda: dash_duo.driver.execute_script(STATUS_TEXT_JS).startswith("Live"), timeout=10)
        width = dash_duo.driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, view
        header = dash_duo.driver.execute_script("return document.querySelector('.app-header').getBoundingClientRect().height")
        assert header <= 0.15 * 844, f"{view}: header {header} px"
    assert dash_duo.get_logs() == []
