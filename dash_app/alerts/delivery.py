"""The alert delivery queue: a queue and a thread per channel, retries with back-off, each try bounded by a deadline.

Every URL of a notification is a job on its channel's queue (one per URL), worked through in order by the channel's
own thread, so a slow or dead channel never delays another and one channel never has two tries at once. A try runs in
a thread of its own, cut at its deadline (deadlines.py). Channels are shown, stored and logged only through `redact`
(redaction.py).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import apprise

from dash_app.alerts.deadlines import RECUT_SECONDS, DeadlinePassed, TryGuard, add_audit_hook, run_bounded
from dash_app.alerts.notices import DeliveryRecord, Notification
from dash_app.alerts.redaction import apprise_asset, probe, redact, scrub
from dash_app.alerts.rules import DEFAULT_DELIVERY_DEADLINE_SECONDS

__all__ = ["Backoff", "Deliveries", "DeliveryRecord", "Notification", "notify_once"]

log = logging.getLogger(__name__)

# Delivery records kept for `recent` (and so for GET /alerts): enough for a page, bounded for a long-running server.
RECENT_KEPT = 200


@dataclass(frozen=True)
class Backoff:
    """How often a job is tried, and how long it waits before each retry: doubling from `first`, at most `most`."""

    tries: int = 5
    first: float = 1.0
    most: float = 60.0

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError("tries must be at least 1")
        if self.first <= 0 or self.most < self.first:
            raise ValueError("need 0 < first_backoff <= max_backoff")

    def delay(self, tries: int) -> float:
        """Return how long to wait after the `tries`-th failed try."""
        return min(self.first * 2 ** (tries - 1), self.most)


def notify_once(
    url: str,
    channel: str,
    title: str,
    body: str,
    body_format: str = apprise.NotifyFormat.TEXT,
    attach: apprise.AppriseAttachment | None = None,
) -> tuple[bool, str | None, bool]:
    """Send one message to `url` once (`channel`: the URL redacted); return (delivered, why not, whether retrying is pointless).

    Run it under a deadline (deadlines.run_bounded): apprise here has none of its own.
    """
    # A fresh object each try: apprise objects are not shared between threads, and one reused would make a retry
    # wait out apprise's own per-service throttle (5.5 s for e-mail) inside this worker.
    try:
        notifier = apprise.Apprise(asset=apprise_asset())
        if not notifier.add(url):
            return False, "apprise cannot use this URL", True
        result = notifier.notify(body=body, title=title, body_format=body_format, attach=attach)
        if result:
            return True, None, False
        complaints = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
        return False, scrub(complaints[-1]) if complaints else f"not delivered ({result.status.name.lower()})", False
    except Exception as exc:
        # Counted as a failed try. The traceback is scrubbed by hand: this module's logger has no secret filter.
        error = scrub(f"{type(exc).__name__}: {exc}")
        log.warning("delivery to %s raised %s\n%s", channel, error, scrub(traceback.format_exc()))
        return False, error, False


# ------------------------------------------------------------------------------------------------ the delivery queue


@dataclass
class _Job:
    """One notification to one channel, with the tries made so far."""

    notification: Notification
    url: str
    channel: str
    tries: int = 0
    due: float = 0.0  # the time.monotonic() before which its next try waits (its back-off)


@dataclass
class _Channel:
    """One destination URL: its jobs in the order sent, the one thread working through them, and the try in flight."""

    url: str
    jobs: deque[_Job] = field(default_factory=deque)
    thread: threading.Thread | None = None
    guard: TryGuard | None = None


class Deliveries:
    """Delivers notifications through apprise, a queue and a thread per channel, each try bounded by `deadline` seconds."""

    def __init__(
        self,
        on_record: Callable[[DeliveryRecord], None] | None = None,
        *,
        tries: int = 5,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        deadline: float = DEFAULT_DELIVERY_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backoff = Backoff(tries, first_backoff, max_backoff)
        if not deadline > 0:
            raise ValueError("deadline must be more than 0")
        self._on_record = on_record
        self._deadline = deadline
        self._clock = clock
        # One condition guards the channels, the count of unfinished jobs and the run state.
        self._cond = threading.Condition()
        self._channels: dict[str, _Channel] = {}  # only channels with jobs or a thread
        self._names = itertools.count(1)
        self._pending = 0
        self._dropped = 0
        self._started = False
        self._stopping = False
        self._recent: deque[DeliveryRecord] = deque(maxlen=RECENT_KEPT)
        self._recent_lock = threading.Lock()

    def start(self) -> None:
        """Start delivering (once, and not after stop; other calls do nothing)."""
        with self._cond:
            if self._started or self._stopping:
                return
        # apprise loads its plugins on first use; do it here, once, rather than in several threads at the same time.
        probe("json://localhost")
        add_audit_hook()
        with self._cond:
            if self._started or self._stopping:
                return
            self._started = True
            for channel in self._channels.values():
                self._run(channel)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop delivering: tries in flight get `timeout` seconds, then are cut; what is undelivered is dropped and logged."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
            if not self._started:
                # No thread ever ran: whatever was sent is still queued.
                for channel in self._channels.values():
                    self._drop_all(channel)
            threads = [channel.thread for channel in self._channels.values() if channel.thread is not None]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            with self._cond:
                guards = [channel.guard for channel in self._channels.values() if channel.guard is not None]
            for guard in guards:
                guard.cut()
            for thread in threads:
                thread.join(RECUT_SECONDS)
        busy = [thread.name for thread in threads if thread.is_alive()]
        with self._cond:
            dropped = self._dropped
        if dropped:
            log.warning("alert deliveries stopped: %d undelivered notification(s) dropped", dropped)
        if busy:
            log.warning("alert deliveries stopped with a try still running in %s", ", ".join(busy))

    def send(self, notification: Notification) -> None:
        """Queue one delivery job per URL of `notification` on that URL's channel; never blocks."""
        for url in notification.urls:
            job = _Job(notification, url, redact(url))
            with self._cond:
                if self._stopping:
                    log.warning(
                        "alert deliveries are stopped: %s %s to %s dropped", notification.event, notification.key, job.channel
                    )
                    continue
                self._pending += 1
                channel = self._channels.setdefault(url, _Channel(url))
                channel.jobs.append(job)
                self._run(channel)

    def recent(self, limit: int = 50) -> list[DeliveryRecord]:
        """Return the latest delivery records, newest first."""
        with self._recent_lock:
            return list(itertools.islice(reversed(self._recent), max(0, limit)))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Return True once nothing is queued, being tried or waiting for a retry; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    # -------------------------------------------------------------------------------------------- the threads

    def _run(self, channel: _Channel) -> None:
        """Start `channel`'s thread if it has jobs and none (called holding the condition)."""
        if channel.thread is None and channel.jobs and self._started and not self._stopping:
            channel.thread = threading.Thread(
                target=self._work, args=(channel,), name=f"alert-delivery-{next(self._names)}", daemon=True
            )
            channel.thread.start()

    def _work(self, channel: _Channel) -> None:
        """Try `channel`'s jobs in order until it has none; nothing a job does ends the thread."""
        try:
            while (job := self._next(channel)) is not None:
                try:
                    finished = self._try(channel, job)
                except Exception:
                    # Only a bug here gets this far (a try's own failures are records): keep the thread, lose the job.
                    log.exception("alert delivery of %s to %s failed unexpectedly", job.notification.key, job.channel)
                    finished = True
                if finished:
                    with self._cond:
                        channel.jobs.popleft()
                        self._pending -= 1
                        self._cond.notify_all()
        finally:
            with self._cond:
                if channel.thread is threading.current_thread():
                    # Only an unexpected error leaves jobs here: a new thread takes them on.
                    channel.thread = None
                    if channel.jobs and not self._stopping:
                        log.error("alert delivery thread for %s ended unexpectedly; starting another", channel.jobs[0].channel)
                    self._run(channel)

    def _next(self, channel: _Channel) -> _Job | None:
        """Return the channel's first job once its back-off has passed; None once it has none or the queue stops."""
        with self._cond:
            while True:
                if self._stopping:
                    self._drop_all(channel)
                if not channel.jobs:
                    channel.thread = None
                    if self._channels.get(channel.url) is channel:
                        del self._channels[channel.url]
                    return None
                wait = channel.jobs[0].due - time.monotonic()
                if wait <= 0:
                    return channel.jobs[0]
                # Later jobs of this channel wait too: a channel's notifications arrive in the order they were sent.
                self._cond.wait(wait)

    def _try(self, channel: _Channel, job: _Job) -> bool:
        """Make one try of `job` and record it; return True when the job is finished, False when it is to be retried."""
        job.tries += 1
        ok, error, permanent = self._bounded(channel, job)
        n = job.notification
        at = self._clock()
        if ok:
            log.info("alert %s %s delivered to %s (try %d)", n.event, n.key, job.channel, job.tries)
            self._record(DeliveryRecord(n.key, n.event, job.channel, True, job.tries, None, at))
            return True
        if permanent or job.tries >= self._backoff.tries:
            log.error(
                "alert %s %s not delivered to %s, gave up after %d tries: %s", n.event, n.key, job.channel, job.tries, error
            )
            self._record(DeliveryRecord(n.key, n.event, job.channel, False, job.tries, f"{error}; gave up", at))
            return True
        delay = self._backoff.delay(job.tries)
        log.warning(
            "alert %s %s not delivered to %s (try %d of %d), retrying in %gs: %s",
            n.event,
            n.key,
            job.channel,
            job.tries,
            self._backoff.tries,
            delay,
            error,
        )
        self._record(DeliveryRecord(n.key, n.event, job.channel, False, job.tries, f"{error}; retrying in {delay:g}s", at))
        job.due = time.monotonic() + delay
        return False

    def _bounded(self, channel: _Channel, job: _Job) -> tuple[bool, str | None, bool]:
        """Run `_deliver(job)` under the deadline; the channel keeps the try's guard so that stop can cut it too."""
        guard = TryGuard()
        with self._cond:
            channel.guard = guard
        try:
            outcome = run_bounded(lambda: self._deliver(job), guard, self._deadline, self._is_stopping, job.channel)
        except DeadlinePassed:
            return False, f"no answer within the delivery deadline of {self._deadline:g}s", False
        finally:
            with self._cond:
                channel.guard = None
            guard.close()
        return outcome if outcome is not None else (False, "the try ended without an answer", False)

    def _is_stopping(self) -> bool:
        """Say whether stop has been called."""
        with self._cond:
            return self._stopping

    def _deliver(self, job: _Job) -> tuple[bool, str | None, bool]:
        """Send `job` once through a fresh apprise object; return (delivered, why not, whether retrying is pointless)."""
        return notify_once(job.url, job.channel, job.notification.title, job.notification.body)

    def _record(self, record: DeliveryRecord) -> None:
        """Keep `record` for `recent` and hand it to on_record, whose exceptions are logged and swallowed."""
        with self._recent_lock:
            self._recent.append(record)
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception:
                log.exception("alert delivery record of %s to %s was not taken by on_record", record.key, record.channel)

    def _drop_all(self, channel: _Channel) -> None:
        """Give up every job of `channel` because the queue is stopping (called holding the condition)."""
        while channel.jobs:
            job = channel.jobs.popleft()
            log.info(
                "alert %s %s to %s dropped at stop after %d tries",
                job.notification.event,
                job.notification.key,
                job.channel,
                job.tries,
            )
            self._dropped += 1
            self._pending -= 1
        self._cond.notify_all()
