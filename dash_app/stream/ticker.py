"""The stream ticker: one snapshot per tick, each variant's message serialized once and queued for its clients."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

from dash_app.background import BackgroundThread
from dash_app.stream import sse
from dash_app.stream.snapshot import Changes, Message, ShownBuckets, Tick, Variant, take_tick

if TYPE_CHECKING:  # for the annotations only
    from dash_app.auth.viewer import Names
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.licenses import LicensePool

log = logging.getLogger(__name__)

# A reconnect within this time resumes with a delta; later it gets a full message.
RESUME_SECONDS = 60.0
# A client whose queue holds this much unsent time (beyond what the socket buffers took) has stalled:
# it is dropped and must reconnect, with its Last-Event-ID, to a delta.
LAG_SECONDS = 5.0


# Threads kept free of streams, so open streams never starve the dashboard's callbacks and the REST API.
MAX_RESERVED_THREADS = 16


def reserved_threads(threads: int) -> int:
    """Return how many of the server's threads streams may not take."""
    return max(1, min(MAX_RESERVED_THREADS, threads // 4))


def stream_capacity(threads: int) -> int:
    """Return how many streams a server with `threads` threads may hold open at once."""
    return threads - reserved_threads(threads)


class StreamUnavailable(Exception):
    """No stream can be opened now (too many open, or the server is stopping); the message says why."""


# Which message of a tick a frame holds: "full", "delta" (from the tick before), or ("since", an older tick's id).
FrameKind: TypeAlias = str | tuple[str, int]


class Subscription:
    """One client's place in the ticker: its variant, bounded queue and first message."""

    def __init__(
        self,
        ticker: StreamTicker,
        variant: Variant,
        encoding: str | None,
        queue_size: int,
        on_drop: Callable[[], object] | None,
    ) -> None:
        self.ticker = ticker
        self.variant = variant
        self.encoding = encoding
        self.queue: queue.Queue[bytes | None] = queue.Queue(queue_size)  # None: the stream ends
        self.on_drop = on_drop
        self.first: bytes | None = None
        self.dropped = False
        self.closed = False

    def close(self) -> None:
        """Leave the ticker; safe to call more than once."""
        self.ticker.unsubscribe(self)


class _Channel:
    """The clients of one variant, and the bytes made for them on the current tick."""

    __slots__ = ("subscribers", "tick_id", "frames")

    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()
        self.tick_id: int | None = None
        self.frames: dict[tuple[FrameKind, str | None], bytes] = {}  # (kind, encoding or None) -> bytes

    def frame(self, tick_id: int, kind: FrameKind, build: Callable[[], Message], encoding: str | None) -> bytes:
        """Return the cached bytes of message `kind` on `tick_id`, building and serializing them at most once."""
        if self.tick_id != tick_id:
            self.tick_id, self.frames = tick_id, {}
        raw = self.frames.get((kind, None))
        if raw is None:
            raw = self.frames[(kind, None)] = sse.event(tick_id, build())
        if encoding is None:
            return raw
        encoded = self.frames.get((kind, encoding))
        if encoded is None:
            encoded = self.frames[(kind, encoding)] = sse.encode(raw, encoding)
        return encoded


class StreamTicker:
    """A background service: every `interval` seconds, one Tick, then one message per variant for all its clients."""

    def __init__(
        self,
        buffer: RealtimeMetricsBuffer,
        pool: LicensePool,
        interval: float = 1.0,
        max_clients: int | None = None,
        resume_seconds: float = RESUME_SECONDS,
        lag_seconds: float = LAG_SECONDS,
        persisted: Callable[[], bool] | None = None,
        on_tick: Sequence[Callable[[Tick], object]] = (),
    ) -> None:
        self.buffer = buffer
        # Called with every tick, after its messages are queued: the alert rules read the same snapshot.
        self.on_tick = list(on_tick)
        self.pool = pool
        self.persisted = persisted
        self.interval = interval
        self.max_clients = max_clients
        self.queue_size = max(4, math.ceil(lag_seconds / interval))
        self.dropped = 0
        # Boundaries passed without a tick because the one before ran late (a busy machine): every client misses them
        # alike, and a delta still spans from the tick before, so nothing is lost but the tick itself.
        self.skipped = 0
        self._history: deque[Tick] = deque(maxlen=max(2, math.ceil(resume_seconds / interval) + 1))
        # A tick's id is its time in milliseconds, on a wall-clock boundary of the interval: every process of a
        # deployment (--redis) gives the same tick the same id, so a client that reconnects to another resumes with
        # its Last-Event-ID; and a restarted server never reuses an id an old client remembers.
        self._last_id = 0
        self._channels: dict[Variant, _Channel] = {}
        # Per names mode other than real names (a part of each Variant): its copies of the buckets, shared by its variants.
        self._shown: dict[Names, ShownBuckets] = {}
        self._clients = 0
        self._lock = threading.Lock()
        self._thread = BackgroundThread(self._run, "stream-ticker")
        self._stopping = self._thread.stopping

    # ----------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Take the first tick now, then tick in a daemon thread."""
        self.tick()
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and end every open stream."""
        self._thread.stop()
        with self._lock:
            subscribers = [sub for channel in self._channels.values() for sub in channel.subscribers]
            self._channels.clear()
            self._shown.clear()
        for sub in subscribers:
            try:
                sub.queue.put_nowait(None)
            except queue.Full:
                self._drop(sub)

    def _run(self) -> None:
        due = 0.0
        while True:
            # The next boundary of the interval on the wall clock; a late tick skips to the next, never bursts. A
            # wait that ends a little early (it runs on the monotonic clock) must not take the same boundary twice,
            # and a clock stepped back is followed, not waited out.
            boundary = (math.floor(time.time() / self.interval) + 1) * self.interval
            following = due + self.interval
            if 0 <= following - boundary <= self.interval * 1.001:
                due = following
            else:
                if due and boundary > following:
                    self.skipped += round((boundary - following) / self.interval)
                    log.info("the stream ticker ran late: %d ticks skipped so far", self.skipped)
                due = boundary
            if self._stopping.wait(max(0.0, due - time.time())):
                return
            try:
                self.tick(due)
            except Exception:  # one bad tick must not end the stream for everybody
                log.exception("stream tick failed")

    # ---------------------------------------------------------------- ticks

    def tick(self, at: float | None = None) -> Tick:
        """Take one snapshot (the tick of boundary `at`, else of now) and queue its message for every client."""
        stalled: list[Subscription] = []
        with self._lock:
            tick = self._take_tick(at)
            previous = self._history[-2] if len(self._history) > 1 else None
            changes = None
            kind: FrameKind
            build: Callable[[], Message]  # this variant's message, built by the first subscriber that needs it
            for variant, channel in list(self._channels.items()):
                if variant.delta and previous is not None:
                    # Pool status and recent events are the same for every variant: compare them once per tick.
                    changes = changes or Changes.between(previous, tick)
                    kind, build = "delta", partial(variant.delta_message, previous, tick, changes, self._shown_of(variant))
                else:
                    kind, build = "full", partial(variant.full_message, tick, self._shown_of(variant))
                for sub in channel.subscribers:
                    try:
                        sub.queue.put_nowait(channel.frame(tick.id, kind, build, sub.encoding))
                    except queue.Full:
                        stalled.append(sub)
            for sub in stalled:
                self._forget(sub)
        for sub in stalled:
            self._drop(sub)
        for listener in self.on_tick:
            try:
                listener(tick)
            except Exception:  # a listener's fault must not stop the stream
                log.exception("tick listener %r failed", listener)
        return tick

    def _take_tick(self, at: float | None = None) -> Tick:
        previous = self._history[-1] if self._history else None
        boundary = at if at is not None else math.floor(time.time() / self.interval) * self.interval
        # Ids only go up: a tick asked for within the same interval (at start, in tests) takes the next millisecond.
        tick_id = max(round(boundary * 1000), self._last_id + 1)
        tick = take_tick(tick_id, self.buffer, self.pool, previous, self.persisted)
        self._last_id = tick_id
        self._history.append(tick)
        return tick

    def _tick_by_id(self, tick_id: int | None) -> Tick | None:
        if tick_id is None:
            return None
        return next((tick for tick in reversed(self._history) if tick.id == tick_id), None)

    # ------------------------------------------------------------- clients

    def subscribe(
        self,
        variant: Variant,
        last_event_id: int | None = None,
        encoding: str | None = None,
        on_drop: Callable[[], object] | None = None,
    ) -> Subscription:
        """Register a client and return its Subscription, whose `first` holds the bytes to send at once.

        A delta client whose Last-Event-ID the ticker still remembers gets a delta from that tick;
        a client that already has the latest tick gets nothing until the next; anybody else gets a full message.
        """
        with self._lock:
            if self._stopping.is_set():
                raise StreamUnavailable("the server is stopping")
            if self.max_clients is not None and self._clients >= self.max_clients:
                raise StreamUnavailable(f"all {self.max_clients} streams are in use; retry later, or serve with more --threads")
            if not self._history:
                self._take_tick()
            latest = self._history[-1]
            channel = self._channels.get(variant)
            if channel is None:
                channel = self._channels[variant] = _Channel()
            sub = Subscription(self, variant, encoding, self.queue_size, on_drop)
            base = self._tick_by_id(last_event_id)
            shown = self._shown_of(variant)
            if base is latest:
                sub.first = None
            elif base is not None and variant.delta:
                sub.first = channel.frame(
                    latest.id, ("since", base.id), lambda: variant.delta_message(base, latest, shown=shown), encoding
                )
            else:
                sub.first = channel.frame(latest.id, "full", lambda: variant.full_message(latest, shown), encoding)
            channel.subscribers.add(sub)
            self._clients += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a client whose stream has ended; its variant is forgotten when nobody else listens to it."""
        with self._lock:
            self._forget(sub)
            if not sub.closed:
                sub.closed = True
                self._clients -= 1

    def _forget(self, sub: Subscription) -> None:
        # A dropped client leaves its channel at once, but counts as open until its thread lets go of it.
        channel = self._channels.get(sub.variant)
        if channel is None or sub not in channel.subscribers:
            return
        channel.subscribers.discard(sub)
        if not channel.subscribers:
            del self._channels[sub.variant]
            names = sub.variant.names
            if names in self._shown and all(variant.names != names for variant in self._channels):
                del self._shown[names]

    def _shown_of(self, variant: Variant) -> ShownBuckets | None:
        """Return the copies of buckets kept for `variant`'s names mode (None for real names: the buckets as they are)."""
        if variant.names.real:
            return None
        shown = self._shown.get(variant.names)
        if shown is None:
            shown = self._shown[variant.names] = ShownBuckets(variant.names)
        return shown

    def _drop(self, sub: Subscription) -> None:
        # Its thread may be blocked sending to a client that reads nothing: on_drop (a socket shutdown) frees it.
        sub.dropped = True
        self.dropped += 1
        log.info("dropped a stream client that fell %d messages behind", self.queue_size)
        if sub.on_drop is not None:
            sub.on_drop()

    # ----------------------------------------------------------------- info

    def known_tools(self) -> set[str]:
        """Return the tool names a client may filter on: the pool's and those with buckets in the buffer."""
        with self._lock:
            latest = self._history[-1] if self._history else None
        if latest is None:
            return set(self.pool.tools)
        return {entry["tool"] for entry in latest.tools} | set(latest.tool_metrics)

    def stats(self) -> dict[str, Any]:
        """Return the open streams (each holds a server thread), variants, the latest tick id, drops and skipped ticks."""
        with self._lock:
            return {
                "clients": self._clients,
                "max_clients": self.max_clients,
                "variants": len(self._channels),
                "last_id": self._history[-1].id if self._history else None,
                "dropped": self.dropped,
                "skipped": self.skipped,
            }
