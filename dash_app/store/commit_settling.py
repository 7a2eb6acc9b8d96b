"""A database server's write transactions: the write lock, each one counted, and settling a commit whose answer was lost.

Every write transaction takes the write lock, adds one to the database's write count (history_meta) and notes its
transaction id. The counts tell a process whether another committed since it last looked (others_version); the id
tells, once the server is back, whether a commit whose answer the connection lost went through (settle).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy import exc as sa_exc

# Every process writing one database server takes this transaction-level advisory lock first (an arbitrary number of
# ours), as a SQLite writer takes the file's write lock: stamps and log positions are read and moved under it.
WRITE_LOCK = 80_502_018
# How long a server's writer waits for the write lock (another process's transaction) before it retries later.
LOCK_TIMEOUT = "10s"
WRITE_COUNT = "write_count"
_COUNT_WRITE = text(
    f"INSERT INTO history_meta (key, value) VALUES ('{WRITE_COUNT}', 1) "
    "ON CONFLICT (key) DO UPDATE SET value = history_meta.value + 1 RETURNING value"
)
READ_COUNT = f"SELECT value FROM history_meta WHERE key = '{WRITE_COUNT}'"
_OWN_XID = text("SELECT pg_current_xact_id()::text::bigint")
XID_STATUS = "SELECT pg_xact_status(CAST(CAST(:xid AS text) AS xid8))"

Read = Callable[[str, dict[str, Any]], Sequence[Any]]  # Store.read


class ServerCommits:
    """One process's write transactions on a server: counted, and the last one's id kept until its commit is known."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._own_counts: set[int] = set()  # our commits' write counts, not yet looked past
        self._count_seen: int | None = None
        self._others = 0
        self.attempt: int | None = None  # the open write transaction's id, once it has one
        # (id, items) of the last write transaction while it is unknown whether its commit went through.
        self.unsettled: tuple[int, int] | None = None

    def begin(self, conn: Connection) -> int:
        """Take the write lock in the transaction open on `conn`, count it, note its id; return its write count."""
        self.attempt = None  # a failure before the id is known committed nothing
        # A process that stopped holding the lock, or a server gone quiet: an error to retry, no hang.
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK)))
        count = int(conn.execute(_COUNT_WRITE).scalar_one())
        self.attempt = conn.execute(_OWN_XID).scalar_one()
        return count

    def committed(self, count: int) -> None:
        """Note that the transaction counted `count` committed."""
        self.attempt = None
        with self._lock:
            self._own_counts.add(count)

    def failed(self, items: int) -> None:
        """Note that the connection failed inside the transaction of `items` items, maybe while its commit was on the way."""
        if self.attempt is not None:
            self.unsettled = (self.attempt, items)

    def others_version(self, read: Read) -> int:
        """Return a number that moves when another process has committed since the last call (see Store.others_version)."""
        rows = read(READ_COUNT, {})
        count = int(rows[0][0]) if rows else 0
        with self._lock:
            previous, self._count_seen = self._count_seen, count
            own = {c for c in self._own_counts if c <= count}
            self._own_counts -= own
        if previous is not None and count - previous > len({c for c in own if c > previous}):
            self._others += 1
        return self._others

    def settle(self, read: Read) -> int:
        """Return how many of the next batch's first items the interrupted transaction did commit (0 if it did not).

        Raises when the server cannot say yet (it is still away, or the transaction is still open there).
        """
        assert self.unsettled is not None
        xid, items = self.unsettled
        status = read(XID_STATUS, {"xid": xid})[0][0]
        if status == "in progress":
            raise sa_exc.OperationalError(XID_STATUS, {"xid": xid}, RuntimeError("the last write is still open"))
        self.unsettled = None
        return items if status == "committed" else 0
