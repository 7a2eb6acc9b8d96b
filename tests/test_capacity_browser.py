"""The Capacity view in headless Chromium: a link opens a tool's figures, and the page shows the best commit."""

import time
from urllib.parse import quote

from dash.testing.wait import until

from dash_app.state import get_state
from tests.test_estate_browser import grid_rows, trace_style

GH = "GreenHills Multi IDE"
HOUR = 3600


def test_a_link_opens_the_capacity_of_a_tool_with_its_best_commit(dash_duo, make_app, tmp_path):
    app = make_app(db=str(tmp_path / "capacity.db"), currency="EUR")
    state = get_state(app)
    start = (time.time() // HOUR - 30) * HOUR
    held = [state.pool.borrow(GH, f"user{n}", at=start + n) for n in range(12)]
    for borrow in held:
        state.pool.return_license(borrow.id, at=start + HOUR)
    state.store.flush()
    dash_duo.start_server(app)

    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/capacity?tool={quote(GH)}&window=604800")
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
    for graph_id in ("capacity-duration", "capacity-cost", "capacity-heatmap", "capacity-users"):
        until(lambda graph_id=graph_id: (trace_style(dash_duo, graph_id) or {}).get("colors"), timeout=10)

    # Another period rewrites the address in place; the live view is one click away.
    dash_duo.select_dcc_dropdown("#capacity-period", value="Last 30 days")
    until(lambda: "window=2592000" in dash_duo.driver.execute_script("return location.search"), timeout=10)
    dash_duo.find_element("#nav-live").click()
    until(lambda: dash_duo.find_element("#live-page").is_displayed(), timeout=10)
    assert dash_duo.get_logs() == []
