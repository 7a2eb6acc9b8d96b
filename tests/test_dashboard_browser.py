"""The dashboard in headless Chromium: what a person sees after loading, picking tools and windows, and hovering."""

import re
import time

from dash.testing.wait import until
from selenium.webdriver.common.action_chains import ActionChains

from dash_app.figures.text import legend_name
from dash_app.state import get_state
from tests.browser_helpers import (
    GH,
    VECTOR,
    XSS,
    click_legend,
    feed,
    figure,
    history_points,
    hover_text,
    span,
    table_users,
    wait_for_points,
)


def test_overview_shows_numbers_follows_the_window_and_keeps_zoom(dash_duo, make_app):
    app = make_app(refresh_ms=500)
    state = get_state(app)
    active = feed(state)
    dash_duo.start_server(app)

    dash_duo.wait_for_text_to_equal("#active-licenses", str(active), timeout=10)
    dash_duo.wait_for_text_to_equal("#buffer-size", str(state.buffer.get_stats_summary()["total_events"]))
    for card in ("borrow-rate", "return-rate", "failure-rate"):
        # One decimal, or two significant digits for a rate below 0.05 (0.033): never a rare event shown as 0.
        assert re.fullmatch(r"\d[\d,]*(\.\d)?|0\.0\d{1,2}", dash_duo.find_element(f"#{card}").text), card
    assert re.fullmatch(r"\d+(\.\d)? %", dash_duo.find_element("#overage-rate").text)
    until(lambda: dash_duo.find_element("#connection-status").text.startswith("Live"), timeout=5)

    until(lambda: (figure(dash_duo, "borrow-chart") or {}).get("traces"), timeout=10)
    drawn = figure(dash_duo, "borrow-chart")
    # Ranked by the window's peak in use, then borrows: both peaked at 4, GreenHills had more borrows.
    assert [t["name"] for t in drawn["traces"]] == [GH, legend_name(VECTOR)]
    assert sum(sum(t["y"]) for t in drawn["traces"]) == 9
    assert 1790_000 <= span(drawn) <= 1810_000
    assert not dash_duo.find_element("#tool-section").is_displayed()

    # Another window: the x range follows it, ending now.
    dash_duo.select_dcc_dropdown("#time-range", value="Last 5 minutes")
    until(lambda: abs(span(figure(dash_duo, "borrow-chart")) - 300_000) < 5_000, timeout=10)
    end = figure(dash_duo, "borrow-chart")["range"][1]
    assert abs(end - time.time() * 1000) < 5_000
    assert sum(sum(t["y"]) for t in figure(dash_duo, "borrow-chart")["traces"]) == 3

    # Drag to zoom and click a legend entry away; new data and several refreshes later both are as the user left them.
    # Tall enough to show the charts below the sticky header without scrolling (Selenium cannot scroll SVG into view).
    dash_duo.driver.set_window_size(1400, 2400)
    plot = dash_duo.find_element("#borrow-chart .nsewdrag")
    width = plot.size["width"]
    drag = ActionChains(dash_duo.driver).move_to_element_with_offset(plot, width // 4, 20).click_and_hold()
    drag.move_by_offset(width // 4, 0).release().perform()
    until(lambda: span(figure(dash_duo, "borrow-chart")) < 200_000, timeout=5)
    zoom = figure(dash_duo, "borrow-chart")["range"]
    click_legend(dash_duo, "borrow-chart", 1)
    until(lambda: figure(dash_duo, "borrow-chart")["traces"][1]["visible"] == "legendonly", timeout=5)
    state.pool.borrow(GH, "new")
    until(lambda: sum(sum(t["y"]) for t in figure(dash_duo, "borrow-chart")["traces"]) == 4, timeout=10)
    # The table took the new event on top (sent as a patch), above the other events of the 5-minute window.
    until(lambda: table_users(dash_duo) == ["new", "ivy", "hal", "gus"], timeout=5)
    time.sleep(1.5)
    drawn = figure(dash_duo, "borrow-chart")
    assert drawn["range"] == zoom
    assert drawn["traces"][1]["visible"] == "legendonly"
    assert dash_duo.get_logs() == []


# The widths of the pool bar's reserved segments as drawn, by bar ({} when there is no reserved segment).
RESERVED_WIDTHS_JS = """
const gd = document.querySelector('#utilization-chart .js-plotly-plot');
if (!gd || !gd.data) return null;
const i = gd.data.findIndex(t => t.name === 'Reserved');
if (i < 0) return {};
const points = gd.querySelectorAll('g.barlayer g.trace.bars')[i].querySelectorAll('g.point path');
return Object.fromEntries([...points].map((p, n) => [gd.data[i].y[n], p.getBoundingClientRect().width]));
"""


def test_tool_view_shows_each_tools_full_history_across_switches(dash_duo, make_app):
    app = make_app()
    state = get_state(app)
    feed(state)
    state.pool.observe_queue(GH, 2, 3, "27000@lic01")  # a polled server reserves two of GreenHills, three wait
    dash_duo.start_server(app)
    dash_duo.wait_for_text_to_equal("#active-licenses", "8", timeout=10)

    dash_duo.select_dcc_dropdown("#tool-filter", value=GH)
    wait_for_points(dash_duo, "tool-borrow-chart", history_points(state, GH))
    assert len(history_points(state, GH)[0]) == 5
    assert dash_duo.find_element("#tool-section").is_displayed()
    assert not dash_duo.find_element("#overview-section").is_displayed()
    dash_duo.wait_for_contains_text("#tool-info", "COMMIT\n10")  # the labels are set in capitals by CSS
    info = dash_duo.find_element("#tool-info").text
    assert GH in info and "TOTAL\n15" in info and "MAX OVERAGE\n5" in info and "COST TO DATE\n8,000" in info
    assert "RESERVED\n2" in info and "QUEUED\n3" in info
    until(lambda: (figure(dash_duo, "tool-inuse-chart") or {"traces": [{}]})["traces"][0].get("y", [None])[-1] == 4, timeout=10)

    dash_duo.select_dcc_dropdown("#tool-filter", value=VECTOR)
    wait_for_points(dash_duo, "tool-borrow-chart", history_points(state, VECTOR))
    dash_duo.wait_for_contains_text("#tool-info", VECTOR)
    assert "RESERVED" not in dash_duo.find_element("#tool-info").text  # nothing reserved or queued: not said
    assert "QUEUED" not in dash_duo.find_element("#tool-info").text

    dash_duo.select_dcc_dropdown("#tool-filter", value=GH)
    wait_for_points(dash_duo, "tool-borrow-chart", history_points(state, GH))
    users_js = "return [...document.querySelectorAll('#checkouts-table .ag-cell[col-id=user]')].map(c => c.textContent)"
    until(lambda: sorted(dash_duo.driver.execute_script(users_js)) == ["bob", "dee", "gus", "hal"], timeout=5)

    dash_duo.select_dcc_dropdown("#tool-filter", value="All tools")
    until(lambda: dash_duo.find_element("#overview-section").is_displayed(), timeout=10)
    # The pool bar: GreenHills' two reserved of 15 are a segment of their own, the other tool's bar has none.
    widths = until(lambda: dash_duo.driver.execute_script(RESERVED_WIDTHS_JS), timeout=10)
    assert widths[GH] > 10 and widths[legend_name(VECTOR)] == 0
    legend = [e.text for e in dash_duo.find_elements("#utilization-chart .legendtext")]
    assert legend == ["In commit", "Overage", "Reserved", "Available"]
    assert dash_duo.get_logs() == []


def test_a_name_made_of_markup_shows_as_text_in_table_and_tooltips(dash_duo, make_app):
    app = make_app()
    state = get_state(app)
    now = time.time()
    minute = (now // 60 - 1) * 60  # both in the last whole minute, so one bar holds both users
    state.pool.borrow(GH, XSS, at=minute + 10)
    state.pool.borrow(GH, "ann", at=minute + 20)
    dash_duo.start_server(app)

    until(
        lambda: (
            dash_duo.driver.execute_script(
                "return [...document.querySelectorAll('#events-table td')].filter(td => td.textContent === arguments[0]).length",
                XSS,
            )
            == 1
        ),
        timeout=10,
    )
    dash_duo.select_dcc_dropdown("#tool-filter", value=GH)
    until(lambda: (figure(dash_duo, "tool-borrow-chart") or {}).get("traces"), timeout=10)
    # The open checkouts list both users, as typed.
    users_js = "return [...document.querySelectorAll('#checkouts-table .ag-cell[col-id=user]')].map(c => c.textContent)"
    until(lambda: sorted(dash_duo.driver.execute_script(users_js)) == sorted([XSS, "ann"]), timeout=10)

    # Hover the minute's bar as a person would and read the tooltip Plotly draws.
    until(lambda: XSS in hover_text(dash_duo, "tool-borrow-chart"), timeout=10)
    hover = hover_text(dash_duo, "tool-borrow-chart")
    assert "2 borrows" in hover and f"{XSS}, ann" in hover
    assert dash_duo.driver.execute_script("return document.querySelectorAll('img').length") == 0
    assert dash_duo.get_logs() == []
