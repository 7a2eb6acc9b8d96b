"""Delivery of alert notifications through apprise: a queue per channel, tries bounded by a deadline, secrets kept out of logs.

Every URL of a notification is a job on its channel's queue (one per URL), worked through in order by the channel's
own thread, so a slow or dead channel never delays another and one channel never has two tries at once. A try runs in
a thread of its own; when the deadline passes its connections are shut down from outside, which ends even a try that
a server keeps alive one byte at a time. Channels are shown, stored and logged only through `redact`, and a filter on
apprise's logger blanks the secrets of every URL seen here out of apprise's own log lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import itertools
import logging
import re
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

import apprise

from dash_app.alerts.rules import DEFAULT_DELIVERY_DEADLINE_SECONDS

log = logging.getLogger(__name__)

REDACTED = "***"
# Delivery records kept for `recent` (and so for GET /alerts): enough for a page, bounded for a long-running server.
RECENT_KEPT = 200
# Secrets remembered for scrubbing log lines; a rules file holds a handful, tests may make thousands.
_SECRETS_KEPT = 4096
# How often a try cut at its deadline is cut again while its thread has not ended (a connection it was still opening).
_RECUT_SECONDS = 0.5

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
# Query parameters whose values are credentials by their name (apprise's pass=, token=, apikey=, ...).
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred|session|cookie|bearer", re.IGNORECASE)
# A password in any URL written into a log line.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:)[^\s@/?#]+@")
# apprise's own privacy masks ('t...n', '...abcd') still show some characters of a secret: hide those too.
_APPRISE_MASK = re.compile(r"[^\s/:@?&=.]?\.\.\.[^\s/:@?&=.]{1,4}")
# Where a URL splits into the pieces that apprise reads as tokens.
_URL_DELIMITERS = re.compile(r"([/:@?&=#,])")


@dataclass(frozen=True)
class Notification:
    """One message of one alert, to be delivered to each of its apprise URLs."""

    key: str  # the alert's key, e.g. "near-full|GreenHills Multi IDE"
    event: str  # "fire", "repeat" or "resolve"
    title: str
    body: str
    urls: tuple[str, ...]  # apprise URLs to deliver to (one channel each)


@dataclass
class DeliveryRecord:
    """The outcome of one try, or the final outcome, of delivering a notification to one channel."""

    key: str
    event: str
    channel: str  # the URL with any password or token redacted
    ok: bool
    tries: int
    error: str | None
    at: float  # the time of the last try (epoch seconds)


# ------------------------------------------------------------------------------------------------ secrets in logs

_secrets_lock = threading.Lock()
_secrets: dict[str, None] = {}  # insertion-ordered, so the oldest go first past _SECRETS_KEPT
_capture = threading.local()


def _remember(values: Iterable[str]) -> None:
    """Add secret values to those blanked out of apprise's log lines."""
    with _secrets_lock:
        for value in values:
            if value and value not in _secrets:
                _secrets[value] = None
        while len(_secrets) > _SECRETS_KEPT:
            del _secrets[next(iter(_secrets))]


def scrub(text: str) -> str:
    """Return `text` with every known secret, URL password and apprise privacy mask replaced by '***'."""
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
    with _secrets_lock:
        secrets = list(_secrets)
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, quote(secret, safe="")}:
            if len(form) >= 4:
                text = text.replace(form, REDACTED)
            elif form in text:
                # A short secret is replaced only where it stands alone, not inside every word that contains it.
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", REDACTED, text)
    return _APPRISE_MASK.sub(REDACTED, text)


class _ScrubFilter(logging.Filter):
    """Rewrites apprise's records without secrets, and keeps them to the calling thread while it probes a URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for records captured by a probe; scrub the others in place and let them through."""
        message = scrub(record.getMessage())
        captured: list[tuple[int, str]] | None = getattr(_capture, "records", None)
        if captured is not None:
            captured.append((record.levelno, message))
            return False
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER = _ScrubFilter()
# apprise logs through one logger; urllib3 logs request lines (with any query tokens) at DEBUG.
for _name in ("apprise", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_FILTER)


@contextmanager
def _captured() -> Iterator[list[tuple[int, str]]]:
    """Collect apprise's log records of this thread instead of logging them (for probing a URL quietly)."""
    outer = getattr(_capture, "records", None)
    records: list[tuple[int, str]] = []
    _capture.records = records
    try:
        yield records
    finally:
        _capture.records = outer


def _asset() -> apprise.AppriseAsset:
    """Return apprise's settings for one use: nothing on disk, sends in the calling thread, no deadline of its own."""
    # With a service_timeout apprise sends from a pool thread and only stops waiting for it at the timeout, leaving the
    # thread stuck on a trickling server; without one it sends here, under the deadline that Deliveries enforces.
    return apprise.AppriseAsset(storage_mode="memory", async_mode=False, app_id="license-dashboard", service_timeout=0)


def _probe(url: str) -> tuple[apprise.NotifyBase | None, list[tuple[int, str]]]:
    """Return apprise's service object for `url` (None when it cannot use it) and what apprise said about it."""
    with _captured() as records:
        try:
            plugin = apprise.Apprise.instantiate(url, asset=_asset())
        except Exception as exc:  # apprise reports bad URLs by logging, but a plugin may still raise
            plugin = None
            records.append((logging.ERROR, scrub(f"{type(exc).__name__}: {exc}")))
    return (plugin if isinstance(plugin, apprise.NotifyBase) else None), records


def _private_values(plugin: apprise.NotifyBase) -> set[str]:
    """Return the values of the tokens and arguments that the service's plugin declares private (its secrets)."""
    values: set[str] = set()
    declared = {**getattr(plugin, "template_tokens", {}), **getattr(plugin, "template_args", {})}
    for name, meta in declared.items():
        if not isinstance(meta, dict) or not meta.get("private"):
            continue
        value = getattr(plugin, str(meta.get("map_to", name)), None)
        items = value if isinstance(value, list | tuple | set | frozenset) else [value]
        values.update(item for item in items if isinstance(item, str) and item)
    return values


def _redact_structure(url: str) -> tuple[str, set[str]]:
    """Return `url` with its userinfo password and secret-looking query values hidden, and the values hidden."""
    match = _SCHEME.match(url)
    if match is None:
        return url, set()
    scheme, rest = match.groups()
    head, question, query = rest.partition("?")
    netloc, slash, path = head.partition("/")
    hidden: set[str] = set()
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon and password:
            hidden.update({password, unquote(password)})
            netloc = f"{user}:{REDACTED}@{hostport}"
    params = []
    for param in query.split("&") if question else []:
        name, equals, value = param.partition("=")
        plain = unquote(name)
        # '+name' is a header that apprise's json://, xml:// and form:// send: Authorization and API keys live there.
        if equals and value and (plain.startswith("+") or _SECRET_NAME.search(plain)):
            hidden.update({value, unquote(value)})
            value = REDACTED
        params.append(f"{name}{equals}{value}")
    return f"{scheme}://{netloc}{slash}{path}{question}{'&'.join(params)}", hidden


@lru_cache(maxsize=512)
def redact(url: str) -> str:
    """Return `url` with its password, token and query secrets replaced by '***' (for logs, /alerts and the database)."""
    redacted, secrets = _redact_structure(url)
    plugin, _ = _probe(url)
    if plugin is not None:
        # Tokens in the path (slack://A/B/C, discord://id/token) are secrets only the service's plugin knows about.
        secrets |= _private_values(plugin)
    secrets.discard(REDACTED)
    secrets.discard("")
    _remember(secrets)
    # Odd pieces are the delimiters themselves: a secret that is one delimiter (a password ":") leaves them alone.
    pieces = _URL_DELIMITERS.split(redacted)
    redacted = "".join(
        REDACTED if n % 2 == 0 and piece and unquote(piece) in secrets else piece for n, piece in enumerate(pieces)
    )
    # A secret that spans delimiters (a token with '/' in it) is only found as a whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 6:
            redacted = redacted.replace(secret, REDACTED).replace(quote(secret, safe=""), REDACTED)
    return redacted


def check_url(url: str) -> str | None:
    """Return None when apprise can deliver to `url`, else a one-line reason (used to refuse a bad rules file at start)."""
    if not isinstance(url, str) or not url.strip():
        return "empty URL"
    match = _SCHEME.match(url.strip())
    if match is None:
        return "not an apprise URL: expected scheme://..., e.g. json://host/path or mailto://host?to=someone@example.com"
    scheme = match.group(1).lower()
    if scheme not in apprise.NotificationManager():
        return f"apprise has no service for {scheme}://"
    redact(url)  # so that apprise's complaint below, if any, is scrubbed of this URL's secrets
    plugin, records = _probe(url)
    if plugin is None:
        # Every complaint, in order: apprise's last line ("Could not load ...") often follows the one that says why.
        complaints = list(dict.fromkeys(message for level, message in records if level >= logging.WARNING))
        detail = "; ".join(complaints) if complaints else "it cannot parse it"
        return " ".join(f"apprise cannot use this {scheme}:// URL: {detail}".split())
    if not plugin.enabled:
        return f"apprise's {scheme}:// service needs packages that are not installed"
    return None


# ------------------------------------------------------------------------------------------------ bounding a try


class _TryGuard:
    """The connections one try opened, kept so that they can be shut down from another thread at its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._cut = False

    def connecting(self, sock: Any) -> None:
        """Keep a duplicate of `sock` as it connects; once cut, refuse the connection instead."""
        with self._lock:
            if self._cut:
                raise OSError(errno.ETIMEDOUT, "the alert delivery's deadline has passed")
            # A duplicate, not `sock`: TLS wraps a connected socket by detaching it, but both descriptors name one
            # connection, and shutting either down ends the reads and writes blocked on the other.
            self._sockets.append(socket.fromfd(sock.fileno(), sock.family, sock.type))

    def cut(self) -> None:
        """Shut down every connection of the try, so its blocked reads and writes end at once, and refuse new ones."""
        with self._lock:
            self._cut = True
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # not connected (yet), or already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the duplicates; a try still running after this can open no connection."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


# The guard of the try running in this context; a context var, so that it follows a try into any pool thread that
# runs part of it in a copy of its context.
_guard: contextvars.ContextVar[_TryGuard | None] = contextvars.ContextVar("alert_delivery_guard", default=None)
_hook_lock = threading.Lock()
_hook_added = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Hand every socket a delivery try connects to that try's guard (whatever library of apprise's connects it)."""
    if event == "socket.connect":
        guard = _guard.get()
        if guard is not None:
            guard.connecting(args[0])


def _add_audit_hook() -> None:
    """Add `_audit` to the process's audit hooks, once: it is the one place that sees each connection apprise makes."""
    global _hook_added
    with _hook_lock:
        if not _hook_added:
            sys.addaudithook(_audit)
            _hook_added = True


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
    guard: _TryGuard | None = None


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
        if tries < 1:
            raise ValueError("tries must be at least 1")
        if first_backoff <= 0 or max_backoff < first_backoff:
            raise ValueError("need 0 < first_backoff <= max_backoff")
        if not deadline > 0:
            raise ValueError("deadline must be more than 0")
        self._on_record = on_record
        self._tries = tries
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
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
        _probe("json://localhost")
        _add_audit_hook()
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
                thread.join(_RECUT_SECONDS)
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
        if permanent or job.tries >= self._tries:
            log.error(
                "alert %s %s not delivered to %s, gave up after %d tries: %s", n.event, n.key, job.channel, job.tries, error
            )
            self._record(DeliveryRecord(n.key, n.event, job.channel, False, job.tries, f"{error}; gave up", at))
            return True
        delay = min(self._first_backoff * 2 ** (job.tries - 1), self._max_backoff)
        log.warning(
            "alert %s %s not delivered to %s (try %d of %d), retrying in %gs: %s",
            n.event,
            n.key,
            job.channel,
            job.tries,
            self._tries,
            delay,
            error,
        )
        self._record(DeliveryRecord(n.key, n.event, job.channel, False, job.tries, f"{error}; retrying in {delay:g}s", at))
        job.due = time.monotonic() + delay
        return False

    def _bounded(self, channel: _Channel, job: _Job) -> tuple[bool, str | None, bool]:
        """Run `_deliver(job)` in a thread of its own; at the deadline cut its connections and wait for it to end."""
        guard = _TryGuard()
        outcome: list[tuple[bool, str | None, bool]] = []

        def attempt() -> None:
            _guard.set(guard)  # in this new thread's own context, which ends with it
            outcome.append(self._deliver(job))

        thread = threading.Thread(target=attempt, name=f"{threading.current_thread().name}-try", daemon=True)
        with self._cond:
            channel.guard = guard
        try:
            thread.start()
            thread.join(self._deadline)
            if not thread.is_alive():
                return outcome[0] if outcome else (False, "the try ended without an answer", False)
            guard.cut()
            warned = False
            # The channel's next try waits for this one to end: never two tries at once on one channel.
            while thread.is_alive():
                thread.join(_RECUT_SECONDS)
                with self._cond:
                    if self._stopping:
                        break  # a daemon thread that can open no connection any more; stop() says it was left
                if thread.is_alive():
                    if not warned:
                        log.warning("alert delivery to %s still running after its deadline was cut; waiting", job.channel)
                        warned = True
                    guard.cut()  # a connection that was still being opened when the deadline passed
            return False, f"no answer within the delivery deadline of {self._deadline:g}s", False
        finally:
            with self._cond:
                channel.guard = None
            guard.close()

    def _deliver(self, job: _Job) -> tuple[bool, str | None, bool]:
        """Send `job` once through a fresh apprise object; return (delivered, why not, whether retrying is pointless)."""
        # A fresh object each try: apprise objects are not shared between threads, and one reused would make a retry
        # wait out apprise's own per-service throttle (5.5 s for e-mail) inside this worker.
        try:
            notifier = apprise.Apprise(asset=_asset())
            if not notifier.add(job.url):
                return False, "apprise cannot use this URL", True
            result = notifier.notify(
                body=job.notification.body, title=job.notification.title, body_format=apprise.NotifyFormat.TEXT
            )
            if result:
                return True, None, False
            complaints = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
            return False, scrub(complaints[-1]) if complaints else f"not delivered ({result.status.name.lower()})", False
        except Exception as exc:
            # Counted as a failed try. The traceback is scrubbed by hand: this module's logger has no secret filter.
            error = scrub(f"{type(exc).__name__}: {exc}")
            log.warning("alert delivery to %s raised %s\n%s", job.channel, error, scrub(traceback.format_exc()))
            return False, error, False

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
