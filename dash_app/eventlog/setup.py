"""How build_state wires the shared log (--redis): ledger, pool mirror, follower, persister and lease."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import orjson
import redis

from dash_app.eventlog.connection import Keys, connect, redacted
from dash_app.eventlog.follower import LogFollower
from dash_app.eventlog.lease import Leadership, Lease
from dash_app.eventlog.ledger import OpenBorrow, RedisLedger, Snapshot
from dash_app.eventlog.persister import LogPersister
from dash_app.eventlog.progress import LogProgress
from dash_app.eventlog.recovery import Recovery
from dash_app.eventlog.shared import SharedLog, no_sources
from dash_app.eventlog.shared_pool import SharedLicensePool
from dash_app.events import Event
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.services import PERSISTER
from dash_app.store.database import entry_key
from dash_app.store.restore import restore_buffer
from dash_app.timeutil import MAX_CLOCK_SKEW_SECONDS

if TYPE_CHECKING:
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.licenses.inventory import ToolSpec
    from dash_app.licenses.pool import LicensePool
    from dash_app.recording import EventRecorder
    from dash_app.services import Service
    from dash_app.store.database import Store

log = logging.getLogger(__name__)

# The stream keeps entries this long past the buffer's window (and never drops one the store lacks).
KEEP_MARGIN_SECONDS = 3600.0
# How often side state that is not in the log (what polls say of totals, expiry and queues, the leader's sources) is shared.
SIDE_STATE_SECONDS = 1.0


class SharedLogError(Exception):
    """Redis cannot be used at start; the message is one line for the user (no password)."""


def open_redis(url: str) -> redis.Redis:
    """Return a client for --redis `url`, or raise SharedLogError when the server does not answer."""
    try:
        client = connect(url)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise SharedLogError(f"--redis {redacted(url)}: {type(exc).__name__}: {exc}") from None
    return client


def build_shared(
    url: str,
    prefix: str,
    retention_seconds: float,
    specs: dict[str, ToolSpec],
    store: Store,
    buffer: RealtimeMetricsBuffer,
    recorder: EventRecorder,
    series_of: Callable[[str], str],
    leader_services: Mapping[str, Callable[[LicensePool], Service]],
    describe_sources: Callable[[Mapping[str, Service]], list[dict[str, Any]]] = no_sources,
    lead: bool = True,
) -> SharedLog:
    """Return this process's pool on the shared log (--redis `url`, keys under `prefix`), its follower and its lease.

    The buffer is restored on the way. Redis need not answer now: a worker that starts while it is away serves what
    the store holds, and its follower takes the pool's state from Redis once it answers. `describe_sources` lists the
    leader's sources' health for the others; `lead=False` (a one-off backfill) sends its batches unfenced, so they
    count whoever holds the lease. The stream keeps entries `retention_seconds` (the buffer's window) and a margin.
    """
    keys = Keys(prefix)
    ledger = RedisLedger(connect(url), keys)
    lease = Lease(connect(url), keys.lease)
    restored, position = restore_buffer(store, buffer, log_name=keys.events)
    # The buffer holds what the store held up to `position`; the pool's copy is taken from Redis at some entry. The
    # follower starts at the earlier of the two and brings each part up from its own point.
    progress = LogProgress(position or "0-0")
    pool = SharedLicensePool(
        specs, recorder, ledger, series_of=series_of, progress=progress, fence=lease.fence if lead else _unfenced
    )
    recovery = Recovery(connect(url), keys, ledger, pool, progress, store, lease.token)
    buffer_from = entry_key(position or "0-0")

    def apply(entry_id: str, events: list[Event]) -> None:
        pool.apply_entry(entry_id, events)
        if entry_key(entry_id) > buffer_from:
            recorder.record_many(within_skew(events, time.time()))

    def persister() -> Service:
        return LogPersister(connect(url), keys.events, store, retention_seconds + KEEP_MARGIN_SECONDS, ledger.forget_seen)

    factories: dict[str, Callable[[], Service]] = {PERSISTER: persister}
    factories.update({name: partial(build, pool) for name, build in leader_services.items()})
    leadership = Leadership(lease, factories)
    sources: list[dict[str, Any]] = []  # the leader's sources, as last shared: SharedLog.sources
    sharer = SideStateSharer(connect(url), keys, pool, recovery, leadership, describe_sources, sources)
    # Before its first read the follower takes the pool, unless that was done here (Redis answered at start).
    follower = LogFollower(
        connect(url),
        keys.events,
        progress,
        apply,
        on_idle=sharer.step,
        prepare=recovery.take_first_copy,
        on_reconnect=recovery.check,
    )
    shared = SharedLog(connect(url), keys, pool, follower, leadership, sources, describe_sources, recovery=recovery)
    try:
        recovery.take_first_copy()
    except redis.RedisError as exc:
        # Until Redis answers, this process shows the open borrows the store holds; writes answer 503.
        log.warning("shared log: Redis does not answer (%s); serving from the store until it does", exc)
        stored = PoolStorage(store)
        pool.load(Snapshot("0-0", [open_borrow_of(row) for row in stored.load_open_borrows()], stored.load_charges()))
    log.info("shared log on %s: %d events restored from the store, following from %s", redacted(url), restored, follower.last_id)
    return shared


def _unfenced() -> str:
    """Return the empty fence: a one-off backfill's batches count whoever holds the lease."""
    return ""


def open_borrow_of(row: Sequence[Any]) -> OpenBorrow:
    """Return the OpenBorrow of a row of PoolStorage.load_open_borrows."""
    borrow_id, tool, user, borrowed_at, is_overage, host, version = row
    return OpenBorrow(borrow_id, tool, tool, user, borrowed_at, bool(is_overage), host, version)


def within_skew(events: list[Event], now: float) -> list[Event]:
    """Return `events` with times this host's buffer would refuse as future ones moved to `now`.

    Another host's clock may run ahead of this one's: its events still count here (as the FlexLM reader treats a
    log's clock skew), rather than being lost to this process.
    """
    limit = now + MAX_CLOCK_SKEW_SECONDS
    if all(e.ts <= limit for e in events):
        return events
    log.warning("shared log: events up to %.1f s ahead of this host's clock; counted at its now", max(e.ts for e in events) - now)
    return [e._replace(ts=now) if e.ts > limit else e for e in events]


class SideStateSharer:
    """The follower's idle step: state that is not in the log, written by the leader and read by the others.

    What polls said of totals, expiry dates, reservations and queues, and the health of the sources: only the leader runs them.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        pool: SharedLicensePool,
        recovery: Recovery,
        leadership: Leadership,
        describe_sources: Callable[[Mapping[str, Service]], list[dict[str, Any]]],
        sources: list[dict[str, Any]],
    ) -> None:
        self.client, self.keys, self.pool, self.recovery = client, keys, pool, recovery
        self.leadership = leadership
        self.describe_sources = describe_sources
        self.sources = sources  # filled in place with the leader's source entries (SharedLog.sources)
        self._due = 0.0
        self._published: dict[str, bytes] = {}

    def step(self) -> None:
        """Share or take the side state, at most every SIDE_STATE_SECONDS; heartbeat and check the log meanwhile."""
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + SIDE_STATE_SECONDS
        keys, published = self.keys, self._published
        self.recovery.heartbeat()
        self.recovery.check()
        self.pool.settle_doubts()
        leading = self.leadership.leading
        raw_observed, raw_sources = cast(list[bytes | None], self.client.mget([keys.observed, keys.sources]))
        if leading:
            self.sources.clear()
            observed = orjson.dumps(self.pool.observed(), option=orjson.OPT_SORT_KEYS)
            if observed != published.get(keys.observed):
                self.client.set(keys.observed, observed)
                published[keys.observed] = observed
            # Health changes with every poll; it expires, so a dead leader's last word is not shown for ever.
            self.client.set(
                keys.sources,
                orjson.dumps(self.describe_sources(self.leadership.running)),
                px=int(10 * SIDE_STATE_SECONDS * 1000),
            )
            return
        if raw_observed and raw_observed != published.get(keys.observed):
            doc = orjson.loads(raw_observed)
            self.pool.load_observed(doc)
            published[keys.observed] = raw_observed
        self.sources[:] = orjson.loads(raw_sources) if raw_sources else []
