"""Charts of the pool as it is now: utilisation per tool, one tool's commit and its users."""

from collections import Counter

from dash_app.figures.common import empty_figure
from dash_app.figures.text import plotly_text, trace_uid
from dash_app.figures.theme import AVAILABLE_COLOR, IN_COMMIT_COLOR, MUTED_COLOR, OVERAGE_COLOR, base_layout, value_axis

# The user chart shows this many users with the most checkouts.
TOP_USERS = 15


def split_usage(entry):
    """Return (in commit, overage, available) of a pool status entry; a tool without known limits is all in commit."""
    borrowed = entry["borrowed"]
    if entry.get("commit") is None:
        return borrowed, 0, 0
    in_commit = min(borrowed, entry["commit"])
    return in_commit, borrowed - in_commit, max(entry["total"] - borrowed, 0)


_SEGMENTS = (("In commit", IN_COMMIT_COLOR), ("Overage", OVERAGE_COLOR), ("Available", AVAILABLE_COLOR))


def utilization_chart(status):
    """One stacked bar per tool: licenses in commit, then overage, then available, from pool.status()."""
    if not status:
        return empty_figure("No tools in the pool")
    names = [plotly_text(entry["tool"]) for entry in status]
    parts = [split_usage(entry) for entry in status]
    totals = [entry["total"] if entry.get("total") is not None else entry["borrowed"] for entry in status]
    traces = []
    for index, (label, color) in enumerate(_SEGMENTS):
        traces.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": label,
                "uid": trace_uid(label),
                "y": names,
                "x": [p[index] for p in parts],
                "customdata": totals,
                "marker": {"color": color, "line": {"width": 0}},
                "hovertemplate": "%{y}<br>%{fullData.name}: %{x} of %{customdata}<extra></extra>",
            }
        )
    layout = base_layout(
        barmode="stack",
        bargap=0.35,
        hovermode="closest",
        uirevision="utilization",
        xaxis=value_axis("licenses", rangemode="tozero"),
        yaxis={"autorange": "reversed", "automargin": True, "fixedrange": True, "ticks": "", "ticklabelstandoff": 6},
    )
    return {"data": traces, "layout": layout}


def tool_commit_chart(entry, revision=""):
    """A ring of one tool's licenses now: in commit, overage and available, with the count in use in its middle."""
    if entry is None or entry.get("total") is None:
        return empty_figure("No limits are known for this tool", revision)
    values = list(split_usage(entry))
    trace = {
        "type": "pie",
        "hole": 0.62,
        "sort": False,
        "direction": "clockwise",
        "labels": [label for label, _ in _SEGMENTS],
        "values": values,
        "marker": {"colors": [color for _, color in _SEGMENTS], "line": {"color": "#ffffff", "width": 2}},
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


def tool_user_chart(tool, users, color, revision=""):
    """Active checkouts of one tool by user (one name per active borrow), the busiest first.

    `revision` names the view: a new one redraws the chart afresh (Plotly can keep a previous tool's category
    labels when only the data changes).
    """
    counts = sorted(Counter(users).items(), key=lambda item: (-item[1], item[0]))
    if not counts:
        return empty_figure("No active checkouts of this tool", revision)
    shown = counts[:TOP_USERS]
    trace = {
        "type": "bar",
        "orientation": "h",
        "name": plotly_text(tool),
        "uid": trace_uid(tool),
        "y": [plotly_text(user) for user, _ in shown],
        "x": [count for _, count in shown],
        "marker": {"color": color, "line": {"width": 0}},
        "hovertemplate": "%{y}: %{x} active<extra></extra>",
        "showlegend": False,
    }
    annotations = []
    if len(counts) > TOP_USERS:
        annotations.append(
            {
                "text": f"top {TOP_USERS} of {len(counts)} users",
                "xref": "paper",
                "yref": "paper",
                "x": 1,
                "y": 1,
                "xanchor": "right",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 11, "color": MUTED_COLOR},
            }
        )
    layout = base_layout(
        bargap=0.3,
        hovermode="closest",
        showlegend=False,
        uirevision=revision,
        annotations=annotations,
        xaxis=value_axis("active checkouts", top=shown[0][1]),
        yaxis={"autorange": "reversed", "automargin": True, "fixedrange": True, "type": "category", "ticklabelstandoff": 6},
    )
    return {"data": [trace], "layout": layout}
