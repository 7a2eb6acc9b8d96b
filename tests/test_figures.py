"""The pure figure builders: data in, valid Plotly figures out, checked against brute-force references."""

import re

import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app import figures
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.buffer.metrics_buffer import MinuteFlow
from dash_app.figures.pools import TOP_USERS, split_usage
from dash_app.figures.text import plotly_text
from dash_app.figures.theme import REASON_COLORS, TOOL_PALETTE
from dash_app.figures.timeseries import HOVER_USER_LIMIT
from dash_app.testing import FakeClock

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a minute boundary
XSS = "<img src=x onerror=alert(1)>"
FRAME = figures.Frame(NOW - 1800, NOW, revision="all|1800")
COLORS = figures.tool_colors(["Tool A", "Tool B", XSS])


def bucket(minute, count, users, overage=0):
    return {"timestamp": minute, "count": count, "users": users, "overage_count": overage}


def valid(figure):
    """Plotly's own validation accepts the figure; return it."""
    go.Figure(figure)
    return figure


def annotation_texts(figure):
    return [a["text"] for a in figure["layout"].get("annotations", [])]


def test_time_axis_is_pinned_to_the_frame_in_epoch_milliseconds():
    layout = valid(figures.borrow_chart({"Tool A": [bucket("2027-01-15T07:59:00Z", 1, ["u"])]}, COLORS, FRAME))["layout"]
    assert layout["xaxis"]["autorange"] is True
    assert layout["xaxis"]["autorangeoptions"] == {"minallowed": (NOW - 1800) * 1000, "maxallowed": NOW * 1000}
    assert "UTC" in layout["xaxis"]["title"]["text"]
    assert layout["uirevision"] == "all|1800"


def test_borrow_chart_has_one_series_per_tool_in_inventory_order_with_its_colour():
    buckets = {
        "Tool B": [bucket("2027-01-15T07:40:00Z", 2, ["x", "y"])],
        "Tool A": [bucket("2027-01-15T07:41:00Z", 3, ["x"]), bucket("2027-01-15T07:45:00Z", 1, ["z"])],
        "Stray": [bucket("2027-01-15T07:42:00Z", 1, ["q"])],
    }
    figure = valid(figures.borrow_chart(buckets, COLORS, FRAME))
    assert [t["name"] for t in figure["data"]] == ["Tool A", "Tool B", "Stray"]
    tool_a = figure["data"][0]
    assert tool_a["x"] == ["2027-01-15 07:41:00", "2027-01-15 07:45:00"] and tool_a["y"] == [3, 1]
    assert tool_a["marker"]["color"] == COLORS["Tool A"] == TOOL_PALETTE[0]
    assert figure["data"][1]["marker"]["color"] == TOOL_PALETTE[1]
    assert figure["layout"]["barmode"] == "stack"


def test_small_counts_get_whole_number_ticks():
    figure = figures.borrow_chart({"Tool A": [bucket("2027-01-15T07:41:00Z", 2, ["x"])]}, COLORS, FRAME)
    assert figure["layout"]["yaxis"]["dtick"] == 1


NO_OVERAGE = {"Tool A": [bucket("2027-01-15T07:41:00Z", 2, ["x"])]}


def test_empty_windows_say_so_instead_of_drawing_bare_axes():
    cases = [
        (figures.borrow_chart({}, COLORS, FRAME), "No borrows in this window"),
        (figures.overage_chart(NO_OVERAGE, COLORS, FRAME), "No overage checkouts in this window"),
        (figures.failure_chart({"Tool A": [MinuteFlow(NOW - 60, 1, 0, 0, {})]}, FRAME), "No failed borrows in this window"),
        (figures.tool_borrow_chart("Tool A", [], "#000000", FRAME), "No borrows of this tool in this window"),
        (figures.tool_inuse_chart("Tool A", [], 0, (5, 20), "#000000", FRAME), "No licenses of this tool in use in this window"),
        (figures.tool_user_chart("Tool A", [], "#000000"), "No active checkouts of this tool"),
        (figures.tool_commit_chart(None), "No limits are known for this tool"),
        (figures.utilization_chart([]), "No tools in the pool"),
    ]
    for figure, message in cases:
        valid(figure)
        assert figure["data"] == []
        assert annotation_texts(figure) == [message]
        assert figure["layout"]["xaxis"]["visible"] is False and figure["layout"]["yaxis"]["visible"] is False


def test_overage_chart_keeps_only_minutes_with_overage():
    buckets = {"Tool A": [bucket("2027-01-15T07:41:00Z", 3, ["x"], overage=2), bucket("2027-01-15T07:42:00Z", 1, ["x"])]}
    (trace,) = valid(figures.overage_chart(buckets, COLORS, FRAME))["data"]
    assert trace["x"] == ["2027-01-15 07:41:00"] and trace["y"] == [2]


def test_failure_chart_sums_tools_per_reason_and_minute():
    flows = {
        "Tool A": [MinuteFlow(NOW - 120, 0, 0, 0, {"exhausted": 2}), MinuteFlow(NOW - 60, 1, 0, 0, {"max_overage": 1})],
        "Tool B": [MinuteFlow(NOW - 120, 0, 0, 0, {"exhausted": 1, "license server down": 4})],
    }
    figure = valid(figures.failure_chart(flows, FRAME))
    by_name = {t["name"]: t for t in figure["data"]}
    assert list(by_name) == ["Pool exhausted", "Max overage reached", "license server down"]
    assert by_name["Pool exhausted"]["x"] == ["2027-01-15 07:58:00"] and by_name["Pool exhausted"]["y"] == [3]
    assert by_name["Pool exhausted"]["marker"]["color"] == REASON_COLORS["exhausted"]
    assert by_name["license server down"]["y"] == [4]


def test_failure_chart_groups_log_reasons_by_their_category():
    reasons = {"exhausted: Licensed number of users already reached. (-4,342)": 2, "exhausted": 1}
    flows = {"MATLAB": [MinuteFlow(NOW - 60, 0, 0, 0, reasons)]}
    (trace,) = valid(figures.failure_chart(flows, FRAME))["data"]
    assert trace["name"] == "Pool exhausted" and trace["y"] == [3]


def test_long_windows_use_wider_bins_and_say_so():
    frame = figures.Frame(NOW - 7 * 86400, NOW, revision="all|604800", bin_seconds=3600)
    buckets = {"Tool A": [bucket("2027-01-10T05:00:00Z", 4, ["ann"])]}
    figure = valid(figures.borrow_chart(buckets, {"Tool A": "#3b6fd8"}, frame))
    assert figure["layout"]["yaxis"]["title"]["text"] == "borrows / h"
    assert figure["data"][0]["width"] == 3_000_000
    assert figure["layout"]["xaxis"]["hoverformat"] == "%b %d %H:%M UTC"
    assert figures.Frame(0, 86400, bin_seconds=300).per_bin == "5 min"


def test_tool_borrow_chart_points_and_hover_carry_count_overage_and_users():
    buckets = [bucket("2027-01-15T07:41:00Z", 3, ["ann", XSS], overage=1)]
    (trace,) = valid(figures.tool_borrow_chart("Tool A", buckets, "#3b6fd8", FRAME))["data"]
    assert trace["x"] == ["2027-01-15 07:41:00"] and trace["y"] == [3]
    count, overage, names = trace["customdata"][0]
    assert (count, overage) == (2, 1)
    assert names == "ann, &lt;img src=x onerror=alert(1)&gt;"
    assert "%{customdata[2]}" in trace["hovertemplate"] and "%{y}" in trace["hovertemplate"]


def test_tool_borrow_chart_lists_a_bounded_number_of_users():
    users = [f"user{n:03d}" for n in range(HOVER_USER_LIMIT + 7)]
    (trace,) = figures.tool_borrow_chart("Tool A", [bucket("2027-01-15T07:41:00Z", len(users), users)], "#3b6fd8", FRAME)["data"]
    names = trace["customdata"][0][2]
    assert names.endswith("and 7 more")
    assert f"user{HOVER_USER_LIMIT - 1:03d}" in names and f"user{HOVER_USER_LIMIT:03d}" not in names


def _all_builders(tool, user):
    buckets = {tool: [bucket("2027-01-15T07:41:00Z", 1, [user])]}
    return [
        figures.borrow_chart(buckets, {tool: "#3b6fd8"}, FRAME),
        figures.tool_borrow_chart(tool, buckets[tool], "#3b6fd8", FRAME),
        figures.tool_user_chart(tool, [user], "#3b6fd8"),
        figures.utilization_chart([{"tool": tool, "borrowed": 1, "commit": 1, "total": 2}]),
        figures.tool_inuse_chart(tool, [MinuteFlow(NOW - 60, 1, 0, 0, {})], 1, (1, 2), "#3b6fd8", FRAME),
    ]


def test_names_reach_plotly_escaped():
    escaped = plotly_text(XSS)
    assert escaped == "&lt;img src=x onerror=alert(1)&gt;"
    assert plotly_text("a&lt;b") == "a&amp;lt;b"  # an entity typed as a name stays those characters
    for figure in _all_builders(XSS, XSS):
        valid(figure)
        assert XSS not in str(figure["data"]) and escaped in str(figure["data"])
        for trace in figure["data"]:
            # Plotly builds CSS selectors from uids, so they are plain tokens, whatever the name.
            assert re.fullmatch(r"u[0-9a-f]{12}", trace["uid"])


def test_names_stay_out_of_hover_templates():
    """Plotly fills %{...} in templates, so a name like "%{y}" must be data, never part of a template."""
    plain = _all_builders("Tool A", "ann")
    tricky = _all_builders("%{y} <b>", "%{x}")
    for a, b in zip(plain, tricky):
        assert [t.get("hovertemplate") for t in a["data"]] == [t.get("hovertemplate") for t in b["data"]]


def test_utilization_splits_borrowed_into_commit_overage_available():
    status = [
        {"tool": "Tool A", "borrowed": 7, "commit": 5, "total": 20},
        {"tool": "Tool B", "borrowed": 3, "commit": 5, "total": 10},
        {"tool": "Seen in a log", "borrowed": 2, "commit": None, "total": None},
    ]
    figure = valid(figures.utilization_chart(status))
    names = [t["name"] for t in figure["data"]]
    assert names == ["In commit", "Overage", "Available"]
    columns = [t["x"] for t in figure["data"]]
    assert list(zip(*columns)) == [(5, 2, 13), (3, 0, 7), (2, 0, 0)]
    assert figure["data"][0]["y"] == ["Tool A", "Tool B", "Seen in a log"]
    assert figure["layout"]["barmode"] == "stack"


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 20))
def test_split_usage_adds_up(borrowed, commit, extra):
    total = max(borrowed, commit) + extra
    in_commit, overage, available = split_usage({"borrowed": borrowed, "commit": commit, "total": total})
    assert in_commit + overage == borrowed and in_commit + overage + available == total
    assert in_commit == min(borrowed, commit) and min(in_commit, overage, available) >= 0


def test_commit_ring_shows_the_split_and_the_count_in_use():
    entry = {"tool": "Tool A", "borrowed": 7, "commit": 5, "total": 20}
    figure = valid(figures.tool_commit_chart(entry))
    assert figure["data"][0]["values"] == [5, 2, 13]
    assert "<b>7</b> of 20" in annotation_texts(figure)[0]


def test_user_chart_counts_active_checkouts_busiest_first_and_says_when_it_cuts():
    users = ["bo", "al", "bo", XSS] + [f"u{n:02d}" for n in range(TOP_USERS)]
    (trace,) = valid(figures.tool_user_chart("Tool A", users, "#3b6fd8"))["data"]
    assert trace["y"][:3] == ["bo", plotly_text(XSS), "al"]
    assert trace["x"][:3] == [2, 1, 1] and len(trace["y"]) == TOP_USERS
    figure = figures.tool_user_chart("Tool A", users, "#3b6fd8")
    assert annotation_texts(figure) == [f"top {TOP_USERS} of {TOP_USERS + 3} users"]


def test_in_use_chart_draws_commit_and_total_lines():
    figure = valid(figures.tool_inuse_chart("Tool A", [MinuteFlow(NOW - 60, 2, 0, 0, {})], 2, (5, 20), "#3b6fd8", FRAME))
    assert [(s["y0"], s["label"]["text"]) for s in figure["layout"]["shapes"]] == [(5, "commit 5"), (20, "total 20")]
    assert figure["data"][0]["line"]["shape"] == "hv"


def active_at(borrows, returns, t):
    """Brute force: borrows started before t and not returned before t."""
    return sum(1 for bid, ts in borrows.items() if ts < t and not (bid in returns and returns[bid] < t))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 3600), st.one_of(st.none(), st.floats(0, 3600))), max_size=40), st.sampled_from([300, 1800])
)
def test_in_use_points_match_a_brute_force_count(spans, window):
    """Licenses held at each minute's end, rebuilt from the buffer's minute flows and today's count, match a recount."""
    start_at = NOW - 3600
    buffer = RealtimeMetricsBuffer(clock=FakeClock(NOW))
    borrows, returns = {}, {}
    events = []
    for n, (begin, length) in enumerate(spans):
        borrows[f"b{n}"] = start_at + begin
        events.append((start_at + begin, "borrow", f"b{n}"))
        if length is not None and begin + length < 3600:
            returns[f"b{n}"] = start_at + begin + length
            events.append((start_at + begin + length, "return", f"b{n}"))
    for ts, kind, bid in sorted(events):
        if kind == "borrow":
            buffer.add_borrow("Tool A", "u", False, bid, timestamp=ts)
        else:
            buffer.add_return(bid, timestamp=ts)
    borrowed_now = active_at(borrows, returns, NOW + 1)
    frame = figures.Frame(NOW - window, NOW)
    flows = buffer.get_minute_flows(window).get("Tool A", [])
    minutes, levels = figures.in_use_points(flows, borrowed_now, frame)
    assert minutes == sorted(minutes) and minutes[0] == frame.first_minute * 60
    assert minutes[-1] == (frame.current_minute + 1) * 60 and levels[-1] == borrowed_now
    for minute, level in zip(minutes[:-1], levels[:-1]):
        assert level == active_at(borrows, returns, minute + 60), minute


def test_tool_colors_follow_the_given_order_and_repeat_past_the_palette():
    tools = [f"T{n}" for n in range(len(TOOL_PALETTE) + 2)]
    colors = figures.tool_colors(tools)
    assert list(colors.values())[: len(TOOL_PALETTE)] == list(TOOL_PALETTE)
    assert colors[tools[len(TOOL_PALETTE)]] == TOOL_PALETTE[0]


@pytest.mark.parametrize("start, first", [(NOW - 1800, (NOW - 1800) // 60), (NOW - 1799.5, (NOW - 1800) // 60 + 1)])
def test_frame_minutes(start, first):
    frame = figures.Frame(start, NOW + 30)
    assert frame.first_minute == first and frame.current_minute == NOW // 60
