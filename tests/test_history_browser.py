"""Long windows from the stored history, and the download buttons, in headless Chromium."""

import csv
import json
import time
from pathlib import Path

from dash.testing.wait import until

from dash_app.state import get_state
from tests.browser_helpers import GH, VECTOR, figure, hover_text, span

DAY = 86400


def feed_days(state):
    """Borrows (and returns) of two tools over the last five days, most older than the buffer keeps."""
    now = time.time()
    borrows = [(5, GH, "ann"), (4.5, GH, "bob"), (3, VECTOR, "cy"), (3, GH, "dee"), (1.5, GH, "ann"), (0.01, GH, "eve")]
    for days_ago, tool, user in borrows:
        borrow = state.pool.borrow(tool, user, at=now - days_ago * DAY)
        state.pool.return_license(borrow.id, at=now - days_ago * DAY + 600)
    state.store.run_tasks_now()  # fold the events into the minute and hour aggregates now, not in 5 s


def test_seven_days_come_from_the_history_with_users_in_the_hover(dash_duo, make_app, tmp_path):
    app = make_app(db=str(tmp_path / "history.db"))
    state = get_state(app)
    feed_days(state)
    expected_size, series = state.history.series(7 * DAY)
    assert expected_size == 3600
    dash_duo.start_server(app)

    dash_duo.select_dcc_dropdown("#tool-filter", value=GH)
    dash_duo.select_dcc_dropdown("#time-range", value="Last 7 days")
    until(lambda: abs(span(figure(dash_duo, "tool-borrow-chart")) - 7 * DAY * 1000) < 60_000, timeout=10)
    drawn = figure(dash_duo, "tool-borrow-chart")
    assert sum(drawn["traces"][0]["y"]) == 5 == sum(p["count"] for p in series[GH])
    assert len(drawn["traces"][0]["x"]) == len([p for p in series[GH] if p["count"]])
    y_title = dash_duo.driver.execute_script("return document.querySelector('#tool-borrow-chart .ytitle').textContent")
    assert y_title == "borrows / h"
    until(lambda: "ann" in hover_text(dash_duo, "tool-borrow-chart"), timeout=10)

    # The 6-hour window is the buffer's: only the newest borrow is in it.
    dash_duo.select_dcc_dropdown("#time-range", value="Last 6 hours")
    until(lambda: sum(figure(dash_duo, "tool-borrow-chart")["traces"][0]["y"]) == 1, timeout=10)
    assert dash_duo.get_logs() == []


def test_download_buttons_save_the_selected_tool_and_window(dash_duo, make_app, tmp_path):
    app = make_app(db=str(tmp_path / "download.db"))
    state = get_state(app)
    feed_days(state)
    dash_duo.start_server(app)
    downloads = Path(dash_duo.download_path)

    dash_duo.select_dcc_dropdown("#tool-filter", value=GH)
    dash_duo.select_dcc_dropdown("#time-range", value="Last 7 days")
    dash_duo.find_element("#download-csv").click()
    until(lambda: list(downloads.glob("*.csv")), timeout=10)
    saved = next(downloads.glob("*.csv"))
    assert saved.name == "licenses-buckets-GreenHills_Multi_IDE-604800s.csv"
    rows = list(csv.DictReader(saved.open(encoding="utf-8")))
    assert {r["tool"] for r in rows} == {GH}
    assert sum(int(r["count"]) for r in rows) == 5
    assert sorted({u for r in rows for u in json.loads(r["users"])}) == ["ann", "bob", "dee", "eve"]

    dash_duo.select_dcc_dropdown("#tool-filter", value="All tools")
    dash_duo.find_element("#download-json").click()
    until(lambda: list(downloads.glob("*.json")), timeout=10)
    rows = json.loads(next(downloads.glob("*.json")).read_text(encoding="utf-8"))
    assert {r["tool"] for r in rows} == {GH, VECTOR}
    assert sum(r["count"] for r in rows) == 6
    assert dash_duo.get_logs() == []


def test_a_spike_to_the_total_inside_a_two_hour_bin_shows_at_30_days(dash_duo, make_app, tmp_path):
    app = make_app(db=str(tmp_path / "spike.db"))
    state = get_state(app)
    spike = time.time() - 3 * DAY
    # Three licenses held for hours, and for 30 s all 15 of GreenHills' licenses: the spike decides a purchase.
    for n in range(3):
        state.pool.borrow(GH, f"steady{n}", at=spike - 3600)
    burst = [state.pool.borrow(GH, f"burst{n}", at=spike + n) for n in range(12)]
    for borrow in burst:
        state.pool.return_license(borrow.id, at=spike + 30)
    state.store.run_tasks_now()
    dash_duo.start_server(app)

    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/?tool={GH.replace(' ', '+')}&window=2592000")
    until(lambda: (figure(dash_duo, "tool-inuse-chart") or {}).get("traces"), timeout=10)
    peaks = figure(dash_duo, "tool-inuse-chart")["traces"][0]["y"]
    # 2-hour bins: the one holding the spike shows all 15, the others the 3 held throughout.
    assert max(peaks) == 15 and sorted(set(peaks))[-2:] == [3, 15]
    y_title = dash_duo.driver.execute_script("return document.querySelector('#tool-inuse-chart .ytitle').textContent")
    assert y_title == "peak in use / 2 h"
    # The cards give rates per day at 30 days: 15 borrows of GreenHills are 0.5 a day (per minute they read as 0).
    dash_duo.wait_for_text_to_equal("#borrow-rate", "0.5")
    assert dash_duo.find_element("#borrow-rate-hint").text.startswith("per day · last 30 days")

    # The overview's in-use chart shows the same spike as 100 % of the tool's total.
    dash_duo.select_dcc_dropdown("#tool-filter", value="All tools")
    until(lambda: (figure(dash_duo, "inuse-chart") or {}).get("traces"), timeout=10)
    (greenhills,) = [t for t in figure(dash_duo, "inuse-chart")["traces"] if t["name"] == GH]
    assert max(greenhills["y"]) == 100
    assert dash_duo.get_logs() == []
