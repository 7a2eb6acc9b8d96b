"""The reports' service thread: sends each report once per report and period, whatever the processes or restarts.

Each pass (every PASS_SECONDS) looks at each report's latest due time: a period not yet sent is claimed in the
database (reports/storage.py), its figures are gathered, and its message is delivered to each channel not yet
delivered to, each try bounded by the alert delivery's deadline. A failed try is retried after the alert delivery's
back-off (doubling from 1 s to at most 60 s), for as long as the period is the report's latest. A report due before it
was first configured is never sent; of several periods missed while no process ran, only the latest is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import apprise
from apprise.attachment.memory import AttachMemory

from dash_app.alerts.deadlines import DeadlinePassed, TryGuard, add_audit_hook, run_bounded
from dash_app.alerts.delivery import Backoff, notify_once
from dash_app.alerts.redaction import apprise_asset, redact
from dash_app.alerts.rules import DEFAULT_DELIVERY_DEADLINE_SECONDS
from dash_app.background import BackgroundThread
from dash_app.reports.content import Figures, Message, compose
from dash_app.reports.rules import ReportRule
from dash_app.reports.schedule import last_due, next_due, period_of
from dash_app.reports.storage import Claim, ReportStorage
from dash_app.timeutil import iso_second, iso_utc

log = logging.getLogger(__name__)

PASS_SECONDS = 1.0  # how often the thread looks for a report due: the delay between a due time and the send


class ReportScheduler:
    """Sends `reports` when due, claiming each period in `storage`; `figures` gathers a period's figures for a report."""

    def __init__(
        self,
        reports: tuple[ReportRule, ...],
        storage: ReportStorage,
        figures: Callable[[ReportRule, float, float], Figures],
        link: str,
        *,
        backoff: Backoff | None = None,
        deadline: float = DEFAULT_DELIVERY_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.time,
        pass_seconds: float = PASS_SECONDS,
    ) -> None:
        self.reports = reports
        self._storage = storage
        self._figures = figures
        self._link = link
        self._backoff = backoff or Backoff()
        self._deadline = deadline
        self._clock = clock
        self._pass_seconds = pass_seconds
        self._thread = BackgroundThread(self._loop, "reports")
        self._since: dict[str, float] = {}
        self._sent: set[tuple[str, float]] = set()  # periods known to be sent: never looked at again
        self._retry_at: dict[tuple[str, float], float] = {}  # time.monotonic() before which a period is not tried again
        self._guard: TryGuard | None = None
        self._lock = threading.Lock()
        self._error: str | None = None  # the last pass's failure (the database down, ...), for GET /reports
        self._last_pass: float | None = None  # when the last pass ended that went through

    def start(self) -> None:
        """Start the thread."""
        add_audit_hook()  # each try's connections are cut at its deadline (alerts/deadlines.py)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, cutting a try in flight; let go of this process's unsent claims so the next process may send."""
        self._thread.stopping.set()
        with self._lock:
            guard = self._guard
        if guard is not None:
            guard.cut()
        self._thread.stop()
        if self._thread.started:
            try:
                self._storage.release()
            except Exception as exc:  # the database down: the claims run out by themselves
                log.warning("reports: could not release this process's claims at stop: %s", exc)

    def _loop(self) -> None:
        while not self._thread.stopping.is_set():
            try:
                self.run_once()
                self._error, self._last_pass = None, self._clock()
            except Exception as exc:
                # The database down or an analysis failing: logged, shown in GET /reports, tried again next pass.
                log.exception("reports: a pass failed")
                self._error = f"{type(exc).__name__}: {exc}"
            self._thread.stopping.wait(self._pass_seconds)

    def run_once(self) -> None:
        """Send every report whose latest period is due and not sent (one pass of the thread)."""
        now = self._clock()
        if len(self._since) < len(self.reports):
            self._since = self._storage.since([report.name for report in self.reports], now)
        for report in self.reports:
            if self._thread.stopping.is_set():
                return
            day, due = last_due(report, now)
            if due < self._since.get(report.name, now):
                continue  # due before the report was configured
            start, end = period_of(report, day)
            key = (report.name, start)
            if key in self._sent:
                continue
            claim = self._storage.claim(report.name, start, end, due, now)
            if claim is None:
                if self._storage.sent(report.name, start):
                    self._sent.add(key)
                    self._retry_at.pop(key, None)
                continue  # sent, or another process holds it
            if time.monotonic() < self._retry_at.get(key, 0.0):
                continue  # the claim is renewed; the next try waits for its back-off
            self._send(report, key, claim, (start, end, due))

    def _send(self, report: ReportRule, key: tuple[str, float], claim: Claim, period: tuple[float, float, float]) -> None:
        """Make one try of a claimed period (start, end, due): deliver to each channel not yet delivered to, record it."""
        start, end, due = period
        delivered = set(claim.delivered)
        errors: list[str] = []
        try:
            message = compose(report, self._figures(report, start, end), self._link)
        except Exception as exc:
            log.exception("reports: the figures of %s could not be gathered", report.name)
            message = None
            errors.append(f"figures: {type(exc).__name__}: {exc}")
        for n, url in enumerate(report.to):
            if message is None or n in delivered or self._thread.stopping.is_set():
                continue
            # Renewed before each channel (gathering the figures may have taken long): a claim whose lease ran out
            # meanwhile may have been taken over by another process, which then sends; this one must not.
            if self._storage.claim(report.name, start, end, due, self._clock()) is None:
                log.warning("report %s: its claim ran out and was taken over; this process leaves it", report.name)
                return
            channel = redact(url)
            ok, error = self._try(url, channel, message)
            if ok:
                delivered.add(n)
            else:
                errors.append(f"{channel}: {error}")
        tries = claim.tries + 1
        sent = len(delivered) == len(report.to)
        now = self._clock()
        error = "; ".join(errors) or None
        held = self._storage.record(report.name, start, Claim(frozenset(delivered), tries), error, now, sent)
        dates = f"{iso_second(start)} to {iso_second(end)}"
        if sent and held:
            self._sent.add(key)
            self._retry_at.pop(key, None)
            log.info("report %s for %s sent (try %d)", report.name, dates, tries)
        elif not held:
            log.warning("report %s for %s: another process took it over", report.name, dates)
        else:
            delay = self._backoff.delay(tries)
            self._retry_at[key] = time.monotonic() + delay
            log.warning("report %s for %s not sent (try %d), retrying in %gs: %s", report.name, dates, tries, delay, error)

    def _try(self, url: str, channel: str, message: Message) -> tuple[bool, str | None]:
        """Deliver `message` to `url` once under the deadline; return (delivered, why not)."""
        guard = TryGuard()
        with self._lock:
            self._guard = guard

        def attempt() -> tuple[bool, str | None, bool]:
            attach = apprise.AppriseAttachment(asset=apprise_asset())
            for name, text in message.attachments:
                attach.add(AttachMemory(content=text, name=name, mimetype="text/csv"))
            return notify_once(url, channel, message.title, message.html, apprise.NotifyFormat.HTML, attach or None)

        try:
            outcome = run_bounded(attempt, guard, self._deadline, self._thread.stopping.is_set, channel)
        except DeadlinePassed:
            return False, f"no answer within the delivery deadline of {self._deadline:g}s"
        finally:
            with self._lock:
                self._guard = None
            guard.close()
        if outcome is None:
            return False, "the try ended without an answer"
        return outcome[0], outcome[1]

    def status(self) -> list[dict[str, Any]]:
        """Return each report's state for GET /reports: its next run, when it was last sent, its last error."""
        now = self._clock()
        latest = self._storage.latest()
        last_sent = self._storage.last_sent()
        answer = []
        for report in self.reports:
            run = latest.get(report.name)
            pending = run is not None and run.sent_at is None
            retry = self._retry_at.get((report.name, run.period_start)) if pending and run is not None else None
            next_run = next_due(report, now)[1]
            if pending:
                # The latest period is still to be sent: its next try (now, when no back-off is running here).
                next_run = min(next_run, max(now, now + (retry - time.monotonic()) if retry is not None else now))
            answer.append(
                {
                    "name": report.name,
                    "every": report.every,
                    "at": report.at.isoformat(),
                    "tz": report.tz,
                    "period": report.period,
                    "content": list(report.content),
                    "to": [redact(url) for url in report.to],
                    "next_run": iso_second(next_run),
                    "last_sent": iso_second(last_sent[report.name]) if report.name in last_sent else None,
                    "last_period": None
                    if run is None
                    else {"from": iso_second(run.period_start), "to": iso_second(run.period_end)},
                    "state": None
                    if run is None
                    else ("sent" if run.sent_at is not None else "retrying" if run.tries else "sending"),
                    "tries": None if run is None else run.tries,
                    "last_error": None if run is None else run.error,
                }
            )
        return answer

    def health(self) -> dict[str, Any]:
        """Return the thread's own state for GET /reports: when its last good pass ended, and the last pass's failure."""
        return {"last_pass": None if self._last_pass is None else iso_utc(self._last_pass), "error": self._error}
