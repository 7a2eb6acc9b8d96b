"""The long history's upkeep: new events folded into the minute and hour rows, and what is past its keep time pruned.

The rows themselves are made in store.aggregation, and read for charts in store.history_charts; the licenses in use
they hold are described in store.levels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import text

# Names other modules import from here, wherever they live now.
from dash_app.store.aggregation import rebuild, rebuild_from, rebuild_hours_from  # noqa: F401
from dash_app.store.batch_writes import UNAGGREGATED_SINCE
from dash_app.store.history_charts import (  # noqa: F401
    BIN_LADDER,
    MAX_POINTS,
    HistoryPoint,
    bin_seconds_for,
    history_series,
    minute_rows,
    stored_tool_names,
)
from dash_app.store.levels import Levels, estimated_levels  # noqa: F401
from dash_app.store.statements import run

if TYPE_CHECKING:
    from dash_app.store.database import Store

AGGREGATE_EVERY_SECONDS = 5.0
PRUNE_EVERY_SECONDS = 600.0
OTHER_WRITERS_EVERY_SECONDS = 1.0  # how often to look whether another process wrote the file
# How long the log of pruned rows keeps them: a copy that has not caught up in that time reads everything again.
PRUNED_LOG_SECONDS = 86400.0
_LOG_PRUNED = "INSERT INTO pruned_rows (stamp, tbl, \"row\", at) SELECT :stamp, '{table}', rowid, :now FROM {table} WHERE {where}"
_UNAGGREGATED = f"SELECT value FROM history_meta WHERE key = '{UNAGGREGATED_SINCE}'"


class HistoryKeeper:
    """Periodic writer-thread tasks: fold new events into aggregates, and prune what is past its keep time."""

    def __init__(
        self,
        store: Store,
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
                rebuild(conn, since, self.series_of)
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
