"""A SQLite file deleted or replaced while open: noticing it, and writing the open connection's copy back to the path."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

IDENTITY_CHECK_SECONDS = 1.0  # how often the writer checks that the database file is still the one it opened


class FileWatch:
    """Tells whether the file at a path is still the one opened there, looking at most every IDENTITY_CHECK_SECONDS."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity = self._stat()  # (st_dev, st_ino) of the file opened
        self._next_check = 0.0

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def change(self) -> str | None:
        """Return what became of the file since it was opened ("deleted", "replaced by another file"), or None."""
        if time.monotonic() < self._next_check:
            return None
        self._next_check = time.monotonic() + IDENTITY_CHECK_SECONDS
        found = self._stat()
        if found == self._identity:
            return None
        return "deleted" if found is None else "replaced by another file"


def write_back(conn: sqlite3.Connection, path: str, aside: bool, close: Callable[[], None]) -> None:
    """Write the database open on `conn` (whose file is gone or replaced) to `path`; `close()` closes every connection.

    With `aside`, the file found at `path` is kept under a name that says it was replaced.
    """
    copy = f"{path}.recovering"
    if os.path.exists(copy):
        os.remove(copy)
    # The connection still reads the deleted inode, WAL included: everything written so far is in it.
    target = sqlite3.connect(copy)
    try:
        conn.backup(target)
    finally:
        target.close()
    if aside:
        # Someone put another file here: keep it, under a name that says so.
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, f"{path}.replaced-{stamp}{suffix}")
    # Closing checkpoints into the old inode and removes its -wal and -shm by name: do it before the new file exists,
    # so no stale WAL is ever applied to the new database.
    close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    os.replace(copy, path)
