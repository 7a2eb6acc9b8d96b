"""The Capacity view's Chargeback section in headless Chromium against a real server with a --user-groups file and two
days of generated history: the grid of groups as GET /analytics/chargeback has it, and the group picker."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import requests
from dash.testing.wait import until

from dash_app.figures.text import plotly_text
from dash_app.layouts.parts import money
from dash_app.testing.demo_history import main as demo_history
from tests.browser_helpers import XSS
from tests.test_estate_browser import grid_rows, location_search

# Twenty users (user0000 to user0019) in the generated history: three groups, two cost centres, three users in none.
GROUPS = {"Powertrain": range(0, 6), XSS: range(6, 12), "Chassis & Body": range(12, 17)}
CENTRES = {"Powertrain": "CC-1", XSS: "CC-2", "Chassis & Body": "CC-1"}

# Every drawn row of a grid (the pinned totals row included), as {row id: {column: text}}, the pinned columns' cells
# and the others' put together (the grid writes the row id into the attribute HTML-escaped).
CELLS_JS = """
const out = {};
document.querySelectorAll('#' + arguments[0] + ' .ag-row').forEach(row => {
  const id = row.getAttribute('row-id');
  const cells = out[id] = out[id] || {};
  row.querySelectorAll('.ag-cell').forEach(c => { cells[c.getAttribute('col-id')] = c.textContent; });
});
return out;
"""
PINNED_JS = """
const out = {};
document.querySelectorAll('#' + arguments[0] + ' .ag-floating-bottom .ag-cell').forEach(c => {
  out[c.getAttribute('col-id')] = c.textContent;
});
return out;
"""


def groups_file(tmp_path):
    path = tmp_path / "groups.csv"
    lines = ["user,group,cost_centre"]
    for group, users in GROUPS.items():
        lines += [f'user{n:04d},"{group}",{CENTRES[group]}' for n in users]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def period_of(dash_duo):
    """The period the view shows, as its line above the grid says: (from, to) in ISO."""
    text = dash_duo.find_element("#capacity-period-text").text
    return re.match(r"(\S+Z) to (\S+Z)", text).groups()


def cells(dash_duo, grid_id):
    return dash_duo.driver.execute_script(CELLS_JS, grid_id)


BARS_JS = """
const gd = document.querySelector('#chargeback-chart .js-plotly-plot');
return (gd && gd.data || []).filter(t => t.type === 'bar').map(t => [Array.from(t.x), Array.from(t.y)]);
"""


def stacked(dash_duo):
    """{group: the sum of its bar's parts} as the chart has them."""
    sums = {}
    for x, y in dash_duo.driver.execute_script(BARS_JS):
        for group, cost in zip(x, y, strict=True):
            sums[group] = sums.get(group, 0) + cost
    return sums


def drawn(row):
    """A chargeback row's figures as the grid draws them."""
    return {
        "total": money(row["total"], "EUR"),
        "commit_share": money(row["commit_share"], "EUR"),
        "overage_cost": money(row["overage_cost"], "EUR"),
        "license_hours": f"{row['license_hours']:,.1f} h",
    }


def test_the_chargeback_grid_is_the_apis_and_a_picked_group_filters_the_view(dash_duo, make_app, tmp_path):
    db = str(tmp_path / "history.db")
    assert demo_history(["--days", "2", "--db", db]) == 0
    app = make_app(db=db, user_groups=groups_file(tmp_path), currency="EUR")
    dash_duo.driver.set_window_size(1280, 900)
    dash_duo.start_server(app)
    base = dash_duo.server_url
    # Yesterday, a whole day of the history: a period that does not move while the test runs.
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    view = f"{base}/capacity?from={day}&to={day}"

    # A name no group has is said so and filters nothing.
    dash_duo.wait_for_page(url=f"{view}&group=Nobody")
    dash_duo.wait_for_text_to_equal("#capacity-group-message", "No group named Nobody; showing everyone.")

    # The grid's group rows and its totals row are GET /analytics/chargeback's for the period the view shows.
    until(lambda: len(grid_rows(dash_duo, "chargeback-table") or []) == 4, timeout=20)
    start, end = period_of(dash_duo)
    answer = requests.get(f"{base}/analytics/chargeback", params={"from": start, "to": end}, timeout=10).json()
    assert sorted(g["group"] for g in answer["groups"]) == sorted([*GROUPS, "(unassigned)"])
    # By the name as drawn: a name is text, so the XSS group's reads as typed.
    shown = {row["group"]: row for row in cells(dash_duo, "chargeback-table").values()}
    for group in answer["groups"]:
        row = shown[group["group"]]
        assert {key: row[key] for key in ("total", "commit_share", "overage_cost", "license_hours")} == drawn(group)
    totals = answer["totals"]
    pinned = dash_duo.driver.execute_script(PINNED_JS, "chargeback-table")
    assert pinned["group"] == "All groups (4)"
    assert (pinned["total"], pinned["commit_share"], pinned["overage_cost"]) == (
        money(totals["total"], "EUR"),
        money(totals["commit_cost"], "EUR"),
        money(totals["overage_cost"], "EUR"),
    )
    assert dash_duo.find_elements("#chargeback-table img") == []
    # The bar holds what the grid does: each group's parts add up to its total (names given to Plotly escaped, so
    # that it shows them as typed).
    expected = {plotly_text(group["group"]): group["total"] for group in answer["groups"]}
    until(lambda: stacked(dash_duo).keys() == expected.keys(), timeout=10)
    assert all(abs(stacked(dash_duo)[name] - total) < 0.01 for name, total in expected.items())

    # A click on a group's row picks it: the capacity grid then holds its users' figures, and the address says so.
    everyone = requests.get(f"{base}/analytics/capacity", params={"from": start, "to": end}, timeout=10).json()
    all_tools = {row["tool"]: row["borrows"] for row in everyone["tools"]}
    assert {row["tool"]: row["borrows"] for row in grid_rows(dash_duo, "capacity-table")} == all_tools  # Nobody: all
    cell = dash_duo.find_element('#chargeback-table .ag-row[row-id="Powertrain"] [col-id="group"]')
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", cell)
    cell.click()
    until(lambda: "group=Powertrain" in location_search(dash_duo), timeout=10)
    assert dash_duo.find_element("#capacity-group-message").text == ""
    mine = requests.get(f"{base}/analytics/capacity", params={"from": start, "to": end, "group": "Powertrain"}, timeout=10).json()
    expected = {row["tool"]: row["borrows"] for row in mine["tools"]}
    assert sum(expected.values()) < sum(all_tools.values())
    until(lambda: {r["tool"]: r["borrows"] for r in grid_rows(dash_duo, "capacity-table")} == expected, timeout=10)
    # The line above the grid: the group's overage and its share of the commit, as the chargeback has them.
    (powertrain,) = [group for group in answer["groups"] if group["group"] == "Powertrain"]
    line = dash_duo.find_element("#capacity-period-text").text
    assert f"Powertrain's users only · overage {money(powertrain['overage_cost'], 'EUR')}, commit share " in line
    assert f"commit share {money(powertrain['commit_share'], 'EUR')} of {money(totals['commit_cost'], 'EUR')}" in line
    # Its row is the one selected in the chargeback grid.
    selected = "return [...document.querySelectorAll('#chargeback-table .ag-center-cols-container .ag-row-selected')]"
    until(lambda: dash_duo.driver.execute_script(selected + ".map(r => r.getAttribute('row-id'))") == ["Powertrain"], 5)

    # The address opens a group's view, whatever its name; clearing the picker shows everyone again.
    dash_duo.wait_for_page(url=f"{view}&group={quote_plus(XSS)}")
    dash_duo.wait_for_text_to_equal("#capacity-group .dash-dropdown-value", XSS)
    theirs = requests.get(f"{base}/analytics/capacity", params={"from": start, "to": end, "group": XSS}, timeout=10).json()
    expected = {row["tool"]: row["borrows"] for row in theirs["tools"]}
    until(lambda: {r["tool"]: r["borrows"] for r in grid_rows(dash_duo, "capacity-table")} == expected, timeout=10)
    dash_duo.find_element("#capacity-group .dash-dropdown-clear").click()
    until(lambda: "group=" not in location_search(dash_duo), timeout=10)
    until(lambda: {r["tool"]: r["borrows"] for r in grid_rows(dash_duo, "capacity-table")} == all_tools, timeout=10)
    assert dash_duo.get_logs() == []
