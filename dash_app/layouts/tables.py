"""Rows of the page's tables: the recent events, the active checkouts and the tools, and the times they show."""

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dash import html

from dash_app.auth.viewer import FULL, Names
from dash_app.events import POLLED_SOURCES, source_of
from dash_app.figures.theme import REASON_LABELS
from dash_app.timeutil import parse_iso

if TYPE_CHECKING:
    from dash_app.callbacks.window_stats import ToolStats
    from dash_app.licenses.pool import Borrow
    from dash_app.pressure import Pressure

# The events table shows this many of the newest events.
EVENT_ROWS = 50
# The overview's checkouts table lists this many of the longest-held checkouts.
OVERVIEW_CHECKOUTS = 50


def tool_dot(color: str | None) -> html.Span:
    """Return the dot in a tool's colour that stands before its name."""
    return html.Span(className="tool-dot", style={"backgroundColor": color or "#adb5bd"})


def _event_detail(event: Mapping[str, Any]) -> html.Span | str:
    if event["type"] == "borrow":
        return html.Span("overage", className="badge text-bg-warning") if event["is_overage"] else ""
    if event["type"] == "failure":
        return REASON_LABELS.get(event["reason"], event["reason"])
    return ""


_TYPE_BADGES = {"borrow": "badge text-bg-primary", "return": "badge text-bg-secondary", "failure": "badge text-bg-danger"}


def events_head(zone: str) -> html.Thead:
    """Return the events table's header row, naming the time zone of its times."""
    return html.Thead(html.Tr([html.Th(text) for text in (f"Time ({zone})", "Event", "Tool", "User", "Overage / reason")]))


def clock_time(epoch_seconds: float, zone: str = "UTC") -> str:
    """Return `HH:MM:SS` of an instant in `zone`."""
    if zone == "UTC":
        return time.strftime("%H:%M:%S", time.gmtime(epoch_seconds))
    return datetime.fromtimestamp(epoch_seconds, ZoneInfo(zone)).strftime("%H:%M:%S")


def event_row(event: Mapping[str, Any], color: str | None, zone: str = "UTC", names: Names = FULL) -> html.Tr:
    """Return one table row for a buffer event dict: time (in `zone`), event, tool, user (as `names` shows it), detail."""
    stamp = event["timestamp"][11:19] if zone == "UTC" else clock_time(parse_iso(event["timestamp"]), zone)
    return html.Tr(
        [
            html.Td(stamp, className="text-nowrap font-monospace"),
            html.Td(html.Span(event["type"], className=_TYPE_BADGES[event["type"]])),
            html.Td([tool_dot(color), event["tool"] or "—"], className="text-nowrap"),
            html.Td(names.user(event["user"]) or "—"),
            html.Td(_event_detail(event)),
        ]
    )


# Where events_table keeps its rows: Table > [Thead, Tbody] > rows.
EVENTS_ROWS_PATH = ("props", "children", 1, "props", "children")


def events_table(rows: Sequence[Any], zone: str = "UTC") -> html.Div | html.Table:
    """Return the recent-activity table around `rows` (newest first), or a note that there were none."""
    # Rows are html.Tr, or their plain JSON (callbacks/updates.plain), which Dash's own types do not name.
    if not rows:
        return html.Div("No activity in this window", className="empty-note")
    return html.Table([events_head(zone), html.Tbody(rows)], className="table table-sm table-hover align-middle mb-0 events")


def duration(seconds: float) -> str:
    """Return a held-for time to the minute: "<1 min", "12 min", "3 h 05 min", "2 d 4 h"."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "<1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def since_text(epoch_seconds: float, now: float, zone: str = "UTC") -> str:
    """Return when a checkout began: the time today, or the date and time before."""
    if zone == "UTC":
        stamp, today = time.gmtime(epoch_seconds), time.gmtime(now)
        same_day = stamp[:3] == today[:3]
        return time.strftime("%H:%M:%S" if same_day else "%b %d %H:%M", stamp)
    tz = ZoneInfo(zone)
    stamp_dt, today_dt = datetime.fromtimestamp(epoch_seconds, tz), datetime.fromtimestamp(now, tz)
    return stamp_dt.strftime("%H:%M:%S" if stamp_dt.date() == today_dt.date() else "%b %d %H:%M")


def checkout_rows(
    borrows: Iterable["Borrow"], now: float, zone: str = "UTC", limit: int | None = None, names: Names = FULL
) -> list[dict[str, Any]]:
    """Return the checkouts table's rows for active Borrows: the longest held (at most `limit`), each tool's together.

    Tools come in the order of their longest-held checkout, and each tool's checkouts longest held first; only the
    first of a tool's rows names it (`tool_label`), so a column of one tool's name does not repeat down the table.
    User, host and id are as `names` shows them: the grid's row id reaches the browser even where no column shows
    it, and the ids of log lines and polls name client hosts, so readers without real names get a digest.
    """
    ordered = sorted(borrows, key=lambda b: (b.borrowed_at, b.id))[:limit]
    first_seen: dict[str, int] = {}
    for b in ordered:
        first_seen.setdefault(b.tool, len(first_seen))
    ordered.sort(key=lambda b: first_seen[b.tool])  # stable: longest held first within each tool
    rows = []
    for n, b in enumerate(ordered):
        rows.append(
            {
                "id": names.borrow_id(b.id),
                "tool": b.tool,
                "tool_label": b.tool if n == 0 or ordered[n - 1].tool != b.tool else "",
                "user": names.user(b.user),
                "host": names.host(b.host) or "",
                "version": b.version or "",
                "since": since_text(b.borrowed_at, now, zone),
                "held": duration(now - b.borrowed_at),
                "held_s": int(now - b.borrowed_at),
                "overage": "overage" if b.is_overage else "",
                "source": source_label(b.id),
            }
        )
    return rows


SOURCE_LABELS = {"flexlm": "FlexLM log", "pool": "REST API"}


def source_label(borrow_id: str) -> str:
    """Return where a borrow was seen, as the checkouts table says it: a polled server, a FlexLM log or the API."""
    source = source_of(borrow_id)
    if source in POLLED_SOURCES:
        return f"{borrow_id.split('|', 2)[1]} ({source})"  # lmstat|PORT@HOST|...
    return SOURCE_LABELS.get(source, source)


def tool_rows(
    status: Iterable[Mapping[str, Any]],
    stats: Mapping[str, "ToolStats"],
    currency: str = "",
    pressure: Mapping[str, "Pressure"] | None = None,
    ranked: Sequence[str] = (),
    kept: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Return the tool table's rows: one per tool, with in use, total, the window's peak, denials, overage and pressure.

    `ranked` lists the tools most pressed first: each row's `rank` is its place among the rows, which the grid sorts by.
    `kept` ({tool: (its inputs, its row)}, the caller's), when given, keeps each row while its inputs are the same.
    """
    entries = list(status)
    listed = {entry["tool"] for entry in entries}
    # Ranks among the grid's tools: a name only the buffer has (an unknown tool's denials) takes none.
    rank = {tool: n for n, tool in enumerate((tool for tool in ranked if tool in listed), 1)}
    pressure = pressure or {}
    rows = []
    for entry in entries:
        tool = entry["tool"]
        s = stats[tool]
        total = entry["total"]
        price = entry.get("overage_price_per_license")
        p = pressure.get(tool)
        inputs = (rank.get(tool), entry["borrowed"], total, entry.get("queued", 0), price, s, p)
        found = kept.get(tool) if kept is not None else None
        if found is not None and found[0] == inputs:
            rows.append(found[1])
            continue
        rows.append(
            {
                "tool": tool,
                "rank": rank.get(tool),
                "in_use": entry["borrowed"],
                "total": total,
                "use_pct": round(100 * entry["borrowed"] / total) if total else None,
                "peak": s.peak,
                "peak_pct": round(100 * s.peak / total) if total else None,
                "at_total_pct": round(100 * p.share_at_total, 1) if p is not None and total else None,
                "denials": s.failures,
                "true_denials": s.true_denials,
                "queued": entry.get("queued", 0),
                "borrows": s.borrows,
                "overage_borrows": s.overage,
                "overage_cost": s.overage * price if price is not None else None,
            }
        )
        if kept is not None:
            kept[tool] = (inputs, rows[-1])
    return rows
