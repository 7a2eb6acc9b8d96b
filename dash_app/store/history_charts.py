"""Reads of the long history for charts and exports: bins of the stored minute and hour rows, licenses in use included."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from dash_app.buffer import Bucket
from dash_app.store.levels import estimated_levels, level_before
from dash_app.store.statements import run, tuples
from dash_app.timeutil import MAX_CLOCK_SKEW_SECONDS, iso_utc

if TYPE_CHECKING:
    from dash_app.store.database import Store

# Bin sizes a long chart may use; the smallest that keeps a series at or under MAX_POINTS wins.
BIN_LADDER = (60, 300, 3600, 7200, 21600, 86400)
MAX_POINTS = 500


class HistoryPoint(Bucket):
    """One bin of a long chart: a bucket, its returns and failures by reason, and the licenses in use during it."""

    returns: int
    failures: dict[str, int]
    peak: int  # the most in use at any instant of the bin
    avg_in_use: float  # the time-weighted mean in use over the bin


def stored_tool_names(store: Store, limit: int | None = None) -> list[str]:
    """Return the tool (series) names of the stored hourly history, the earliest seen first, at most `limit` of them."""
    sql = "SELECT tool FROM hour_stats GROUP BY tool ORDER BY MIN(hour), tool"
    if limit is None:
        return [tool for (tool,) in store.read(sql)]
    return [tool for (tool,) in store.read(sql + " LIMIT :limit", {"limit": limit})]


def bin_seconds_for(window_seconds: float) -> int:
    """Return the smallest bin size from the ladder that keeps `window_seconds` at or under MAX_POINTS points."""
    for size in BIN_LADDER:
        if window_seconds / size <= MAX_POINTS:
            return size
    return BIN_LADDER[-1]


def _series_names(store: Store) -> list[str]:
    """Return every series with stored hours, one primary-key step per name (no scan of the table)."""
    return [
        tool
        for (tool,) in store.read(
            "WITH RECURSIVE names(tool) AS (SELECT MIN(tool) FROM hour_stats UNION ALL "
            "SELECT (SELECT MIN(tool) FROM hour_stats WHERE tool > names.tool) FROM names WHERE names.tool IS NOT NULL) "
            "SELECT tool FROM names WHERE tool IS NOT NULL"
        )
    ]


def history_series(
    store: Store, window_seconds: float, now: float | None = None, tools: Iterable[str] | None = None
) -> tuple[int, dict[str, list[HistoryPoint]]]:
    """Return (bin_seconds, {tool: [point, ...]}) for a long window, from the stored aggregates, oldest bin first.

    Each point is a bucket dict (timestamp, count, users, overage_count) plus returns, failures by reason, and the
    licenses in use: `peak`, the most at any instant of the bin, and `avg_in_use`, the time-weighted mean over its
    minutes (bins under an hour, from minute rows) or hours (from hour rows) up to the one holding now, each minute
    or hour without a row counting at the level carried from the row before it. A bin appears when it has rows, or
    when no row but a level above 0 carried through it (all counts 0 then): a tool holding licenses all window long
    without an event has a point in every bin. Series are in name order.
    """
    now = time.time() if now is None else now
    size = bin_seconds_for(window_seconds)
    # The first bin is whole: the window is widened back to the bin edge before it.
    start = int((now - window_seconds) // size) * size
    table, unit_name, unit = ("hour_stats", "hour", 3600) if size >= 3600 else ("minute_stats", "minute", 60)
    first_unit = start // unit
    names = _series_names(store)
    if tools is not None:
        wanted = set(tools)
        names = [tool for tool in names if tool in wanted]
    series: dict[str, list[HistoryPoint]] = {}
    # One read transaction for every series: the chart shows one committed state, and the writer goes on meanwhile.
    with store.snapshot() as conn:
        query = partial(run, conn)
        for tool in names:
            last = query(
                f"SELECT level_end FROM {table} WHERE tool = :tool AND {unit_name} < :first ORDER BY {unit_name} DESC LIMIT 1",
                {"tool": tool, "first": first_unit},
            ).fetchall()
            level = last[0][0] if last else 0
            if level is None:
                level = level_before(query, table, unit_name, tool, first_unit)
            # Rows up to now, and events stamped a few seconds ahead of it (a clock ahead of ours).
            rows = tuples(
                conn,
                f"SELECT {unit_name}, count, overage_count, users, returns, failures, peak, avg_in_use, level_end "
                f"FROM {table} WHERE tool = :tool AND {unit_name} >= :first AND {unit_name} <= :last ORDER BY {unit_name}",
                {"tool": tool, "first": first_unit, "last": int((now + MAX_CLOCK_SKEW_SECONDS) // unit)},
            )
            points = _bins(rows, level, start, size, unit, max(int(now // unit), rows[-1][0] if rows else 0))
            if points:
                series[tool] = points
    return size, series


def _bins(rows: list[Any], level: int, start: int, size: int, unit: int, last_unit: int) -> list[HistoryPoint]:
    """Fold one series' rows (oldest first) into bins of `size` seconds from `start`, carrying `level` through gaps."""
    points: list[HistoryPoint] = []
    per_bin = size // unit
    i = 0
    for first in range(start // unit, last_unit + 1, per_bin):
        stop = min(first + per_bin, last_unit + 1)
        if (i == len(rows) or rows[i][0] >= stop) and not level:
            continue  # nothing stored and nothing held: no point
        count = overage = returns = 0
        users: set[str] = set()
        failures: dict[str, int] = {}
        peak, area, expected = 0, 0.0, first
        while i < len(rows) and rows[i][0] < stop:
            at, n, over, names, back, failed, row_peak, row_average, row_end = rows[i]
            i += 1
            if at > expected:
                # Units without a row held the level of the row before them.
                peak = max(peak, level)
                area += level * (at - expected)
            if row_peak is None:
                row_peak, row_average, row_end = estimated_levels(level, n, back)
            peak = max(peak, row_peak)
            area += row_average
            level, expected = row_end, at + 1
            count += n
            overage += over
            if names != "[]":  # most rows of a quiet tool; decoding is most of this loop's time
                users.update(json.loads(names))
            returns += back
            if failed != "{}":
                for reason, k in json.loads(failed).items():
                    failures[reason] = failures.get(reason, 0) + k
        if stop > expected:
            peak = max(peak, level)
            area += level * (stop - expected)
        points.append(
            {
                "timestamp": iso_utc(first * unit)[:19] + "Z",
                "count": count,
                "users": sorted(users),
                "overage_count": overage,
                "returns": returns,
                "failures": failures,
                "peak": peak,
                "avg_in_use": area / (stop - first),
            }
        )
    return points


def minute_rows(
    store: Store, since_ts: float, tools: Collection[str] | None = None
) -> list[tuple[str, int, int, int, list[str]]]:
    """Return stored minute rows (tool, minute, count, overage_count, users) from `since_ts`'s minute on."""
    first = int(since_ts // 60)
    if since_ts > first * 60:
        first += 1  # the minute must start inside the window, as in the buffer
    rows = store.read(
        "SELECT tool, minute, count, overage_count, users FROM minute_stats WHERE minute >= :first ORDER BY tool, minute",
        {"first": first},
    )
    return [(t, m, c, o, json.loads(u)) for t, m, c, o, u in rows if tools is None or t in tools]
