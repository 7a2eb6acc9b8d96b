"""The reports' rows in the database: when each report was first configured, and each period's claim and outcome.

A period's row is its claim: the (report, period_start) key lets one process insert it, and its owner holds it for
LEASE_SECONDS, renewed on each pass while it delivers. A row not sent whose lease ran out (its process ended, or
hangs) is taken over by the next process that looks, which delivers to the channels not yet recorded as delivered.
Every change is made in one write transaction under the database's write lock (Store.writing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select, update

from dash_app.store import tables as t
from dash_app.store.statements import insert_for

if TYPE_CHECKING:
    from dash_app.store.database import Store

# How long a claim holds without being renewed: longer than a pass with one delivery try in it (the try's deadline).
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Claim:
    """A period of a report this process holds: the channels (their positions in `to`) delivered so far, and the tries."""

    delivered: frozenset[int]
    tries: int


@dataclass(frozen=True)
class RunRecord:
    """The latest period of one report, as GET /reports shows it."""

    period_start: float
    period_end: float
    sent_at: float | None
    tries: int
    error: str | None
    updated_at: float


class ReportStorage:
    """Reads and writes the `report_schedules` and `report_runs` tables of one store, each change in one transaction."""

    def __init__(self, store: Store, owner: str, lease_seconds: float = LEASE_SECONDS) -> None:
        self._store = store
        self._owner = owner  # this process's claims: a token of its own
        self._lease = lease_seconds

    def since(self, names: list[str], now: float) -> dict[str, float]:
        """Return when each report of `names` was first configured, recording `now` for those seen for the first time."""
        table = t.report_schedules
        with self._store.writing() as conn:
            if names:
                stmt = insert_for(self._store.dialect, table).on_conflict_do_nothing(index_elements=["report"])
                conn.execute(stmt, [{"report": name, "since": now} for name in names])
            rows = conn.execute(select(table.c.report, table.c.since).where(table.c.report.in_(names))).all()
        return {name: since for name, since in rows}

    def claim(self, report: str, start: float, end: float, due: float, now: float) -> Claim | None:
        """Claim (or renew the claim on) a report's period; None when it was sent, or another process holds it."""
        runs = t.report_runs
        key = and_(runs.c.report == report, runs.c.period_start == start)
        with self._store.writing() as conn:
            row = conn.execute(
                select(runs.c.owner, runs.c.lease_until, runs.c.sent_at, runs.c.delivered, runs.c.tries).where(key)
            ).first()
            if row is None:
                conn.execute(
                    runs.insert().values(
                        report=report,
                        period_start=start,
                        period_end=end,
                        due_at=due,
                        owner=self._owner,
                        lease_until=now + self._lease,
                        delivered="[]",
                        tries=0,
                        updated_at=now,
                    )
                )
                return Claim(frozenset(), 0)
            owner, lease_until, sent_at, delivered, tries = row
            if sent_at is not None or (owner != self._owner and (lease_until or 0.0) > now):
                return None
            conn.execute(update(runs).where(key).values(owner=self._owner, lease_until=now + self._lease))
            return Claim(frozenset(json.loads(delivered)), int(tries))

    def record(self, report: str, start: float, claim: Claim, error: str | None, now: float, sent: bool) -> bool:
        """Record a try's outcome on a period this process holds; False when it no longer holds it (nothing written)."""
        runs = t.report_runs
        values: dict[str, Any] = {"delivered": json.dumps(sorted(claim.delivered)), "tries": claim.tries, "updated_at": now}
        if error is not None:
            values["error"] = error  # a success keeps the last error: GET /reports shows what the retries were for
        if sent:
            values.update(sent_at=now, owner=None, lease_until=None)
        with self._store.writing() as conn:
            done = conn.execute(
                update(runs)
                .where(
                    runs.c.report == report, runs.c.period_start == start, runs.c.owner == self._owner, runs.c.sent_at.is_(None)
                )
                .values(**values)
            )
            return bool(done.rowcount)

    def sent(self, report: str, start: float) -> bool:
        """Say whether the report's period starting at `start` was sent."""
        runs = t.report_runs
        rows = self._store.read(
            select(runs.c.sent_at).where(runs.c.report == report, runs.c.period_start == start, runs.c.sent_at.isnot(None))
        )
        return bool(rows)

    def release(self) -> None:
        """Let go of this process's unsent claims at once (at stop), so that whoever starts next takes them without waiting."""
        runs = t.report_runs
        with self._store.writing() as conn:
            conn.execute(update(runs).where(runs.c.owner == self._owner, runs.c.sent_at.is_(None)).values(lease_until=0.0))

    def latest(self) -> dict[str, RunRecord]:
        """Return each report's latest period that has a row, and the last time each report was sent."""
        runs = t.report_runs
        rows = self._store.read(
            select(
                runs.c.report,
                runs.c.period_start,
                runs.c.period_end,
                runs.c.sent_at,
                runs.c.tries,
                runs.c.error,
                runs.c.updated_at,
            ).order_by(runs.c.period_start)
        )
        return {row[0]: RunRecord(*row[1:]) for row in rows}  # later periods replace earlier ones

    def last_sent(self) -> dict[str, float]:
        """Return when each report was last sent (of those ever sent)."""
        rows = self._store.read("SELECT report, MAX(sent_at) FROM report_runs WHERE sent_at IS NOT NULL GROUP BY report")
        return {name: at for name, at in rows}
