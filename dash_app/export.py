"""CSV and JSON exports of buckets or raw events, for the export route and the dashboard's download buttons."""

import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from dash_app import privacy
from dash_app.auth.viewer import FULL, Names, current_viewer
from dash_app.csvtext import to_csv
from dash_app.store.history import minute_rows
from dash_app.timeutil import iso_minute

if TYPE_CHECKING:
    from dash_app.state import AppState

FORMATS = ("csv", "json")
KINDS = ("buckets", "events")
BUCKET_COLUMNS = ["tool", "timestamp", "count", "overage_count", "users"]
EVENT_COLUMNS = ["timestamp", "type", "tool", "user", "id", "is_overage", "reason", "host", "version", "source"]


def bucket_rows(
    state: "AppState", window_seconds: float, tools: Collection[str] | None = None, names: Names = FULL
) -> list[dict[str, Any]]:
    """Return per-minute bucket rows, from the buffer inside its window and from SQLite beyond it.

    Each row's `users` are as `names` shows them (the buffer's lists are shared: replaced, never changed in place).
    """
    wanted = None if tools is None else set(tools)
    if window_seconds <= state.buffer.retention_seconds:
        metrics = state.buffer.aggregate_tool_metrics(window_seconds)
        rows = [
            {"tool": tool, **bucket}
            for tool, buckets in metrics.items()
            if wanted is None or tool in wanted
            for bucket in buckets
        ]
    else:
        since = state.buffer.clock() - window_seconds
        rows = [
            {"tool": tool, "timestamp": iso_minute(minute), "count": count, "users": users, "overage_count": overage}
            for tool, minute, count, overage, users in minute_rows(state.store, since, wanted)
            if count
        ]
    return [{key: row[key] for key in BUCKET_COLUMNS} for row in (privacy.bucket(r, names) for r in rows)]


def event_rows(
    state: "AppState", window_seconds: float, tools: Collection[str] | None = None, names: Names = FULL
) -> list[dict[str, Any]]:
    """Return the buffer's raw events of the window, oldest first, all kinds together.

    Users, hosts and borrow ids are as `names` shows them.
    """
    events = state.buffer.get_recent_events(window_seconds)
    wanted = None if tools is None else set(tools)
    merged = [e for kind in ("borrows", "returns", "failures") for e in events[kind] if wanted is None or e["tool"] in wanted]
    merged.sort(key=lambda e: e["timestamp"])
    return [{key: e.get(key) for key in EVENT_COLUMNS} for e in (privacy.event(e, names) for e in merged)]


def render(
    state: "AppState",
    kind: str,
    fmt: str,
    window_seconds: float,
    tools: Sequence[str] | None = None,
    names: Names | None = None,
) -> tuple[str, str, str]:
    """Return (text, filename, mimetype) of one export; names as `names` shows them (by default, as the current reader may)."""
    if names is None:
        names = current_viewer().names
    if kind == "buckets":
        rows, columns = bucket_rows(state, window_seconds, tools, names), BUCKET_COLUMNS
    else:
        rows, columns = event_rows(state, window_seconds, tools, names), EVENT_COLUMNS
    if not tools:
        scope = "all-tools"
    else:
        scope = "-".join("".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in t) for t in tools)[:80]
    filename = f"licenses-{kind}-{scope}-{int(window_seconds)}s.{fmt}"
    if fmt == "csv":
        return to_csv(rows, columns), filename, "text/csv; charset=utf-8"
    return json.dumps(rows, ensure_ascii=False), filename, "application/json; charset=utf-8"
