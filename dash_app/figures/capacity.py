"""Charts of the Capacity view: the duration curve, the hour-of-week heatmap, cost against commit, top users, denials."""

from collections.abc import Mapping, Sequence
from typing import Any

from dash_app.figures.common import Figure, empty_figure, limit_line
from dash_app.figures.text import axis_time, plotly_text
from dash_app.figures.theme import (
    COMMIT_LINE_COLOR,
    MUTED_COLOR,
    REASON_COLORS,
    TOOL_PALETTE,
    TOTAL_LINE_COLOR,
    base_layout,
    value_axis,
)

__all__ = [
    "HOURS",
    "WEEKDAYS",
    "cost_chart",
    "denials_chart",
    "duration_chart",
    "empty_figure",
    "heatmap_chart",
    "users_chart",
    "week_layout",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BEST_COLOR = "#2f9e66"


def duration_chart(points: Sequence[Mapping[str, Any]], commit: int | None, total: int | None) -> Figure:
    """Licenses held against the share of the period's time they were held at least: the load-duration curve."""
    if not points or all(p["licenses"] == 0 for p in points):
        return empty_figure("No licenses of this tool in use in this period")
    # The level is n from the share of time with at least n+1 held up to the share with at least n: a falling step.
    share = {p["licenses"]: p["share"] for p in points}
    peak = max(share)
    x = [0.0] + [round(100 * share[n], 3) for n in range(peak, 0, -1)] + [100.0]
    y = list(range(peak, -1, -1)) + [0]
    trace = {
        "type": "scatter",
        "mode": "lines",
        "name": "licenses held",
        "x": x,
        "y": y,
        "line": {"color": TOOL_PALETTE[0], "width": 2, "shape": "hv"},
        "fill": "tozeroy",
        "fillcolor": "rgba(59,111,216,0.12)",
        "customdata": [round(100 * share.get(level, 0.0), 1) for level in y],
        "hovertemplate": "%{y} or more held %{customdata} % of the time<extra></extra>",
    }
    shapes = []
    top = max(p["licenses"] for p in points)
    if commit is not None:
        shapes.append(limit_line(commit, f"commit {commit}", COMMIT_LINE_COLOR, "dash", at="start"))
    if total is not None:
        shapes.append(limit_line(total, f"total {total}", TOTAL_LINE_COLOR, "dot"))
        top = max(top, total)
    layout = base_layout(
        showlegend=False,
        hovermode="closest",
        shapes=shapes,
        xaxis={"title": {"text": "% of the period's time", "font": {"size": 11, "color": MUTED_COLOR}}, "range": [0, 100]},
        yaxis=value_axis("licenses held", top=top, range=[0, top * 1.15 + 1], autorange=False),
    )
    return {"data": [trace], "layout": layout}


def heatmap_chart(cells: Sequence[Mapping[str, Any]], zone: str) -> Figure:
    """Mean licenses in use per weekday and hour of day (peak in the hover), in the viewer's time zone."""
    if not cells or all(cell["peak"] == 0 for cell in cells):
        return empty_figure("No licenses of this tool in use in this period")
    mean: list[list[float | None]] = [[None] * 24 for _ in range(7)]
    peak: list[list[int | None]] = [[None] * 24 for _ in range(7)]
    for cell in cells:
        mean[cell["weekday"]][cell["hour"]] = None if cell["mean"] is None else round(cell["mean"], 2)
        peak[cell["weekday"]][cell["hour"]] = cell["peak"]
    trace = {
        "type": "heatmap",
        "x": list(HOURS),
        "y": list(WEEKDAYS),
        "z": mean,
        "customdata": peak,
        "colorscale": "Blues",
        "reversescale": True,  # Plotly's Blues runs dark to light; more in use should be darker
        "hoverongaps": False,
        "colorbar": {"title": {"text": "mean", "font": {"size": 11}}, "thickness": 12},
        "hovertemplate": "%{y} %{x}:00<br>mean %{z} in use, peak %{customdata}<extra></extra>",
    }
    return {"data": [trace], "layout": week_layout(zone)}


HOURS = tuple(f"{hour:02d}" for hour in range(24))


def week_layout(zone: str) -> dict[str, Any]:
    """Return an hour-of-week heatmap's layout: hours of the day across in `zone`, Monday at the top."""
    return base_layout(
        showlegend=False,
        xaxis={"title": {"text": f"hour of day ({zone})", "font": {"size": 11, "color": MUTED_COLOR}}, "fixedrange": True},
        yaxis={"autorange": "reversed", "fixedrange": True},
    )


def cost_chart(advice: Mapping[str, Any] | None, currency: str = "") -> Figure:
    """The period's cost for each commit: commit price share plus overage, with the current and the best commit marked."""
    if not advice or not advice.get("curve"):
        reason = (advice or {}).get("reason") or "No prices are known for this tool"
        return empty_figure(reason)
    unit = f" {currency}" if currency else ""
    curve = advice["curve"]
    trace = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "cost",
        "x": [p["commit"] for p in curve],
        "y": [p["cost"] for p in curve],
        "line": {"color": TOOL_PALETTE[0], "width": 2},
        "marker": {"size": 5},
        "hovertemplate": f"commit %{{x}}: %{{y:,.2f}}{unit}<extra></extra>",
    }
    marks = []
    # "now" above its point and "best" (the curve's lowest) below its own: close commits never overprint; one
    # commit that is both is one mark.
    now, best = advice["commit"], advice["best_commit"]
    shown = [("now = best", now, BEST_COLOR, "top center")] if now == best else []
    shown = shown or [("now", now, TOTAL_LINE_COLOR, "top center"), ("best", best, BEST_COLOR, "bottom center")]
    for label, commit, color, position in shown:
        cost = next((p["cost"] for p in curve if p["commit"] == commit), None)
        if cost is not None:
            marks.append(
                {
                    "type": "scatter",
                    "mode": "markers+text",
                    "name": label,
                    "x": [commit],
                    "y": [cost],
                    "text": [f"{label}: {commit}"],
                    "textposition": position,
                    "marker": {"size": 12, "color": color, "symbol": "diamond"},
                    "hovertemplate": f"{label}: commit %{{x}}, %{{y:,.2f}}{unit}<extra></extra>",
                }
            )
    layout = base_layout(
        showlegend=False,
        hovermode="closest",
        xaxis={
            "title": {"text": "commit (licenses)", "font": {"size": 11, "color": MUTED_COLOR}},
            "dtick": 1 if len(curve) <= 25 else None,
        },
        yaxis=value_axis(f"cost of the period{unit}", tickformat=",.0f"),
    )
    return {"data": [trace, *marks], "layout": layout}


def users_chart(top_users: Sequence[Mapping[str, Any]]) -> Figure:
    """License-hours of the heaviest users, largest first."""
    if not top_users:
        return empty_figure("Nobody held this tool in this period")
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": [plotly_text(u["user"]) for u in top_users],
        "x": [round(u["license_hours"], 2) for u in top_users],
        "marker": {"color": TOOL_PALETTE[1]},
        "hovertemplate": "%{y}: %{x:,.1f} license-hours<extra></extra>",
    }
    layout = base_layout(
        showlegend=False,
        xaxis=value_axis("license-hours", tickformat=",.1f"),
        yaxis={"autorange": "reversed", "automargin": True, "fixedrange": True, "type": "category"},
    )
    return {"data": [trace], "layout": layout}


def denials_chart(bins: Sequence[Mapping[str, Any]], bin_seconds: int, zone: str = "UTC") -> Figure:
    """Denials of the tool per bin over the period."""
    if not bins or not any(b["count"] for b in bins):
        return empty_figure("No denials of this tool in this period")
    trace = {
        "type": "bar",
        "x": [axis_time(b["start"], zone) for b in bins],
        "y": [b["count"] for b in bins],
        "offset": 0,
        "width": bin_seconds * 1000 * 5 // 6,
        "marker": {"color": REASON_COLORS["exhausted"]},
        "hovertemplate": "%{x}: %{y} denials<extra></extra>",
    }
    per = "h" if bin_seconds == 3600 else "day"
    layout = base_layout(
        showlegend=False,
        xaxis={"type": "date", "title": {"text": f"time ({zone})", "font": {"size": 11, "color": MUTED_COLOR}}},
        yaxis=value_axis(f"denials / {per}", top=max(b["count"] for b in bins)),
    )
    return {"data": [trace], "layout": layout}
