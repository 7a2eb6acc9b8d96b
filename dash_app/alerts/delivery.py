"""Delivery of alert notifications through apprise: one job per channel, retried with back-off, secrets kept out of logs.

Every URL of a notification is its own job, so a dead channel never delays another. A failed try is put on a heap of
due times watched by one timer thread, which hands it back to the workers when its back-off has passed: no worker
waits out a back-off. Channels are shown, stored and logged only through `redact`, and a filter on apprise's logger
blanks the secrets of every URL seen here out of apprise's own log lines.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import re
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote

import apprise

log = logging.getLogger(__name__)

REDACTED = "***"
# Delivery records kept for `recent` (and so for GET /alerts): enough for a page, bounded for a long-running server.
RECENT_KEPT = 200
# Secrets remembered for scrubbing log lines; a rules file holds a handful, tests may make thousands.
_SECRETS_KEPT = 4096

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
    """Return apprise's settings for one use: nothing on disk, sends in the calling thread."""
    return apprise.AppriseAsset(storage_mode="memory", async_mode=False, app_id="license-dashboard")


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


# ------------------------------------------------------------------------------------------------ the delivery queue


@dataclass
class _Job:
    """One notification to one channel, with the tries made so far."""

    notification: Notification
    url: str
    channel: str
    tries: int = 0


class Deliveries:
    """A queue that delivers notifications through apprise on worker threads, retrying failed channels with back-off."""

    def __init__(
        self,
        on_record: Callable[[DeliveryRecord], None] | None = None,
        *,
        tries: int = 5,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if tries < 1 or workers < 1:
            raise ValueError("tries and workers must be at least 1")
        if first_backoff <= 0 or max_backoff < first_backoff:
            raise ValueError("need 0 < first_backoff <= max_backoff")
        self._on_record = on_record
        self._tries = tries
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._workers = workers
        self._clock = clock
        self._ready: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # One condition guards the retry heap, the count of unfinished jobs and the run state.
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Job]] = []
        self._order = itertools.count()  # breaks ties between equal due times, so jobs are never compared
        self._pending = 0
        self._dropped = 0
        self._started = False
        self._stopping = False
        self._recent: deque[DeliveryRecord] = deque(maxlen=RECENT_KEPT)
        self._recent_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker threads and the retry timer (once, and not after stop; other calls do nothing)."""
        with self._cond:
            if self._started or self._stopping:
                return
            self._started = True
        # apprise loads its plugins on first use; do it here, once, rather than in several workers at the same time.
        _probe("json://localhost")
        self._threads = [threading.Thread(target=self._timer, name="alert-delivery-timer", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"alert-delivery-{n}", daemon=True) for n in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers and the timer; notifications not yet delivered are dropped with a log line."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            waiting = [job for _, _, job in self._due]
            self._due.clear()
            self._cond.notify_all()
        for job in waiting:
            self._drop(job)
        for _ in range(self._workers):
            self._ready.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [thread.name for thread in self._threads if thread.is_alive()]
        if not self._threads:
            # Never started: whatever was sent is still in the queue, behind no worker.
            while not self._ready.empty():
                if (queued := self._ready.get_nowait()) is not None:
                    self._drop(queued)
        with self._cond:
            dropped = self._dropped
        if dropped:
            log.warning("alert deliveries stopped: %d undelivered notification(s) dropped", dropped)
        if busy:
            log.warning("alert deliveries stopped with a try still running in %s", ", ".join(busy))

    def send(self, notification: Notification) -> None:
        """Queue one delivery job per URL of `notification`; never blocks."""
        for url in notification.urls:
            job = _Job(notification, url, redact(url))
            with self._cond:
                if self._stopping:
                    log.warning(
                        "alert deliveries are stopped: %s %s to %s dropped", notification.event, notification.key, job.channel
                    )
                    continue
                self._pending += 1
            self._ready.put(job)

    def recent(self, limit: int = 50) -> list[DeliveryRecord]:
        """Return the latest delivery records, newest first."""
        with self._recent_lock:
            return list(itertools.islice(reversed(self._recent), max(0, limit)))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Return True once nothing is queued, being tried or waiting for a retry; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    # -------------------------------------------------------------------------------------------- the threads

    def _timer(self) -> None:
        """Hand each failed job back to the workers when its back-off has passed."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    self._ready.put(heapq.heappop(self._due)[2])
                self._cond.wait(self._due[0][0] - now if self._due else None)

    def _work(self) -> None:
        """Try jobs until stopped; nothing a job does ends the thread."""
        while (job := self._ready.get()) is not None:
            try:
                with self._cond:
                    stopping = self._stopping
                if stopping:
                    self._drop(job)
                else:
                    self._try(job)
            except Exception:
                # Only a bug here gets this far (a try's own failures are records): keep the thread, lose the job.
                log.exception("alert delivery of %s to %s failed unexpectedly", job.notification.key, job.channel)
                self._finish()

    def _try(self, job: _Job) -> None:
        """Make one try of `job`, then record it and finish the job or schedule its retry."""
        job.tries += 1
        ok, error, permanent = self._deliver(job)
        n = job.notification
        at = self._clock()
        if ok:
            log.info("alert %s %s delivered to %s (try %d)", n.event, n.key, job.channel, job.tries)
            self._record(DeliveryRecord(n.key, n.event, job.channel, True, job.tries, None, at))
            self._finish()
        elif permanent or job.tries >= self._tries:
            log.error(
                "alert %s %s not delivered to %s, gave up after %d tries: %s", n.event, n.key, job.channel, job.tries, error
            )
            self._record(DeliveryRecord(n.key, n.event, job.channel, False, job.tries, f"{error}; gave up", at))
            self._finish()
        else:
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
            with self._cond:
                if self._stopping:
                    self._dropped += 1
                    self._pending -= 1
                    self._cond.notify_all()
                    return
                heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), job))
                self._cond.notify_all()

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

    def _finish(self) -> None:
        """Count one job as done, waking wait_idle."""
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def _drop(self, job: _Job) -> None:
        """Give up `job` because the queue is stopping."""
        log.info(
            "alert %s %s to %s dropped at stop after %d tries",
            job.notification.event,
            job.notification.key,
            job.channel,
            job.tries,
        )
        with self._cond:
            self._dropped += 1
            self._pending -= 1
            self._cond.notify_all()
