"""Redis clients and key names of one deployment (its --redis URL and --redis-prefix)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# A command that does not answer in this time fails: a write answers 503 rather than hang a request thread.
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one deployment, all under its prefix."""

    prefix: str

    @property
    def events(self) -> str:
        """The stream: one entry per decision, holding its events."""
        return f"{self.prefix}:events"

    @property
    def active(self) -> str:
        """Hash: borrow id -> the open borrow (JSON)."""
        return f"{self.prefix}:active"

    @property
    def borrowed(self) -> str:
        """Hash: counted tool name -> licenses in use."""
        return f"{self.prefix}:borrowed"

    @property
    def charges(self) -> str:
        """Hash: tool -> overage borrows so far."""
        return f"{self.prefix}:charges"

    @property
    def seeded(self) -> str:
        """Set once the pool's state was taken over from the store."""
        return f"{self.prefix}:seeded"

    @property
    def lease(self) -> str:
        """The token of the process that runs the sources, with a time to live."""
        return f"{self.prefix}:lease"

    def once(self, batch_id: str) -> str:
        """The answer of one batch of a source, kept ten minutes so that sending it again applies nothing twice."""
        return f"{self.prefix}:batch:{batch_id}"

    @property
    def seen(self) -> str:
        """Sorted set: ids of log lines' events already applied (score: when), kept a day."""
        return f"{self.prefix}:seen"

    @property
    def observed(self) -> str:
        """Hash: what polled servers say of tools (issued counts, expiry dates), as the leader saw it last."""
        return f"{self.prefix}:observed"

    @property
    def members(self) -> str:
        """Sorted set: tokens of the processes that follow the log, scored by when (Redis's clock, ms) each last said so."""
        return f"{self.prefix}:members"

    @property
    def tails(self) -> str:
        """Hash: process token -> the entries it applied that the store may lack (JSON), while the pool is rebuilt."""
        return f"{self.prefix}:tails"

    @property
    def rebuild(self) -> str:
        """The token of the one process rebuilding the pool after Redis lost data, with a time to live."""
        return f"{self.prefix}:rebuild"

    @property
    def sources(self) -> str:
        """The leader's source health (JSON), for every process's /sources and page."""
        return f"{self.prefix}:sources"


def connect(url: str) -> redis.Redis:
    """Return a client for `url` that never retries a command on its own.

    A retried script could decide a borrow twice; whoever calls decides whether to try again.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def redacted(url: str) -> str:
    """Return `url` with any password replaced, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user = auth.partition(":")[0]
    return f"{scheme}://{user + ':' if user else ''}***@{host}"
