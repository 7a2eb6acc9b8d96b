"""Charts over a time window, per minute (or per bin of the stored history): borrows, overage, failures, in use."""

from dash_app.figures.common import empty_figure, rgba, time_axis
from dash_app.figures.text import axis_time, bucket_time, name_list, plotly_text, trace_uid
from dash_app.figures.theme import (
    COMMIT_LINE_COLOR,
    REASON_LABELS,
    TOTAL_LINE_COLOR,
    base_layout,
    reason_color,
    value_axis,
)

# A tooltip lists at most this many users of a minute, then says how many more there were.
HOVER_USER_LIMIT = 20
# Names stay out of templates (a name like "%{y}" would be filled in); Plotly inserts the escaped trace name.
NAMED_VALUE = "%{fullData.name}: %{y}<extra></extra>"


def _minute_bar(name, key, x, y, color, frame, **extra):
    # offset=0 puts each bar over the bin it counts, starting at the bin's first second.
    trace = {
        "type": "bar",
        "name": name,
        "uid": trace_uid(key),
        "x": x,
        "y": y,
        "offset": 0,
        "width": frame.bar_width_ms,
        "marker": {"color": color, "line": {"width": 0}},
    }
    trace.update(extra)
    return trace


def _stacked_top(traces):
    totals: dict[str, float] = {}  # x (a bin's time) -> the stack's height there
    for trace in traces:
        for x, y in zip(trace["x"], trace["y"]):
            totals[x] = totals.get(x, 0) + y
    return max(totals.values(), default=0)


def _stacked_layout(frame, y_title, traces, legend=True):
    return base_layout(
        barmode="stack",
        bargap=0,
        hovermode="x unified",
        showlegend=legend,
        uirevision=frame.revision,
        xaxis=time_axis(frame),
        yaxis=value_axis(y_title, top=_stacked_top(traces)),
    )


def _per_tool_bars(buckets_by_tool, colors, frame, key, y_title, empty_message, legend=True):
    traces = []
    # Inventory order (the colour map's), so every chart lists the tools alike; unknown tools come last.
    order = [t for t in colors if t in buckets_by_tool] + sorted(t for t in buckets_by_tool if t not in colors)
    for tool in order:
        buckets = buckets_by_tool[tool]
        points = [(bucket_time(b["timestamp"]), b[key]) for b in buckets if b[key]]
        if not points:
            continue
        x, y = zip(*points)
        name = plotly_text(tool)
        traces.append(_minute_bar(name, tool, list(x), list(y), colors.get(tool), frame, hovertemplate=NAMED_VALUE))
    if not traces:
        return empty_figure(empty_message, frame.revision)
    return {"data": traces, "layout": _stacked_layout(frame, y_title, traces, legend)}


def borrow_chart(buckets_by_tool, colors, frame):
    """Borrows per minute, one stacked series per tool, from aggregate_tool_metrics buckets."""
    return _per_tool_bars(buckets_by_tool, colors, frame, "count", f"borrows / {frame.per_bin}", "No borrows in this window")


def overage_chart(buckets_by_tool, colors, frame):
    """Overage checkouts per minute, one stacked series per tool; no legend, its colours are the borrow chart's."""
    return _per_tool_bars(
        buckets_by_tool,
        colors,
        frame,
        "overage_count",
        f"overage borrows / {frame.per_bin}",
        "No overage checkouts in this window",
        legend=False,
    )


def failure_chart(flows_by_tool, frame):
    """Failed borrows per minute, summed over tools, one stacked series per reason, from get_minute_flows."""
    per_reason: dict[str, dict[int, int]] = {}  # reason -> {minute: failures}
    for flows in flows_by_tool.values():
        for flow in flows:
            for detail, count in flow.failures.items():
                reason = reason_category(detail)
                counts = per_reason.setdefault(reason, {})
                counts[flow.minute] = counts.get(flow.minute, 0) + count
    if not per_reason:
        return empty_figure("No failed borrows in this window", frame.revision)
    known = [r for r in REASON_LABELS if r in per_reason]
    others = sorted(r for r in per_reason if r not in REASON_LABELS)
    traces = []
    for reason in known + others:
        minutes = sorted(per_reason[reason].items())
        label = plotly_text(REASON_LABELS.get(reason, reason))
        traces.append(
            _minute_bar(
                label,
                f"reason:{reason}",
                [axis_time(m) for m, _ in minutes],
                [c for _, c in minutes],
                reason_color(reason),
                frame,
                hovertemplate=NAMED_VALUE,
            )
        )
    return {"data": traces, "layout": _stacked_layout(frame, f"failures / {frame.per_bin}", traces)}


def reason_category(reason):
    """Return a failure reason's category: log sources give "exhausted: <server text> (<code>)"."""
    category, colon, _detail = reason.partition(":")
    return category.strip() if colon and category.strip() else reason


def tool_borrow_chart(tool, buckets, color, frame):
    """One tool's borrows per minute; hovering a bar shows its count, overage and users."""
    if not buckets:
        return empty_figure("No borrows of this tool in this window", frame.revision)
    x = [bucket_time(b["timestamp"]) for b in buckets]
    y = [b["count"] for b in buckets]
    custom = [[len(b["users"]), b["overage_count"], name_list(b["users"], HOVER_USER_LIMIT)] for b in buckets]
    trace = _minute_bar(
        plotly_text(tool),
        tool,
        x,
        y,
        color,
        frame,
        customdata=custom,
        hovertemplate=(
            f"<b>%{{x|{frame.time_format}}} UTC</b><br>%{{y}} borrows, %{{customdata[1]}} overage"
            "<br>%{customdata[0]} users:<br>%{customdata[2]}<extra></extra>"
        ),
        showlegend=False,
    )
    layout = base_layout(
        bargap=0,
        hovermode="closest",
        showlegend=False,
        uirevision=frame.revision,
        xaxis=time_axis(frame),
        yaxis=value_axis(f"borrows / {frame.per_bin}", top=max(y)),
    )
    return {"data": [trace], "layout": layout}


def in_use_points(flows, borrowed, frame):
    """Return (minute starts, licenses held at each minute's end) over the frame, working back from `borrowed` now.

    In use at the end of a minute is the current count minus the net borrows (borrows - returns) of every later
    minute. The first point holds the level before the window's first flow; the last repeats today's count at the
    end of the current minute, so the line reaches the right edge.
    """
    level = borrowed
    after = []
    for flow in reversed(flows):
        after.append((flow.minute, level))
        level -= flow.borrows - flow.returns
    after.reverse()
    start = frame.first_minute * 60
    points = []
    if not after or after[0][0] > start:
        points.append((start, level))
    points.extend(after)
    points.append(((frame.current_minute + 1) * 60, borrowed))
    # Events lost to a buffer cap can push the reconstruction below zero; nobody holds fewer than none.
    return [m for m, _ in points], [max(0, n) for _, n in points]


def _limit_line(y, label, color, dash):
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": "y",
        "y0": y,
        "y1": y,
        "line": {"color": color, "width": 1.5, "dash": dash},
        "label": {"text": label, "textposition": "end", "yanchor": "bottom", "font": {"size": 11, "color": color}},
    }


def tool_inuse_chart(tool, flows, borrowed, limits, color, frame):
    """Licenses of one tool held at once over the window, with lines at its commit and total.

    `flows` are the tool's MinuteFlows in the window, `borrowed` is held now, `limits` is (commit, total) or None.
    """
    if not flows and not borrowed:
        return empty_figure("No licenses of this tool in use in this window", frame.revision)
    minutes, levels = in_use_points(flows, borrowed, frame)
    trace = {
        "type": "scatter",
        "mode": "lines",
        "name": plotly_text(tool),
        "uid": trace_uid(tool),
        "x": [axis_time(m) for m in minutes],
        "y": levels,
        "line": {"shape": "hv", "color": color, "width": 2},
        "fill": "tozeroy",
        "fillcolor": rgba(color, 0.15),
        "hovertemplate": f"<b>%{{x|{frame.time_format}}} UTC</b><br>%{{y}} in use<extra></extra>",
        "showlegend": False,
    }
    shapes = []
    top = max(levels)
    if limits is not None:
        commit, total = limits
        shapes = [
            _limit_line(commit, f"commit {commit}", COMMIT_LINE_COLOR, "dash"),
            _limit_line(total, f"total {total}", TOTAL_LINE_COLOR, "dot"),
        ]
        top = max(top, total)
    layout = base_layout(
        hovermode="closest",
        showlegend=False,
        uirevision=frame.revision,
        shapes=shapes,
        xaxis=time_axis(frame),
        # Room above the total line for its label.
        yaxis=value_axis("licenses in use", range=[0, top * 1.15 + 1], autorange=False),
    )
    return {"data": [trace], "layout": layout}
