"""Pieces of the page that callbacks rebuild: metric values, the tool summary and the events table."""

from dash import html

from dash_app.figures.theme import REASON_LABELS

# The events table shows this many of the newest events.
EVENT_ROWS = 50

# Overage share of recent borrows above which the card turns amber, then red.
OVERAGE_WARNING_PERCENT = 15
OVERAGE_DANGER_PERCENT = 30


def number(value):
    """Format a count or rate for a card: thousands separated, one decimal only when there is one."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def overage_class(percent):
    """Return the card value's class for an overage share: warning above 15 %, danger above 30 %."""
    if percent > OVERAGE_DANGER_PERCENT:
        return "card-value text-danger"
    if percent > OVERAGE_WARNING_PERCENT:
        return "card-value text-warning"
    return "card-value"


def _dot(color):
    return html.Span(className="tool-dot", style={"backgroundColor": color or "#adb5bd"})


def _stat(label, value, note=None):
    children = [html.Div(label, className="stat-label"), html.Div(value, className="stat-value")]
    if note:
        children.append(html.Div(note, className="stat-note"))
    return html.Div(children, className="stat")


def tool_info(tool, entry, color):
    """Return the tool summary: name, total, commit, max overage and the cost so far."""
    title = html.H2([_dot(color), html.Span(tool)], className="tool-title")
    if entry is None or entry.get("total") is None:
        note = "This tool is not in the inventory, so its limits and prices are unknown."
        borrowed = entry["borrowed"] if entry else 0
        stats = html.Div([_stat("In use now", number(borrowed))], className="stats")
        return [title, stats, html.P(note, className="text-muted small mb-0")]
    cost_note = (
        f"{number(entry['commit_price'])} commit + {number(entry['current_overage_cost'])} "
        f"for {number(entry['overage_borrows'])} overage borrows"
    )
    return [
        title,
        html.Div(
            [
                _stat("In use now", f"{number(entry['borrowed'])} of {number(entry['total'])}"),
                _stat("Total", number(entry["total"])),
                _stat("Commit", number(entry["commit"])),
                _stat("Max overage", number(entry["max_overage"])),
                _stat("Overage price", f"{number(entry['overage_price_per_license'])} per borrow"),
                _stat("Cost so far", number(entry["total_cost"]), cost_note),
            ],
            className="stats",
        ),
    ]


def _event_detail(event):
    if event["type"] == "borrow":
        return html.Span("overage", className="badge text-bg-warning") if event["is_overage"] else ""
    if event["type"] == "failure":
        return REASON_LABELS.get(event["reason"], event["reason"])
    return ""


_TYPE_BADGES = {"borrow": "badge text-bg-primary", "return": "badge text-bg-secondary", "failure": "badge text-bg-danger"}


EVENTS_HEAD = html.Thead(html.Tr([html.Th(text) for text in ("Time (UTC)", "Event", "Tool", "User", "Overage / reason")]))


def event_row(event, color):
    """Return one table row for a buffer event dict: time (UTC), event, tool, user, overage or reason."""
    return html.Tr(
        [
            html.Td(event["timestamp"][11:19], className="text-nowrap font-monospace"),
            html.Td(html.Span(event["type"], className=_TYPE_BADGES[event["type"]])),
            html.Td([_dot(color), event["tool"] or "—"], className="text-nowrap"),
            html.Td(event["user"] or "—"),
            html.Td(_event_detail(event)),
        ]
    )


# Where events_table keeps its rows: Table > [Thead, Tbody] > rows.
EVENTS_ROWS_PATH = ("props", "children", 1, "props", "children")


def events_table(rows):
    """Return the recent-activity table around `rows` (newest first), or a note that there were none."""
    if not rows:
        return html.Div("No activity in this window", className="empty-note")
    return html.Table([EVENTS_HEAD, html.Tbody(rows)], className="table table-sm table-hover align-middle mb-0 events")
