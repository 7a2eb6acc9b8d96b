"""A seeded synthetic history (sessions, denials, specs) in the shapes the store hands the analytics: tests, benchmarks, demos.

The tools are a tools-file inventory's (`estate_inventory(tools)` for `synthetic_history`); bigger pools draw more
sessions. Starts fall mostly in working hours and on weekdays, at whole seconds (so simultaneous starts happen);
durations are log-normal (minutes to a day). A few sessions in a thousand started before the period and are held at
its start; those running at `end` are open (returned_at NaN); one in two hundred has zero length. A draw that would
start with its pool full is refused, as the pool would refuse it, so in_use never passes a tool's total; the refused
draws inside the period are the denials (topped up with uniform ones when there are too few). `is_overage` follows the
pool's rule (the level just before the start >= commit). Rows come in (borrowed_at, seq) order, as the store's
`load_sessions` returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from dash_app.analytics.capacity import DENIAL_COLUMNS, SESSION_COLUMNS
from dash_app.analytics.levels import Sessions, levels_before
from dash_app.analytics.spec import Spec, specs_from_tools

DAY = 86400.0
END = 1_800_000_000.0
_HOSTS = np.array([f"ws{n:03d}.lab" for n in range(400)] + [None] * 200, dtype=object)
_VERSIONS = np.array(["2023.2", "2024.1", "2025.1", None], dtype=object)
_SOURCES = np.array(["api", "api", "api", "flexlm", "flexlm"], dtype=object)
_REASONS = np.array(["exhausted"] * 4 + ["max_overage"], dtype=object)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from dash_app.store import Store

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class SyntheticHistory(NamedTuple):
    """A generated history: sessions overlapping [start, end), denials inside it, and the tools' specs."""

    sessions: pd.DataFrame
    denials: pd.DataFrame
    specs: dict[str, Spec]
    start: float
    end: float


def synthetic_history(days: int, tools: int, sessions: int, denials: int, seed: int = 1, end: float = END) -> SyntheticHistory:
    """Return `sessions` sessions and `denials` denials of `tools` inventory tools over the `days` days before `end`."""
    from dash_app.testing.traffic import estate_inventory

    return inventory_history(estate_inventory(tools), days, sessions, denials, seed, end)


def inventory_history(
    inventory: Sequence[Mapping[str, Any]], days: int, sessions: int, denials: int, seed: int = 1, end: float = END
) -> SyntheticHistory:
    """Return `sessions` sessions and `denials` denials of a tools-file inventory's tools over the `days` days before `end`."""
    rng = np.random.default_rng(seed)
    start = end - days * DAY
    specs = specs_from_tools(inventory)
    names = np.array([t["tool"] for t in inventory], dtype=object)
    totals = np.array([t["total"] for t in inventory], dtype=np.int64)
    commits = np.array([t["commit_qty"] for t in inventory], dtype=np.int64)
    weights = totals * rng.uniform(0.5, 1.5, len(totals))
    weights /= weights.sum()
    n_users = max(20, min(5000, sessions // 200))
    users = np.array([f"user{n:04d}" for n in range(n_users)], dtype=object)
    user_weights = 1 / (np.arange(n_users) + 5.0)
    user_weights /= user_weights.sum()

    # Draw more sessions than asked, refuse those that would start with the pool full, then keep `sessions` of the
    # rest at random: taking sessions away only lowers the others' levels, so the kept ones never pass the total.
    factor = 1.3
    while True:
        tool, borrowed, returned = _draw(rng, int(sessions * factor) + 10, weights, totals, start, end)
        full = _levels(tool, borrowed, returned, len(names)) >= totals[tool]
        if int((~full).sum()) >= sessions:
            break
        factor *= 1.5
    refused = np.flatnonzero(full & (borrowed >= start))
    refused = np.sort(rng.choice(refused, size=min(denials, len(refused)), replace=False))
    kept = np.sort(rng.choice(np.flatnonzero(~full), size=sessions, replace=False))
    denied_tool, denied_ts = tool[refused], borrowed[refused] + np.round(rng.uniform(0, 1, len(refused)), 3)
    tool, borrowed, returned = tool[kept], borrowed[kept], returned[kept]
    is_overage = _levels(tool, borrowed, returned, len(names)) >= commits[tool]
    seq = np.arange(1, sessions + 1, dtype=np.int64)

    session_frame = pd.DataFrame(
        {
            "tool": pd.Series(names[tool], dtype=object),
            "user": pd.Series(users[rng.choice(n_users, size=sessions, p=user_weights)], dtype=object),
            "host": pd.Series(_HOSTS[rng.integers(0, len(_HOSTS), sessions)], dtype=object),
            "version": pd.Series(_VERSIONS[rng.integers(0, len(_VERSIONS), sessions)], dtype=object),
            "source": pd.Series(_SOURCES[rng.integers(0, len(_SOURCES), sessions)], dtype=object),
            "borrowed_at": borrowed,
            "returned_at": returned,
            "is_overage": is_overage,
            "seq": seq,
        },
        columns=list(SESSION_COLUMNS),
    )

    extra = denials - len(refused)
    denied_tool = np.concatenate((denied_tool, rng.choice(len(names), size=extra, p=weights)))
    denied_ts = np.concatenate((denied_ts, np.round(rng.uniform(start, end, extra), 3)))
    denied_ts = np.minimum(denied_ts, np.nextafter(end, start))
    order = np.argsort(denied_ts, kind="stable")
    denial_frame = pd.DataFrame(
        {
            "ts": denied_ts[order],
            "tool": pd.Series(names[denied_tool[order]], dtype=object),
            "user": pd.Series(users[rng.choice(n_users, size=denials, p=user_weights)], dtype=object),
            "reason": pd.Series(_REASONS[rng.integers(0, len(_REASONS), denials)], dtype=object),
            "seq": np.arange(1, denials + 1, dtype=np.int64),
        },
        columns=list(DENIAL_COLUMNS),
    )
    return SyntheticHistory(session_frame, denial_frame, specs, start, end)


def _draw(
    rng: np.random.Generator, n: int, weights: Floats, totals: Ints, start: float, end: float
) -> tuple[Ints, Floats, Floats]:
    """Return n sessions (tool index, borrowed_at, returned_at with NaN when open) in (borrowed_at, recorded) order."""
    days = round((end - start) / DAY)
    tool = rng.choice(len(weights), size=n, p=weights)
    day = rng.integers(0, days, n)
    weekend = (np.floor((start + day * DAY) / DAY).astype(np.int64) + 3) % 7 >= 5
    moved = weekend & (rng.random(n) > 0.3)  # weekends keep under a third of their draws
    day[moved] = rng.integers(0, days, int(moved.sum()))
    daytime = rng.random(n) < 0.7
    time_of_day = np.where(daytime, rng.normal(13.5 * 3600, 3 * 3600, n), rng.uniform(0, DAY, n))
    borrowed = np.floor(start + day * DAY + np.clip(time_of_day, 0, DAY - 1))
    # Sized so an average tool would hold about half its total over the day if nothing were refused.
    mean_duration = 0.5 * float(totals.sum()) * days * DAY / n
    duration = np.round(rng.lognormal(np.log(mean_duration) - 0.5, 1.0, n))
    duration[rng.random(n) < 0.005] = 0.0
    crossing = rng.random(n) < 0.01  # held at the period's start: borrowed up to 4 h before it
    borrowed[crossing] = start - np.floor(rng.uniform(1, 4 * 3600, int(crossing.sum())))
    duration[crossing] = (start - borrowed[crossing]) + np.round(rng.lognormal(np.log(1800), 1.0, int(crossing.sum()))) + 1
    returned = borrowed + duration
    returned[returned > end] = np.nan
    # Starts are whole seconds: a random fraction of one orders simultaneous starts at random (lexsort costs 10x).
    order = np.argsort(borrowed + 0.5 * rng.random(n))
    return tool[order].astype(np.int64), borrowed[order], returned[order]


def _levels(tool: Ints, borrowed: Floats, returned: Floats, n_tools: int) -> Ints:
    """Return the level just before each session's start, the sessions' row order being their recorded order."""
    n = len(tool)
    data = Sessions(
        code=tool,
        borrowed=borrowed,
        returned=np.where(np.isnan(returned), np.inf, returned),
        seq=np.arange(n, dtype=np.int64),
        overage=np.zeros(n, dtype=bool),
        user=np.zeros(n, dtype=np.int64),
        users=[],
    )
    return levels_before(data, n_tools)


STORE_CHUNK = 50_000  # rows handed to the driver at once: a chunk's tuples, not the whole history's, are in memory


def store_history(store: Store, history: SyntheticHistory) -> None:
    """Put `history`'s sessions and denials into `store`'s database in one transaction, as the writer would have left them."""
    with store.writing() as conn:
        write_history(store, conn, history)
    store.sessions_changed()


def write_history(store: Store, conn: Connection, history: SyntheticHistory) -> None:
    """Insert `history`'s rows on `conn` (a `store.writing()` block) with the writer's own statements, under one stamp.

    Sessions go in `seq` order, so the database numbers them in the order the store's readers sort ties by; their
    ids count up, so the primary key's index grows at its end.
    """
    from dash_app.events import SOURCE_POOL
    from dash_app.store.database import prepared_writes

    writes = prepared_writes(conn.dialect)
    stamp = store.new_stamp(conn)
    sessions, denials = history.sessions.sort_values("seq"), history.denials
    for i in range(0, len(sessions), STORE_CHUNK):
        part = sessions.iloc[i : i + STORE_CHUNK]
        returned = [None if r != r else r for r in part["returned_at"].tolist()]  # NaN: still open
        n = len(part)
        # The columns of the writer's "borrow" statement, in its order (database._COLUMNS).
        writes["borrow"].run(
            conn,
            list(
                zip(
                    [f"demo-{seq:09d}" for seq in part["seq"].tolist()],
                    part["tool"].tolist(),
                    part["user"].tolist(),
                    part["borrowed_at"].tolist(),
                    part["is_overage"].astype(int).tolist(),
                    returned,
                    [SOURCE_POOL] * n,
                    part["host"].tolist(),
                    part["version"].tolist(),
                    [stamp] * n,
                )
            ),
        )
    for i in range(0, len(denials), STORE_CHUNK):
        part = denials.iloc[i : i + STORE_CHUNK]
        rows = zip(part["ts"].tolist(), part["tool"].tolist(), part["user"].tolist(), part["reason"].tolist())
        writes["denial"].run(conn, [(*row, stamp) for row in rows])
