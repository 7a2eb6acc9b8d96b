"""The pure figure builders: data in, valid Plotly figures out, checked against brute-force references."""

import copy
import random
import re
from typing import Any

import plotly.graph_objects as go
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dash_app import figures
from dash_app.buffer.metrics_buffer import MinuteFlow
from dash_app.callbacks.highest import OtherTools
from dash_app.callbacks.updates import TraceDigests, trace_digest
from dash_app.figures import capacity as capacity_charts
from dash_app.figures.in_use import highest_points, highest_shares, share_points
from dash_app.figures.pools import split_usage
from dash_app.figures.text import legend_name, plotly_text
from dash_app.figures.theme import REASON_COLORS, TOOL_PALETTE
from dash_app.figures.timeseries import HOVER_USER_LIMIT

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
    buckets = {"Tool A": [bucket("2027-01-15T07:59:00Z", 1, ["u"])]}
    layout = valid(figures.borrow_chart(buckets, ["Tool A"], COLORS, FRAME))["layout"]
    assert layout["xaxis"]["autorange"] is True
    assert layout["xaxis"]["autorangeoptions"] == {"minallowed": (NOW - 1800) * 1000, "maxallowed": NOW * 1000}
    assert layout["xaxis"]["title"]["text"] == "time (UTC)"
    assert layout["uirevision"] == "all|1800"


def test_borrow_chart_has_one_series_per_shown_tool_in_their_order_then_the_others_summed():
    buckets = {
        "Tool B": [bucket("2027-01-15T07:40:00Z", 2, ["x", "y"])],
        "Tool A": [bucket("2027-01-15T07:41:00Z", 3, ["x"]), bucket("2027-01-15T07:45:00Z", 1, ["z"])],
        "Stray": [bucket("2027-01-15T07:42:00Z", 1, ["q"]), bucket("2027-01-15T07:45:00Z", 2, ["q"])],
        "Stray 2": [bucket("2027-01-15T07:45:00Z", 5, ["r"])],
    }
    figure = valid(figures.borrow_chart(buckets, ["Tool A", "Tool B"], COLORS, FRAME))
    assert [t["name"] for t in figure["data"]] == ["Tool A", "Tool B", "Other tools (2)"]
    others = figure["data"][2]
    assert others["x"] == ["2027-01-15 07:42:00", "2027-01-15 07:45:00"] and others["y"] == [1, 7]
    tool_a = figure["data"][0]
    assert tool_a["x"] == ["2027-01-15 07:41:00", "2027-01-15 07:45:00"] and tool_a["y"] == [3, 1]
    assert tool_a["marker"]["color"] == COLORS["Tool A"] == TOOL_PALETTE[0]
    assert figure["data"][1]["marker"]["color"] == TOOL_PALETTE[1]
    assert figure["layout"]["barmode"] == "stack"


@given(
    data=st.dictionaries(
        st.sampled_from(["Tool A", "Tool B", "Tool C", "Stray", "Stray 2"]),
        st.lists(st.tuples(st.integers(0, 29), st.integers(0, 4), st.integers(0, 2)), max_size=8),
    ),
    shown=st.lists(st.sampled_from(["Tool A", "Tool B", "Tool C", "Stray"]), unique=True, max_size=3),
    changes=st.lists(st.sampled_from(["Tool A", "Tool B", "Tool C", "Stray", "Stray 2"]), max_size=4),
)
def test_bars_from_kept_sums_equal_bars_summed_afresh(data, shown, changes):
    """The borrow and overage charts from the window's every-tool sums and the shown tools' kept sums (ToolBars)."""
    from dash_app.callbacks.highest import ToolBars

    def buckets_of(entries):
        minutes = {}
        for minute, count, overage in entries:
            minutes[minute] = (count, overage)  # one bucket a minute, as the buffer has
        return [bucket(f"2027-01-15T07:{30 + m:02d}:00Z", c, ["u"], o) for m, (c, o) in sorted(minutes.items())]

    buckets = {tool: buckets_of(entries) for tool, entries in data.items()}
    kept = ToolBars()
    for step in range(len(changes) + 1):
        if step:  # one tool's buckets change (a new list, as the buffer hands out), the others' stay the same lists
            tool = changes[step - 1]
            buckets[tool] = [*buckets.get(tool, []), bucket("2027-01-15T07:59:00Z", step, ["v"], step % 2)]
        for key, chart in (("count", figures.borrow_chart), ("overage_count", figures.overage_chart)):
            total = figures.timeseries.bin_sums(buckets, list(buckets), key)
            fresh = chart(buckets, shown, COLORS, FRAME)
            from_kept = chart(buckets, shown, COLORS, FRAME, total, None, lambda tools, k: kept.sums(tools, buckets, k))
            assert from_kept == fresh


def test_small_counts_get_whole_number_ticks():
    figure = figures.borrow_chart({"Tool A": [bucket("2027-01-15T07:41:00Z", 2, ["x"])]}, ["Tool A"], COLORS, FRAME)
    assert figure["layout"]["yaxis"]["dtick"] == 1


NO_OVERAGE = {"Tool A": [bucket("2027-01-15T07:41:00Z", 2, ["x"])]}


def test_empty_windows_say_so_instead_of_drawing_bare_axes():
    cases = [
        (figures.borrow_chart({}, [], COLORS, FRAME), "No borrows in this window"),
        (figures.overage_chart(NO_OVERAGE, ["Tool A"], COLORS, FRAME), "No overage checkouts in this window"),
        (figures.inuse_chart({}, [], COLORS, {}, FRAME), "No licenses in use in this window"),
        (figures.failure_chart({"Tool A": [MinuteFlow(NOW - 60, 1, 0, 0, {})]}, FRAME), "No failed borrows in this window"),
        (figures.tool_borrow_chart("Tool A", [], "#000000", FRAME), "No borrows of this tool in this window"),
        (figures.tool_inuse_chart("Tool A", [], (5, 20), "#000000", FRAME), "No licenses of this tool in use in this window"),
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
    (trace,) = valid(figures.overage_chart(buckets, ["Tool A"], COLORS, FRAME))["data"]
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
    # The hover names the tools behind a bar, busiest first.
    assert by_name["Pool exhausted"]["customdata"] == ["Tool A (2)<br>Tool B (1)"]


def test_unknown_tool_failures_name_what_was_asked_for():
    flows = {
        "GreenHils Multi IDE": [MinuteFlow(NOW - 60, 0, 0, 0, {"unknown_tool": 2})],
        XSS: [MinuteFlow(NOW - 60, 0, 0, 0, {"unknown_tool": 1})],
    }
    (trace,) = valid(figures.failure_chart(flows, FRAME))["data"]
    assert trace["name"] == "Unknown tool" and trace["y"] == [3]
    assert trace["customdata"] == [f"GreenHils Multi IDE (2)<br>{plotly_text(XSS)} (1)"]


def test_failure_chart_groups_log_reasons_by_their_category():
    reasons = {"exhausted: Licensed number of users already reached. (-4,342)": 2, "exhausted": 1}
    flows = {"MATLAB": [MinuteFlow(NOW - 60, 0, 0, 0, reasons)]}
    (trace,) = valid(figures.failure_chart(flows, FRAME))["data"]
    assert trace["name"] == "Pool exhausted" and trace["y"] == [3]


def test_long_windows_use_wider_bins_and_say_so():
    frame = figures.Frame(NOW - 7 * 86400, NOW, revision="all|604800", bin_seconds=3600)
    buckets = {"Tool A": [bucket("2027-01-10T05:00:00Z", 4, ["ann"])]}
    figure = valid(figures.borrow_chart(buckets, ["Tool A"], {"Tool A": "#3b6fd8"}, frame))
    assert figure["layout"]["yaxis"]["title"]["text"] == "borrows / h"
    assert figure["data"][0]["width"] == 3_000_000
    assert figure["layout"]["xaxis"]["hoverformat"] == "%b %d %H:%M"
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
        figures.borrow_chart(buckets, [tool], {tool: "#3b6fd8"}, FRAME),
        figures.tool_borrow_chart(tool, buckets[tool], "#3b6fd8", FRAME),
        figures.utilization_chart([{"tool": tool, "borrowed": 1, "commit": 1, "total": 2}]),
        figures.tool_inuse_chart(tool, [(int(NOW) - 60, 1, 0.5)], (1, 2), "#3b6fd8", FRAME),
        figures.inuse_chart({tool: [(int(NOW) - 60, 1, 0.5)]}, [tool], {tool: "#3b6fd8"}, {tool: 2}, FRAME),
        figures.failure_chart({tool: [MinuteFlow(NOW - 60, 0, 0, 0, {"unknown_tool": 1})]}, FRAME),
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
    assert names == ["In commit", "Overage", "Available"]  # no tool reserves: no reserved segment, no legend entry
    counts = [[c[0] for c in t["customdata"]] for t in figure["data"]]
    assert list(zip(*counts)) == [(5, 2, 13), (3, 0, 7), (2, 0, 0)]
    # Bars are shares of each tool's total, so tools of any size read on one scale.
    shares = [t["x"] for t in figure["data"]]
    assert list(zip(*shares)) == [(25.0, 10.0, 65.0), (30.0, 0.0, 70.0), (100.0, 0.0, 0.0)]
    assert figure["data"][0]["y"] == ["Tool A", "Tool B", "Seen in a log"]
    assert figure["layout"]["barmode"] == "stack"


def test_reserved_licenses_are_a_segment_of_their_own_taken_from_available():
    status = [
        {"tool": "Tool A", "borrowed": 7, "commit": 5, "total": 20, "reserved": 3},
        {"tool": "Tool B", "borrowed": 3, "commit": 5, "total": 10, "reserved": 0},
        {"tool": "Full", "borrowed": 9, "commit": 5, "total": 10, "reserved": 4},  # the total has room for one
        {"tool": "Seen in a log", "borrowed": 2, "commit": None, "total": None, "reserved": 2},
    ]
    figure = valid(figures.utilization_chart(status))
    assert [t["name"] for t in figure["data"]] == ["In commit", "Overage", "Reserved", "Available"]
    shares = [t["x"] for t in figure["data"]]
    assert list(zip(*shares)) == [
        (25.0, 10.0, 15.0, 50.0),
        (30.0, 0.0, 0.0, 70.0),
        (50.0, 40.0, 10.0, 0.0),
        (50.0, 0.0, 50.0, 0.0),
    ]
    # The hover says how many are reserved, also those the bar has no room for.
    assert [c[0] for c in figure["data"][2]["customdata"]] == [3, 0, 4, 2]
    ring = valid(figures.tool_commit_chart(status[0]))
    assert ring["data"][0]["labels"] == ["In commit", "Overage", "Reserved", "Available"]
    assert ring["data"][0]["values"] == [5, 2, 3, 10]
    assert valid(figures.tool_commit_chart(status[1]))["data"][0]["labels"] == ["In commit", "Overage", "Available"]


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 20), st.integers(0, 30))
def test_split_usage_adds_up(borrowed, commit, extra, reserved):
    total = max(borrowed, commit) + extra
    in_commit, overage, shown, available = split_usage(
        {"borrowed": borrowed, "commit": commit, "total": total, "reserved": reserved}
    )
    assert in_commit + overage == borrowed and in_commit + overage + shown + available == total
    assert in_commit == min(borrowed, commit) and min(in_commit, overage, shown, available) >= 0
    assert shown == min(reserved, total - borrowed) and available == max(total - borrowed - reserved, 0)


def test_commit_ring_shows_the_split_and_the_count_in_use():
    entry = {"tool": "Tool A", "borrowed": 7, "commit": 5, "total": 20}
    figure = valid(figures.tool_commit_chart(entry))
    assert figure["data"][0]["values"] == [5, 2, 13]
    assert "<b>7</b> of 20" in annotation_texts(figure)[0]


def test_in_use_chart_draws_commit_and_total_lines():
    bins = [(int(NOW) - 120, 20, 3.5), (int(NOW) - 60, 2, 2.0)]
    figure = valid(figures.tool_inuse_chart("Tool A", bins, (5, 20), "#3b6fd8", FRAME))
    assert [(s["y0"], s["label"]["text"]) for s in figure["layout"]["shapes"]] == [(5, "commit 5"), (20, "total 20")]
    (trace,) = figure["data"]
    assert trace["line"]["shape"] == "hv"
    # Every bin of the window has a point (0 where nothing was in use), and one more at its end.
    assert len(trace["x"]) == len(FRAME.bins) + 1
    assert trace["y"][-4:] == [20, 2, 0, 0] and trace["customdata"][-4:] == [3.5, 2.0, 0.0, 0.0]


def test_inuse_chart_shows_each_shown_tools_peak_share_and_the_highest_of_the_others():
    at = int(NOW) - 60
    in_use = {"A": [(at, 5, 2.5)], "B": [(at, 1, 1.0)], "C": [(at, 3, 3.0)], "D": [(at, 4, 4.0)], "No limits": [(at, 9, 9.0)]}
    totals = {"A": 10, "B": 2, "C": 3, "D": 8, "No limits": None}
    figure = valid(figures.inuse_chart(in_use, ["A", "B"], {"A": "#3b6fd8", "B": "#8b5cf6"}, totals, FRAME))
    a, b, others = figure["data"]
    at_index = list(FRAME.bins).index(at)
    assert (a["name"], a["y"][at_index], a["customdata"][at_index]) == ("A", 50.0, [5, 10, 2.5])
    assert b["y"][at_index] == 50.0
    # C is at 100 % of its total, D at 50 %: the others' line shows C; a tool without a total has no share.
    assert others["name"] == "Other tools (2), highest" and others["y"][at_index] == 100.0
    assert others["customdata"][at_index] == ["C", 3, 3]


def test_tool_colors_follow_the_given_order_and_repeat_past_the_palette():
    tools = [f"T{n}" for n in range(len(TOOL_PALETTE) + 2)]
    colors = figures.tool_colors(tools)
    assert list(colors.values())[: len(TOOL_PALETTE)] == list(TOOL_PALETTE)
    assert colors[tools[len(TOOL_PALETTE)]] == TOOL_PALETTE[0]


@given(st.integers(1, 300), st.data())
def test_shown_tools_get_distinct_colours_and_keep_their_own_when_they_can(count, data):
    tools = [f"T{n}" for n in range(count)]
    shown = data.draw(st.lists(st.sampled_from(tools), unique=True, max_size=len(TOOL_PALETTE)))
    own = figures.tool_colors(tools)
    colors = figures.tool_colors(tools, shown)
    assert len({colors[t] for t in shown}) == len(shown)
    assert all(colors[t] in TOOL_PALETTE for t in tools)
    # The highest-ranked shown tool of each own colour keeps it; the tools not shown keep theirs.
    firsts = {}
    for tool in shown:
        firsts.setdefault(own[tool], tool)
    assert all(colors[tool] == own[tool] for tool in firsts.values())
    assert all(colors[t] == own[t] for t in tools if t not in shown)


@pytest.mark.parametrize("start, first", [(NOW - 1800, (NOW - 1800) // 60), (NOW - 1799.5, (NOW - 1800) // 60 + 1)])
def test_frame_minutes(start, first):
    frame = figures.Frame(start, NOW + 30)
    assert frame.first_minute == first and frame.current_minute == NOW // 60


def test_legend_names_are_cut_in_the_middle_and_escaped():
    assert legend_name("Short name") == "Short name"
    cut = legend_name("Vector DaVinci Configurator - feature 09")
    assert len(cut) == 28 and cut.startswith("Vector DaVinci") and cut.endswith("feature 09") and "…" in cut
    assert legend_name("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"


def test_a_frame_in_a_time_zone_shows_wall_times_there_and_pins_the_axis_to_them():
    frame = figures.Frame(NOW - 1800, NOW, zone="Asia/Tokyo")
    assert frame.time(NOW) == "2027-01-15 17:00:00"  # UTC+9
    assert frame.bucket("2027-01-15T07:41:00Z") == "2027-01-15 16:41:00"
    buckets = {"Tool A": [bucket("2027-01-15T07:59:00Z", 1, ["u"])]}
    layout = figures.borrow_chart(buckets, ["Tool A"], COLORS, frame)["layout"]
    shifted = {"minallowed": (NOW - 1800 + 9 * 3600) * 1000, "maxallowed": (NOW + 9 * 3600) * 1000}
    assert layout["xaxis"]["autorangeoptions"] == shifted
    assert layout["xaxis"]["title"]["text"] == "time (Asia/Tokyo)"


def test_a_small_pool_gets_whole_ticks_and_its_limits_labels_never_overprint():
    # A pool of 2 whose commit is its total: ticks 0, 1, 2, 3 (not 0, 1, 1, 2, 2 ...), the commit's label at the
    # line's start and the total's at its end, so the two never print over each other.
    figure = figures.tool_inuse_chart("Tool A", [(int(NOW) - 60, 2, 1.5)], (2, 2), "#3b6fd8", FRAME)
    axis = figure["layout"]["yaxis"]
    assert (axis["dtick"], axis["tickformat"]) == (1, ",d")
    labels = {shape["label"]["text"]: shape["label"]["textposition"] for shape in figure["layout"]["shapes"]}
    assert labels == {"commit 2": "start", "total 2": "end"}
    curve = capacity_charts.duration_chart([{"licenses": 2, "share": 0.5}, {"licenses": 1, "share": 1.0}], 2, 2)
    assert curve["layout"]["yaxis"]["dtick"] == 1
    assert {s["label"]["text"]: s["label"]["textposition"] for s in curve["layout"]["shapes"]} == labels


def test_the_commit_now_and_the_best_one_never_print_over_each_other():
    curve = [{"commit": n, "cost": 1000 - n + (n - 98) ** 2} for n in range(90, 101)]
    apart = capacity_charts.cost_chart({"curve": curve, "commit": 100, "best_commit": 98})
    marks = {t["text"][0]: t["textposition"] for t in apart["data"][1:]}
    assert marks == {"now: 100": "top center", "best: 98": "bottom center"}
    same = capacity_charts.cost_chart({"curve": curve, "commit": 98, "best_commit": 98})
    assert [t["text"][0] for t in same["data"][1:]] == ["now = best: 98"]


def test_the_other_tools_line_kept_in_parts_is_the_highest_share_of_them_all():
    rng = random.Random(5)
    tools = [f"tool {n:02d}" for n in range(90)]
    totals = {tool: rng.choice((2, 5, 10)) for tool in tools}
    in_use = {tool: [(60 * m, rng.randint(1, totals[tool]), 0.5) for m in range(30)] for tool in tools}
    peaks = {tool: object() for tool in tools}
    frame = figures.Frame(0, 60 * 29 + 30)
    kept = OtherTools()
    for step in range(40):
        # A live tick: one to three tools' peaks change (often in the last bin only), the others' stay the very same
        # objects; now and then the tools shown by name change too.
        for changed in rng.sample(tools, rng.randint(1, 3)):
            levels = in_use[changed]
            if rng.random() < 0.5:
                in_use[changed] = [*levels[:-1], (levels[-1][0], rng.randint(1, totals[changed]), 0.5)]
            else:
                in_use[changed] = [(start, rng.randint(0, totals[changed]), 0.5) for start, _, _ in levels]
            peaks[changed] = object()
        shown = set(tools[: 10 + step // 10])
        rest = [(tool, totals[tool]) for tool in tools if tool not in shown]
        expected = highest_shares(in_use, rest)
        y, custom = kept.line(tools, in_use, peaks, rest, frame)
        want_y, _ = highest_points(expected, frame)
        assert y == want_y
        # Each point names a tool whose share in that bin is the highest (ties may name either).
        for start, share, (name, peak, total) in zip([*frame.bins, frame.bins[-1]], y, custom):
            if share:
                assert round(100 * peak / total, 1) == share and {b: p for b, p, _ in in_use[name]}[start] == peak


def test_a_shown_tools_points_kept_from_tick_to_tick_equal_a_fresh_build():
    rng = random.Random(7)
    frame = figures.Frame(0, 60 * 29 + 30)
    kept = OtherTools()
    levels = [(60 * m, rng.randint(1, 5), 0.5) for m in range(0, 30, 2)] + [(60 * 29, 2, 1.25)]
    for step in range(30):
        if step % 3:
            # The current minute's average carried on, or its peak moved: only the last level is new.
            start, peak, average = levels[-1]
            levels = [*levels[:-1], (start, rng.choice((peak, peak + 1)), average + rng.random())]
        elif step % 2:
            levels = [(start, rng.randint(1, 5), rng.random() * 5) for start, _, _ in levels]  # every bin anew
        # else: the very same list again
        assert kept.points("tool", levels, 5, frame) == share_points(levels, 5, frame)


def test_kept_trace_digests_equal_a_fresh_digest_of_every_trace():
    """Kept digests (by the lists' and the chunks' identities) equal fresh ones, and equal only for equal traces."""
    rng = random.Random(3)
    lists = [[rng.random() for _ in range(rng.choice([20, 100]))] for _ in range(6)]
    kept = TraceDigests(limit=4, chunk_limit=8)  # small, so the generations turn over during the test
    seen: dict[str, Any] = {}
    for _ in range(400):
        base = rng.choice(lists)
        cut = rng.randrange(len(base))
        trace = {
            "type": "scatter",
            "name": rng.choice(["A", "B", "<b>C</b>"]),
            "x": rng.choice(lists),
            # The same list, a new one, or one that shares a prefix's very items (a line whose last points moved).
            "y": rng.choice([base, [rng.random()], [*base[:cut], *(rng.choice([v, rng.random()]) for v in base[cut:])]]),
            "customdata": [[n, str(n)] for n in range(rng.choice([3, 40]))],
            "line": {"color": rng.choice(["#000000", "#3b6fd8"]), "width": 2},
            "visible": rng.choice([True, "legendonly"]),
        }
        found = kept.digest(trace)
        assert found == trace_digest(trace)
        assert (seen.setdefault(found, trace) == trace) and found == trace_digest(copy.deepcopy(trace))
    # A field that cannot be part of a key is digested every time.
    odd = {"type": "bar", "x": lists[0], "meta": [1, {"a": 2}], "ids": ({"no": "hash"},)}
    assert kept.digest(odd) == trace_digest(odd)
    # The chunks' run is framed by the list's name and length: moving items between lists changes the digest.
    items = [float(n) for n in range(64)]
    assert trace_digest({"x": items[:32], "y": items[32:]}) != trace_digest({"x": items, "y": []})
