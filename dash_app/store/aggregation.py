"""Folding raw events into the per-minute and per-hour rows of the long history, their counts and licenses in use.

Besides counts, every minute and hour row holds the licenses of its series in use (store.levels): `peak`,
`avg_in_use` and `level_end`. Minute rows are rebuilt from the raw events; hour rows from the minute rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

from dash_app.store import tables
from dash_app.store.levels import Grouped, Levels, LevelWalk, Query, estimated_levels, level_before
from dash_app.store.statements import run, upsert

if TYPE_CHECKING:
    from dash_app.store.database import Store

_STATS_COLUMNS = ("count", "overage_count", "users", "returns", "failures", "peak", "avg_in_use", "level_end")
_SET_LEVELS = "UPDATE {table} SET peak = :p, avg_in_use = :a, level_end = :e WHERE tool = :tool AND {unit} = :at"


def _upsert(
    conn: Connection,
    table: str,
    unit: str,
    grouped: Mapping[tuple[str, int], list[Any]],
    levels: Mapping[tuple[str, int], Levels],
) -> None:
    if not grouped:
        return
    rows = [
        (tool, key, row[0], row[1], json.dumps(sorted(row[2])), row[3], json.dumps(row[4], sort_keys=True), *levels[(tool, key)])
        for (tool, key), row in grouped.items()
    ]
    names = ("tool", unit, *_STATS_COLUMNS)
    conn.execute(upsert(conn.dialect.name, tables.metadata.tables[table], ["tool", unit]), [dict(zip(names, r)) for r in rows])


def rebuild_from(store: Store, since_ts: float, series_of: Callable[[str], str] | None = None) -> None:
    """Recompute the minute and hour rows, keyed by `series_of(tool)`, from raw events at and after `since_ts`'s minute."""
    with store.writing() as conn:
        rebuild(conn, since_ts, series_of)


def _count(row: list[Any], kind: str, user: str, is_overage: int | None, reason: str | None) -> int:
    """Add one event to its minute's aggregate `row`; return its step in use (+1 a borrow, -1 a return, 0 else)."""
    if kind == "borrow":
        row[0] += 1
        row[1] += is_overage or 0
        row[2].add(user)
        return 1
    if kind == "return":
        row[3] += 1
        return -1
    row[4][reason] = row[4].get(reason, 0) + 1
    return 0


class _MinuteRebuild:
    """The minute rows of every series with events from `first_minute` on, rebuilt as the events are walked."""

    def __init__(self, query: Query, first_minute: int) -> None:
        self.query = query
        self.first_minute = first_minute
        # Each event goes straight into its (series, minute) row and its series' walk, so memory follows the rows,
        # not the events.
        self.grouped: Grouped = {}
        self.walks: dict[str, LevelWalk] = {}
        # Per series, its stored rows from the first minute on, oldest first: a row the walk passes without raw
        # events (they were pruned, and an older event came late) is moved by the walk's new level, not rebuilt.
        self.stored: dict[str, Iterator[tuple[Any, ...]]] = {}
        self.pending: dict[str, tuple[Any, ...] | None] = {}
        self.moved: dict[tuple[str, int], Levels] = {}
        self.previous_end: dict[str, int] = {}  # series -> level_end of its last stored row passed, before the rebuild

    def add(self, series: str, ts: float, step: int) -> None:
        """Walk the series' level through one event at `ts`."""
        minute = int(ts // 60)
        walk = self.walks.get(series)
        if walk is None:
            walk = self._start(series)
        if self.pending[series] is not None:
            self.pass_stored(series, walk, minute)
        walk.add(ts, minute, step)

    def _start(self, series: str) -> LevelWalk:
        start = level_before(self.query, "minute_stats", "minute", series, self.first_minute)
        walk = self.walks[series] = LevelWalk(start)
        self.previous_end[series] = start
        rows = self.query(
            "SELECT minute, count, returns, peak, avg_in_use, level_end FROM minute_stats "
            "WHERE tool = :tool AND minute >= :first ORDER BY minute",
            {"tool": series, "first": self.first_minute},
        )
        self.stored[series] = iter(list(rows))
        self.pending[series] = next(self.stored[series], None)
        return walk

    def pass_stored(self, series: str, walk: LevelWalk, until: float) -> None:
        """Move the walk over the series' stored rows before minute `until` that have no raw events."""
        row = self.pending[series]
        while row is not None and row[0] < until:
            minute, count, returns, peak, average, end = row
            if minute != walk.minute and minute not in walk.done:
                walk.close()
                if peak is None:
                    levels = estimated_levels(walk.level, count, returns)
                else:
                    shift = walk.level - self.previous_end[series]
                    levels = (max(0, peak + shift), max(0.0, average + shift), max(0, end + shift))
                if levels != (peak, average, end):
                    self.moved[(series, minute)] = levels
                walk.level = levels[2]
            if end is not None:
                self.previous_end[series] = end
            row = self.pending[series] = next(self.stored[series], None)

    def levels(self) -> dict[tuple[str, int], Levels]:
        """Finish every walk and return the Levels of each (series, minute) with events."""
        levels: dict[tuple[str, int], Levels] = {}
        for series, walk in self.walks.items():
            walk.close()
            self.pass_stored(series, walk, float("inf"))
            for minute, figures in walk.done.items():
                levels[(series, minute)] = figures
        return levels


def rebuild(conn: Connection, since_ts: float, series_of: Callable[[str], str] | None) -> None:
    """Recompute the minute rows from the raw events at and after `since_ts`'s minute, then their series' hours."""
    first_minute = int(since_ts // 60)
    query = partial(run, conn)
    minutes = _MinuteRebuild(query, first_minute)
    grouped = minutes.grouped
    for ts, kind, tool, user, is_overage, reason in query(
        'SELECT ts, kind, tool, "user", is_overage, reason FROM events WHERE ts >= :since AND tool IS NOT NULL '
        "ORDER BY ts, rowid",
        {"since": first_minute * 60},
    ):
        series = tool if series_of is None else series_of(tool)
        key = (series, int(ts // 60))
        row = grouped.get(key)
        if row is None:
            row = grouped[key] = [0, 0, set(), 0, {}]
        minutes.add(series, ts, _count(row, kind, user, is_overage, reason))
    _upsert(conn, "minute_stats", "minute", grouped, minutes.levels())
    if minutes.moved:
        conn.execute(
            text(_SET_LEVELS.format(table="minute_stats", unit="minute")),
            [{"p": p, "a": a, "e": e, "tool": series, "at": minute} for (series, minute), (p, a, e) in minutes.moved.items()],
        )
    # Only the series with new events have hours to redo; the others' minute rows did not change.
    rebuild_hours_from(conn, first_minute, tools=minutes.walks)


def hours_of(conn: Connection, tool: str, hour_start: int) -> tuple[Grouped, dict[tuple[str, int], Levels]]:
    """Return one series' hour aggregates and Levels from its minute rows, from the hour starting at minute `hour_start`."""
    query = partial(run, conn)
    level = level_before(query, "minute_stats", "minute", tool, hour_start)
    grouped: Grouped = {}
    levels: dict[tuple[str, int], Levels] = {}
    hour = -1
    peak, area, next_minute = 0, 0.0, 0

    def finish() -> None:
        # Minutes after the hour's last row held its level to the hour's end.
        if hour >= 0:
            rest = hour * 60 + 60 - next_minute
            levels[(tool, hour)] = (max(peak, level) if rest else peak, (area + level * rest) / 60, level)

    for minute, count, overage, users, returns, failures, row_peak, row_average, row_end in query(
        "SELECT minute, count, overage_count, users, returns, failures, peak, avg_in_use, level_end FROM minute_stats "
        "WHERE tool = :tool AND minute >= :first ORDER BY minute",
        {"tool": tool, "first": hour_start},
    ):
        if minute // 60 != hour:
            finish()
            hour = minute // 60
            peak, area, next_minute = 0, 0.0, hour * 60
        gap = minute - next_minute
        if gap:
            # Minutes without a row held the level of the row before them.
            peak = max(peak, level)
            area += level * gap
        if row_peak is None:
            row_peak, row_average, row_end = estimated_levels(level, count, returns)
        peak = max(peak, row_peak)
        area += row_average
        level, next_minute = row_end, minute + 1
        row = grouped.get((tool, hour))
        if row is None:
            row = grouped[(tool, hour)] = [0, 0, set(), 0, {}]
        row[0] += count
        row[1] += overage
        row[2].update(json.loads(users))
        row[3] += returns
        for reason, n in json.loads(failures).items():
            row[4][reason] = row[4].get(reason, 0) + n
    finish()
    return grouped, levels


def rebuild_hours_from(conn: Connection, first_minute: int, tools: Iterable[str] | None = None) -> None:
    """Recompute the hour rows from the minute rows, from the hour that holds `first_minute` on (of `tools` only, when given)."""
    hour_start = (first_minute // 60) * 60
    if tools is None:
        tools = [tool for (tool,) in run(conn, "SELECT DISTINCT tool FROM minute_stats WHERE minute >= :h", {"h": hour_start})]
    grouped: Grouped = {}
    levels: dict[tuple[str, int], Levels] = {}
    # One primary-key range per tool: the whole table is never scanned, however long the history.
    for tool in sorted(tools):
        tool_grouped, tool_levels = hours_of(conn, tool, hour_start)
        grouped.update(tool_grouped)
        levels.update(tool_levels)
    _upsert(conn, "hour_stats", "hour", grouped, levels)


def estimate_missing_levels(conn: Connection) -> None:
    """Give every minute and hour row stored without in-use figures estimated ones (estimated_levels, per series from 0)."""
    _estimate_minute_levels(conn)
    _estimate_hour_levels(conn)


def _estimate_minute_levels(conn: Connection) -> None:
    tools = [tool for (tool,) in run(conn, "SELECT DISTINCT tool FROM minute_stats WHERE level_end IS NULL")]
    for tool in tools:
        level = 0
        updates = []
        for minute, count, returns, end in run(
            conn, "SELECT minute, count, returns, level_end FROM minute_stats WHERE tool = :tool ORDER BY minute", {"tool": tool}
        ).fetchall():
            if end is not None:
                level = end
                continue
            p, a, e = figures = estimated_levels(level, count, returns)
            updates.append({"p": p, "a": a, "e": e, "tool": tool, "at": minute})
            level = figures[2]
        if updates:
            conn.execute(text(_SET_LEVELS.format(table="minute_stats", unit="minute")), updates)


def _estimate_hour_levels(conn: Connection) -> None:
    """Give the hour rows without levels those of their minute rows (their counts are left alone: minutes may be pruned)."""
    for tool, first_hour in run(conn, "SELECT tool, MIN(hour) FROM hour_stats WHERE level_end IS NULL GROUP BY tool").fetchall():
        _grouped, levels = hours_of(conn, tool, first_hour * 60)
        known = dict(levels)
        updates = []
        level = level_before(partial(run, conn), "hour_stats", "hour", tool, first_hour)
        later = "SELECT hour FROM hour_stats WHERE tool = :tool AND hour >= :first ORDER BY hour"
        for (hour,) in run(conn, later, {"tool": tool, "first": first_hour}).fetchall():
            # An hour whose minute rows are all pruned keeps the level it was entered with.
            p, a, e = figures = known.get((tool, hour), (level, float(level), level))
            updates.append({"p": p, "a": a, "e": e, "tool": tool, "at": hour})
            level = figures[2]
        if updates:
            conn.execute(text(_SET_LEVELS.format(table="hour_stats", unit="hour")), updates)
