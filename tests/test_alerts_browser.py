"""What a person sees in headless Chromium when a license server is down and alerts fire: the red source strip, the
alerts banner and the Alerts panel, and both banners gone once the server answers and the pool has room again."""

import json
from pathlib import Path

from dash.testing.wait import until

from dash_app.services import POLLER
from dash_app.state import get_state

FAKE_LMUTIL = Path(__file__).parent / "fixtures" / "fake_lmutil"
GH = "GreenHills Multi IDE"  # total 15 in the bundled tools file
LIC07 = "27000@lic07"


def shown(dash_duo, selector):
    """The text of the element if the page shows it now, else None (a closed banner is not in the page at all)."""
    found = dash_duo.driver.find_elements("css selector", selector)
    return found[0].text if found and found[0].is_displayed() else None


def test_a_down_server_and_a_full_pool_show_on_the_page_and_go_when_they_end(dash_duo, make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_LMUTIL_DIR", str(tmp_path))  # no output file: lic07 cannot be reached
    rules = tmp_path / "alerts.json"
    rules.write_text(
        json.dumps(
            {
                "rules": [
                    {"name": "full", "kind": "in_use_percent", "tool": GH, "above": 100},
                    {"name": "down", "kind": "source_down"},
                ]
            }
        )
    )
    app = make_app(
        alerts_file=str(rules),
        lmstat_servers=(LIC07,),
        lmutil=str(FAKE_LMUTIL),
        poll_seconds=1,
        stream_interval=0.2,
        refresh_ms=300,
    )
    state = get_state(app)
    held = [state.pool.borrow(GH, f"user{n}") for n in range(15)]
    dash_duo.start_server(app)
    dash_duo.wait_for_page(url=dash_duo.server_url)

    until(lambda: shown(dash_duo, "#source-strip"), timeout=15)
    strip = shown(dash_duo, "#source-strip")
    assert strip.startswith(f"Sources down, their licenses shown as last seen: lmstat {LIC07} down for 0 min")
    assert "Cannot connect to license server system" in strip
    until(lambda: "2 alerts firing" in (shown(dash_duo, "#alerts-banner") or ""), timeout=15)
    banner = shown(dash_duo, "#alerts-banner")
    assert f"{GH}: 15 of 15 licenses in use (100 %), at or above 100 %" in banner
    assert f"lmstat {LIC07} is down" in banner
    panel = dash_duo.find_element("#alerts-list").text
    assert "firing" in panel and "full" in panel and LIC07 in panel
    # The strip's "See /sources" is a link to the sources page.
    link = dash_duo.find_element("#source-strip a")
    assert (link.text, link.get_attribute("pathname")) == ("See /sources", "/sources")

    # On a phone the alerts scroll inside their card: the page is no wider than the screen.
    dash_duo.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    # (Waited for: the emulation takes a moment; a page wider than the screen would widen the layout past 390 px.)
    until(lambda: dash_duo.driver.execute_script("return document.documentElement.scrollWidth") <= 390, timeout=5)
    dash_duo.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # The server answers and one license comes back: both banners close, the panel says "resolved".
    (tmp_path / f"{LIC07}.txt").write_text(
        "lmutil - Copyright (c) 1989-2023 Flexera. All Rights Reserved.\n\n"
        f"License server status: {LIC07}\n\n   lic07: license server UP (MASTER) v11.19.0\n\n"
        "Vendor daemon status (on lic07):\n\n    vector: UP v11.19.0\n\nFeature usage info:\n\n"
        "Users of DaVinciCfg:  (Total of 4 licenses issued;  Total of 0 licenses in use)\n\n"
    )
    assert state.service(POLLER).wait_rounds(2)
    state.pool.return_license(held[0].id)
    until(lambda: shown(dash_duo, "#source-strip") is None, timeout=15)
    until(lambda: shown(dash_duo, "#alerts-banner") is None, timeout=15)
    until(lambda: dash_duo.find_element("#alerts-list").text.count("resolved") == 2, timeout=15)
    assert dash_duo.get_logs() == []
