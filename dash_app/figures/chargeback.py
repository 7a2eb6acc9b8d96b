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
# A phone's chart, its bars lying down (pixels): a legend entry a line, the money axis, a line per group.
LEGEND_LINE = 19
AXIS_HEIGHT = 30
GROUP_LINE = 20
BOTTOM = 10


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


def money_template(label: str, currency: str, axis: str = "y") -> str:
    """Return a hover line of money: `label` (a template field, never a name), the amount to the cent, the currency."""
    unit = f" {plotly_text(currency)}" if currency else ""
    return f"{label}: %{{{axis}:,.2f}}{unit}<extra></extra>"


def chargeback_chart(
    answer: Mapping[str, Any] | None,
    currency: str = "",
    inventory: Sequence[str] = (),
    limit: int = TOOLS_SHOWN,
    horizontal: bool = False,
) -> Figure:
    """Cost per group over the period, stacked by tool: the costliest tools by name, the others as one part.

    `answer` is GET /analytics/chargeback's; `inventory` gives each tool its own colour by its place there. The groups
    run along x, costliest first, or down y when `horizontal` (a phone's narrow screen, the costliest at the top).
    """
    groups = group_order([group for group in (answer or {}).get("groups") or () if group.get("total")])
    if not groups:
        return empty_figure(NO_COST)
    shown = shown_tools(groups, limit)
    colors = tool_colors(list(inventory) or shown, shown)
    names = [plotly_text(group["group"]) for group in groups]
    cost_axis = "x" if horizontal else "y"
    costs = [{entry["tool"]: entry.get("total") or 0.0 for entry in group.get("tools") or ()} for group in groups]
    parts: list[tuple[str, str, list[float], str | None, dict[str, Any]]] = []
    for tool in shown:
        meta = {"meta": plotly_text(tool), "hovertemplate": money_template("%{meta}", currency, cost_axis)}
        parts.append((legend_name(tool), tool, [round(cost.get(tool, 0.0), 2) for cost in costs], colors.get(tool), meta))
    named = set(shown)
    rest = {tool for cost in costs for tool in cost if tool not in named}
    if rest:
        others = [round(sum(total for tool, total in cost.items() if tool not in named), 2) for cost in costs]
        template = {"hovertemplate": money_template("%{fullData.name}", currency, cost_axis)}
        parts.append((f"{OTHER_TOOLS} ({len(rest)})", OTHER_KEY, others, OTHER_TOOLS_COLOR, template))
    # The group's total above its parts in the hover: a marker no one sees, left out of the legend.
    parts.append(("Total", "\0total", [group["total"] for group in groups], None, {}))
    traces = [_trace(name, key, names, values, color, horizontal) | extra for name, key, values, color, extra in parts]
    traces[-1].update(
        type="scatter",
        mode="markers",
        marker={"opacity": 0, "size": 1},
        showlegend=False,
        hovertemplate=money_template("<b>Total</b>", currency, cost_axis),
    )
    unit = f" ({currency})" if currency else ""
    what = "cost centre" if (answer or {}).get("by") == "cost_centre" else "group"
    group_axis = {
        "type": "category",
        "tickmode": "array",
        "tickvals": names,
        "ticktext": [legend_name(group["group"], GROUP_LABEL_LIMIT) for group in groups],
        "tickfont": {"size": 11},
        # Exactly the bars: the hover's hidden totals (markers) would pad an automatic range with empty space.
        "range": [-0.5, len(groups) - 0.5],
        "automargin": True,
        "fixedrange": True,
        "title": {"text": f"{what}, costliest first", "font": {"size": 11, "color": MUTED_COLOR}, "standoff": 4},
    }
    money_axis = value_axis(f"cost of the period{unit}", tickformat=",.0f")
    if horizontal:
        # A phone's: the legend at the top, an entry a line, and the money axis under it, in view with the costliest
        # groups. The figure is as tall as its lines, so the legend's place is set in pixels, clear of the axis.
        legend_height = LEGEND_LINE * len(traces)  # the tools' entries and the legend's title
        legend = {**base_layout()["legend"], "yref": "container", "y": 1, "yanchor": "top"}
        legend["title"] = {"text": f"cost of the period{unit} by tool", "side": "top", "font": {"color": MUTED_COLOR}}
        layout = base_layout(
            height=legend_height + AXIS_HEIGHT + GROUP_LINE * len(groups) + BOTTOM,
            margin={"l": 8, "r": 12, "t": legend_height + AXIS_HEIGHT, "b": BOTTOM},
            legend=legend,
            xaxis={**money_axis, "side": "top", "nticks": 4, "title": None},
            yaxis={**group_axis, "range": [len(groups) - 0.5, -0.5], "title": None},  # the costliest at the top
            hovermode="y unified",
        )
    else:
        layout = base_layout(xaxis=group_axis, yaxis=money_axis, hovermode="x unified")
    layout.update(barmode="stack", bargap=0.25, uirevision="chargeback")
    return {"data": traces, "layout": layout}


def _trace(
    name: str, key: str, groups: Sequence[str], values: Sequence[float], color: str | None, horizontal: bool
) -> dict[str, Any]:
    along, across = ("y", "x") if horizontal else ("x", "y")
    return {
        "type": "bar",
        "orientation": "h" if horizontal else "v",
        "name": name,
        "uid": trace_uid(key),
        along: list(groups),
        across: list(values),
        "marker": {"color": color, "line": {"width": 0}},
    }
