#!/usr/bin/env python3
"""Screenshot the dashboard as a person sees it: a real server with demo traffic, in headless Chromium.

Run: python scripts/screenshot.py [--out docs/screenshot.png] [--size 1920x1080] [--tool NAME] [--backfill 2]
                                  [--tools inventory.json | --estate 200] [--currency EUR] [--full-page]
                                  [--path '/capacity?tool=NAME&window=86400'] [--server-arg=--alerts=rules.json ...]
                                  [--as vic:viewer]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")

# True once the cards show numbers and every visible chart has had its first update (data or an empty-state note).
READY_JS = """
if (location.pathname.endsWith('/capacity')) {
  const advice = document.getElementById('capacity-advice');
  return document.querySelectorAll('#capacity-table .ag-row').length > 0 && !!advice && advice.textContent.length > 0;
}
const size = document.getElementById('buffer-size');
if (!size || !/^[0-9,]+$/.test(size.textContent) || size.textContent === '0') return false;
const graphs = [...document.querySelectorAll('section:not([style*="none"]) .js-plotly-plot')];
const waiting = g => (g.layout.annotations || []).some(a => a.text.startsWith('Waiting'));
return graphs.length > 0 && graphs.every(g => g.data && g.layout && !waiting(g));
"""


def free_port():
    """Return a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port, backfill, db, tools_file=None, currency=None, extra=()):
    """Start `python -m dash_app` with demo traffic (over `tools_file`'s inventory if given) and wait until it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
    env.update({"DASH_APP_API_TOKEN": "screenshot-token-0123456789", "PYTHONPATH": str(ROOT)})
    command = [sys.executable, "-m", "dash_app", "--port", str(port), "--backfill", str(backfill), "--db", db, "--demo"]
    if tools_file:
        command += ["--tools", str(Path(tools_file).resolve())]
    if currency:
        command += ["--currency", currency]
    command += list(extra)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"screenshot: the server exited with status {process.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return process
        except requests.RequestException:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit("screenshot: the server did not start within 120 s")


def browser(width, height):
    """Return headless Chromium with the given window size; below 768 px wide it is a phone's browser."""
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options)
    # The window size includes the browser's frame; pin the page's viewport to exactly width x height.
    # A phone's browser lays the page out at the viewport meta's width, and shows it if the page is wider.
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 768}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver


def grow_to_page(driver, width):
    """Make the viewport as tall as the page, so one screenshot shows all of it."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 768}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    time.sleep(1.0)  # the charts resize to the new viewport


def shoot(url, out, width, height, tool=None, settle=3.0, full_page=False, signed_in=None):
    """Open the page, optionally pick a tool, wait for data and save a PNG of the viewport (or the whole page)."""
    driver = browser(width, height)
    try:
        if signed_in:
            # As a sign-in proxy would: every request names the user and their groups (the server trusts loopback).
            user, _, groups = signed_in.partition(":")
            driver.execute_cdp_cmd("Network.enable", {})
            headers = {"X-Forwarded-User": user, "X-Forwarded-Groups": groups}
            driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(READY_JS))
        if tool:
            driver.find_element("css selector", "#tool-filter").click()
            for option in driver.find_elements("css selector", ".dash-dropdown-option"):
                if option.text == tool:
                    option.click()
                    break
            else:
                raise SystemExit(f"screenshot: no tool named {tool!r} in the dropdown")
            WebDriverWait(driver, 30).until(lambda d: d.execute_script(READY_JS))
        time.sleep(settle)  # a few live ticks, so the picture is of a running page
        if full_page:
            grow_to_page(driver, width)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    parser.add_argument("--size", default="1920x1080", help="window WIDTHxHEIGHT")
    parser.add_argument("--tool", default=None, help="show this tool's view instead of the overview")
    parser.add_argument("--backfill", type=float, default=2.0, help="hours of demo history")
    parser.add_argument("--tools", default=None, help="JSON inventory of tools instead of the bundled one")
    parser.add_argument("--path", default="/", help="the page's path and query, e.g. '/capacity?window=86400'")
    parser.add_argument("--estate", type=int, default=None, help="a generated inventory of this many tools")
    parser.add_argument("--currency", default=None, help="currency shown with costs")
    parser.add_argument("--db", default=None, help="the server's --db (default: a new SQLite file), e.g. postgresql://...")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not just the first screen")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="one more flag for the server, e.g. --server-arg=--alerts=rules.json"
    )
    parser.add_argument(
        "--as", dest="signed_in", default=None, help="USER:GROUPS: run with --auth proxy and read as this user, e.g. vic:viewer"
    )
    args = parser.parse_args(argv)
    if args.signed_in:
        args.server_arg += ["--auth=proxy", "--trusted-proxy=127.0.0.1/32", "--proxy-groups-header=X-Forwarded-Groups"]
    width, height = (int(part) for part in args.size.lower().split("x"))
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        tools = args.tools
        if args.estate:
            from dash_app.testing import estate_inventory

            tools = Path(tmp) / "estate.json"
            tools.write_text(json.dumps(estate_inventory(args.estate)))
        db = args.db or str(Path(tmp) / "screenshot.db")
        server = start_server(port, args.backfill, db, tools, args.currency, args.server_arg)
        try:
            url = f"http://127.0.0.1:{port}{args.path}"
            shoot(url, args.out, width, height, tool=args.tool, full_page=args.full_page, signed_in=args.signed_in)
        finally:
            server.terminate()
            server.wait(timeout=15)
    print(f"saved {args.out} ({width}x{height})")


if __name__ == "__main__":
    main()
