"""The estate's hour-of-week heatmap: licenses in use over the totals of every tool, and the share of tools at total."""

from collections.abc import Mapping, Sequence
from typing import Any

from dash_app.figures.capacity import HOURS, WEEKDAYS, week_layout
from dash_app.figures.common import Figure, empty_figure


def percent(rows: Sequence[Sequence[float | None]]) -> list[list[float | None]]:
    """Return a 7×24 grid of shares (0..1) as percentages to a tenth; an hour the period never had stays empty."""
    return [[None if value is None else round(100 * value, 1) for value in row] for row in rows]


def estate_heatmap(week: Mapping[str, Any] | None, zone: str) -> Figure:
    """Mean utilisation of the estate per weekday and hour (licenses in use over total), the share at total in the hover."""
    if not week or not any(value for row in week.get("utilization") or () for value in row if value):
        return empty_figure("No licenses in use in this period")
    trace = {
        "type": "heatmap",
        "x": [f"{hour:02d}" for hour in week["hours"]] if week.get("hours") else list(HOURS),
        "y": list(week.get("days") or WEEKDAYS),
        "z": percent(week["utilization"]),
        "customdata": percent(week["at_total"]),
        "colorscale": "Blues",
        "reversescale": True,  # Plotly's Blues runs dark to light; busier should be darker
        "zmin": 0,
        "hoverongaps": False,
        "colorbar": {"title": {"text": "% in use", "font": {"size": 11}}, "thickness": 12},
        "hovertemplate": "%{y} %{x}:00<br>%{z} % of licenses in use<br>%{customdata} % of tools at their total<extra></extra>",
    }
    return {"data": [trace], "layout": week_layout(zone)}
