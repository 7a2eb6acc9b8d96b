"""Benchmark one dashboard refresh with a full buffer, through Dash's own HTTP route, against a rebuild from NumPy columns.

Run: python benchmarks/bench_dashboard.py

A refresh is the POST /_dash-update-component the browser sends each interval tick. Live ticks add one borrow and
one return first (and the oldest events keep expiring), so every tick sees new data. The baseline is the obvious
callback done competently: every event kept as NumPy columns as it comes, each tick's per-minute sums taken by
bincount over the window's slice, the same figures built from them by the app's figure functions and sent whole;
its borrow, overage and failure charts are checked against ours.
"""

import gc
import json
import logging
import math
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
from dash._no_update import NoUpdate
from dash.fingerprint import build_fingerprint
from plotly.io.json import to_json_plotly
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from dash_app import create_app, figures
from dash_app.buffer import MinuteFlow
from dash_app.callbacks.page import OUTPUTS, PageUpdater
from dash_app.callbacks.window_stats import SHOWN_TOOLS
from dash_app.compression import EXTENSION
from dash_app.state import get_state
from dash_app.testing import estate_inventory, feed, free_port, full_buffer_events, p95, timings
from dash_app.testing.columns import EventColumns
from dash_app.timeutil import iso_minute

WINDOW = 21600
GH = "GreenHills Multi IDE"


class Tab:
    """One open browser tab: it posts what the browser posts and keeps the render state it is sent back."""

    def __init__(self, client, output, tool="__all__", window=WINDOW):
        self.client, self.output, self.tool, self.window = client, output, tool, window
        self.seen = None
        self.n = 0
        self.bytes = 0

    def refresh(self):
        self.n += 1
        body = {
            "output": self.output,
            "outputs": [{"id": i, "property": p} for i, p in OUTPUTS],
            "inputs": [
                {"id": "refresh", "property": "n_intervals", "value": self.n},
                {"id": "tool-filter", "property": "value", "value": self.tool},
                {"id": "time-range", "property": "value", "value": self.window},
                {"id": "tz-select", "property": "value", "value": "local"},
                {"id": "browser-tz", "property": "data", "value": "Europe/Berlin"},
            ],
            "state": [
                {"id": "render-state", "property": "data", "value": self.seen},
                {"id": "legend-hidden", "property": "data", "value": {}},
                {"id": "url", "property": "pathname", "value": "/"},
            ],
            "changedPropIds": ["refresh.n_intervals"],
        }
        response = self.client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.status_code
        self.bytes = len(response.data)
        self.seen = json.loads(response.data)["response"]["render-state"]["data"]


def baseline_refresh(state, columns, window, now, zone):
    """The baseline callback: every overview output rebuilt from the NumPy columns on every tick, and sent whole.

    Per-minute sums come from one bincount per column over (tool, minute); the figures are built from them by the
    app's own figure functions. It builds the borrow, overage, failure and utilization charts, the cards and the
    newest events, not the in-use chart or the checkouts table (it does less than the page does).
    """
    first = math.ceil((now - window) / 60)  # minutes that start at or after now - window, as the buffer keeps them
    n_minutes = int(now // 60) - first + 1
    n_tools = len(columns.tools.names)
    borrows = columns.window("borrow", first * 60, now + 1e-9)
    failures = columns.window("failure", first * 60, now + 1e-9)
    returns = columns.window("return", first * 60, now + 1e-9)
    cell = borrows["tool"] * n_minutes + (borrows["ts"] // 60).astype(np.int64) - first
    counts = np.bincount(cell, minlength=n_tools * n_minutes).reshape(n_tools, n_minutes)
    overage = np.bincount(cell, weights=borrows["overage"], minlength=n_tools * n_minutes).reshape(n_tools, n_minutes)
    stamps = [iso_minute(first + m) for m in range(n_minutes)]
    buckets = {}
    for k, tool in enumerate(columns.tools.names):
        minutes = np.flatnonzero(counts[k]).tolist()
        if minutes:
            row_counts, row_overage = counts[k].tolist(), overage[k].astype(np.int64).tolist()
            buckets[tool] = [{"timestamp": stamps[m], "count": row_counts[m], "overage_count": row_overage[m]} for m in minutes]
    n_reasons = max(len(columns.reasons.names), 1)
    failure_cell = (failures["tool"] * n_minutes + (failures["ts"] // 60).astype(np.int64) - first) * n_reasons + failures[
        "reason"
    ]
    failed = np.bincount(failure_cell, minlength=n_tools * n_minutes * n_reasons).reshape(n_tools, n_minutes, n_reasons)
    flows = {}
    for k, tool in enumerate(columns.tools.names):
        minutes = np.flatnonzero(failed[k].any(axis=1)).tolist()
        per_minute = failed[k].tolist()
        flows[tool] = [
            MinuteFlow((first + m) * 60, 0, 0, 0, {columns.reasons.names[r]: c for r, c in enumerate(per_minute[m]) if c})
            for m in minutes
        ]
    by_borrows = counts.sum(axis=1)
    shown = [columns.tools.names[k] for k in np.argsort(-by_borrows, kind="stable") if by_borrows[k]][:SHOWN_TOOLS]
    colors = figures.tool_colors(columns.tools.names, shown)
    frame = figures.Frame(now - window, now, revision=f"None|{window}|{zone}", bin_seconds=60, zone=zone)
    status = state.pool.status()
    newest = np.argsort(borrows["ts"])[-50:][::-1]
    events = [
        {
            "timestamp": float(borrows["ts"][i]),
            "tool": columns.tools.names[borrows["tool"][i]],
            "user": columns.users.names[borrows["user"][i]],
        }
        for i in newest
    ]
    minutes = window / 60
    outputs = {
        "borrow-chart": figures.borrow_chart(buckets, shown, colors, frame),
        "overage-chart": figures.overage_chart(buckets, shown, colors, frame),
        "failure-chart": figures.failure_chart(flows, frame),
        "utilization-chart": figures.utilization_chart(status, shown),
        "cards": [len(borrows["ts"]) / minutes, int(borrows["overage"].sum()), len(returns["ts"]) / minutes, len(failures["ts"])],
        "events": events,
    }
    return outputs, to_json_plotly(outputs)


def same_traces(ours, baseline):
    """Assert two figures hold the same traces (name, x, y), in any order."""

    def traces(figure):
        return {trace["name"]: (list(trace["x"]), list(trace["y"])) for trace in figure["data"]}

    assert traces(ours) == traces(baseline), "the baseline's figure differs from ours"


def ms(values):
    return f"p50 {statistics.median(values) * 1000:7.1f} ms   p95 {p95(values) * 1000:7.1f} ms"


def main():
    app = create_app({"demo": False, "db": ":memory:", "api_token": "bench-token-0123456789"})
    state = get_state(app)
    end = time.time()
    history = full_buffer_events(end - 1)
    feed(state.buffer, history)
    columns = EventColumns(s["tool"] for s in state.pool.status())
    columns.feed(history)  # the buffer was fed directly; what the pool records from now on reaches both
    state.recorder.add_listener(columns)
    for spec in state.pool.status():
        for n in range(spec["commit"]):
            state.pool.borrow(spec["tool"], f"holder{n}")
    # As the server does after restoring its buffer at start (AppState.start): freeze the long-lived objects.
    gc.collect()
    gc.freeze()
    stats = state.buffer.get_stats_summary()
    client = app.server.test_client()
    (dependency,) = [d for d in client.get("/_dash-dependencies").get_json() if d["output"].startswith("..borrow-rate")]
    output = dependency["output"]

    live = iter(range(10**9))

    def new_events():
        n = next(live)
        borrow = state.pool.borrow(GH, f"live{n % 300:03d}")
        state.pool.return_license(borrow.id)

    # A new tab after new data: every visible output is built and sent whole.
    def first_load():
        new_events()
        Tab(client, output).refresh()

    overview, tool_view = Tab(client, output), Tab(client, output, tool=GH)
    overview.refresh()
    tool_view.refresh()

    def live_tick(tab):
        def tick():
            new_events()
            tab.refresh()

        return tick

    quiet = timings(overview.refresh, 60)
    quiet_bytes = overview.bytes
    live_overview = timings(live_tick(overview), 120)
    live_bytes = overview.bytes
    live_tool = timings(live_tick(tool_view), 120)
    loads = timings(first_load, 60)

    tabs = [Tab(client, output) for _ in range(10)]
    for tab in tabs:
        tab.refresh()
    per_request = []

    def ten_tabs():
        new_events()
        for tab in tabs:
            start = time.perf_counter()
            tab.refresh()
            per_request.append(time.perf_counter() - start)

    ten = timings(ten_tabs, 40)

    zone = "Europe/Berlin"  # what the tabs ask for: local time, the browser's zone

    def baseline_tick():
        new_events()
        baseline_refresh(state, columns, WINDOW, time.time(), zone)

    baseline = timings(baseline_tick, 40)
    now = time.time()
    built, sent = baseline_refresh(state, columns, WINDOW, now, zone)
    baseline_bytes = len(sent)
    _pool, _tool, view = PageUpdater(state).snapshots.get(None, WINDOW, now, zone)
    for figure_id in ("borrow-chart", "overage-chart", "failure-chart"):
        same_traces(view[figure_id].value, built[figure_id])
    state.stop()

    print(
        f"Full buffer: {stats['borrow_count']:,} borrows + {stats['return_count']:,} returns + "
        f"{stats['failure_count']:,} failures over 6 h, 6 tools; window 'Last 6 hours'; "
        "server time of POST /_dash-update-component"
    )
    print(f"live tick, overview           {ms(live_overview)}   {live_bytes / 1024:6.1f} KiB sent   (target p95 <= 50 ms)")
    print(f"live tick, tool view          {ms(live_tool)}")
    print(f"tick with nothing new         {ms(quiet)}   {quiet_bytes / 1024:6.1f} KiB sent")
    print(f"new tab, all sent whole       {ms(loads)}")
    print(f"ten tabs, one tick, per tab   {ms(per_request)}   (whole tick: p95 {p95(ten) * 1000:.1f} ms)")
    print(f"baseline: NumPy columns       {ms(baseline)}   {baseline_bytes / 1024:6.1f} KiB sent   (its own callback, no HTTP)")
    print(f"speed-up, live tick p95       {p95(baseline) / p95(live_overview):7.1f} x   (ours through HTTP, the baseline not)")
    print()
    estate()
    print()
    first_load_weight()


# ----------------------------------------------------------------------------------- an estate of 200 tools


def estate(tool_count=200):
    """Print the overview's refresh time with `tool_count` tools and a full buffer: ten tools by name vs every tool."""
    import tempfile
    from pathlib import Path

    from dash._utils import to_json

    inventory = estate_inventory(tool_count)
    with tempfile.TemporaryDirectory() as tmp:
        tools_file = Path(tmp) / "tools.json"
        tools_file.write_text(json.dumps(inventory))
        app = create_app({"demo": False, "db": ":memory:", "api_token": "bench-token-0123456789", "tools_file": str(tools_file)})
    state = get_state(app)
    names = [t["tool"] for t in inventory]
    feed(state.buffer, full_buffer_events(time.time() - 1, tools=names))
    for spec in inventory:
        for n in range(min(spec["commit_qty"], spec["total"] - 1, 3)):
            state.pool.borrow(spec["tool"], f"holder{n}")
    gc.collect()
    gc.freeze()
    live = iter(range(10**9))
    roomy = [t["tool"] for t in inventory if t["total"] >= 10]  # a live borrow there is always granted

    def tick(updater, tab):
        n = next(live)
        borrow = state.pool.borrow(roomy[n % len(roomy)], f"live{n % 300:03d}")
        state.pool.return_license(borrow.id)
        out, tab["seen"] = updater.update("__all__", WINDOW, tab["seen"], "local", "Europe/Berlin", {})
        # What Dash does next: the outputs that changed, serialised for the response.
        tab["bytes"] = len(to_json([value for value in out.values() if not NoUpdate.is_no_update(value)]))

    ours, every = PageUpdater(state), PageUpdater(state)
    every.snapshots.shown_tools = tool_count  # the design before: one series per tool in every chart
    results = {}
    # Enough ticks for a steady p95: a full garbage collection lands on about one tick in twenty.
    for name, updater, runs in (("ten tools by name + others", ours, 300), ("every tool its own series", every, 40)):
        tab = {"seen": None, "bytes": 0}
        tick(updater, tab)
        first = tab["bytes"]
        results[name] = (timings(lambda updater=updater, tab=tab: tick(updater, tab), runs), tab["bytes"], first)
    state.stop()
    stats = state.buffer.get_stats_summary()
    print(
        f"Estate: {tool_count} tools, full buffer ({stats['borrow_count']:,} borrows + {stats['return_count']:,} returns + "
        f"{stats['failure_count']:,} failures), overview over 6 h; a live tick per refresh; PageUpdater.update + JSON"
    )
    for name, (values, sent, first) in results.items():
        target = "   (target p95 <= 50 ms)" if name.startswith("ten") else ""
        print(f"{name:<30}{ms(values)}   {sent / 1024:6.1f} KiB per tick, {first / 1024:6.1f} KiB first{target}")


# ----------------------------------------------------------------------------------- first load: bytes and CPU

FIRST_LOAD_TARGET = 1_500_000
FIRST_CHART_TARGET = 2.5
BROWSER_ACCEPTS = "gzip, deflate, br"
PLOTLY_FIXED_URL = "/_dash-component-suites/plotly/package_data/plotly.min.js"
CHROMIUM = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
CHART_DRAWN_JS = """
const g = document.querySelector('#borrow-chart .js-plotly-plot');
return !!(g && g.data && g.data.some(t => t.y && t.y.length));
"""
# How long after navigation the first chart was drawn (performance.now() counts from the navigation's start).
DRAWN_AT_JS = """
const g = document.querySelector('#borrow-chart .js-plotly-plot');
return g && g.data && g.data.some(t => t.y && t.y.length) ? performance.now() : null;
"""
TRANSFERRED_JS = """
return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
  .reduce((sum, e) => sum + e.transferSize, 0);
"""


def record_first_load(base_url):
    """Load the page in headless Chromium until the first chart is drawn; return its requests and Chromium's byte counts.

    Each request is (method, path with query, body, content type), every redirect hop included, in the order sent;
    the byte counts are Chromium's, of the first load and of a second visit.
    """
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options)
    try:
        driver.get(base_url + "/")
        # Polled often, so the moment read is within a few tens of ms of the one the chart was drawn at.
        drawn_ms = WebDriverWait(driver, 60, poll_frequency=0.02).until(lambda d: d.execute_script(DRAWN_AT_JS))
        transferred = driver.execute_script(TRANSFERRED_JS)
        log = driver.get_log("performance")
        # A second visit: fingerprinted bundles come from the browser's cache without a request.
        driver.get(base_url + "/")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(CHART_DRAWN_JS))
        again = driver.execute_script(TRANSFERRED_JS)
    finally:
        driver.quit()
    made = []
    for entry in log:
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.requestWillBeSent":
            continue
        request = message["params"]["request"]
        if request["url"].startswith(base_url + "/"):
            headers = {name.lower(): value for name, value in request["headers"].items()}
            path = request["url"][len(base_url) :]
            made.append((request["method"], path, request.get("postData"), headers.get("content-type")))
    return made, transferred, again, drawn_ms / 1000


def full_plotly_url():
    """Return the fingerprinted URL Dash serves plotly.py's full plotly.js bundle by."""
    import plotly

    path = "package_data/plotly.min.js"
    modified = int((Path(plotly.__file__).parent / path).stat().st_mtime)
    return "/_dash-component-suites/plotly/" + build_fingerprint(path, plotly.__version__, modified)


def wire_bytes(response):
    """Return the bytes of a response as sent: status line, headers and body (compressed if it was)."""
    head = len(f"HTTP/1.1 {response.status}\r\n") + sum(len(k) + len(v) + 4 for k, v in response.headers.items()) + 2
    return head + len(response.get_data())


def first_load_weight():
    """Print the bytes of the page's first load, compressed and not, and the CPU of serving plotly's bundle."""
    app = create_app({"demo": True, "backfill_hours": 1, "db": ":memory:", "api_token": "bench-token-0123456789"})
    state = get_state(app)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    httpd = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        made, chromium_bytes, second_visit, drawn = record_first_load(f"http://127.0.0.1:{httpd.server_port}")
    finally:
        httpd.shutdown()

    # The same requests, replayed in order through the app: as the browser sent them, then with no Accept-Encoding.
    client = app.server.test_client()
    totals, plotly_bytes = {}, {}
    for accepts in (BROWSER_ACCEPTS, None):
        totals[accepts] = 0
        for method, path, body, content_type in made:
            headers = {"Accept-Encoding": accepts} if accepts else {}
            if content_type:
                headers["Content-Type"] = content_type
            response = client.open(path, method=method, data=body, headers=headers)
            totals[accepts] += wire_bytes(response)
            if "plotly" in path and ".min.js" in path and response.status_code == 200:
                plotly_bytes[accepts] = wire_bytes(response)
    # The full bundle plotly.py ships, which Dash still serves by its fingerprinted URL: what the page loaded before.
    full_plotly = wire_bytes(client.get(full_plotly_url(), headers={"Accept-Encoding": BROWSER_ACCEPTS}))

    # Server CPU of one request for plotly's bundle: its compressed body kept, or compressed on every request.
    location = client.get(PLOTLY_FIXED_URL).headers["Location"]
    cache = app.server.extensions[EXTENSION]

    def cpu_ms(accepts, keep, runs):
        headers = {"Accept-Encoding": accepts} if accepts else {}
        client.get(location, headers=headers)
        spent = []
        for _ in range(runs):
            if not keep:
                cache.clear()
            start = time.thread_time()
            client.get(location, headers=headers)
            spent.append(time.thread_time() - start)
        return statistics.median(spent) * 1000

    cpu = {(accepts, keep): cpu_ms(accepts, keep, 30 if keep else 8) for accepts in ("br", "gzip") for keep in (True, False)}
    identity = cpu_ms(None, True, 30)
    state.stop()

    compressed, plain = totals[BROWSER_ACCEPTS], totals[None]
    print(f"First load: the {len(made)} requests headless Chromium makes until the first chart is drawn (demo, 1 h backfill),")
    print("replayed in order through the app; bytes as sent (status line, headers, body)")
    print(f"{'Accept-Encoding: ' + BROWSER_ACCEPTS:<38}{compressed / 1e6:6.2f} MB   (target <= {FIRST_LOAD_TARGET / 1e6:.1f} MB)")
    print(f"{'no Accept-Encoding (baseline)':<38}{plain / 1e6:6.2f} MB   ratio {plain / compressed:.1f} x")
    plotly, plotly_plain = plotly_bytes[BROWSER_ACCEPTS], plotly_bytes[None]
    print(f"{'  of which plotly.js (cartesian)':<38}{plotly / 1e6:6.2f} MB   baseline {plotly_plain / 1e6:.2f} MB")
    print(f"{'  the full plotly.min.js would be':<38}{full_plotly / 1e6:6.2f} MB   (what the page loaded before)")
    target = f"(target <= {FIRST_CHART_TARGET:.1f} s)"
    print(f"{'first chart drawn after navigation':<38}{drawn:6.2f} s    {target}, empty cache")
    print(f"{'Chromium: sum of transferSize':<38}{chromium_bytes / 1e6:6.2f} MB   second visit {second_visit / 1e3:.1f} KB")
    print("plotly.js bundle, server CPU per request (median)")
    for accepts in ("br", "gzip"):
        kept, each = cpu[(accepts, True)], cpu[(accepts, False)]
        print(f"{'  ' + accepts + ', compressed body kept':<38}{kept:6.1f} ms   compressed on each request {each:6.1f} ms")
    print(f"{'  identity, not compressed':<38}{identity:6.1f} ms")


if __name__ == "__main__":
    main()
