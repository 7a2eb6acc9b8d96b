"""GET /sources for a person: a browser gets a page of the sources and their features, every other client JSON.

One real server polls the fake lmutil, whose answer names a feature with markup: the page shows it as text.
"""

import pytest
import requests
from selenium.webdriver.common.by import By

from dash_app.testing import ServerProcess
from tests.test_server_polling import FAKE_LMUTIL, wait_for
from tests.test_status_parsers import FIXTURES

SERVER = "27000@lic01"
MARKUP = "<i>MESHER</i>"  # a feature name a server could print: no spaces, so lmstat reads it whole
# What Chromium sends for a page it navigates to.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources-page")
    answer = (FIXTURES / "lmstat" / "lic01_one_vendor.txt").read_text().replace("MESHER", MARKUP)
    (folder / f"{SERVER}.txt").write_text(answer)
    env = {
        "DASH_APP_LMSTAT": SERVER,
        "DASH_APP_LMUTIL": str(FAKE_LMUTIL),
        "DASH_APP_POLL_SECONDS": "30",
        "FAKE_LMUTIL_DIR": str(folder),
    }
    started = ServerProcess(env, folder)
    polled = f"{started.url}/sources?format=json"
    wait_for(
        lambda: any(s["kind"] == "lmstat" and s["last_ok"] for s in requests.get(polled, timeout=5).json()["sources"]), "a poll"
    )
    yield started
    started.stop()


def test_a_browser_gets_a_page_and_every_other_client_json(server):
    page = requests.get(server.url + "/sources", headers={"Accept": BROWSER_ACCEPT}, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Accept" in page.headers["Vary"]
    assert "&lt;i&gt;MESHER&lt;/i&gt;" in page.text and MARKUP not in page.text  # a name is text, never markup
    assert "<script" not in page.text

    as_json = {}
    for name, headers, query in (
        ("no Accept", {}, ""),
        ("any", {"Accept": "*/*"}, ""),
        ("JSON", {"Accept": "application/json"}, ""),
        ("a browser asking for JSON", {"Accept": BROWSER_ACCEPT}, "?format=json"),
    ):
        response = requests.get(server.url + "/sources" + query, headers=headers, timeout=5)
        assert response.headers["Content-Type"] == "application/json", name
        as_json[name] = response.json()["sources"]
    polled = [s for s in as_json["no Accept"] if s["kind"] == "lmstat"]
    assert [s["name"] for s in polled] == [SERVER] and MARKUP in polled[0]["features"]

    bad = requests.get(server.url + "/sources?format=xml", headers={"Accept": BROWSER_ACCEPT}, timeout=5)
    assert bad.status_code == 400 and bad.json() == {"error": "invalid_query", "detail": "format: must be json or html"}


def test_the_page_reads_as_a_person_sees_it(server, dash_duo):
    driver = dash_duo.driver
    driver.get(server.url + "/sources")
    summary = wait_for(lambda: driver.find_elements(By.ID, "sources-summary"), "the page")[0].text
    # The REST API, and the polled server: degraded, for lic01 reports an error of one feature (LEGACY_IO).
    assert summary == "2 sources: 1 degraded, 1 up"
    headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "section.source h2")]
    assert headings[0] == "lmstat 27000@lic01 degraded", headings  # what needs a look comes first
    table = driver.find_element(By.CSS_SELECTOR, "table.source-features")
    columns = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert columns[:7] == ["Feature", "Tool", "Vendor", "Issued", "In use", "Reserved", "Queued"]
    rows = {r.find_elements(By.TAG_NAME, "td")[0].text: r for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert MARKUP in rows  # shown as the text it is
    cells = [td.text for td in rows[MARKUP].find_elements(By.TAG_NAME, "td")]
    assert cells[3:5] == ["5", "2"]  # issued, in use: as the server counts them
    assert dash_duo.get_logs() == []
