"""The lease: of all processes on one Redis, exactly one runs the sources and the persister, and another takes over.

A process holds the lease while its token is in the lease key (a redis-py Lock); it renews the key's time to live every
RENEW_SECONDS.
A process that cannot renew in time stops its leader services before the key can expire, so two leaders never run
the sources at once; and every batch a source sends is fenced with the token (see ledger), so a leader that paused
past its lease cannot write after its successor began.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from dash_app.eventlog.connection import SOCKET_TIMEOUT
from dash_app.services import Service

log = logging.getLogger(__name__)

TTL_SECONDS = 6.0
RENEW_SECONDS = 1.0


class Lease:
    """The lease key, held with redis-py's Lock under this process's token, and whether this process leads now.

    The Lock's scripts renew and release the key only while it holds this token; the ledger fences a source's batch
    with the same token (see ledger). `leading` ends before the key can expire, however a renewal stalls.
    """

    def __init__(self, client: redis.Redis, key: str, ttl: float = TTL_SECONDS, renew_every: float = RENEW_SECONDS) -> None:
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self.ttl = ttl
        self.renew_every = renew_every
        # Not thread-local: one thread takes and renews the lease, another may give it up (stop).
        self._lock = Lock(client, key, timeout=ttl, thread_local=False)
        self._renewed_at = 0.0  # monotonic time of the last successful take or renewal; 0 while not leading

    @property
    def leading(self) -> bool:
        """True while this process holds the lease, renewed recently enough that nobody else can hold it yet."""
        # A renewal stalled (a paused process, a call waiting for its timeout) ends the lead before the key could
        # expire, as a failed one does: the leader's services and alerts then stop before a successor starts.
        return self._renewed_at > 0 and time.monotonic() - self._renewed_at < self.hold_seconds

    @property
    def hold_seconds(self) -> float:
        """How long after its last renewal this process still counts as leading."""
        return self.ttl - self.renew_every - SOCKET_TIMEOUT

    def fence(self) -> str | None:
        """Return the token a source's batch is fenced with, or None when this process does not lead."""
        return self.token if self.leading else None

    def step(self) -> bool:
        """Take or renew the lease (or notice it is lost); return True when this process began or ceased to lead."""
        began = time.monotonic()  # the key's time to live counts from no earlier than this
        was = self._renewed_at > 0  # held at the last look (it may have lapsed since: see leading)
        try:
            # Renewing also takes back a lease this process still holds after giving it up (Redis was away).
            held = self._renew() or self._lock.acquire(blocking=False, token=self.token)
        except redis.RedisError as exc:
            # Unsure whether the key still holds: give up while it surely does, so no two processes ever lead at
            # once; a call may take SOCKET_TIMEOUT to fail, and the next try comes renew_every later.
            if was and not self.leading:
                log.warning("lease: cannot renew it (%s); this process stops its sources", exc)
                self._renewed_at = 0.0
                return True
            return False
        if held:
            self._renewed_at = began
        elif was:
            log.warning("lease: another process holds it now")
            self._renewed_at = 0.0
        return (self._renewed_at > 0) != was

    def _renew(self) -> bool:
        try:
            return self._lock.reacquire()
        except LockError:  # not taken yet, or the key is gone or another's (LockNotOwnedError)
            return False

    def resign(self) -> None:
        """Stop leading now (the key is kept until release: the leader's services stop first)."""
        self._renewed_at = 0.0

    def release(self) -> None:
        """Stop leading and delete the key if it still holds this token, so another process takes over at once."""
        self.resign()
        try:
            self._lock.release()
        except (LockError, redis.RedisError):
            pass  # not held, another's, or Redis is away: it expires by itself


class Leadership:
    """A background service that holds the lease when it can and runs the leader's services while it does.

    Two threads: one takes and renews the lease and nothing else, so a service that is slow to start (a demo
    backfill) cannot make it miss a renewal; the other starts and stops the services to match.
    """

    def __init__(self, lease: Lease, services: Mapping[str, Callable[[], Service]]) -> None:
        self.lease = lease
        self.factories = dict(services)  # name -> builds a fresh service each time this process leads
        self.running: dict[str, Service] = {}
        self._changed = threading.Event()  # the lease was taken or lost: the services thread catches up
        self._services_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def leading(self) -> bool:
        """True while this process holds the lease (see Lease.leading)."""
        return self.lease.leading

    def start(self) -> None:
        """Try for the lease now, then keep it (or keep trying) and run the services to match, in two threads."""
        self.step()
        for target, name in ((self._run_lease, "lease"), (self._run_services, "lease-services")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the leader's services and give the lease up, so another process takes over at once."""
        self._stop.set()
        self._changed.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.lease.resign()
        self.sync_services()
        self.lease.release()

    def _run_lease(self) -> None:
        while not self._stop.wait(self.lease.renew_every):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a failed step is tried again; the services are stopped if need be
                log.exception("lease: step failed")

    def _run_services(self) -> None:
        while not self._stop.is_set():
            self._changed.wait()
            self._changed.clear()
            if not self._stop.is_set():
                self.sync_services()

    def step(self) -> None:
        """Take or renew the lease; the services thread then starts or stops the services to match."""
        if self.lease.step() or (self.leading and len(self.running) < len(self.factories)):
            self._changed.set()  # the services follow; one that failed to start is tried again

    def sync_services(self) -> None:
        """Start the leader's services if this process leads and they are not running; stop them if it does not."""
        with self._services_lock:
            missing = [name for name in self.factories if name not in self.running]
            if self.leading and missing and not self._stop.is_set():
                log.info("lease: this process (%s) now runs %s", self.lease.token, ", ".join(missing))
                for name in missing:
                    build = self.factories[name]
                    try:
                        service = build()
                        service.start()
                    except Exception:  # noqa: BLE001 - one that cannot start must not keep the others from running
                        log.exception("lease: %s did not start", name)
                        continue
                    self.running[name] = service
            elif not self.leading and self.running:
                log.warning("lease: this process stops %s", ", ".join(self.running))
                for name, service in reversed(list(self.running.items())):
                    try:
                        service.stop()
                    except Exception:  # noqa: BLE001
                        log.exception("lease: stopping %s failed", name)
                self.running.clear()
