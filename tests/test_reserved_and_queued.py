"""Reservations and queues a polled server shows, through a real server polling the fake lmutil: per tool in
/licenses/status and /metrics, summed over servers, kept while a server is down, and dropped when it shows none."""

import json
from pathlib import Path
from urllib.parse import quote

import requests

from tests.test_server_polling import FAKE_LMUTIL, FEATURE, TOOL, after_next_poll, polls_of, wait_for

FIXTURE = Path(__file__).parent / "fixtures" / "lmstat" / "lic05_reservations_and_queue.txt"
LIC01, LIC02 = "27000@lic01", "27001@lic02"
UNLISTED = "TestBench"  # a feature the tools file does not list: its total is what its servers issue


def answer_of(server, reservations=True):
    """Return the fixture as `server` answers it: 3 reserved and 2 queued of DaVinciCfg, 1 queued of TestBench."""
    port, host = server.split("@")
    text = FIXTURE.read_text().replace("lic01/27000", f"{host}/{port}").replace("27000@lic01", server)
    text = text.replace("lic01", host)
    if not reservations:
        lines = [line for line in text.splitlines() if "RESERVATION" not in line]
        text = "\n".join(lines).replace("Total of 5 licenses in use", "Total of 2 licenses in use") + "\n"
    return text


def status_of(server, tool):
    entry = requests.get(server.url + f"/licenses/{quote(tool)}/status", timeout=5).json()
    return {key: entry[key] for key in ("total", "borrowed", "reserved", "queued", "available")}


def test_reserved_and_queued_per_tool_sum_the_servers_and_follow_each_servers_last_good_poll(start_server, tmp_path):
    fakes = tmp_path / "fake"
    fakes.mkdir()
    for name in (LIC01, LIC02):
        (fakes / f"{name}.txt").write_text(answer_of(name))
    tools = tmp_path / "tools.json"
    entry = {"tool": TOOL, "feature": FEATURE, "total": 20, "commit_qty": 10, "max_overage": 10}
    tools.write_text(json.dumps([{**entry, "commit_price": 1000, "overage_price_per_license": 50}]))
    server = start_server(
        DASH_APP_LMSTAT=f"{LIC01},{LIC02}",
        DASH_APP_LMUTIL=str(FAKE_LMUTIL),
        DASH_APP_POLL_SECONDS="1",
        DASH_APP_TOOLS=str(tools),
        FAKE_LMUTIL_DIR=str(fakes),
    )
    # Two servers, each reserving 3 and queueing 2 of DaVinciCfg: checkouts are 2 + 2, the rest is held back.
    both = {"total": 20, "borrowed": 4, "reserved": 6, "queued": 4, "available": 10}
    wait_for(lambda: status_of(server, TOOL) == both, f"{TOOL}: {both}")
    assert status_of(server, UNLISTED) == {"total": 8, "borrowed": 2, "reserved": 0, "queued": 2, "available": 6}
    listed = {e["tool"]: e for e in requests.get(server.url + "/licenses/status", timeout=5).json()}
    assert {key: listed[TOOL][key] for key in both} == both
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert f'license_reserved{{tool="{TOOL}"}} 6.0' in metrics and f'license_queued{{tool="{TOOL}"}} 4.0' in metrics
    assert f'license_reserved{{tool="{UNLISTED}"}} 0.0' in metrics and f'license_queued{{tool="{UNLISTED}"}} 2.0' in metrics

    # lic02 cannot be asked: its last word stands, as its checkouts do.
    (fakes / f"{LIC02}.txt").unlink()
    wait_for(lambda: polls_of(server.url, LIC02)["state"] == "down", "lic02 down")
    after_next_poll(server, LIC02)
    assert status_of(server, TOOL) == both
    # lic02 answers again and reserves nothing now: only lic01's reservations count.
    (fakes / f"{LIC02}.txt").write_text(answer_of(LIC02, reservations=False))
    one = {"total": 20, "borrowed": 4, "reserved": 3, "queued": 4, "available": 13}
    wait_for(lambda: status_of(server, TOOL) == one, f"{TOOL}: {one}")
