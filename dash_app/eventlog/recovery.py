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
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from dash_app.eventlog.codec import FIELD, decode_entry
from dash_app.eventlog.connection import Keys
from dash_app.eventlog.ledger import RedisLedger, Snapshot
from dash_app.eventlog.progress import LogProgress, later
from dash_app.eventlog.shared_pool import SharedLicensePool
from dash_app.events import BORROW, RETURN
from dash_app.licenses.pool import Borrow
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.store.database import Store, entry_key

log = logging.getLogger(__name__)

MEMBER_SECONDS = 5.0  # a process not heard from for this long is not waited for (each says so every second)
GATHER_SECONDS = 1.5  # longest the rebuilder waits for the processes it knew to hand in their tails
LOCK_SECONDS = 10.0  # the rebuild lock's time to live (by default): a rebuilder that dies frees it after this
POLL_SECONDS = 0.02
FLUSH_SECONDS = 1.0  # how long a process waits for its store to write what its persister had queued


@dataclass
class Recovery:
    """One process's part in noticing that Redis lost data and in rebuilding the pool (see the module's doc)."""

    client: redis.Redis
    keys: Keys
    ledger: RedisLedger
    pool: SharedLicensePool
    progress: LogProgress  # the follower's: where this process is in the log, and its tail
    store: Store
    token: str  # this process's name among the others (its lease token)
    lock_seconds: float = LOCK_SECONDS  # the rebuild lock's time to live
    members: set[str] = field(default_factory=set, init=False)  # the others on the log, as last heard
    rebuilds: int = field(default=0, init=False)  # pools this process rebuilt
    _taken: bool = field(default=False, init=False)  # this process has taken its first copy of the pool

    def known(self) -> str:
        """Return the last entry this process has read, added or seen stored: a stream behind it lost data."""
        return self.progress.known()

    def heartbeat(self) -> None:
        """Say this process follows the log, note the others, and drop from the tail what the store holds now."""
        self.members = self.ledger.members(self.token, MEMBER_SECONDS) - {self.token}
        self._read_stored()

    def _read_stored(self) -> None:
        self.progress.note_stored(self.store.log_position(self.keys.events))

    def reload_pool(self) -> Snapshot:
        """Take this process's copy of the pool from Redis; the follower applies to it only the entries after it."""
        snapshot = self.ledger.snapshot()
        self.pool.load(snapshot)
        return snapshot

    def take_first_copy(self) -> None:
        """Take this process's first copy of the pool, and the entry it is at, in one step (until it succeeds).

        The first process on a new Redis (or one that lost its data) brings the pool's state from the store, with
        what the other processes hold that the store lacks. The follower reads on from the earlier of the snapshot's
        entry and where it stood (the buffer's point): each part is brought up from its own.
        """
        if self._taken:
            return
        self.check()
        snapshot = self.reload_pool()
        self.progress.applied = min(snapshot.last_id, self.progress.applied, key=entry_key)
        self._taken = True

    def check(self) -> None:
        """Rebuild the pool if Redis lost it (or came back behind); take this process's copy afresh if another did."""
        if self.ledger.check(self.known()):
            log.error("shared log: Redis came back from a copy older than entry %s; the pool is rebuilt", self.known())
        seeding = cast(bytes | None, self.client.get(self.keys.seeded))
        if seeding is None:
            self.recover()
        elif self.pool.seeding and seeding.decode() != self.pool.seeding:
            # The pool in Redis was filled in again (by another process): this copy follows it from now on. (A process
            # that has no copy yet is not told so: take_first_copy takes it next.)
            self.progress.data_lost()
            self.reload_pool()
            log.warning("shared log: the pool in Redis was rebuilt; this process took its copy afresh")

    def recover(self) -> None:
        """Hand in this process's tail, rebuild the pool if no other process does, and take the new pool's copy."""
        began = time.monotonic()
        self.progress.data_lost()
        # What this process's persister queued from the old stream is in the store before the rebuild reads it.
        if not self.store.flush(FLUSH_SECONDS):
            log.warning(
                "shared log: the store did not write what is queued within %.0f s; rebuilding all the same", FLUSH_SECONDS
            )
        flushed = time.monotonic() - began
        self._read_stored()
        tail = [[entry_id, raw.decode()] for entry_id, raw in self.progress.tail]
        self.client.hset(self.keys.tails, self.token, orjson.dumps({"known": self.known(), "entries": tail}))
        self.ledger.members(self.token, MEMBER_SECONDS)
        # The rebuild lock: only its holder rebuilds and releases it; a holder that dies frees it after lock_seconds.
        lock = Lock(self.client, self.keys.rebuild, timeout=self.lock_seconds, thread_local=False)
        while self.client.get(self.keys.seeded) is None:
            if lock.acquire(blocking=False, token=self.token):
                try:
                    self.rebuild()
                finally:
                    _release(lock)
                continue
            if time.monotonic() - began > self.lock_seconds:
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
        blind = not self.members and self.progress.stored != "0-0"
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


def _release(lock: Lock) -> None:
    """Release the rebuild lock if this process still holds it (a rebuild slower than its time to live lost it)."""
    try:
        lock.release()
    except LockNotOwnedError:
        log.warning("shared log: the rebuild outlasted its lock (%.0f s)", lock.timeout or 0)


def replay(
    borrows: list[tuple[Any, ...]], charges: dict[str, int], entries: list[tuple[str, str]]
) -> tuple[list[Borrow], dict[str, int]]:
    """Return the open borrows and charges after `entries` (id, field e) on top of the store's borrows and charges."""
    opened = {row[0]: Borrow.of_row(row) for row in borrows}
    charged = dict(charges)
    for _entry_id, text in entries:
        for e in decode_entry({FIELD: text.encode()}):
            if e.kind == BORROW and e.borrow_id is not None and e.borrow_id not in opened and e.tool and e.user:
                opened[e.borrow_id] = Borrow.of_event(e)
                if e.is_overage:
                    charged[e.tool] = charged.get(e.tool, 0) + 1
            elif e.kind == RETURN:
                opened.pop(e.borrow_id or "", None)
    return list(opened.values()), charged
