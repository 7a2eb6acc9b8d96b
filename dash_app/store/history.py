"""Long history: per-minute and per-hour aggregates in SQLite, kept for --history-days, and queries over them."""

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from dash_app.buffer import Bucket
from dash_app.timeutil import iso_utc

if TYPE_CHECKING:
    from dash_app.store.sqlite_store import SQLiteStore

# Bin sizes a long chart may use; the smallest that keeps a series at or under MAX_POINTS wins.
BIN_LADDER = (60, 300, 3600, 7200, 21600, 86400)
MAX_POINTS = 500
AGGREGATE_EVERY_SECONDS = 5.0
PRUNE_EVERY_SECONDS = 600.0

# A stored aggregate row, decoded: (tool, minute or hour, count, overage_count, users, returns, failures by reason).
StatsRow: TypeAlias = tuple[str, int, int, int, list[str], int, dict[str, int]]
# An aggregate being summed: [count, overage_count, {users}, returns, {reason: count}], by (tool, bin).
Grouped: TypeAlias = dict[tuple[str, int], list[Any]]


class HistoryPoint(Bucket):
    """One bin of a long chart: a bucket, plus its returns and its failures by reason."""

    returns: int
    failures: dict[str, int]


def _group(rows: Iterable[StatsRow], key_of: Callable[[int], int]) -> Grouped:
    table: Grouped = {}
    for tool, key, count, overage, users, returns, failures in rows:
        row = table.setdefault((tool, key_of(key)), [0, 0, set(), 0, {}])
        row[0] += count
        row[1] += overage
        row[2].update(users)
        row[3] += returns
        for reason, n in failures.items():
            row[4][reason] = row[4].get(reason, 0) + n
    return table


def _upsert(conn: sqlite3.Connection, table: str, unit: str, grouped: Mapping[tuple[str, int], list[Any]]) -> None:
    conn.executemany(
        f"INSERT OR REPLACE INTO {table} (tool, {unit}, count, overage_count, users, returns, failures) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (tool, key, row[0], row[1], json.dumps(sorted(row[2])), row[3], json.dumps(row[4], sort_keys=True))
            for (tool, key), row in grouped.items()
        ],
    )


def rebuild_from(conn: sqlite3.Connection, since_ts: float, series_of: Callable[[str], str] | None = None) -> None:
    """Recompute the minute and hour rows, keyed by `series_of(tool)`, from raw events at and after `since_ts`'s minute."""
    first_minute = int(since_ts // 60)
    # Each event goes straight into its (series, minute) row, so memory follows the rows, not the events.
    grouped: Grouped = {}
    for ts, kind, tool, user, is_overage, reason in conn.execute(
        "SELECT ts, kind, tool, user, is_overage, reason FROM events WHERE ts >= ? AND tool IS NOT NULL", (first_minute * 60,)
    ):
        if series_of is not None:
            tool = series_of(tool)
        key = (tool, int(ts // 60))
        row = grouped.get(key)
        if row is None:
            row = grouped[key] = [0, 0, set(), 0, {}]
        if kind == "borrow":
            row[0] += 1
            row[1] += is_overage or 0
            row[2].add(user)
        elif kind == "return":
            row[3] += 1
        else:
            row[4][reason] = row[4].get(reason, 0) + 1
    conn.execute("BEGIN")
    try:
        _upsert(conn, "minute_stats", "minute", grouped)
        # Only the series with new events have hours to redo; the others' minute rows did not change.
        rebuild_hours_from(conn, first_minute, tools={tool for tool, _minute in grouped})
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


def rebuild_hours_from(conn: sqlite3.Connection, first_minute: int, tools: Iterable[str] | None = None) -> None:
    """Recompute the hour rows from the minute rows, from the hour that holds `first_minute` on (of `tools` only, when given)."""
    hour_start = (first_minute // 60) * 60
    columns = "tool, minute, count, overage_count, users, returns, failures"
    stored: Iterable[Any]
    if tools is None:
        stored = conn.execute(f"SELECT {columns} FROM minute_stats WHERE minute >= ?", (hour_start,))
    else:
        # One primary-key range per tool: the whole table is never scanned, however long the history.
        stored = (
            row
            for tool in sorted(tools)
            for row in conn.execute(f"SELECT {columns} FROM minute_stats WHERE tool = ? AND minute >= ?", (tool, hour_start))
        )
    decoded = ((t, m, c, o, json.loads(u), r, json.loads(f)) for t, m, c, o, u, r, f in stored)
    _upsert(conn, "hour_stats", "hour", _group(decoded, lambda m: m // 60))


def stored_tool_names(store: "SQLiteStore", limit: int | None = None) -> list[str]:
    """Return the tool (series) names of the stored hourly history, the earliest seen first, at most `limit` of them."""
    sql = "SELECT tool FROM hour_stats GROUP BY tool ORDER BY MIN(hour), tool"
    if limit is None:
        return [tool for (tool,) in store.read(sql)]
    return [tool for (tool,) in store.read(sql + " LIMIT ?", (limit,))]


class HistoryKeeper:
    """Periodic writer-thread tasks: fold new events into aggregates, and prune what is past its keep time."""

    def __init__(
        self,
        store: "SQLiteStore",
        raw_keep_seconds: float,
        history_seconds: float,
        clock: Callable[[], float] = time.time,
        series_of: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.raw_keep_seconds = raw_keep_seconds
        self.history_seconds = history_seconds
        self.clock = clock
        self.series_of = series_of  # tool name -> the series its aggregates are kept under (None: the name)
        self.generation = 0  # changes whenever the aggregates do, so readers can cache
        store.add_periodic(self.aggregate, AGGREGATE_EVERY_SECONDS)
        store.add_periodic(self.prune, PRUNE_EVERY_SECONDS)

    def aggregate(self, conn: sqlite3.Connection) -> None:
        """Fold events written since the last run into minute and hour rows."""
        since = self.store.take_events_since()
        if since is not None:
            try:
                rebuild_from(conn, since, self.series_of)
            except Exception:
                self.store.put_back_events_since(since)  # try that range again on the next run
                raise
            self.generation += 1

    def prune(self, conn: sqlite3.Connection) -> None:
        """Delete raw events past the raw keep time and aggregates past the history time."""
        self.aggregate(conn)  # fold in what was written since the last run before raw events go
        now = self.clock()
        with conn:
            conn.execute("DELETE FROM events WHERE ts < ?", (now - self.raw_keep_seconds,))
            conn.execute("DELETE FROM borrows WHERE returned_at IS NOT NULL AND returned_at < ?", (now - self.raw_keep_seconds,))
            conn.execute("DELETE FROM minute_stats WHERE minute < ?", (int((now - self.history_seconds) // 60),))
            conn.execute("DELETE FROM hour_stats WHERE hour < ?", (int((now - self.history_seconds) // 3600),))
        self.generation += 1

    def series(
        self, window_seconds: float, now: float | None = None, tools: Iterable[str] | None = None
    ) -> tuple[int, dict[str, list[HistoryPoint]]]:
        """Return (bin_seconds, {tool: [point, ...]}) of the stored history; see history_series."""
        return history_series(self.store, window_seconds, now=now, tools=tools)


def bin_seconds_for(window_seconds: float) -> int:
    """Return the smallest bin size from the ladder that keeps `window_seconds` at or under MAX_POINTS points."""
    for size in BIN_LADDER:
        if window_seconds / size <= MAX_POINTS:
            return size
    return BIN_LADDER[-1]


def history_series(
    store: "SQLiteStore", window_seconds: float, now: float | None = None, tools: Iterable[str] | None = None
) -> tuple[int, dict[str, list[HistoryPoint]]]:
    """Return (bin_seconds, {tool: [point, ...]}) for a long window, from the stored aggregates.

    Each point is a bucket dict (timestamp, count, users, overage_count) plus returns and failures by reason.
    """
    now = time.time() if now is None else now
    size = bin_seconds_for(window_seconds)
    # The first bin is whole: the window is widened back to the bin edge before it.
    start = int((now - window_seconds) // size) * size
    if size >= 3600:
        rows = store.read(
            "SELECT tool, hour * 3600, count, overage_count, users, returns, failures FROM hour_stats "
            "WHERE hour >= ? ORDER BY hour",
            (start // 3600,),
        )
    else:
        rows = store.read(
            "SELECT tool, minute * 60, count, overage_count, users, returns, failures FROM minute_stats "
            "WHERE minute >= ? ORDER BY minute",
            (start // 60,),
        )
    wanted = None if tools is None else set(tools)
    decoded = ((t, at, c, o, json.loads(u), r, json.loads(f)) for t, at, c, o, u, r, f in rows if wanted is None or t in wanted)
    grouped = _group(decoded, lambda at: int(at // size) * size)
    series: dict[str, list[HistoryPoint]] = {}
    by_tool_and_time = sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1]))
    for (tool, at), (count, overage, users, returns, failures) in by_tool_and_time:
        series.setdefault(tool, []).append(
            {
                "timestamp": iso_utc(at)[:19] + "Z",
                "count": count,
                "users": sorted(users),
                "overage_count": overage,
                "returns": returns,
                "failures": failures,
            }
        )
    return size, series


def minute_rows(
    store: "SQLiteStore", since_ts: float, tools: Collection[str] | None = None
) -> list[tuple[str, int, int, int, list[str]]]:
    """Return stored minute rows (tool, minute, count, overage_count, users) from `since_ts`'s minute on."""
    first = int(since_ts // 60)
    if since_ts > first * 60:
        first += 1  # the minute must start inside the window, as in the buffer
    rows = store.read(
        "SELECT tool, minute, count, overage_count, users FROM minute_stats WHERE minute >= ? ORDER BY tool, minute", (first,)
    )
    return [(t, m, c, o, json.loads(u)) for t, m, c, o, u in rows if tools is None or t in tools]
