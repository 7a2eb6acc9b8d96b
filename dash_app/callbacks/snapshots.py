"""Each view's figures, tables and cards, built once per change of the data and shared by every open tab."""

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from dash_app import figures
from dash_app.auth.viewer import FULL, Names
from dash_app.callbacks.highest import Kept
from dash_app.callbacks.updates import Part, TraceDigests, component_part, figure_part, plain
from dash_app.callbacks.window_data import BufferWindows, history_window
from dash_app.callbacks.window_stats import (
    EMPTY,
    SHOWN_TOOLS,
    ToolStats,
    WindowData,
    pressure_order,
    pressures,
    tool_stats,
    top_tools,
    totals,
)
from dash_app.events import Event, public_event
from dash_app.layouts import parts, tables
from dash_app.layouts.controls import SHORT_LABELS, rate_unit, tool_options
from dash_app.layouts.dashboard import checkouts_columns
from dash_app.pressure import DEFAULT_GAP, true_denials_by_tool
from dash_app.store.history import bin_seconds_for
from dash_app.store.history_counts import denials_since

if TYPE_CHECKING:
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.figures import Frame
    from dash_app.figures.common import Figure
    from dash_app.licenses.pool import LicensePool
    from dash_app.store.history import HistoryKeeper

# A stored event's time, to sort events newest first.
EVENT_TIME = attrgetter("ts")
# How many recent tables' row keys are kept: enough for every view and window in use over a few ticks.
TABLES_KEPT = 64
OVERVIEW_FIGURES = ("inuse-chart", "borrow-chart", "overage-chart", "utilization-chart", "failure-chart")
TOOL_FIGURES = ("tool-borrow-chart", "tool-commit-chart", "tool-inuse-chart", "tool-failure-chart")
# Grids whose rows (rowData) a view builds.
GRIDS = ("tool-table", "checkouts-table")


@dataclass(frozen=True)
class PoolSnapshot:
    """What one data version says about the tools: status entries, every known tool and its own colour."""

    status: list[dict[str, Any]]
    by_tool: dict[str, dict[str, Any]]
    tools: list[str]
    colors: dict[str, str]
    options: Part  # of the tool-filter options
    pool_total: int  # licenses in the whole pool


def recent_events(
    buffer: "RealtimeMetricsBuffer", window: float, tool: str | None = None, rows: int = tables.EVENT_ROWS
) -> list[Event]:
    """Return the newest `rows` events of the window (of `tool` only, when given), newest first."""
    events = [e for kind in buffer.recent_raw(window, limit=rows, tool=tool) for e in kind]
    events.sort(key=EVENT_TIME, reverse=True)
    return events[:rows]


class EventRows:
    """Table rows of events, each built once: an event never changes, and a live tick brings only a few new ones.

    Rows used during the current data version are kept, and those of the previous version, so views and tabs that
    show the same events share them and the cache stays as small as the tables. Users show as `names` says.
    """

    def __init__(self, names: Names = FULL) -> None:
        self.names = names
        self._current: dict[tuple[Any, ...], Any] = {}
        self._previous: dict[tuple[Any, ...], Any] = {}

    def next_version(self) -> None:
        """Forget rows no table used during the last two versions."""
        self._previous, self._current = self._current, {}

    def rows(self, events: Iterable[Event], colors: Mapping[str, str], zone: str) -> tuple[list[Any], list[tuple[Any, ...]]]:
        """Return the plain-JSON rows of `events` (times in `zone`) and their keys, in their order.

        A row is keyed by the stored event itself, so only an event not shown before is turned into its JSON shape.
        """
        out, keys = [], []
        current, previous = self._current, self._previous
        for event in events:
            color = colors.get(event.tool or "")
            key = (event, color, zone)
            row = current.get(key) or previous.get(key)
            if row is None:
                row = plain(tables.event_row(public_event(event), color, zone, self.names))
            current[key] = row
            out.append(row)
            keys.append(key)
        return out, keys


def window_label(window: float) -> str:
    """Return a window's short name, as the cards say it: "30 min", "24 h"."""
    return SHORT_LABELS.get(window, f"{window // 60:g} min")


def _identity(value: object) -> object:
    """A mapping of lists stands for its items' identities; anything else for itself."""
    if isinstance(value, dict):
        return tuple(sorted((key, id(item)) for key, item in value.items()))
    return value


class Snapshots:
    """Builds a view (overview or one tool, for one window and time zone) at most once per data version.

    The data version is the buffer's version, the pool's counts and the current minute (windows slide by whole
    minutes), so ten tabs on the same tick share one build, and a quiet minute costs no rebuild at all.

    One Snapshots serves one way of showing people's names (`names`): its rows and figures show users, hosts and
    borrow ids as `names` says, so all its caches and signatures belong to readers of that kind alone.
    """

    def __init__(
        self,
        buffer: "RealtimeMetricsBuffer",
        pool: "LicensePool",
        history: "HistoryKeeper | None" = None,
        currency: str = "",
        names: Names = FULL,
        denial_gap: float = DEFAULT_GAP,
    ) -> None:
        self.buffer = buffer
        self.pool = pool
        self.history = history
        self.currency = currency
        self.names = names
        self.shown_tools = SHOWN_TOOLS  # how many tools the overview's charts show by name
        # window -> (key, WindowData): each window's data, from the buffer or the stored history.
        self._window_data_cache: dict[float, tuple[Any, WindowData]] = {}
        self._buffer_windows = BufferWindows(buffer, denial_gap)
        self._kept: dict[float, Kept] = {}  # window -> the overview's parts kept from one build to the next
        self._true_denials: dict[float, tuple[int, dict[str, int]]] = {}  # window -> (its bin, true denials by tool)
        self._last_tools: tuple[list[str], dict[str, str], Part] | None = None  # (tools, their colours, options)
        self._lock = threading.Lock()
        self._version: tuple[Any, ...] | None = None
        self._pool: PoolSnapshot | None = None
        self._views: dict[tuple[str | None, float, str], tuple[Any, dict[str, Any]]] = {}
        self._rows = EventRows(names)
        self._trace_digests = TraceDigests()
        self._memo: dict[str, tuple[Any, ...]] = {}  # figure id -> (key of its inputs, its Part, the inputs)
        # Row keys of recently built tables by signature, so a tab's table can be patched row by row.
        self._table_rows: dict[str, Any] = {}

    def get(
        self, tool: str | None, window: float, now: float, zone: str = "UTC"
    ) -> tuple[PoolSnapshot, str | None, dict[str, Any]]:
        """Return (PoolSnapshot, tool, {output id: Part}) for the view of `tool` (None for all tools) over `window` s.

        A tool no source has reported gets the overview (and None back), so no text builds a view of its own.
        """
        with self._lock:
            # Read inside the lock, so tabs on different ticks cannot put an older view back.
            status = self.pool.status()
            counts = tuple(
                (entry["tool"], entry["borrowed"], entry["overage_borrows"], entry["reserved"], entry["queued"])
                for entry in status
            )
            version = (self.buffer.version, counts, int(now // 60))
            pool = self._pool
            if version != self._version or pool is None:
                self._version = version
                pool = self._pool = self._build_pool(status)
                self._views = {}
                self._rows.next_version()
            if tool not in pool.tools:
                tool = None
            data = self._window_data(window, now, pool)
            view = self._views.get((tool, window, zone))
            if view is None or view[0] is not data:
                revision = f"{tool}|{window}|{zone}"
                frame = figures.Frame(now - window, now, revision=revision, bin_seconds=data.bin_seconds, zone=zone)
                stats = tool_stats(pool.status, data)
                if tool is not None:
                    built = self._build_tool(pool, tool, window, frame, data, stats, now)
                else:
                    built = self._build_overview(pool, window, frame, data, stats, now)
                view = self._views[(tool, window, zone)] = (data, built)
            return pool, tool, view[1]

    def _window_data(self, window: float, now: float, pool: PoolSnapshot) -> WindowData:
        """Return the WindowData of a window: the buffer's, or the stored history's."""
        key: tuple[Any, ...]
        if window <= self.buffer.retention_seconds or self.history is None:
            key = ("buffer", self._version)
            cached = self._window_data_cache.get(window)
            if cached is None or cached[0] != key:
                levels_now = {entry["tool"]: entry["borrowed"] for entry in pool.status}
                cached = self._window_data_cache[window] = (key, self._buffer_windows.get(window, now, levels_now))
            return cached[1]
        size = bin_seconds_for(window)
        # Stored aggregates change every few seconds at most; their bins move on every `size` seconds.
        key = ("history", self.history.generation, int(now // size))
        cached = self._window_data_cache.get(window)
        if cached is None or cached[0] != key:
            data = history_window(self.history, window, now)
            # The stored denials are read again only when the bins move on: a long window's true denials may lag by a bin.
            counted = self._true_denials.get(window)
            if counted is None or counted[0] != key[2]:
                denials = denials_since(self.history.store, now - window)
                counted = self._true_denials[window] = (key[2], true_denials_by_tool(denials, self._buffer_windows.denial_gap))
            cached = self._window_data_cache[window] = (key, replace(data, true_denials=counted[1]))
        return cached[1]

    def _build_pool(self, status: list[dict[str, Any]]) -> PoolSnapshot:
        known = [entry["tool"] for entry in status]
        seen = set(known)
        # Tools the buffer holds but the pool does not know (a log source, a test feeding the buffer) come last.
        extra = sorted(t for t in self.buffer.series_stamps() if t not in seen)
        tools = known + extra
        if self._last_tools is None or self._last_tools[0] != tools:
            # The same tools as the last build (nearly always): their colours and options are those already built.
            self._last_tools = (tools, figures.tool_colors(tools), component_part(tool_options(tools)))
        _, colors, options = self._last_tools
        return PoolSnapshot(
            status=status,
            by_tool={entry["tool"]: entry for entry in status},
            tools=tools,
            colors=colors,
            options=options,
            pool_total=sum(entry["total"] or 0 for entry in status),
        )

    def _cards(self, window: float, stats: ToolStats, in_use: int, of_total: int, scope: str) -> Part:
        """Return the cards' values and hints for counts over the window."""
        span = window_label(window)
        unit_seconds, unit = rate_unit(window)
        units = window / unit_seconds
        share = 100 * stats.overage / stats.borrows if stats.borrows else 0.0
        return component_part(
            {
                "borrow-rate": parts.rate(stats.borrows / units),
                "borrow-rate-hint": f"per {unit} · last {span} · {scope}",
                "overage-rate": f"{parts.number(round(share, 1))} %",
                "overage-rate-class": parts.overage_class(share, stats.borrows),
                "overage-rate-hint": f"{stats.overage:,} of {stats.borrows:,} borrows · last {span}",
                "return-rate": parts.rate(stats.returns / units),
                "return-rate-hint": f"per {unit} · last {span} · {scope}",
                "failure-rate": parts.rate(stats.failures / units),
                "failure-rate-hint": f"per {unit} · last {span} · {stats.failures:,} in all, {stats.true_denials:,} true",
                "active-licenses": parts.number(in_use),
                "active-licenses-hint": f"of {of_total:,} · {scope}" if of_total else f"limits unknown · {scope}",
            }
        )

    def _build_overview(
        self, pool: PoolSnapshot, window: float, frame: "Frame", data: WindowData, stats: dict[str, ToolStats], now: float
    ) -> dict[str, Part]:
        kept = self._kept.setdefault(window, Kept())
        others, bars = kept.others, kept.bars
        pressure = pressures(pool.status, data, stats, window, kept.pressures)
        ranked = pressure_order(pressure, stats)
        shown = top_tools(stats, ranked, self.shown_tools)
        colors = figures.tool_colors(pool.tools, shown)
        totals_by_tool = {entry["tool"]: entry["total"] for entry in pool.status}
        in_use_now = sum(entry["borrowed"] for entry in pool.status)
        sums = data.bucket_sums or {}
        zone = frame.zone

        def shown_bars(tool: str, key: str) -> tuple[list[str], list[int]]:
            return bars.points(tool, data.buckets.get(tool, ()), key, frame)

        def shown_sum(tools: Sequence[str], key: str) -> Mapping[str, int]:
            return bars.sums(tools, data.buckets, key)

        return {
            "inuse-chart": self._figure(
                figures.inuse_chart(
                    data.in_use,
                    shown,
                    colors,
                    totals_by_tool,
                    frame,
                    lambda rest: others.line(pool.tools, data.in_use, data.peak_bins or {}, rest, frame),
                    lambda tool, total: others.points(tool, data.in_use[tool], total, frame),
                )
            ),
            "borrow-chart": self._figure(
                figures.borrow_chart(data.buckets, shown, colors, frame, sums.get("count"), shown_bars, shown_sum)
            ),
            "overage-chart": self._figure(
                figures.overage_chart(data.buckets, shown, colors, frame, sums.get("overage_count"), shown_bars, shown_sum)
            ),
            "utilization-chart": self._figure(figures.utilization_chart(pool.status, shown)),
            "failure-chart": self._memoized(
                "failure-chart",
                (frame.revision, frame.first_minute, data.failing),
                lambda: figures.failure_chart(data.failing if data.failing is not None else data.flows, frame),
            ),
            "tool-table": self._grid(
                tables.tool_rows(pool.status, stats, self.currency, pressure, ranked, kept.rows),
                "tool",
            ),
            "checkouts-table": component_part(
                tables.checkout_rows(self.pool.active_borrows(), now, zone, limit=tables.OVERVIEW_CHECKOUTS, names=self.names)
            ),
            "checkouts-columns": component_part(checkouts_columns(zone)),
            "cards": self._cards(window, totals(stats), in_use_now, pool.pool_total, "all tools"),
            "events-table": self._events(pool, window, None, colors, zone),
        }

    def _build_tool(
        self,
        pool: PoolSnapshot,
        tool: str,
        window: float,
        frame: "Frame",
        data: WindowData,
        stats: dict[str, ToolStats],
        now: float,
    ) -> dict[str, Part]:
        color = pool.colors[tool]
        entry = pool.by_tool.get(tool)
        limits = (entry["commit"], entry["total"]) if entry and entry["commit"] is not None else None
        borrowed = entry["borrowed"] if entry else 0
        history = data.buckets.get(tool, [])
        return {
            "tool-borrow-chart": self._figure(figures.tool_borrow_chart(tool, history, color, frame, self.names)),
            "tool-commit-chart": self._figure(figures.tool_commit_chart(entry, frame.revision)),
            "tool-inuse-chart": self._figure(figures.tool_inuse_chart(tool, data.in_use.get(tool, []), limits, color, frame)),
            "tool-failure-chart": self._figure(
                figures.failure_chart(
                    {tool: (data.failing if data.failing is not None else data.flows).get(tool, [])},
                    frame,
                    empty_message="No denials of this tool in this window",
                )
            ),
            "tool-info": component_part(
                parts.tool_info(tool, entry, color, self.currency, denials=(stats.get(tool, EMPTY), window_label(window)))
            ),
            "checkouts-table": component_part(
                tables.checkout_rows(self.pool.active_borrows(tool=tool), now, frame.zone, names=self.names)
            ),
            "checkouts-columns": component_part(checkouts_columns(frame.zone, one_tool=True)),
            "cards": self._cards(window, stats.get(tool, EMPTY), borrowed, limits[1] if limits else 0, "this tool"),
            "events-table": self._events(pool, window, tool, {tool: color}, frame.zone),
        }

    def _figure(self, figure: "Figure") -> Part:
        """Return a figure's Part, with the digests of traces built from kept lists reused."""
        return figure_part(figure, self._trace_digests)

    def _memoized(self, figure_id: str, inputs: tuple[Any, ...], build: Callable[[], "Figure"]) -> Part:
        """Return the Part of `figure_id` built by `build`, reusing the last one when its inputs are the same objects.

        `inputs` is a tuple of plain values and per-series mappings; the mappings' lists are compared by identity,
        which BufferWindows keeps for every series whose data did not change.
        """
        key = tuple(_identity(value) for value in inputs)
        last = self._memo.get(figure_id)
        if last is not None and last[0] == key:
            return last[1]
        part = self._figure(build())
        # The inputs are kept with the key: while they live, no other list can take one of their ids.
        self._memo[figure_id] = (key, part, inputs)
        return part

    def _events(self, pool: PoolSnapshot, window: float, tool: str | None, colors: Mapping[str, str], zone: str) -> Part:
        colors = {**pool.colors, **colors}
        rows, keys = self._rows.rows(recent_events(self.buffer, window, tool), colors, zone)
        part = component_part(tables.events_table(rows, zone))
        if len(self._table_rows) >= TABLES_KEPT:
            del self._table_rows[next(iter(self._table_rows))]  # the oldest; dicts keep insertion order
        self._table_rows[part.sig] = keys
        return part

    def _grid(self, rows: Sequence[Mapping[str, Any]], key: str) -> Part:
        """Return the Part of a grid's rows, keeping them by `key` so a tab's grid can get only the rows that changed."""
        part = component_part(rows)
        if len(self._table_rows) >= TABLES_KEPT:
            del self._table_rows[next(iter(self._table_rows))]
        self._table_rows[part.sig] = {row[key]: row for row in rows}
        return part

    def row_keys(self, signature: str) -> Any:
        """Return the row keys of a recently built table, or None; under the lock that guards their writes."""
        with self._lock:
            return self._table_rows.get(signature)
