"""The distinct user names of the stored sessions, read in short steps: who the company directory is asked about."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dash_app.store.database import Store

# Sessions read per statement on SQLite, whose reads share one connection lock with the requests' reads.
USERS_STEP_ROWS = 100_000


def session_users_after(store: Store, after: int = 0, step: int = USERS_STEP_ROWS) -> tuple[set[str], int]:
    """Return the users of the sessions stored past row `after`, and the last row read (to pass as `after` next time)."""
    top = store.read("SELECT MAX(rowid) FROM borrows")[0][0]
    if top is None or top <= after:
        return set(), after
    if store.server:
        step = top - after  # a database server's reads do not wait for each other: one statement
    names: set[str] = set()
    while after < top:
        upto = min(top, after + step)
        rows = store.read(
            'SELECT DISTINCT "user" FROM borrows WHERE rowid > :after AND rowid <= :upto', {"after": after, "upto": upto}
        )
        names.update(user for (user,) in rows)
        after = upto
    return names, top
