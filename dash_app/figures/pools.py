"""Charts of the pool as it is now: utilisation per tool and one tool's commit."""

from collections.abc import Mapping, Sequence
from typing import Any

from dash_app.figures.common import Figure, empty_figure
from dash_app.figures.text import legend_name, trace_uid
from dash_app.figures.theme import (
    AVAILABLE_COLOR,
    IN_COMMIT_COLOR,
    OVERAGE_COLOR,
    RESERVED_COLOR,
    RESERVED_PATTERN,
    base_layout,
    value_axis,
)
from dash_app.figures.timeseries import OTHER_TOOLS


def split_usage(entry: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Return (in commit, overage, reserved, available) of a pool status entry; a tool without known limits is all in
    commit, and reserved licenses are drawn only as far as the total leaves room for them."""
    borrowed, reserved = entry["borrowed"], entry.get("reserved", 0)
    total = entry.get("total")
    room = reserved if total is None else max(total - borrowed, 0)
    if entry.get("commit") is None:
        return borrowed, 0, min(reserved, room), 0
    in_commit = min(borrowed, entry["commit"])
    shown_reserved = min(reserved, room)
    return in_commit, borrowed - in_commit, shown_reserved, room - shown_reserved


def _capacity(entry: Mapping[str, Any]) -> int:
    return entry["total"] if entry.get("total") is not None else entry["borrowed"] + entry.get("reserved", 0)


_SEGMENTS = (
    ("In commit", IN_COMMIT_COLOR),
    ("Overage", OVERAGE_COLOR),
    ("Reserved", RESERVED_COLOR),
    ("Available", AVAILABLE_COLOR),
)
_RESERVED = 2  # the reserved segment's place in _SEGMENTS and split_usage: drawn only when some tool has reservations


def utilization_chart(status: Sequence[Mapping[str, Any]], shown: Sequence[str] | None = None) -> Figure:
    """One stacked bar per shown tool, then one for all others: in commit, overage, reserved, available, from pool.status().

    `shown` lists the tools with a bar of their own (every tool when None), in order.
    """
    if not status:
        return empty_figure("No tools in the pool")
    by_tool = {entry["tool"]: entry for entry in status}
    order = [t for t in shown if t in by_tool] if shown is not None else list(by_tool)
    names = [legend_name(tool) for tool in order]
    parts: list[tuple[int, ...]] = [split_usage(by_tool[tool]) for tool in order]
    totals = [_capacity(by_tool[tool]) for tool in order]
    rest = [entry for entry in status if entry["tool"] not in set(order)]
    if rest:
        names.append(f"{OTHER_TOOLS} ({len(rest)})")
        split = [split_usage(entry) for entry in rest]
        parts.append(tuple(sum(p[i] for p in split) for i in range(len(_SEGMENTS))))
        totals.append(sum(_capacity(entry) for entry in rest))
    # What each bar's reserved segment says in its hover: the licenses reserved, also those the total had no room for.
    reserved = [by_tool[tool].get("reserved", 0) for tool in order]
    if rest:
        reserved.append(sum(entry.get("reserved", 0) for entry in rest))
    traces = []
    for index, (label, color) in enumerate(_SEGMENTS):
        if index == _RESERVED and not any(reserved):
            continue  # no segment, and no legend entry, for what no tool has
        counts = reserved if index == _RESERVED else [p[index] for p in parts]
        traces.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": label,
                "uid": trace_uid(label),
                "y": names,
                # Shares of each tool's total, so a 2-license tool and the sum of 190 others read on one scale.
                "x": [round(100 * p[index] / total, 1) if total else 0 for p, total in zip(parts, totals)],
                "customdata": [[count, total] for count, total in zip(counts, totals)],
                "marker": {"color": color, "line": {"width": 0}, **({"pattern": RESERVED_PATTERN} if index == _RESERVED else {})},
                "hovertemplate": "%{y}<br>%{fullData.name}: %{customdata[0]} of %{customdata[1]}<extra></extra>",
            }
        )
    layout = base_layout(
        barmode="stack",
        bargap=0.35,
        hovermode="closest",
        uirevision="utilization",
        xaxis=value_axis("% of total", range=[0, 100], autorange=False, tickformat=",d"),
        yaxis={"autorange": "reversed", "automargin": True, "fixedrange": True, "ticks": "", "ticklabelstandoff": 6},
    )
    return {"data": traces, "layout": layout}


def tool_commit_chart(entry: Mapping[str, Any] | None, revision: str = "") -> Figure:
    """A ring of one tool's licenses now: in commit, overage, reserved and available, with the count in use in its middle."""
    if entry is None or entry.get("total") is None or entry.get("commit") is None:
        return empty_figure("No limits are known for this tool", revision)
    values = list(split_usage(entry))
    segments = [n for n in range(len(_SEGMENTS)) if n != _RESERVED or values[_RESERVED]]
    trace = {
        "type": "pie",
        "hole": 0.62,
        "sort": False,
        "direction": "clockwise",
        "labels": [_SEGMENTS[n][0] for n in segments],
        "values": [values[n] for n in segments],
        "marker": {
            "colors": [_SEGMENTS[n][1] for n in segments],
            "line": {"color": "#ffffff", "width": 2},
            "pattern": {**RESERVED_PATTERN, "shape": [RESERVED_PATTERN["shape"] if n == _RESERVED else "" for n in segments]},
        },
        "textinfo": "none",
        "hovertemplate": "%{label}: %{value}<extra></extra>",
    }
    centre = {
        "text": f"<b>{entry['borrowed']}</b> of {entry['total']}<br><span style='font-size:12px'>in use</span>",
        "x": 0.5,
        "y": 0.5,
        "xref": "paper",
        "yref": "paper",
        "showarrow": False,
        "font": {"size": 22},
    }
    layout = base_layout(
        uirevision=revision,
        annotations=[centre],
        legend={"orientation": "v", "x": 1, "xanchor": "left", "y": 0.5, "yanchor": "middle", "uirevision": "legend"},
        margin={"l": 8, "r": 8, "t": 8, "b": 8},
    )
    return {"data": [trace], "layout": layout}
