"""What the follower and the persister share: a daemon thread that reads the shared log step by step, for good."""

from __future__ import annotations

import logging

import redis

from dash_app.background import BackgroundThread

log = logging.getLogger(__name__)

BLOCK_MS = 1000  # a read waits this long for new entries before it asks again (and notices stop())
RETRY_SECONDS = 0.25  # after a failed read; Redis back means reading again within this (well under the 5 s promised)


class LogReader:
    """A background service whose thread calls step(block_ms) until stopped; a failed step is tried again."""

    name = "log-reader"

    def __init__(self, block_ms: int = BLOCK_MS) -> None:
        self.block_ms = block_ms  # also how long stop() may wait for the thread
        self._thread = BackgroundThread(self._run, self.name)

    def start(self) -> None:
        """Start reading in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (within one read's block time)."""
        self._thread.stop()

    def _run(self) -> None:
        stopping = self._thread.stopping
        while not stopping.is_set():
            # Whatever goes wrong, this thread goes on: it is this process's only reader of the log.
            try:
                self.step(self.block_ms)
            except redis.RedisError as exc:
                self.lost(exc)
                stopping.wait(RETRY_SECONDS)
            except Exception:  # noqa: BLE001 - logged; the same entries are read again
                log.exception("%s: a step failed", self.name)
                stopping.wait(RETRY_SECONDS)

    def step(self, block_ms: int | None = None) -> int:
        """Read and handle what is new, waiting up to `block_ms` for it; return the number of entries handled."""
        raise NotImplementedError

    def lost(self, exc: BaseException) -> None:
        """Called after a failed read; Redis is away."""
