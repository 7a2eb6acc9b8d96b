"""Step charts of licenses in use over a time window: each bin's peak as a share of the total, or one tool's count."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from dash_app.figures.common import Figure, Frame, empty_figure, limit_line, rgba, time_axis
from dash_app.figures.text import legend_name, plotly_text, trace_uid
from dash_app.figures.theme import COMMIT_LINE_COLOR, OTHER_TOOLS_COLOR, TOTAL_LINE_COLOR, base_layout, value_axis
from dash_app.figures.timeseries import OTHER_KEY, OTHER_TOOLS

# (bin start in epoch s, peak in use within the bin, time-weighted average in use over the bin)
Level: TypeAlias = tuple[int, int, float]
# {bin start: (share of its total in %, tool, peak, total)} of the tool with the highest share in each bin
Highest: TypeAlias = dict[int, tuple[float, str, int, int]]
# A line on a frame's axis_times: its y values and its customdata, one of each per bin and one more at the end
Points: TypeAlias = tuple[list[float], list[list[Any]]]


def _levels(bins: Iterable[Level], frame: Frame) -> tuple[list[str], list[int], list[float]]:
    """Return (x, peaks, averages) on every bin of the frame from [(bin start, peak, average)]; bins not listed hold 0."""
    by_start = {start: (peak, average) for start, peak, average in bins}
    starts = list(frame.bins)
    peaks = [by_start.get(start, (0, 0.0))[0] for start in starts]
    averages = [round(by_start.get(start, (0, 0.0))[1], 1) for start in starts]
    # One more point at the window's end, so the last bin's step reaches the right edge.
    return frame.axis_times, peaks + peaks[-1:], averages + averages[-1:]


def _step_line(
    name: str,
    key: str,
    x: Sequence[Any],
    y: Sequence[Any],
    color: str | None,
    customdata: Sequence[Any],
    hovertemplate: str,
    fill: bool = False,
    meta: str | None = None,
) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "uid": trace_uid(key),
        "x": x,
        "y": y,
        "line": {"shape": "hv", "color": color, "width": 2},
        "customdata": customdata,
        "hovertemplate": hovertemplate,
    }
    if fill and color is not None:
        trace.update(fill="tozeroy", fillcolor=rgba(color, 0.15))
    if meta is not None:
        trace["meta"] = meta
    return trace


def share_points(bins: Iterable[Level], total: int, frame: Frame) -> Points:
    """Return a shown tool's line on the frame's axis_times: its peak shares of `total` in %, and [peak, total, average]."""
    _x, peaks, averages = _levels(bins, frame)
    return [round(100 * p / total, 1) for p in peaks], [[p, total, a] for p, a in zip(peaks, averages)]


def _with_points(made: Points, points: Mapping[int, tuple[float, list[Any]]], frame: Frame) -> Points:
    """Return copies of a line's lists `made` with the point of each bin start in `points` set anew (others left out)."""
    bins = frame.bins
    y, custom = list(made[0]), list(made[1])
    for start, (value, data) in points.items():
        if start in bins:
            at = bins.index(start)
            y[at], custom[at] = value, data
            if at == len(bins) - 1:
                y[-1], custom[-1] = value, data  # the point at the window's end repeats the last bin's
    return y, custom


def next_share_points(made: Points, level: Level, total: int, frame: Frame) -> Points:
    """Return share_points `made` with one level's bin set anew: what share_points gives after only that bin changed."""
    start, peak, average = level
    return _with_points(made, {start: (round(100 * peak / total, 1), [peak, total, round(average, 1)])}, frame)


NO_ROW = (0.0, "", 0, 0)  # a bin where none of the other tools had a license in use


def _highest_point(row: tuple[float, str, int, int]) -> tuple[float, list[Any]]:
    share, tool, peak, total = row
    return round(share, 1), [plotly_text(tool) or "none", peak, total]


def highest_points(best: Highest, frame: Frame) -> Points:
    """Return the other tools' line on the frame's axis_times: the highest share per bin, and [tool, peak, total]."""
    points = [_highest_point(best.get(start, NO_ROW)) for start in frame.bins]
    points.append(points[-1])
    return [value for value, _ in points], [data for _, data in points]


def next_highest_points(made: Points, best: Highest, starts: Iterable[int], frame: Frame) -> Points:
    """Return highest_points `made` with the bins `starts` set anew from `best`: what highest_points gives then."""
    return _with_points(made, {start: _highest_point(best.get(start, NO_ROW)) for start in starts}, frame)


def highest_shares(in_use_by_tool: Mapping[str, Sequence[Level]], tools: Iterable[tuple[str, int]]) -> Highest:
    """Return, per bin, the highest peak share of its total among `tools` ((tool, total) pairs, the first on a tie)."""
    best: Highest = {}
    for tool, total in tools:
        for start, peak, _average in in_use_by_tool.get(tool, ()):
            share = 100 * peak / total
            if start not in best or share > best[start][0]:
                best[start] = (share, tool, peak, total)
    return best


def merge_highest(parts: Iterable[Highest]) -> Highest:
    """Return the highest share per bin over several Highest, the first part's on a tie."""
    best: Highest = {}
    for part in parts:
        for start, row in part.items():
            if start not in best or row[0] > best[start][0]:
                best[start] = row
    return best


def inuse_chart(
    in_use_by_tool: Mapping[str, Sequence[Level]],
    shown: Sequence[str],
    colors: Mapping[str, str],
    totals: Mapping[str, int | None],
    frame: Frame,
    others: Callable[[list[tuple[str, int]]], Points] | None = None,
    points: Callable[[str, int], Points] | None = None,
) -> Figure:
    """Peak share of each shown tool's total in use per bin, and the highest share among the other tools.

    `in_use_by_tool` is {tool: [(bin start, peak, average)]}, `totals` {tool: total}; tools without a known total
    cannot have a share and are left out. `others`, given the other tools' (tool, total), returns their highest_points
    (a caller that keeps parts of it from one build to the next); by default they are worked out here. `points`, given a
    shown tool and its total, returns its share_points (a caller that keeps them while its levels do not change).
    """
    traces = []
    for tool in shown:
        total = totals.get(tool)
        if not total or tool not in in_use_by_tool:
            continue
        y, custom = points(tool, total) if points is not None else share_points(in_use_by_tool[tool], total, frame)
        traces.append(
            _step_line(
                legend_name(tool),
                tool,
                frame.axis_times,
                y,
                colors.get(tool),
                custom,
                "%{meta}: peak %{customdata[0]} of %{customdata[1]} (%{y} %), average %{customdata[2]}<extra></extra>",
                meta=plotly_text(tool),
            )
        )
    shown_set = set(shown)
    rest = [(t, total) for t in in_use_by_tool if t not in shown_set and (total := totals.get(t))]
    if rest:
        y, custom = others(rest) if others is not None else highest_points(highest_shares(in_use_by_tool, rest), frame)
        traces.append(
            _step_line(
                f"{OTHER_TOOLS} ({len(rest)}), highest",
                OTHER_KEY,
                frame.axis_times,
                y,
                OTHER_TOOLS_COLOR,
                custom,
                "%{customdata[0]}: peak %{customdata[1]} of %{customdata[2]} (%{y} %)<extra>other tools</extra>",
            )
        )
    if not traces:
        return empty_figure("No licenses in use in this window", frame.revision)
    top = max(max(t["y"]) for t in traces)
    layout = base_layout(
        hovermode="x unified",
        uirevision=frame.revision,
        shapes=[limit_line(100, "total", TOTAL_LINE_COLOR, "dot")],
        xaxis=time_axis(frame),
        yaxis=value_axis(f"peak in use, % of total / {frame.per_bin}", range=[0, max(110, top * 1.08)], autorange=False),
    )
    return {"data": traces, "layout": layout}


def tool_inuse_chart(tool: str, bins: Sequence[Level], limits: tuple[int, int] | None, color: str, frame: Frame) -> Figure:
    """Licenses of one tool in use over the window: each bin's peak (average in the hover), with commit and total lines.

    `bins` is [(bin start, peak, average)], `limits` is (commit, total) or None.
    """
    if not any(peak for _, peak, _ in bins):
        return empty_figure("No licenses of this tool in use in this window", frame.revision)
    x, peaks, averages = _levels(bins, frame)
    trace = _step_line(
        plotly_text(tool),
        tool,
        x,
        peaks,
        color,
        averages,
        f"<b>%{{x|{frame.time_format}}}</b><br>peak %{{y}} in use, average %{{customdata}}<extra></extra>",
        fill=True,
    )
    trace["showlegend"] = False
    shapes = []
    top = max(peaks)
    if limits is not None:
        commit, total = limits
        shapes = [
            limit_line(commit, f"commit {commit}", COMMIT_LINE_COLOR, "dash", at="start"),
            limit_line(total, f"total {total}", TOTAL_LINE_COLOR, "dot"),
        ]
        top = max(top, total)
    layout = base_layout(
        hovermode="closest",
        showlegend=False,
        uirevision=frame.revision,
        shapes=shapes,
        xaxis=time_axis(frame),
        # Room above the total line for its label.
        yaxis=value_axis(f"peak in use / {frame.per_bin}", top=top, range=[0, top * 1.15 + 1], autorange=False),
    )
    return {"data": [trace], "layout": layout}
