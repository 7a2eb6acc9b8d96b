"""What the writer thread writes: the items of its queue, its statements, and how a batch of events becomes their rows."""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple, TypeAlias

from sqlalchemy import Connection, case
from sqlalchemy.sql import Executable

from dash_app.events import BORROW, FAILURE, RETURN, Event
from dash_app.store import tables as t
from dash_app.store.schema import source_of
from dash_app.store.statements import Params, Prepared, insert_for, read_position, upsert

# What the writer's queue holds: the events of one record call, one statement with its parameters, or entries of the
# shared event log (--redis).
Statement: TypeAlias = tuple[Executable, Params]


class LogEntries(NamedTuple):
    """Entries of a shared event log, in order: each (entry id, its events); written once, whoever sends them."""

    log: str  # the log's name (its Redis key)
    entries: list[tuple[str, list[Event]]]


QueueItem: TypeAlias = list[Event] | Statement | LogEntries


def entry_key(entry_id: str) -> tuple[int, int]:
    """Return a Redis Stream entry id ("1700000000000-3") as a pair that sorts as the stream does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# An Event is a row of `events`: its fields are the columns, in order.
EVENT_FIELDS = Event._fields
# The earliest time of the events written and not yet folded into the long history (HistoryKeeper.aggregate). It is
# kept in the database, in the transaction that writes the events, not in the writing process's memory: with --redis
# the lease holder that aggregates may not be the process that wrote them (a leader killed before its next run, or
# ingest-flexlm), and a crash between the write and the aggregation must not lose them from the history.
UNAGGREGATED_SINCE = "unaggregated_since"


@cache
def _writes(dialect: str) -> dict[str, Any]:
    """Return the writer's statements in `dialect`, made once."""
    # A borrow and its return may reach the writer in either order (one source's batch can be recorded after another
    # thread returned one of its borrows), so both are upserts that leave the other's columns alone: the row ends the
    # same whichever comes first. Each row is one session, kept --history-days after its return (HistoryKeeper.prune);
    # its source follows from its id (schema.source_of), its host and version from the borrow event.
    borrow = upsert(
        dialect, t.borrows, ["id"], ["tool", "user", "borrowed_at", "is_overage", "source", "changed", "host", "version"]
    )
    returned = upsert(dialect, t.borrows, ["id"], ["returned_at", "changed"])
    charge = insert_for(dialect, t.charges)
    charge = charge.on_conflict_do_update(
        index_elements=["tool"], set_={"overage_borrows": t.charges.c.overage_borrows + charge.excluded.overage_borrows}
    )
    # The earliest unaggregated time: the smaller of the one stored and this batch's.
    mark = insert_for(dialect, t.history_meta)
    stored = t.history_meta.c.value
    mark = mark.on_conflict_do_update(
        index_elements=["key"], set_={"value": case((mark.excluded.value < stored, mark.excluded.value), else_=stored)}
    )
    return {
        "borrow": borrow,
        "returned": returned,
        "charge": charge,
        "event": t.events.insert(),
        "denial": t.denials.insert(),
        "mark": mark,
        "position": upsert(dialect, t.log_positions, ["log"]),
    }


# The columns each writer statement is given, in the table's order (the order SQLAlchemy compiles an INSERT's in).
_COLUMNS = {
    "borrow": ("id", "tool", "user", "borrowed_at", "is_overage", "returned_at", "source", "host", "version", "changed"),
    "returned": ("id", "tool", "user", "borrowed_at", "is_overage", "returned_at", "source", "changed"),
    "charge": ("tool", "overage_borrows"),
    "event": EVENT_FIELDS,  # an Event is a row of `events`: its fields are the columns, in order
    "denial": ("ts", "tool", "user", "reason", "changed"),
    "mark": ("key", "value"),
    "position": ("log", "entry_id"),
}


def prepared_writes(dialect: Any) -> dict[str, Prepared]:
    """Return the writer's statements compiled for `dialect` (an engine's), by name."""
    writes = _writes(dialect.name)
    return {name: Prepared(writes[name], dialect, columns) for name, columns in _COLUMNS.items()}


def take_new_entries(
    conn: Connection, writes: dict[str, Prepared], logged: list[LogEntries], events: list[Event]
) -> dict[str, str]:
    """Add to `events` those of the log entries not yet in the database, and move each log's position past them."""
    positions: dict[str, str] = {}
    for item in logged:
        known = positions.get(item.log) or read_position(conn, item.log)
        after = entry_key(known) if known else (-1, -1)
        for entry_id, entry_events in item.entries:
            if entry_key(entry_id) > after:
                events.extend(entry_events)
                after, known = entry_key(entry_id), entry_id
        if known:
            positions[item.log] = known
    writes["position"].run(conn, list(positions.items()))
    return positions


def write_rows(
    conn: Connection, writes: dict[str, Prepared], stamp: int, events: list[Event], statements: list[Statement]
) -> None:
    """Write `events` (their sessions, charges, denials and the events themselves) and `statements`, under `stamp`."""
    borrows, returns, denials = [], [], []
    charges: dict[str | None, int] = {}  # by tool, keyed like Event.tool (a borrow's is never None)
    for e in events:
        if e.kind == BORROW:
            source = source_of(e.borrow_id)
            borrows.append((e.borrow_id, e.tool, e.user, e.ts, e.is_overage, None, source, e.host, e.version, stamp))
            if e.is_overage:
                charges[e.tool] = charges.get(e.tool, 0) + 1
        elif e.kind == RETURN:
            # A return written first keeps its borrow's time as its own until the borrow row arrives.
            returns.append((e.borrow_id, e.tool, e.user, e.ts, 0, e.ts, source_of(e.borrow_id), stamp))
        elif e.kind == FAILURE:
            denials.append((e.ts, e.tool, e.user, e.reason, stamp))
    writes["borrow"].run(conn, borrows)
    writes["returned"].run(conn, returns)
    writes["charge"].run(conn, list(charges.items()))
    writes["event"].run(conn, events)
    if events:
        # Committed with them, or not at all.
        writes["mark"].run(conn, [(UNAGGREGATED_SINCE, min(e.ts for e in events))])
    writes["denial"].run(conn, denials)  # in the same transaction as their events
    for statement, params in statements:
        conn.execute(statement, params)
