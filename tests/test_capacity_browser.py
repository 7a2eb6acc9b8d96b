"""The Capacity view in headless Chromium: a tool's figures and best commit, the estate's answers, a user's page, and
an estate of 200 tools."""

import re
import time
from urllib.parse import quote, quote_plus

from dash.testing.wait import until
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from dash_app.analytics.service import parse_time
from dash_app.layouts.estate import item_text
from dash_app.state import get_state
from dash_app.testing.traffic import estate_inventory
from dash_app.vendor import LATE_PLOTLY_MS, PAGE_CHUNKS
from tests.browser_helpers import VECTOR, XSS
from tests.test_estate_browser import grid_rows, tools_file, trace_style

GH = "GreenHills Multi IDE"
HOUR = 3600
FIRST_ROW_JS = """
(function watch() {
  if (document.querySelector('#capacity-table .ag-row')) { window.__firstRow = performance.now(); }
  else { requestAnimationFrame(watch); }
})();
"""
PLOTLY_AFTER_ROWS_JS = """
const plotly = performance.getEntriesByType('resource').filter(e => e.name.includes('plotly-cartesian'));
return [plotly.map(e => e.startTime), window.__firstRow === undefined ? null : window.__firstRow];
"""
CHUNKS_JS = "return performance.getEntriesByType('resource').map(e => e.name).filter(name => name.includes('/async-'))"


def test_a_link_opens_the_capacity_of_a_tool_with_its_best_commit(dash_duo, make_app, tmp_path):
    app = make_app(db=str(tmp_path / "capacity.db"), currency="EUR")
    state = get_state(app)
    start = (time.time() // HOUR - 30) * HOUR
    held = [state.pool.borrow(GH, f"user{n}", at=start + n) for n in range(12)]
    for borrow in held:
        state.pool.return_license(borrow.id, at=start + HOUR)
    held_now = time.time()
    state.pool.borrow(VECTOR, "user0", at=held_now)  # held now, on the user's page
    state.store.flush()
    dash_duo.start_server(app)

    # When the grid first shows a row, in the page's clock (set before the page's own scripts run).
    marker = dash_duo.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FIRST_ROW_JS})
    try:
        dash_duo.wait_for_page(url=f"{dash_duo.server_url}/capacity?tool={quote(GH)}&window=604800")
    finally:
        dash_duo.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", marker)
    until(lambda: dash_duo.find_element("#capacity-section").is_displayed(), timeout=10)
    assert not dash_duo.find_element("#live-page").is_displayed()
    until(lambda: any(r["tool"] == GH for r in grid_rows(dash_duo, "capacity-table") or []), timeout=15)
    (row,) = [r for r in grid_rows(dash_duo, "capacity-table") if r["tool"] == GH]
    assert (row["peak_in_use"], row["borrows"], row["overage_borrows"], row["commit"]) == (12, 12, 2, 10)
    # A week of one committed license costs 8,000 / 10 × 7 / 30 = 186.67; each overage borrow 800. Session n began
    # with n held, so commit c pays 800 for 12 - c of them: 12 is cheapest, 2,240.00 instead of 3,466.67.
    expected = "Best commit: 12 (now 10): 2,240 EUR instead of 3,466.67 EUR over this period, saving 1,226.67 EUR."
    until(lambda: dash_duo.find_element("#capacity-advice").text == expected, timeout=10)
    assert row["best_commit"] == 12
    # Money as people read it: thousands separated, with the currency; the tool's row is the selected one.
    cell = f'#capacity-table .ag-row[row-id="{GH}"] [col-id="overage_cost"]'
    assert dash_duo.find_element(cell).text == "1,600 EUR"
    until(lambda: dash_duo.driver.execute_script(SELECTED_JS) == [[GH, True]], timeout=5)
    for graph_id in ("capacity-duration", "capacity-cost", "capacity-heatmap", "capacity-users"):
        until(lambda graph_id=graph_id: (trace_style(dash_duo, graph_id) or {}).get("colors"), timeout=10)
    # plotly.js was asked for once, after the grid showed its rows (the page loads it then: vendor.late_plotly_script;
    # on a machine so busy that the rows took longer than LATE_PLOTLY_MS, at that time).
    [plotly_start], first_row = dash_duo.driver.execute_script(PLOTLY_AFTER_ROWS_JS)
    assert first_row is not None and plotly_start >= min(first_row, LATE_PLOTLY_MS), (plotly_start, first_row)

    # The totals row and the line above the grid: the estate's sums over the period, money as above.
    tools = len(grid_rows(dash_duo, "capacity-table"))
    # A window ends at the start of the minute it was asked in: the borrow made just now is in it once that minute
    # has turned (the period line and the grid come from one answer).
    period_end = parse_time("to", re.search(r" to (\S+Z)", dash_duo.find_element("#capacity-period-text").text).group(1))
    assert dash_duo.driver.execute_script(PINNED_JS) == {
        "tool": f"All tools ({tools})",
        "borrows": str(12 + (held_now < period_end)),
        "overage_borrows": "2",
        "overage_cost": "1,600 EUR",
        "denials": "0",
        "true_denials": "0",
    }
    period = dash_duo.find_element("#capacity-period-text").text
    assert "overage 1,600 EUR, commit " in period

    # What to buy and drop, as the analytics say for the period shown, biggest effect first; a click opens the tool.
    first, last = (parse_time("period", text) for text in period.split(" · ")[0].split(" to "))
    answer = state.analytics.recommendations(first, last)
    changes = [item for item in answer["tools"] if item["action"] in ("buy", "drop")]
    assert changes and changes[-1]["tool"] == GH  # GH had 12 of 15 in use: its drop saves least
    items = "#capacity-recommendations > ol.rec-list > li > a"
    until(lambda: [b.text for b in dash_duo.find_elements(items)] == [item_text(i, "EUR") for i in changes], timeout=10)
    keep = len(answer["tools"]) - len(changes)
    folded = [summary.text for summary in dash_duo.find_elements("#capacity-recommendations details summary")]
    assert folded == ([f"Keep as they are: {keep} tools"] if keep else [])
    dash_duo.driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", dash_duo.find_element(items)
    )
    dash_duo.find_element(items).click()
    dash_duo.wait_for_text_to_equal("#capacity-tool-title", changes[0]["tool"])
    until(lambda: dash_duo.driver.execute_script(CARD_IN_VIEW_JS), timeout=5)

    # The estate's hour of week: both numbers in the hover.
    week = dash_duo.driver.execute_script(WEEK_JS)
    assert week["type"] == "heatmap" and "of tools at their total" in week["hover"] and week["peak"] > 0

    # The top users across tools, each with their tools; a name opens the user's page.
    rows = "#capacity-top-users tbody tr"
    until(lambda: len(dash_duo.find_elements(rows)) == 12, timeout=10)
    top = dash_duo.find_elements(rows)[0]
    assert top.text.startswith("user0 1.0 GreenHills Multi IDE (1.0 h)")
    link = top.find_element("css selector", "a")
    assert link.get_attribute("href") == f"{dash_duo.server_url}/capacity?user=user0"
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", link)
    link.click()

    # One user's page: what they hold now, and their license-hours, denials and overage per tool.
    dash_duo.wait_for_text_to_equal("#capacity-user-title", "user0")
    assert not dash_duo.find_element("#capacity-main").is_displayed()
    until(lambda: VECTOR in dash_duo.find_element(".user-held").text, timeout=10)
    tools_text = dash_duo.find_element("#capacity-user-body table").text
    assert "GreenHills Multi IDE 1.0 0 (0) 0" in tools_text
    until(lambda: "user=user0" in dash_duo.driver.execute_script("return location.search"), timeout=5)

    # On a phone, the estate's lists and the user's page scroll nothing sideways.
    dash_duo.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    for view in ("?user=user0", ""):
        dash_duo.wait_for_page(url=f"{dash_duo.server_url}/capacity{view}")
        until(lambda: dash_duo.find_elements("#capacity-top-users tbody tr, #capacity-user-body table"), timeout=15)
        assert dash_duo.driver.execute_script("return document.documentElement.scrollWidth") <= 390, view
    dash_duo.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Another period rewrites the address in place; the live view is one click away.
    dash_duo.select_dcc_dropdown("#capacity-period", value="Last 30 days")
    until(lambda: "window=2592000" in dash_duo.driver.execute_script("return location.search"), timeout=10)
    dash_duo.find_element("#nav-live").click()
    until(lambda: dash_duo.find_element("#live-page").is_displayed(), timeout=10)
    assert dash_duo.get_logs() == []


# The pinned totals row's cells as drawn, by column.
PINNED_JS = """
const cells = document.querySelectorAll('#capacity-table .ag-floating-bottom .ag-cell');
const out = {};
cells.forEach(c => { if (c.textContent) out[c.getAttribute('col-id')] = c.textContent; });
return out;
"""
WEEK_JS = """
const gd = document.querySelector('#capacity-estate-week .js-plotly-plot');
const t = gd.data[0];
return {type: t.type, hover: t.hovertemplate, peak: Math.max(...t.z.flat().filter(v => v !== null))};
"""


# Whether each rendered header shows its whole name (nothing cut or hidden, no word broken across lines), with its
# title (the tooltip) naming it.
HEADERS_JS = """
const broken = text => {
  const node = text.firstChild;
  if (!node) return false;
  let at = 0;
  return text.textContent.split(' ').some(word => {
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + word.length);
    at += word.length + 1;
    return range.getClientRects().length > 1;
  });
};
return [...document.querySelectorAll('#capacity-table .ag-header-row-column .ag-header-cell')].map(cell => {
  const text = cell.querySelector('.ag-header-cell-text');
  return {
    name: text ? text.textContent : '',
    cut: !text || text.scrollWidth > text.clientWidth + 1 || text.scrollHeight > text.clientHeight + 1 || broken(text),
    title: cell.getAttribute('title') || '',
  };
});
"""
# The selected rows' tools, and whether each is in the grid's visible body (the last row's lower edge may be under
# the grid's horizontal scroll bar: its upper half is).
SELECTED_JS = """
const body = document.querySelector('#capacity-table .ag-body-viewport').getBoundingClientRect();
return [...document.querySelectorAll('#capacity-table .ag-center-cols-container .ag-row-selected')].map(row => {
  const r = row.getBoundingClientRect();
  return [row.getAttribute('row-id'), r.top >= body.top - 1 && r.top + r.height / 2 <= body.bottom];
});
"""
# Whether a row (by id) is drawn inside the grid's visible body.
ROW_SHOWN_JS = """
const body = document.querySelector('#capacity-table .ag-body-viewport').getBoundingClientRect();
const row = document.querySelector(`#capacity-table .ag-center-cols-container .ag-row[row-id="${CSS.escape(arguments[0])}"]`);
if (!row) return false;
const r = row.getBoundingClientRect();
return r.top >= body.top - 1 && r.bottom <= body.bottom + 1;
"""
GRID_BELOW_HEADER_JS = """
const top = document.getElementById('capacity-table').getBoundingClientRect().top;
window.scrollBy({top: top - document.querySelector('.app-header').getBoundingClientRect().bottom - 8, behavior: 'instant'});
"""
CARD_IN_VIEW_JS = """
const r = document.getElementById('capacity-tool-card').getBoundingClientRect();
const header = document.querySelector('.app-header').getBoundingClientRect().bottom;
return r.top >= header - 1 && r.bottom <= window.innerHeight + 1;
"""
# The tool picker's options drawn inside its open list: their labels, top to bottom.
PICKER_JS = """
const list = document.querySelector('.dash-dropdown-options');
if (!list) return null;
const box = list.closest('.dash-dropdown-content').getBoundingClientRect();
return [...list.querySelectorAll('[role=option]')]
  .filter(o => { const r = o.getBoundingClientRect(); return r.top >= box.top - 1 && r.bottom <= box.bottom + 1; })
  .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
  .map(o => o.textContent);
"""


def test_an_estate_of_200_tools_in_the_capacity_view(dash_duo, make_app, tmp_path):
    inventory = estate_inventory(200)
    names = sorted((t["tool"] for t in inventory), key=str.casefold)
    app = make_app(tools_file=tools_file(tmp_path, inventory), currency="EUR")
    dash_duo.driver.set_window_size(1280, 600)
    dash_duo.start_server(app)

    # ?tool= opens the tool: its row is selected and scrolled into the grid's view (the last of 200: far below).
    last = max(names)  # no tool is pressed: the grid's order is by name, as Python sorts them
    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/capacity?tool={quote(last)}")
    until(lambda: len(grid_rows(dash_duo, "capacity-table") or []) == 200, timeout=20)
    assert grid_rows(dash_duo, "capacity-table")[-1]["tool"] == last
    until(lambda: dash_duo.driver.execute_script(SELECTED_JS) == [[last, True]], timeout=10)
    dash_duo.wait_for_text_to_equal("#capacity-tool-title", last)
    # The components' chunks came from the page's links, installed before a component asked: none asked by its fixed
    # URL (which the server would have redirected).
    chunks = dash_duo.driver.execute_script(CHUNKS_JS)
    assert len(chunks) == len(PAGE_CHUNKS) and all(re.search(r"\.v[\w-]+m\d+\.js$", name) for name in chunks), chunks

    # At 1280 px every header shows its whole name, and its tooltip gives the name and its definition.
    headers = dash_duo.driver.execute_script(HEADERS_JS)
    assert len(headers) == 20 and not [h["name"] for h in headers if h["cut"]]
    assert all(h["title"].startswith(h["name"] + ": ") for h in headers), headers
    assert "Overage cost (EUR)" in [h["name"] for h in headers]

    # A row click opens the tool without sending the rows again, and brings its card into view.
    dash_duo.driver.execute_script("dash_ag_grid.getApi('capacity-table').ensureIndexVisible(0, 'top')")
    first = grid_rows(dash_duo, "capacity-table")[0]["tool"]
    cell = f"#capacity-table .ag-center-cols-container .ag-row[row-id='{first}'] .ag-cell"
    until(lambda: dash_duo.driver.execute_script(ROW_SHOWN_JS, first), timeout=5)
    # The grid just below the page's header, as a person scrolls to it: the card below it is out of view.
    dash_duo.driver.execute_script(GRID_BELOW_HEADER_JS)
    assert not dash_duo.driver.execute_script(CARD_IN_VIEW_JS)
    dash_duo.find_element(cell).click()
    dash_duo.wait_for_text_to_equal("#capacity-tool-title", first)
    until(lambda: dash_duo.driver.execute_script(CARD_IN_VIEW_JS), timeout=5)
    until(lambda: dash_duo.driver.execute_script(SELECTED_JS) == [[first, True]], timeout=5)
    until(lambda: f"tool={quote_plus(first)}" in dash_duo.driver.execute_script("return location.search"), timeout=5)

    # The picker lists the tools by name, a screenful at a time, and typing right after opening it filters them.
    dash_duo.driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'})")
    dash_duo.find_element("#capacity-tool").click()
    until(lambda: (dash_duo.driver.execute_script(PICKER_JS) or [])[:1] == names[:1], timeout=5)
    shown = dash_duo.driver.execute_script(PICKER_JS)
    assert len(shown) >= 6 and shown == names[: len(shown)]  # 3½ before; as many as this short screen holds
    ActionChains(dash_duo.driver).send_keys("feature 07").perform()
    wanted = [name for name in names if "feature 07" in name]

    def filtered():
        shown = dash_duo.driver.execute_script(PICKER_JS) or []
        return shown and shown == wanted[: len(shown)]

    until(filtered, timeout=5)
    ActionChains(dash_duo.driver).send_keys(Keys.ESCAPE).perform()

    # A tool= that names no tool says so, in words (a name is text, never HTML), and opens none.
    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/capacity?tool={quote(XSS)}")
    dash_duo.wait_for_text_to_equal("#capacity-tool-message", f"No tool named {XSS} in this period.")
    assert dash_duo.find_elements("#capacity-tool-message img") == []
    assert dash_duo.find_element("#capacity-tool-title").text == ""
    assert dash_duo.get_logs() == []
