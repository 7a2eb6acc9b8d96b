"""A server that stops answering, in headless Chromium against a real gunicorn: its worker is stopped (SIGSTOP), so
requests hang rather than fail; the page must say so and fade its figures, then recover by itself after SIGCONT.
"""

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from dash.testing.wait import until

from dash_app.testing import ServerProcess

# What the page shows, read at one moment: the status pill, the banner, the page's class, the faded element's opacity.
SHOWN_JS = """
const pill = document.getElementById('connection-status');
const banner = document.getElementById('stale-banner');
const page = document.getElementById('page');
const faded = document.querySelector(arguments[0]);
const last = document.getElementById('last-answer');
if (!pill || !page || !faded) return null;
return {
  answered: last && last.textContent ? JSON.parse(last.textContent).at : null,
  status: pill.textContent,
  stale: pill.classList.contains('status-stale') && page.classList.contains('page-stale'),
  banner: banner && banner.offsetParent !== null ? banner.textContent : null,
  opacity: parseFloat(getComputedStyle(faded).opacity),
};
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for the module, refreshing at the default interval (1 s)."""
    started = ServerProcess({}, tmp_path_factory.mktemp("liveness"))
    yield started
    started.stop()


def worker_pid(master):
    """Return the pid of gunicorn's one worker: the process whose parent is the master."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we looked
        if int(fields[1]) == master:
            children.append(int(stat.parent.name))
    assert len(children) == 1, children
    return children[0]


def is_stopped(pid):
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def shown(dash_duo, faded):
    return dash_duo.driver.execute_script(SHOWN_JS, faded) or {}


def is_live(page):
    return page.get("status", "").startswith("Live") and not page["stale"] and page["banner"] is None and page["opacity"] == 1


def seconds_old(page):
    """The data's age the status pill shows while stale ("No answer · data 7 s old"), else None."""
    words = page.get("status", "").split()
    return int(words[-3]) if page.get("stale") and words[-2:] == ["s", "old"] else None


def stale_page(dash_duo, faded, older_than=0):
    """The page as shown when it is stale, its data over `older_than` s old and `faded` dimmed (a short fade), else None."""
    page = shown(dash_duo, faded)
    age = seconds_old(page)
    return page if age is not None and age > older_than and page["opacity"] < 0.6 else None


def stop_and_resume(dash_duo, server, faded):
    """Stop the worker until the page shows it stale with `faded` dimmed; resume it and wait until the page is live."""
    # Conditions are read together and waited for: on a busy machine a slow answer may dim the page for a moment.
    until(lambda: is_live(shown(dash_duo, faded)), timeout=30)
    worker = worker_pid(server.process.pid)
    os.kill(worker, signal.SIGSTOP)
    try:
        # With the default 1 s refresh the banner is due 3 s after the last answer; the deadline only bounds a hang.
        first = until(lambda: stale_page(dash_duo, faded), timeout=30)
        # It keeps counting while nothing answers.
        page = until(lambda: stale_page(dash_duo, faded, older_than=seconds_old(first)), timeout=10)
        assert is_stopped(worker), "the page must show the stale state while the server is still stopped"
        assert page["banner"] is not None, page
        assert page["banner"].startswith(f"No answer from the server for {seconds_old(page)} s — "), page
        assert "figures may be out of date" in page["banner"] and page["banner"].endswith("; retrying."), page
        # The data's time is the server's own, in the reader's zone (Tokyo: UTC+9, no summer time).
        assert f"(last data at {time.strftime('%H:%M:%S', time.gmtime(page['answered'] + 9 * 3600))})" in page["banner"], page
    finally:
        with contextlib.suppress(ProcessLookupError):  # gunicorn's master may have replaced a worker stopped too long
            os.kill(worker, signal.SIGCONT)
    until(lambda: is_live(shown(dash_duo, faded)), timeout=30)


@pytest.fixture
def tokyo(dash_duo):
    """The browser in Tokyo's time zone, so the times the page shows differ from the server's UTC."""
    dash_duo.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    return dash_duo


def test_a_hung_server_shows_the_stale_banner_and_the_page_recovers_by_itself(tokyo, server):
    dash_duo = tokyo
    dash_duo.driver.get(server.url)
    stop_and_resume(dash_duo, server, ".metric-card")
    # Both ways happen again: nothing is left over from the first stop.
    stop_and_resume(dash_duo, server, "#overview-section")
    assert dash_duo.get_logs() == []


def test_the_capacity_view_shows_a_hung_server_too(tokyo, server):
    dash_duo = tokyo
    dash_duo.driver.get(server.url + "/capacity")
    until(lambda: dash_duo.find_element("#capacity-section").is_displayed(), timeout=30)
    stop_and_resume(dash_duo, server, "#capacity-section")
    assert dash_duo.get_logs() == []
