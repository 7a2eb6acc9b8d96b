"""Bar charts over a time window, per minute (or per bin of the stored history): borrows, overage and failures."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeAlias

from dash_app.auth.viewer import FULL, HIDDEN, Names
from dash_app.buffer import MinuteFlow
from dash_app.figures.common import Figure, Frame, empty_figure, time_axis
from dash_app.figures.text import legend_name, name_list, plotly_text, trace_uid
from dash_app.figures.theme import (
    OTHER_TOOLS_COLOR,
    REASON_LABELS,
    base_layout,
    reason_color,
    value_axis,
)

# A tooltip lists at most this many users of a minute, then says how many more there were.
HOVER_USER_LIMIT = 20
# A failure bar's tooltip names at most this many tools.
HOVER_TOOL_LIMIT = 5
# The series that sums every tool a chart does not show on its own, and its stable key.
OTHER_TOOLS = "Other tools"
OTHER_KEY = "\0other tools"
# Names stay out of templates (a name like "%{y}" would be filled in); Plotly inserts the escaped trace name, or the
# whole escaped name from `meta` where the legend shows it shortened.
NAMED_VALUE = "%{fullData.name}: %{y}<extra></extra>"
META_VALUE = "%{meta}: %{y}<extra></extra>"

# Per bucket key a per-tool bar chart counts: what its axis counts, and what an empty window says.
BAR_KINDS = {
    "count": ("borrows", "No borrows in this window"),
    "overage_count": ("overage borrows", "No overage checkouts in this window"),
}

# {tool: its bins with borrows}: the buffer's Buckets, or the stored history's points with the same keys.
Buckets: TypeAlias = Mapping[str, Sequence[Mapping[str, Any]]]
# {tool: its colour}
Colors: TypeAlias = Mapping[str, str]
# {bin: a bucket key's sum over every tool}, when the caller keeps it (None: summed here)
BinSums: TypeAlias = Mapping[str, int] | None
# Given a shown tool and a bucket key, its bars' (x, y): see bar_points.
BarPoints: TypeAlias = Callable[[str, str], tuple[list[str], list[int]]]
ShownSums: TypeAlias = Callable[[Sequence[str], str], Mapping[str, int]]


def _minute_bar(
    name: str, key: str, x: Sequence[Any], y: Sequence[Any], color: str | None, frame: Frame, **extra: Any
) -> dict[str, Any]:
    # offset=0 puts each bar over the bin it counts, starting at the bin's first second.
    trace: dict[str, Any] = {
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


def _stacked_top(traces: Iterable[Mapping[str, Any]]) -> float:
    totals: dict[str, float] = {}  # x (a bin's time) -> the stack's height there
    for trace in traces:
        for x, y in zip(trace["x"], trace["y"]):
            totals[x] = totals.get(x, 0) + y
    return max(totals.values(), default=0)


def _stacked_layout(frame: Frame, y_title: str, traces: Iterable[Mapping[str, Any]], top: float | None = None) -> dict[str, Any]:
    return base_layout(
        barmode="stack",
        bargap=0,
        hovermode="x unified",
        uirevision=frame.revision,
        xaxis=time_axis(frame),
        yaxis=value_axis(y_title, top=_stacked_top(traces) if top is None else top),
    )


def bin_sums(buckets_by_tool: Buckets, tools: Iterable[str], key: str) -> dict[str, int]:
    """Return {bin: sum of bucket `key` over `tools`}, of the bins where it is not 0."""
    sums: dict[str, int] = {}
    for tool in tools:
        for b in buckets_by_tool.get(tool, ()):
            if b[key]:
                sums[b["timestamp"]] = sums.get(b["timestamp"], 0) + b[key]
    return sums


def _less(total: Mapping[str, int], part: Mapping[str, int]) -> list[tuple[str, int]]:
    """Return sorted (bin, total less part) of the bins where that is not 0."""
    return sorted((stamp, left) for stamp, value in total.items() if (left := value - part.get(stamp, 0)))


def bar_points(buckets: Iterable[Mapping[str, Any]], key: str, frame: Frame) -> tuple[list[str], list[int]]:
    """Return one tool's bars of bucket `key`: the axis times and values of its buckets where that is not 0."""
    points = [(frame.bucket(b["timestamp"]), b[key]) for b in buckets if b[key]]
    return [p[0] for p in points], [p[1] for p in points]


def stacked_bars(
    key: str,
    buckets_by_tool: Buckets,
    shown: Sequence[str],
    colors: Colors,
    frame: Frame,
    total: BinSums = None,
    points: BarPoints | None = None,
    shown_sum: ShownSums | None = None,
) -> Figure:
    """One stacked series per shown tool (in `shown`'s order), then one for every other tool together, of bucket `key`.

    `total` ({bin: sum over every tool}), when the caller keeps it, saves summing the other tools here; `points`,
    given a shown tool and `key`, returns its bar_points, and `shown_sum`, given the shown tools and `key`, their
    bin_sums (a caller that keeps them while the tools' buckets do not change).
    """
    traces = []
    for tool in shown:
        x, y = points(tool, key) if points is not None else bar_points(buckets_by_tool.get(tool, ()), key, frame)
        if x:
            traces.append(
                _minute_bar(
                    legend_name(tool), tool, x, y, colors.get(tool), frame, meta=plotly_text(tool), hovertemplate=META_VALUE
                )
            )
    shown_set = set(shown)
    rest = [tool for tool in buckets_by_tool if tool not in shown_set]
    if total is None:
        summed = sorted(bin_sums(buckets_by_tool, rest, key).items())
    else:  # every tool's sums less the shown tools'
        summed = _less(total, bin_sums(buckets_by_tool, shown, key) if shown_sum is None else shown_sum(shown, key))
    if summed:
        name = f"{OTHER_TOOLS} ({len(rest)})"
        x = [frame.bucket(stamp) for stamp, _ in summed]
        y = [count for _, count in summed]
        traces.append(_minute_bar(name, OTHER_KEY, x, y, OTHER_TOOLS_COLOR, frame, hovertemplate=NAMED_VALUE))
    what, empty_message = BAR_KINDS[key]
    if not traces:
        return empty_figure(empty_message, frame.revision)
    # The stack's height in a bin is every tool's sum there: `total` has it without adding up the traces again.
    top = None if total is None else max(total.values(), default=0)
    return {"data": traces, "layout": _stacked_layout(frame, f"{what} / {frame.per_bin}", traces, top)}


# Borrows, and overage checkouts, per bin: one stacked series per shown tool and one for the others, each with its
# own legend, from aggregate_tool_metrics buckets.
borrow_chart = partial(stacked_bars, "count")
overage_chart = partial(stacked_bars, "overage_count")


def failure_chart(
    flows_by_tool: Mapping[str, Iterable[MinuteFlow]], frame: Frame, empty_message: str = "No failed borrows in this window"
) -> Figure:
    """Failed borrows per bin, summed over tools, one stacked series per reason, from get_minute_flows.

    Hovering a bar names the tools behind it, busiest first: for unknown-tool failures, the names asked for.
    """
    per_reason: dict[str, dict[int, dict[str, int]]] = {}  # reason -> {bin start: {tool: failures}}
    for tool, flows in flows_by_tool.items():
        for flow in flows:
            for detail, count in flow.failures.items():
                by_tool = per_reason.setdefault(reason_category(detail), {}).setdefault(flow.minute, {})
                by_tool[tool] = by_tool.get(tool, 0) + count
    if not per_reason:
        return empty_figure(empty_message, frame.revision)
    known = [r for r in REASON_LABELS if r in per_reason]
    others = sorted(r for r in per_reason if r not in REASON_LABELS)
    traces = []
    for reason in known + others:
        bins = sorted(per_reason[reason].items())
        label = plotly_text(REASON_LABELS.get(reason, reason))
        traces.append(
            _minute_bar(
                label,
                f"reason:{reason}",
                [frame.time(m) for m, _ in bins],
                [sum(by_tool.values()) for _, by_tool in bins],
                reason_color(reason),
                frame,
                customdata=[_busiest(by_tool) for _, by_tool in bins],
                hovertemplate="%{fullData.name}: %{y}<br>%{customdata}<extra></extra>",
            )
        )
    return {"data": traces, "layout": _stacked_layout(frame, f"failures / {frame.per_bin}", traces)}


def _busiest(counts: Mapping[str, int], limit: int = HOVER_TOOL_LIMIT) -> str:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    lines = [f"{plotly_text(name)} ({count})" for name, count in ranked[:limit]]
    if len(ranked) > limit:
        lines.append(f"and {len(ranked) - limit} more")
    return "<br>".join(lines)


def reason_category(reason: str) -> str:
    """Return a failure reason's category: log sources give "exhausted: <server text> (<code>)"."""
    category, colon, _detail = reason.partition(":")
    return category.strip() if colon and category.strip() else reason


def tool_borrow_chart(
    tool: str, buckets: Sequence[Mapping[str, Any]], color: str | None, frame: Frame, names: Names = FULL
) -> Figure:
    """One tool's borrows per minute; hovering a bar shows its count, overage and users.

    The users are listed as `names` shows them (pseudonyms, or no list at all when names are hidden); their count
    is always the real number of distinct users, an aggregate.
    """
    if not buckets:
        return empty_figure("No borrows of this tool in this window", frame.revision)
    x = [frame.bucket(b["timestamp"]) for b in buckets]
    y = [b["count"] for b in buckets]
    listed = names.mode != HIDDEN
    custom = [
        [len(b["users"]), b["overage_count"], name_list(names.users(b["users"]), HOVER_USER_LIMIT) if listed else ""]
        for b in buckets
    ]
    users_line = "<br>%{customdata[0]} users:<br>%{customdata[2]}" if listed else "<br>%{customdata[0]} users"
    trace = _minute_bar(
        plotly_text(tool),
        tool,
        x,
        y,
        color,
        frame,
        customdata=custom,
        hovertemplate=(
            f"<b>%{{x|{frame.time_format}}}</b><br>%{{y}} borrows, %{{customdata[1]}} overage{users_line}<extra></extra>"
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
