"""Each view's figures and tables, built once per change of the data and shared by every open tab."""

import threading
from dataclasses import dataclass
from typing import Any

from dash_app import figures
from dash_app.buffer import MinuteFlow
from dash_app.callbacks.updates import component_part, figure_part, plain
from dash_app.layouts import parts
from dash_app.layouts.controls import tool_options
from dash_app.store.history import bin_seconds_for
from dash_app.timeutil import parse_iso

# How many recent tables' row keys are kept: enough for every view and window in use over a few ticks.
TABLES_KEPT = 64
OVERVIEW_FIGURES = ("borrow-chart", "overage-chart", "utilization-chart", "failure-chart")
TOOL_FIGURES = ("tool-borrow-chart", "tool-user-chart", "tool-commit-chart", "tool-inuse-chart")


@dataclass(frozen=True)
class PoolSnapshot:
    """What one data version says about the tools: status entries, every known tool and its colour."""

    status: list
    by_tool: dict
    tools: list
    colors: dict
    options: object  # Part of the tool-filter options


def recent_events(buffer, window, tool=None, rows=parts.EVENT_ROWS):
    """Return the newest `rows` events of the window (of `tool` only, when given), newest first."""
    recent = buffer.get_recent_events(window, limit=rows, tool=tool)
    events = [e for kind in recent.values() for e in kind]
    events.sort(key=lambda e: e["timestamp"], reverse=True)
    return events[:rows]


class EventRows:
    """Table rows of events, each built once: an event never changes, and a live tick brings only a few new ones.

    Rows used during the current data version are kept, and those of the previous version, so views and tabs that
    show the same events share them and the cache stays as small as the tables.
    """

    def __init__(self):
        self._current = {}
        self._previous = {}

    def next_version(self):
        """Forget rows no table used during the last two versions."""
        self._previous, self._current = self._current, {}

    def rows(self, events, colors):
        """Return the plain-JSON rows of `events` and their keys, in their order."""
        out, keys = [], []
        for event in events:
            color = colors.get(event["tool"])
            key = (event["timestamp"], event["type"], event["tool"], event["user"], event.get("id"), event.get("reason"), color)
            row = self._current.get(key) or self._previous.get(key)
            if row is None:
                row = plain(parts.event_row(event, color))
            self._current[key] = row
            out.append(row)
            keys.append(key)
        return out, keys


def history_window(history, window, now):
    """Return (bin_seconds, buckets by tool, flows by tool) of a long window from the stored aggregates."""
    size, series = history.series(window, now=now)
    buckets = {}
    flows = {}
    for tool, points in series.items():
        with_borrows = [p for p in points if p["count"]]
        if with_borrows:
            buckets[tool] = with_borrows
        flows[tool] = [
            MinuteFlow(int(parse_iso(p["timestamp"])), p["count"], p["overage_count"], p["returns"], p["failures"])
            for p in points
        ]
    return size, buckets, flows


class Snapshots:
    """Builds a view (overview or one tool, for one window) at most once per data version.

    The data version is the buffer's version, the pool's counts and the current minute (windows slide by whole
    minutes), so ten tabs on the same tick share one build, and a quiet minute costs no rebuild at all.
    """

    def __init__(self, buffer, pool, history=None):
        self.buffer = buffer
        self.pool = pool
        self.history = history
        # window -> (key, (bin_seconds, buckets, flows)): each window's data, from the buffer or the stored history.
        self._window_data_cache = {}
        self._lock = threading.Lock()
        self._version: tuple[Any, ...] | None = None
        self._pool: PoolSnapshot | None = None
        self._views: dict[tuple[str | None, float], tuple[Any, dict[str, Any]]] = {}
        self._rows = EventRows()
        # Row keys of recently built tables by signature, so a tab's table can be patched row by row.
        self._table_rows = {}

    def get(self, tool, window, now):
        """Return (PoolSnapshot, tool, {output id: Part}) for the view of `tool` (None for all tools) over `window` s.

        A tool no source has reported gets the overview (and None back), so no text builds a view of its own.
        """
        with self._lock:
            # Read inside the lock, so tabs on different ticks cannot put an older view back.
            status = self.pool.status()
            counts = tuple((entry["tool"], entry["borrowed"], entry["overage_borrows"]) for entry in status)
            version = (self.buffer.version, counts, int(now // 60))
            pool = self._pool
            if version != self._version or pool is None:
                self._version = version
                pool = self._pool = self._build_pool(status)
                self._views = {}
                self._rows.next_version()
            if tool not in pool.tools:
                tool = None
            data = self._window_data(window, now)
            view = self._views.get((tool, window))
            if view is None or view[0] is not data:
                frame = figures.Frame(now - window, now, revision=f"{tool}|{window}", bin_seconds=data[0])
                if tool is not None:
                    built = self._build_tool(pool, tool, window, frame, data)
                else:
                    built = self._build_overview(pool, window, frame, data)
                view = self._views[(tool, window)] = (data, built)
            return pool, tool, view[1]

    def _window_data(self, window, now):
        """Return (bin_seconds, buckets by tool, flows by tool) of a window: the buffer's, or the stored history's."""
        key: tuple[Any, ...]
        if window <= self.buffer.retention_seconds or self.history is None:
            key = ("buffer", self._version)
            cached = self._window_data_cache.get(window)
            if cached is None or cached[0] != key:
                data = (60, self.buffer.aggregate_tool_metrics(window), self.buffer.get_minute_flows(window))
                cached = self._window_data_cache[window] = (key, data)
            return cached[1]
        size = bin_seconds_for(window)
        # Stored aggregates change every few seconds at most; their bins move on every `size` seconds.
        key = ("history", self.history.generation, int(now // size))
        cached = self._window_data_cache.get(window)
        if cached is None or cached[0] != key:
            cached = self._window_data_cache[window] = (key, history_window(self.history, window, now))
        return cached[1]

    def _build_pool(self, status):
        known = [entry["tool"] for entry in status]
        seen = set(known)
        # Tools the buffer holds but the pool does not know (a log source, a test feeding the buffer) come last.
        extra = sorted(t for t in self.buffer.aggregate_tool_metrics(self.buffer.retention_seconds) if t not in seen)
        tools = known + extra
        return PoolSnapshot(
            status=status,
            by_tool={entry["tool"]: entry for entry in status},
            tools=tools,
            colors=figures.tool_colors(tools),
            options=component_part(tool_options(tools)),
        )

    def _build_overview(self, pool, window, frame, data):
        _, buckets, flows = data
        return {
            "borrow-chart": figure_part(figures.borrow_chart(buckets, pool.colors, frame)),
            "overage-chart": figure_part(figures.overage_chart(buckets, pool.colors, frame)),
            "utilization-chart": figure_part(figures.utilization_chart(pool.status)),
            "failure-chart": figure_part(figures.failure_chart(flows, frame)),
            "events-table": self._events(pool, window, None),
        }

    def _build_tool(self, pool, tool, window, frame, data):
        color = pool.colors.get(tool, figures.tool_colors([tool])[tool])
        entry = pool.by_tool.get(tool)
        limits = (entry["commit"], entry["total"]) if entry and entry["total"] is not None else None
        borrowed = entry["borrowed"] if entry else 0
        _, buckets, flows_by_tool = data
        flows = flows_by_tool.get(tool, [])
        users = [borrow.user for borrow in self.pool.active_borrows(tool=tool)]
        history = buckets.get(tool, [])
        return {
            "tool-borrow-chart": figure_part(figures.tool_borrow_chart(tool, history, color, frame)),
            "tool-user-chart": figure_part(figures.tool_user_chart(tool, users, color, frame.revision)),
            "tool-commit-chart": figure_part(figures.tool_commit_chart(entry, frame.revision)),
            "tool-inuse-chart": figure_part(figures.tool_inuse_chart(tool, flows, borrowed, limits, color, frame)),
            "tool-info": component_part(parts.tool_info(tool, entry, color)),
            "events-table": self._events(pool, window, tool),
        }

    def _events(self, pool, window, tool):
        rows, keys = self._rows.rows(recent_events(self.buffer, window, tool), pool.colors)
        part = component_part(parts.events_table(rows))
        if len(self._table_rows) >= TABLES_KEPT:
            del self._table_rows[next(iter(self._table_rows))]  # the oldest; dicts keep insertion order
        self._table_rows[part.sig] = keys
        return part

    def row_keys(self, signature):
        """Return the row keys of a recently built table, or None; under the lock that guards their writes."""
        with self._lock:
            return self._table_rows.get(signature)
