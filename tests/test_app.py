"""The app factory, the CLI and the Procfile server, end to end."""

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from dash_app.state import get_state
from dash_app.testing import ROOT, free_port
from dash_app.testing.commands import run_refused
from dash_app.testing.servers import group_processes
from tests.listening import listening_addresses


def test_page_shows_buffer_counts_in_a_browser(dash_duo, make_app):
    app = make_app()
    buffer = get_state(app).buffer
    for n in range(3):
        buffer.add_borrow("GreenHills Multi IDE", f"user{n}", False, f"id{n}")
    buffer.add_failure("GreenHills Multi IDE", "late", "exhausted")
    dash_duo.start_server(app)
    dash_duo.wait_for_text_to_equal("#buffer-size", "4", timeout=10)
    # Rates are per minute over the window (30 minutes): 3 borrows, one failure.
    dash_duo.wait_for_text_to_equal("#borrow-rate", "0.1")
    dash_duo.wait_for_text_to_equal("#failure-rate-hint", "per minute · last 30 min · 1 in all, 1 true")
    assert dash_duo.get_logs() == []


def test_each_app_gets_its_own_buffer(make_app):
    first, second = make_app(), make_app()
    get_state(first).buffer.add_borrow("T", "u", False, "1")
    assert get_state(second).buffer.get_stats_summary()["total_events"] == 0


def test_procfile_server_serves_page_and_health_and_starts_the_analysis_process_with_the_page(start_server, tmp_path):
    server = start_server()
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    page = requests.get(server.url + "/", timeout=5)
    assert page.status_code == 200 and "License usage" in page.text
    # Serving the API and the page's HTML starts no analysis process: gunicorn's master and its worker only.
    assert len(group_processes(server.process.pid)) == 2
    # The page's first layout request starts it, so it reads the history while the person looks at the overview.
    assert requests.get(server.url + "/_dash-layout", timeout=5).status_code == 200
    deadline = time.monotonic() + 30
    while len(group_processes(server.process.pid)) < 3:
        assert time.monotonic() < deadline, "no analysis process after the page's layout was asked for"
        time.sleep(0.05)
    # Once idle after its first read, it saves its copy of the history beside the database; a server started again
    # on that database starts its analysis process at once, to load that copy before the Capacity view asks.
    saved = tmp_path / "server.db-analysis.npz"  # the server's default database is tmp_path / "server.db"
    while not saved.exists():
        assert time.monotonic() < deadline, "no saved copy of the history"
        time.sleep(0.05)
    server.stop()
    again = start_server()
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in group_processes(again.process.pid)]
    assert any(b"spawn_main" in command for command in commands)  # multiprocessing's child: the analysis process


def test_cli_rejects_bad_values_with_one_line():
    result = run_refused(["--stream-interval", "0"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["python -m dash_app: error: --stream-interval: must be at least 0.05, got 0.0"]


def test_cli_serves_on_loopback_by_default(tmp_path):
    port = free_port()
    env = dict(os.environ, DASH_APP_PORT=str(port), DASH_APP_DB=str(tmp_path / "x.db"), DASH_APP_DEMO="0")
    env.pop("DASH_APP_HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "dash_app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise AssertionError("the CLI server did not start")
        assert listening_addresses(port) == ["127.0.0.1"]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_collector_runs_at_the_servers_thresholds_while_an_app_runs_and_as_before_once_the_last_stops(make_app):
    import gc

    from dash_app.state import GC_THRESHOLDS

    before = gc.get_threshold()  # GC_THRESHOLDS already when another test's app still runs in this process
    first, second = make_app(), make_app()
    assert gc.get_threshold() == GC_THRESHOLDS
    get_state(first).stop()  # stopped first, though started first: the second still runs
    assert gc.get_threshold() == GC_THRESHOLDS
    get_state(second).stop()
    assert gc.get_threshold() == before
