"""What the browser tests share: the tools they use, their traffic, and reading a figure as Chromium drew it."""

import time

from dash.testing.wait import until
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains

from dash_app.figures.text import bucket_time

GH = "GreenHills Multi IDE"
VECTOR = "Vector - DaVinci Configurator SE"
XSS = "<img src=x onerror=alert(1)>"

# The figure as drawn: traces' points and the x range Plotly computed.
FIGURE_JS = """
const gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!gd || !gd._fullLayout || !gd.data) return null;
const ax = gd._fullLayout.xaxis;
return {
  traces: gd.data.map(t => ({name: t.name, x: t.x ? Array.from(t.x) : [], y: t.y ? Array.from(t.y) : [], visible: t.visible})),
  range: ax && ax.range ? ax.range.map(v => Date.parse(String(v).replace(' ', 'T') + 'Z')) : null,
  annotations: (gd.layout.annotations || []).map(a => a.text),
};
"""


def feed(state):
    """Borrows of two tools over the last 20 minutes, some returned; return the active count.

    No borrow is within a minute of a window's edge (5 or 30 minutes back), so the seconds a test takes
    cannot move one out of its window.
    """
    now = time.time()
    for minutes_ago, tool, user in [
        (20, GH, "ann"),
        (18, GH, "bob"),
        (15, VECTOR, "cy"),
        (12, GH, "dee"),
        (9, VECTOR, "eve"),
        (6, VECTOR, "fay"),
        (3, GH, "gus"),
        (2, GH, "hal"),
        (0.3, VECTOR, "ivy"),
    ]:
        state.pool.borrow(tool, user, at=now - minutes_ago * 60)
    state.pool.return_license(state.pool.active_borrows(user="ann")[0].id, at=now - 10 * 60)
    return len(state.pool.active_borrows())


def span(drawn):
    """Milliseconds between the ends of a drawn figure's x range."""
    return drawn["range"][1] - drawn["range"][0]


def figure(dash_duo, graph_id):
    return dash_duo.driver.execute_script(FIGURE_JS, graph_id)


def tick_labels(dash_duo, graph_id):
    """The y axis labels as drawn."""
    return dash_duo.driver.execute_script(
        "return [...document.querySelectorAll('#' + arguments[0] + ' .ytick text')].map(t => t.textContent)", graph_id
    )


def hover_text(dash_duo, graph_id):
    """Move the mouse off the chart and onto its first bar, then return the tooltip's text as drawn."""
    title = dash_duo.find_element(f"#{graph_id}").find_element("xpath", "./..")
    bar = dash_duo.find_element(f"#{graph_id} .point path")
    ActionChains(dash_duo.driver).move_to_element_with_offset(title, 5, 5).move_to_element(bar).perform()
    return dash_duo.driver.execute_script(
        "const h = document.querySelector('#' + arguments[0] + ' .hoverlayer'); return h ? h.textContent : ''", graph_id
    )


def history_points(state, tool, window=1800):
    """The tool's points as the buffer has them: axis times and counts."""
    buckets = state.buffer.get_tool_history(tool, window)
    return [bucket_time(b["timestamp"]) for b in buckets], [b["count"] for b in buckets]


def table_users(dash_duo):
    """The user column of the events table, top to bottom."""
    return dash_duo.driver.execute_script(
        "return [...document.querySelectorAll('#events-table tbody tr')].map(r => r.children[3].textContent)"
    )


def wait_for_points(dash_duo, graph_id, expected, timeout=10):
    def shown():
        drawn = figure(dash_duo, graph_id)
        return drawn is not None and [(t["x"], t["y"]) for t in drawn["traces"]] == [expected]

    until(shown, timeout=timeout, msg=f"{graph_id} never showed {expected}")


# Whether the element on top at the centre of arguments[0] is that element (or inside it): a click there reaches it.
ON_TOP_JS = """
const r = arguments[0].getBoundingClientRect();
const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
return top !== null && (top === arguments[0] || arguments[0].contains(top));
"""


def click_legend(dash_duo, graph_id, index):
    """Click a legend entry the way a person does: scrolled into the middle of the screen, clear of the header."""
    entry = dash_duo.find_elements(f"#{graph_id} .legend .traces .legendtoggle")[index]
    # Selenium cannot scroll an SVG element into view: the window is made tall enough to show the whole chart.
    top = dash_duo.driver.execute_script("return arguments[0].getBoundingClientRect().bottom + window.scrollY", entry)
    width = dash_duo.driver.get_window_size()["width"]
    dash_duo.driver.set_window_size(width, max(int(top) + 400, 1000))
    dash_duo.driver.execute_script("window.scrollTo(0, 0)")

    def clear_to_click():
        # The resize makes Plotly draw the (responsive) chart again: the entry may move or be drawn anew, so it is
        # clicked once the element on top at its centre is the entry itself.
        try:
            entries = dash_duo.find_elements(f"#{graph_id} .legend .traces .legendtoggle")
            return len(entries) > index and dash_duo.driver.execute_script(ON_TOP_JS, entries[index]) and entries[index]
        except StaleElementReferenceException:
            return False

    until(clear_to_click, timeout=10, msg=f"legend entry {index} of {graph_id} never clear to click").click()
