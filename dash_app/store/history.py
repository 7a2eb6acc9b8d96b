"""Long history: per-minute and per-hour aggregates in SQLite, kept for --history-days, and queries over them.

Besides counts, every minute and hour row holds the licenses of its series in use: `peak` (the most at any instant,
the level it started with included), `avg_in_use` (the time-weighted mean over the whole minute or hour) and
`level_end` (in use at its end). The level is walked forward through the raw events in time order from the
`level_end` of the series' previous row (0 before its first), each borrow adding one and each return taking one
away; a return that would take it below 0 (its borrow came before the history) leaves it at 0. Events at one instant
count together: `peak` looks at the level after all of them. A minute or hour without a row held the level of the
row before it throughout; a row still under way counts as if its last level held to its end.
"""

import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import Connection, text

from dash_app.buffer import Bucket
from dash_app.store import tables
from dash_app.store.database import UNAGGREGATED_SINCE, run, tuples, upsert, wrapped
from dash_app.timeutil import MAX_CLOCK_SKEW_SECONDS, iso_utc

if TYPE_CHECKING:
    from dash_app.store.database import Store

log = logging.getLogger(__name__)

# Bin sizes a long chart may use; the smallest that keeps a series at or under MAX_POINTS wins.
BIN_LADDER = (60, 300, 3600, 7200, 21600, 86400)
MAX_POINTS = 500
AGGREGATE_EVERY_SECONDS = 5.0
PRUNE_EVERY_SECONDS = 600.0
OTHER_WRITERS_EVERY_SECONDS = 1.0  # how often to look whether another process wrote the file
# How long the log of pruned rows keeps them: a copy that has not caught up in that time reads everything again.
PRUNED_LOG_SECONDS = 86400.0
_LOG_PRUNED = "INSERT INTO pruned_rows (stamp, tbl, \"row\", at) SELECT :stamp, '{table}', rowid, :now FROM {table} WHERE {where}"
_UNAGGREGATED = f"SELECT value FROM history_meta WHERE key = '{UNAGGREGATED_SINCE}'"

# An aggregate being summed: [count, overage_count, {users}, returns, {reason: count}], by (tool, bin).
Grouped: TypeAlias = dict[tuple[str, int], list[Any]]
# In use over one minute or hour: (peak, avg_in_use, level_end).
Levels: TypeAlias = tuple[int, float, int]

# The in-use columns minute_stats and hour_stats gained; databases made before them get them on open.
LEVEL_COLUMNS = (("peak", "INTEGER"), ("avg_in_use", "REAL"), ("level_end", "INTEGER"))
_STATS_TABLES = (("minute_stats", "minute"), ("hour_stats", "hour"))


class HistoryPoint(Bucket):
    """One bin of a long chart: a bucket, its returns and failures by reason, and the licenses in use during it."""

    returns: int
    failures: dict[str, int]
    peak: int  # the most in use at any instant of the bin
    avg_in_use: float  # the time-weighted mean in use over the bin


def estimated_levels(start: int, count: int, returns: int) -> Levels:
    """Return in-use figures for a row stored without them: from its counts alone, as if its changes came mid-way."""
    end = max(0, start + count - returns)
    return max(start, end), (start + end) / 2, end


def _upsert(
    conn: Connection,
    table: str,
    unit: str,
    grouped: Mapping[tuple[str, int], list[Any]],
    levels: Mapping[tuple[str, int], Levels],
) -> None:
    if not grouped:
        return
    conn.execute(
        upsert(conn.dialect.name, tables.metadata.tables[table], ["tool", unit]),
        [
            dict(
                zip(
                    ("tool", unit, "count", "overage_count", "users", "returns", "failures", "peak", "avg_in_use", "level_end"),
                    (
                        tool,
                        key,
                        row[0],
                        row[1],
                        json.dumps(sorted(row[2])),
                        row[3],
                        json.dumps(row[4], sort_keys=True),
                        *levels[(tool, key)],
                    ),
                )
            )
            for (tool, key), row in grouped.items()
        ],
    )


Query: TypeAlias = Callable[[str, Mapping[str, Any]], Iterable[Any]]  # partial(run, conn), or Store.read


def _level_before(query: Query, table: str, unit: str, tool: str, before: int) -> int:
    """Return the series' level at the end of its last row before `before` (0 if none); rows without one are estimated."""
    unknown: list[tuple[int, int]] = []
    level = 0
    # Newest first, stopping at the first row that knows its level: one row, unless rows predate the columns.
    for count, returns, end in query(
        f"SELECT count, returns, level_end FROM {table} WHERE tool = :tool AND {unit} < :before ORDER BY {unit} DESC",
        {"tool": tool, "before": before},
    ):
        if end is not None:
            level = end
            break
        unknown.append((count, returns))
    for count, returns in reversed(unknown):
        level = estimated_levels(level, count, returns)[2]
    return level


class _LevelWalk:
    """One series' level walked through its events in time order, giving each minute with events its Levels."""

    __slots__ = ("level", "minute", "peak", "area", "at", "instant", "done")

    def __init__(self, level: int) -> None:
        self.level = level
        self.minute: int | None = None  # the minute being walked
        self.peak = 0
        self.area = 0.0  # level x seconds since the minute's start, up to `at`
        self.at = 0.0
        self.instant: float | None = None  # the time of the last event applied
        self.done: dict[int, Levels] = {}  # minute -> its figures, once walked past

    def add(self, ts: float, minute: int, step: int) -> None:
        """Apply one event: +1 a borrow, -1 a return, 0 a failure (which still gives its minute a row)."""
        if minute != self.minute:
            self.close()
            self.minute, self.peak, self.area, self.at = minute, self.level, 0.0, minute * 60.0
        if ts != self.instant:
            # The level after the previous instant is final now: it held from then until this event.
            if self.level > self.peak:
                self.peak = self.level
            self.area += self.level * (ts - self.at)
            self.at, self.instant = ts, ts
        if step:
            self.level = max(0, self.level + step)

    def close(self) -> None:
        """Finish the minute under way, its last level held to its end."""
        if self.minute is None:
            return
        if self.level > self.peak:
            self.peak = self.level
        self.area += self.level * (self.minute * 60 + 60 - self.at)
        self.done[self.minute] = (self.peak, self.area / 60, self.level)
        self.minute = None


def rebuild_from(store: "Store", since_ts: float, series_of: Callable[[str], str] | None = None) -> None:
    """Recompute the minute and hour rows, keyed by `series_of(tool)`, from raw events at and after `since_ts`'s minute."""
    with store.writing() as conn:
        _rebuild(conn, since_ts, series_of)


def _rebuild(conn: Connection, since_ts: float, series_of: Callable[[str], str] | None) -> None:
    first_minute = int(since_ts // 60)
    # Each event goes straight into its (series, minute) row and its series' walk, so memory follows the rows, not
    # the events.
    grouped: Grouped = {}
    walks: dict[str, _LevelWalk] = {}
    # Per series, its stored rows from the first minute on, oldest first: a row the walk passes without raw events
    # (they were pruned, and an older event came late) is moved by the walk's new level, not rebuilt.
    stored: dict[str, Iterator[tuple[Any, ...]]] = {}
    pending: dict[str, tuple[Any, ...] | None] = {}
    moved: dict[tuple[str, int], Levels] = {}
    previous_end: dict[str, int] = {}  # series -> level_end of its last stored row the walk passed, before the rebuild

    def pass_stored(series: str, walk: _LevelWalk, until: float) -> None:
        """Move the walk over the series' stored rows before minute `until` that have no raw events."""
        row = pending[series]
        while row is not None and row[0] < until:
            minute, count, returns, peak, average, end = row
            if minute != walk.minute and minute not in walk.done:
                walk.close()
                start = walk.level
                if peak is None:
                    levels = estimated_levels(start, count, returns)
                else:
                    shift = start - previous_end[series]
                    levels = (max(0, peak + shift), max(0.0, average + shift), max(0, end + shift))
                if levels != (peak, average, end):
                    moved[(series, minute)] = levels
                walk.level = levels[2]
            if end is not None:
                previous_end[series] = end
            row = pending[series] = next(stored[series], None)

    query = partial(run, conn)
    for ts, kind, tool, user, is_overage, reason in query(
        'SELECT ts, kind, tool, "user", is_overage, reason FROM events WHERE ts >= :since AND tool IS NOT NULL '
        "ORDER BY ts, rowid",
        {"since": first_minute * 60},
    ):
        if series_of is not None:
            tool = series_of(tool)
        minute = int(ts // 60)
        key = (tool, minute)
        row = grouped.get(key)
        if row is None:
            row = grouped[key] = [0, 0, set(), 0, {}]
        if kind == "borrow":
            row[0] += 1
            row[1] += is_overage or 0
            row[2].add(user)
            step = 1
        elif kind == "return":
            row[3] += 1
            step = -1
        else:
            row[4][reason] = row[4].get(reason, 0) + 1
            step = 0
        walk = walks.get(tool)
        if walk is None:
            start = _level_before(query, "minute_stats", "minute", tool, first_minute)
            walk = walks[tool] = _LevelWalk(start)
            previous_end[tool] = start
            stored[tool] = iter(
                query(
                    "SELECT minute, count, returns, peak, avg_in_use, level_end FROM minute_stats "
                    "WHERE tool = :tool AND minute >= :first ORDER BY minute",
                    {"tool": tool, "first": first_minute},
                ).fetchall()
            )
            pending[tool] = next(stored[tool], None)
        if pending[tool] is not None:
            pass_stored(tool, walk, minute)
        walk.add(ts, minute, step)
    levels: dict[tuple[str, int], Levels] = {}
    for series, walk in walks.items():
        walk.close()
        pass_stored(series, walk, float("inf"))
        for minute, figures in walk.done.items():
            levels[(series, minute)] = figures
    _upsert(conn, "minute_stats", "minute", grouped, levels)
    if moved:
        conn.execute(
            text("UPDATE minute_stats SET peak = :p, avg_in_use = :a, level_end = :e WHERE tool = :tool AND minute = :m"),
            [{"p": p, "a": a, "e": e, "tool": series, "m": minute} for (series, minute), (p, a, e) in moved.items()],
        )
    # Only the series with new events have hours to redo; the others' minute rows did not change.
    rebuild_hours_from(conn, first_minute, tools=walks)


def _hours_of(conn: Connection, tool: str, hour_start: int) -> tuple[Grouped, dict[tuple[str, int], Levels]]:
    """Return one series' hour aggregates and Levels from its minute rows, from the hour starting at minute `hour_start`."""
    query = partial(run, conn)
    level = _level_before(query, "minute_stats", "minute", tool, hour_start)
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
        tool_grouped, tool_levels = _hours_of(conn, tool, hour_start)
        grouped.update(tool_grouped)
        levels.update(tool_levels)
    _upsert(conn, "hour_stats", "hour", grouped, levels)


def migrate_in_use_columns(
    conn: sqlite3.Connection, series_of: Callable[[str], str] | None = None, raw_since: float | None = None
) -> bool:
    """Give a SQLite file's minute_stats and hour_stats the in-use columns it lacks, filling the rows; True when it did.

    `conn` is the file's sqlite3 connection in autocommit mode (other databases were made with the columns).
    Idempotent. Rows stored before are estimated from their counts (estimated_levels, walked forward per series from
    0); then the minutes that raw events still cover whole (those from `raw_since` on, when pruning keeps every event
    since then; else from the minute after the oldest event's) are rebuilt from them exactly, and the hour rows get
    levels from their minute rows (their counts are left alone: their first minutes may be pruned).
    """
    added: dict[str, list[str]] = {}
    for table, _unit in _STATS_TABLES:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        missing = [name for name, _type in LEVEL_COLUMNS if name not in present]
        if missing:
            added[table] = missing
    if not added:
        return False
    began = time.perf_counter()
    with wrapped(conn) as connection, connection.begin():
        for table, missing in added.items():
            for name in missing:
                kind = dict(LEVEL_COLUMNS)[name]
                connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        _fill_levels(connection, series_of, raw_since)
    log.info("added in-use columns to the stored history in %.2f s", time.perf_counter() - began)
    return True


def _fill_levels(conn: Connection, series_of: Callable[[str], str] | None, raw_since: float | None) -> None:
    _fill_minute_levels(conn)
    oldest = conn.exec_driver_sql("SELECT MIN(ts) FROM events").scalar()
    if oldest is not None:
        # The oldest raw event's minute may have lost its earlier events to pruning, unless it starts after the
        # pruning's edge; the next minute is whole anyway.
        whole = int(oldest // 60) * 60
        if raw_since is None or whole < raw_since:
            whole = min(whole + 60, math.ceil(raw_since / 60) * 60) if raw_since is not None else whole + 60
        _rebuild(conn, whole, series_of)
    _fill_hour_levels(conn)


_SET_LEVELS = "UPDATE {table} SET peak = :p, avg_in_use = :a, level_end = :e WHERE tool = :tool AND {unit} = :at"


def _fill_minute_levels(conn: Connection) -> None:
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


def _fill_hour_levels(conn: Connection) -> None:
    for tool, first_hour in run(conn, "SELECT tool, MIN(hour) FROM hour_stats WHERE level_end IS NULL GROUP BY tool").fetchall():
        _grouped, levels = _hours_of(conn, tool, first_hour * 60)
        known = dict(levels)
        updates = []
        level = _level_before(partial(run, conn), "hour_stats", "hour", tool, first_hour)
        later = "SELECT hour FROM hour_stats WHERE tool = :tool AND hour >= :first ORDER BY hour"
        for (hour,) in run(conn, later, {"tool": tool, "first": first_hour}).fetchall():
            # An hour whose minute rows are all pruned keeps the level it was entered with.
            p, a, e = figures = known.get((tool, hour), (level, float(level), level))
            updates.append({"p": p, "a": a, "e": e, "tool": tool, "at": hour})
            level = figures[2]
        if updates:
            conn.execute(text(_SET_LEVELS.format(table="hour_stats", unit="hour")), updates)


def stored_tool_names(store: "Store", limit: int | None = None) -> list[str]:
    """Return the tool (series) names of the stored hourly history, the earliest seen first, at most `limit` of them."""
    sql = "SELECT tool FROM hour_stats GROUP BY tool ORDER BY MIN(hour), tool"
    if limit is None:
        return [tool for (tool,) in store.read(sql)]
    return [tool for (tool,) in store.read(sql + " LIMIT :limit", {"limit": limit})]


class HistoryKeeper:
    """Periodic writer-thread tasks: fold new events into aggregates, and prune what is past its keep time."""

    def __init__(
        self,
        store: "Store",
        raw_keep_seconds: float,
        history_seconds: float,
        clock: Callable[[], float] = time.time,
        series_of: Callable[[str], str] | None = None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.raw_keep_seconds = raw_keep_seconds
        self.history_seconds = history_seconds
        self.clock = clock
        self.series_of = series_of  # tool name -> the series its aggregates are kept under (None: the name)
        self.generation = 0  # changes whenever the aggregates do, so readers can cache
        # Whether this process keeps the file's history: with --redis only the lease holder aggregates and prunes
        # (every process sharing the file would otherwise repeat the work, and fight over the write lock for it).
        self.leading = leading
        # A SQLite file from before the in-use columns gets them now, before the writer thread runs: so this is the
        # one place outside the writer that uses its connection (under its lock).
        if not store.server:
            with store._conn_lock:
                migrate_in_use_columns(store._connection(), series_of, raw_since=clock() - raw_keep_seconds)
        store.add_periodic(self.aggregate, AGGREGATE_EVERY_SECONDS)
        store.add_periodic(self.prune, PRUNE_EVERY_SECONDS)
        # Another process may write the same database (with --redis, the lease holder; or ingest-flexlm): readers that
        # cache on sessions_version or generation must see its writes too.
        self._data_version: int | None = None
        store.add_periodic(self.notice_other_writers, OTHER_WRITERS_EVERY_SECONDS)

    def aggregate(self) -> None:
        """Fold the events not yet aggregated, whichever process wrote them, into minute and hour rows."""
        if not self.leading():
            return
        # A plain read first: most runs find nothing new, and must not take the write lock from the other processes.
        if not self.store.read(_UNAGGREGATED):
            return
        with self.store.writing() as conn:
            # Read again under the write lock: another process may have folded them in, or written earlier events,
            # since. The mark goes in the transaction that rebuilds from it: a failure leaves it for the next run,
            # and events written after it (by any process) mark the database again once the lock is released.
            since = conn.execute(text(_UNAGGREGATED)).scalar()
            if since is not None:
                _rebuild(conn, since, self.series_of)
                conn.execute(text("DELETE FROM history_meta WHERE key = :key"), {"key": UNAGGREGATED_SINCE})
        if since is not None:
            self.generation += 1

    def notice_other_writers(self) -> None:
        """Move the cache versions on when another process committed to the database since the last look."""
        version = self.store.others_version()
        if self._data_version is not None and version != self._data_version:
            self.store.sessions_changed()
            self.generation += 1
        self._data_version = version

    def prune(self) -> None:
        """Delete raw events past the raw keep time; sessions, denials and aggregates past the history time.

        A session (a borrows row, host and version included) goes once returned before the history time; an open
        one stays.
        """
        if not self.leading():
            return
        self.aggregate()  # fold in what was written since the last run before raw events go
        now = self.clock()
        history_since = now - self.history_seconds
        with self.store.writing() as conn:
            query = partial(run, conn)
            query("DELETE FROM events WHERE ts < :t", {"t": now - self.raw_keep_seconds})
            # Deleted rows leave no stamp: the log tells copies of these tables (analytics.mirror) which went. The
            # stamp is read under the write lock, so it is the database's last (other processes write too).
            logged = {"stamp": self.store.new_stamp(conn), "now": now, "t": history_since}
            query(_LOG_PRUNED.format(table="borrows", where="returned_at < :t"), logged)
            # `returned_at < :t` leaves open sessions (NULL) alone; a range of the borrows_returned index.
            sessions = query("DELETE FROM borrows WHERE returned_at < :t", {"t": history_since}).rowcount
            query(_LOG_PRUNED.format(table="denials", where="ts < :t"), logged)
            denials = query("DELETE FROM denials WHERE ts < :t", {"t": history_since}).rowcount
            forgotten = query("SELECT MAX(stamp) FROM pruned_rows WHERE at < :t", {"t": now - PRUNED_LOG_SECONDS}).scalar()
            if forgotten is not None:
                query("DELETE FROM pruned_rows WHERE stamp <= :f", {"f": forgotten})
                query(
                    "UPDATE history_meta SET value = CASE WHEN value < :f THEN :f ELSE value END "
                    "WHERE key = 'pruned_rows_complete_after'",
                    {"f": float(forgotten)},
                )
            # Alert history goes with the rest: resolved alerts and delivery outcomes past the history time.
            query("DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < :t", {"t": history_since})
            query("DELETE FROM alert_deliveries WHERE at < :t", {"t": history_since})
            query("DELETE FROM minute_stats WHERE minute < :m", {"m": int(history_since // 60)})
            query("DELETE FROM hour_stats WHERE hour < :h", {"h": int(history_since // 3600)})
        if sessions > 0 or denials > 0:
            self.store.sessions_changed()
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


def _series_names(store: "Store") -> list[str]:
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
    store: "Store", window_seconds: float, now: float | None = None, tools: Iterable[str] | None = None
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
                level = _level_before(query, table, unit_name, tool, first_unit)
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
    store: "Store", since_ts: float, tools: Collection[str] | None = None
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
