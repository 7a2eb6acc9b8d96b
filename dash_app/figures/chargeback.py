"""The chargeback's stacked bar: each group's cost over the period, split by tool, the busiest tools by name."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dash_app.figures.common import Figure, empty_figure
from dash_app.figures.text import legend_name, plotly_text, trace_uid
from dash_app.figures.theme import MUTED_COLOR, OTHER_TOOLS_COLOR, base_layout, tool_colors, value_axis
from dash_app.figures.timeseries import OTHER_KEY, OTHER_TOOLS

# The tools a bar names, most costly over all groups first; the rest are one grey "Other tools (n)" part of each bar.
TOOLS_SHOWN = 10
# A group's name under its bar is cut in the middle to this many characters; the hover has it whole.
GROUP_LABEL_LIMIT = 18
NO_COST = "No license cost in this period"


def tool_totals(groups: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Return each tool's cost over every group: {tool: Σ total}."""
    totals: dict[str, float] = {}
    for group in groups:
        for entry in group.get("tools") or ():
            totals[entry["tool"]] = totals.get(entry["tool"], 0.0) + (entry.get("total") or 0.0)
    return totals


def shown_tools(groups: Sequence[Mapping[str, Any]], limit: int = TOOLS_SHOWN) -> list[str]:
    """Return the tools a bar names: the `limit` costliest over all groups (then by name), or all when one more would fit."""
    totals = tool_totals(groups)
    ranked = sorted((tool for tool, total in totals.items() if total), key=lambda tool: (-totals[tool], tool))
    return ranked if len(ranked) <= limit + 1 else ranked[:limit]


def group_order(groups: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Return the groups as the bar shows them: the costliest first, then by name."""
    return sorted(groups, key=lambda group: (-(group.get("total") or 0.0), group["group"]))


def money_template(label: str, currency: str) -> str:
    """Return a hover line of money: `label` (a template field, never a name), the amount to the cent, the currency."""
    unit = f" {plotly_text(currency)}" if currency else ""
    return f"{label}: %{{y:,.2f}}{unit}<extra></extra>"


def chargeback_chart(
    answer: Mapping[str, Any] | None, currency: str = "", inventory: Sequence[str] = (), limit: int = TOOLS_SHOWN
) -> Figure:
    """Cost per group over the period, stacked by tool: the costliest tools by name, the others as one part.

    `answer` is GET /analytics/chargeback's; `inventory` gives each tool its own colour by its place there.
    """
    groups = group_order([group for group in (answer or {}).get("groups") or () if group.get("total")])
    if not groups:
        return empty_figure(NO_COST)
    shown = shown_tools(groups, limit)
    colors = tool_colors(list(inventory) or shown, shown)
    x = [plotly_text(group["group"]) for group in groups]
    costs = [{entry["tool"]: entry.get("total") or 0.0 for entry in group.get("tools") or ()} for group in groups]
    traces: list[dict[str, Any]] = []
    for tool in shown:
        traces.append(
            _bar(legend_name(tool), tool, x, [round(cost.get(tool, 0.0), 2) for cost in costs], colors.get(tool))
            | {"meta": plotly_text(tool), "hovertemplate": money_template("%{meta}", currency)}
        )
    named = set(shown)
    rest = {tool for cost in costs for tool in cost if tool not in named}
    if rest:
        others = [round(sum(total for tool, total in cost.items() if tool not in named), 2) for cost in costs]
        name = f"{OTHER_TOOLS} ({len(rest)})"
        traces.append(
            _bar(name, OTHER_KEY, x, others, OTHER_TOOLS_COLOR) | {"hovertemplate": money_template("%{fullData.name}", currency)}
        )
    # The group's total above its parts in the hover: a marker no one sees, left out of the legend.
    traces.append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": "Total",
            "uid": trace_uid("\0total"),
            "x": x,
            "y": [group["total"] for group in groups],
            "marker": {"opacity": 0, "size": 1},
            "showlegend": False,
            "hovertemplate": money_template("<b>Total</b>", currency),
        }
    )
    unit = f" ({currency})" if currency else ""
    layout = base_layout(
        barmode="stack",
        hovermode="x unified",
        bargap=0.25,
        uirevision="chargeback",
        xaxis={
            "type": "category",
            "tickmode": "array",
            "tickvals": x,
            "ticktext": [legend_name(group["group"], GROUP_LABEL_LIMIT) for group in groups],
            "tickfont": {"size": 11},
            "automargin": True,
            "fixedrange": True,
            "title": {"text": "group, costliest first", "font": {"size": 11, "color": MUTED_COLOR}, "standoff": 4},
        },
        yaxis=value_axis(f"cost of the period{unit}", tickformat=",.0f"),
    )
    return {"data": traces, "layout": layout}


def _bar(name: str, key: str, x: Sequence[str], y: Sequence[float], color: str | None) -> dict[str, Any]:
    return {"type": "bar", "name": name, "uid": trace_uid(key), "x": x, "y": y, "marker": {"color": color, "line": {"width": 0}}}
