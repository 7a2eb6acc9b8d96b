"""Benchmark one dashboard refresh with a full buffer, through Dash's own HTTP route, against a naive rebuild.

Run: python benchmarks/bench_dashboard.py

A refresh is the POST /_dash-update-component the browser sends each interval tick. Live ticks add one borrow and
one return first (and the oldest events keep expiring), so every tick sees new data. The baseline is the obvious
callback: read the window's raw events, aggregate them with pandas, build plotly Figures and send them whole.
"""

import gc
import json
import statistics
import time

import pandas as pd
import plotly.graph_objects as go
from plotly.io.json import to_json_plotly

from dash_app import create_app
from dash_app.callbacks.page import OUTPUTS
from dash_app.state import get_state
from dash_app.testing import feed, full_buffer_events, p95, timings

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
            ],
            "state": [{"id": "render-state", "property": "data", "value": self.seen}],
            "changedPropIds": ["refresh.n_intervals"],
        }
        response = self.client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.status_code
        self.bytes = len(response.data)
        self.seen = json.loads(response.data)["response"]["render-state"]["data"]


def naive_refresh(state, window):
    """The baseline: every figure rebuilt from the window's raw events on every tick, and sent whole."""
    events = state.buffer.get_recent_events(window)
    borrows = pd.DataFrame(events["borrows"])
    failures = pd.DataFrame(events["failures"])
    borrows["minute"] = pd.to_datetime(borrows["timestamp"]).dt.floor("min")
    failures["minute"] = pd.to_datetime(failures["timestamp"]).dt.floor("min")
    borrow_chart, overage_chart, failure_chart = go.Figure(), go.Figure(), go.Figure()
    for tool, group in borrows.groupby("tool"):
        per_minute = group.groupby("minute").agg(
            count=("id", "size"), overage=("is_overage", "sum"), users=("user", lambda u: sorted(set(u)))
        )
        hover = [", ".join(users) for users in per_minute["users"]]
        borrow_chart.add_bar(x=per_minute.index, y=per_minute["count"], name=tool, customdata=hover)
        overage_chart.add_bar(x=per_minute.index, y=per_minute["overage"], name=tool)
    for reason, group in failures.groupby("reason"):
        per_minute = group.groupby("minute").size()
        failure_chart.add_bar(x=per_minute.index, y=per_minute.values, name=reason)
    status = state.pool.status()
    utilization = go.Figure()
    utilization.add_bar(y=[s["tool"] for s in status], x=[min(s["borrowed"], s["commit"]) for s in status], orientation="h")
    recent = pd.concat([borrows, failures]).sort_values("timestamp", ascending=False).head(50)
    last_minute = borrows[borrows["timestamp"] >= pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")]
    cards = [len(last_minute), float(last_minute["is_overage"].mean() if len(last_minute) else 0), len(events["returns"])]
    outputs = [fig.to_plotly_json() for fig in (borrow_chart, overage_chart, failure_chart, utilization)]
    return to_json_plotly({"cards": cards, "figures": outputs, "events": recent.to_dict("records")})


def ms(values):
    return f"p50 {statistics.median(values) * 1000:7.1f} ms   p95 {p95(values) * 1000:7.1f} ms"


def main():
    app = create_app({"demo": False, "db": ":memory:", "api_token": "bench-token-0123456789"})
    state = get_state(app)
    end = time.time()
    feed(state.buffer, full_buffer_events(end - 1))
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

    baseline = timings(lambda: naive_refresh(state, WINDOW), 5)
    naive_bytes = len(naive_refresh(state, WINDOW))
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
    print(f"naive rebuild baseline        {ms(baseline)}   {naive_bytes / 1024:6.1f} KiB sent")
    print(f"speed-up, live tick p95       {p95(baseline) / p95(live_overview):7.0f} x")


if __name__ == "__main__":
    main()
