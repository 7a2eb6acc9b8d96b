"""Rebuilding the pool when Redis comes back without its data (empty, or from an older copy), losing no acknowledged write.

What a write's 200 means (--redis): the Lua script decided it and appended its entry to the stream, and the follower
of the process that answered has applied that entry (a write whose entry is not applied within APPLIED_TIMEOUT is
answered 503). So every acknowledged entry is in Redis, and in the follower tail of the process that answered, until
the store holds it. A Redis without persistence may lose the stream's last entries (and the persister may not have
stored them yet), so when a process finds Redis without the pool, or with a stream behind what it has read or the
store holds, every process hands in its tail (the entries after the store's position it has applied) and one of
them, holding the rebuild lock, rebuilds: the store's open borrows and charges, read at one position in the log, plus
every handed-in entry after it, in order. The entries go back into the stream under their own ids, so each process
reads only those it lacks and the store skips those it has; the stream's last id is moved past every id any process
has read, so log positions stay monotonic. Until the pool is rebuilt, writes answer 503 (NOTSEEDED).

Each process runs this in its follower's thread: when Redis answers again after a failed read, and every second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import orjson
import redis

from dash_app.eventlog.codec import FIELD, decode_entry
from dash_app.eventlog.connection import Keys
from dash_app.eventlog.follower import LogFollower
from dash_app.eventlog.ledger import RedisLedger
from dash_app.eventlog.shared_pool import SharedLicensePool
from dash_app.events import BORROW, RETURN
from dash_app.licenses.pool import Borrow
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.store.database import Store, entry_key

log = logging.getLogger(__name__)

MEMBER_SECONDS = 5.0  # a process not heard from for this long is not waited for (each says so every second)
GATHER_SECONDS = 1.5  # longest the rebuilder waits for the processes it knew to hand in their tails
LOCK_SECONDS = 10.0  # the rebuild lock's time to live: a rebuilder that dies frees it after this
POLL_SECONDS = 0.02
FLUSH_SECONDS = 1.0  # how long a process waits for its store to write what its persister had queued


def later(a: str, b: str) -> str:
    """Return the later of two entry ids."""
    return a if entry_key(a) >= entry_key(b) else b


class Recovery:
    """One process's part in noticing that Redis lost data and in rebuilding the pool (see the module's doc)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        ledger: RedisLedger,
        pool: SharedLicensePool,
        follower: LogFollower,
        store: Store,
        reload_pool: Callable[[], object],
        token: str,
    ) -> None:
        self.client = client
        self.keys = keys
        self.ledger = ledger
        self.pool = pool
        self.follower = follower
        self.store = store
        self.reload_pool = reload_pool
        self.token = token
        self.members: set[str] = set()  # the other processes on the log, as last heard (before Redis lost them)
        self.stored = "0-0"  # the store's position in the log, as last read
        self.rebuilds = 0  # pools this process rebuilt

    def known(self) -> str:
        """Return the last entry this process has read, added or seen stored: a stream behind it lost data."""
        return later(later(self.follower.last_id, self.pool.last_sent), self.stored)

    def heartbeat(self) -> None:
        """Say this process follows the log, note the others, and drop from the tail what the store holds now."""
        self.members = self.ledger.members(self.token, MEMBER_SECONDS) - {self.token}
        self._read_stored()

    def _read_stored(self) -> None:
        self.stored = later(self.store.log_position(self.keys.events) or "0-0", self.stored)
        self.follower.trim_tail(self.stored)

    def check(self) -> None:
        """Rebuild the pool if Redis lost it (or came back behind); take this process's copy afresh if another did."""
        if self.ledger.check(self.known()):
            log.error("shared log: Redis came back from a copy older than entry %s; the pool is rebuilt", self.known())
        seeding = cast(bytes | None, self.client.get(self.keys.seeded))
        if seeding is None:
            self.recover()
        elif seeding.decode() != self.pool.seeding:
            # The pool in Redis was filled in again (by another process): this copy follows it from now on.
            self.follower.data_lost()
            self.reload_pool()
            log.warning("shared log: the pool in Redis was rebuilt; this process took its copy afresh")

    def recover(self) -> None:
        """Hand in this process's tail, rebuild the pool if no other process does, and take the new pool's copy."""
        began = time.monotonic()
        self.follower.data_lost()
        # What this process's persister queued from the old stream is in the store before the rebuild reads it.
        if not self.store.flush(FLUSH_SECONDS):
            log.warning(
                "shared log: the store did not write what is queued within %.0f s; rebuilding all the same", FLUSH_SECONDS
            )
        flushed = time.monotonic() - began
        self._read_stored()
        tail = [[entry_id, raw.decode()] for entry_id, raw in self.follower.tail]
        self.client.hset(self.keys.tails, self.token, orjson.dumps({"known": self.known(), "entries": tail}))
        self.ledger.members(self.token, MEMBER_SECONDS)
        while self.client.get(self.keys.seeded) is None:
            if self.client.set(self.keys.rebuild, self.token, nx=True, px=int(LOCK_SECONDS * 1000)):
                try:
                    self.rebuild()
                finally:
                    self.client.delete(self.keys.rebuild)
                continue
            if time.monotonic() - began > LOCK_SECONDS:
                log.error("shared log: the pool in Redis is still not rebuilt; trying again")
                return  # the next check tries again (the lock has expired by then if its holder died)
            time.sleep(POLL_SECONDS)
        self.reload_pool()
        log.warning(
            "shared log: pool back in Redis %.2f s after this process found it lost (%.2f s writing the store)",
            time.monotonic() - began,
            flushed,
        )

    def rebuild(self) -> None:
        """Fill the pool from the store and every tail handed in (this process holds the rebuild lock)."""
        self._gather()
        borrows, charges, position = PoolStorage(self.store).load_pool_state(self.keys.events)
        after = entry_key(position or "0-0")
        entries: dict[str, str] = {}
        floor = position or "0-0"
        # An older copy of the stream may still hold entries the store lacks.
        older = cast(list[tuple[bytes, dict[bytes, bytes]]], self.client.xrange(self.keys.events, min=f"({floor}"))
        for raw_id, fields in older:
            entries[raw_id.decode()] = fields.get(FIELD, b"[]").decode()
        tails = cast(list[bytes], self.client.hvals(self.keys.tails))
        for raw in tails:
            doc = orjson.loads(raw)
            floor = later(floor, doc["known"])
            for entry_id, text in doc["entries"]:
                if entry_key(entry_id) > after:
                    entries.setdefault(entry_id, text)
        ordered = sorted(entries.items(), key=lambda item: entry_key(item[0]))
        opened, charged = replay(borrows, charges, ordered)
        self.ledger.seed_once(self.pool.ledger_rows(opened), charged, ordered, floor)
        self.client.delete(self.keys.tails)
        self.rebuilds += 1
        log.error(
            "shared log: Redis lost data; the pool was rebuilt from the store (at %s, %d open borrows) and %d later "
            "entries from %d processes; new entries follow %s",
            position,
            len(borrows),
            len(ordered),
            len(tails),
            floor,
        )

    def _gather(self) -> None:
        """Wait until every process heard from lately has handed in its tail (or GATHER_SECONDS passed)."""
        deadline = time.monotonic() + GATHER_SECONDS
        # A process that knows of no other, on a log the store has entries of, cannot tell who may hold some.
        blind = not self.members and self.stored != "0-0"
        while True:
            handed = {t.decode() for t in cast(list[bytes], self.client.hkeys(self.keys.tails))}
            waiting = (self.members | self.ledger.members(self.token, MEMBER_SECONDS)) - handed - {self.token}
            if (not waiting and not blind) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        if waiting or blind:
            log.error(
                "shared log: rebuilding the pool without hearing from %s after %.2f s",
                f"{len(waiting)} processes" if waiting else "processes this one did not know of",
                GATHER_SECONDS,
            )


def replay(
    borrows: list[tuple[Any, ...]], charges: dict[str, int], entries: list[tuple[str, str]]
) -> tuple[list[Borrow], dict[str, int]]:
    """Return the open borrows and charges after `entries` (id, field e) on top of the store's borrows and charges."""
    opened = {row[0]: Borrow(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6]) for row in borrows}
    charged = dict(charges)
    for _entry_id, text in entries:
        for e in decode_entry({FIELD: text.encode()}):
            if e.kind == BORROW and e.borrow_id is not None and e.borrow_id not in opened and e.tool and e.user:
                opened[e.borrow_id] = Borrow(e.borrow_id, e.tool, e.user, e.ts, bool(e.is_overage), e.host, e.version)
                if e.is_overage:
                    charged[e.tool] = charged.get(e.tool, 0) + 1
            elif e.kind == RETURN:
                opened.pop(e.borrow_id or "", None)
    return list(opened.values()), charged
