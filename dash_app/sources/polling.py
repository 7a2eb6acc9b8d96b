"""Poll license servers with their vendors' status commands (lmstat, rlmstat), many at once, and diff each poll in.

One scheduler thread starts a round of polls of every server each `poll_seconds` on a pool of worker threads, and
waits for the round to end before the next, so a server is never polled twice at once. A poll runs the command in a
process group of its own with a timeout of the interval, reads at most `max_bytes` of its output, parses it, and
hands the checkouts of the features shown whole (wholeness.py) to that server's ObservedCheckouts. A failed poll
(non-zero exit, timeout, too much output, an unreachable server, output that is no status report) changes nothing in
the pool: the server is marked down, and the next good poll is diffed against the last good one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass

from dash_app.background import BackgroundThread
from dash_app.licenses.pool import LicensePool
from dash_app.sources.command import CommandTimeout, OutputTooLarge, run_bounded
from dash_app.sources.errors import (
    CANNOT_RUN,
    CRASHED,
    INCOMPLETE,
    OUTPUT_UNREADABLE,
    SERVER_DOWN,
    TIMEOUT,
    SourceError,
    exit_status,
)
from dash_app.sources.health import SourceHealth
from dash_app.sources.observed import ObservedCheckouts
from dash_app.sources.status import StatusReport, UnparsableOutput
from dash_app.sources.wholeness import DOWN, Verdict, Wholeness

log = logging.getLogger(__name__)

MAX_WORKERS = 16  # polls at once; a poll mostly waits for the server, so threads are cheap here
MAX_OUTPUT_BYTES = 32 << 20  # --poll-max-bytes' default: an lmstat of thousands of checkouts is a few MB
CONFIRM_POLLS = 3  # --poll-confirm's default


@dataclass(frozen=True)
class PollKind:
    """One kind of polled server: its name, the command that asks it, and the parser of the answer."""

    kind: str  # "lmstat" or "rlmstat": also the first part of its borrow ids and its sessions' source
    command: Callable[[str, str], list[str]]  # (utility path, PORT@HOST) -> argv
    parse: Callable[[str, float], StatusReport]  # (output, poll time) -> report; raises UnparsableOutput
    stdin: Callable[[str], bytes] | None = None  # PORT@HOST -> what the command reads on its standard input (DSLS)


class ServerPoll:
    """One server: the command to run, its last good poll (as pool borrows) and its health."""

    def __init__(
        self,
        kind: PollKind,
        utility: str,
        server: str,
        pool: LicensePool,
        clock: Callable[[], float],
        confirm: int = CONFIRM_POLLS,
        max_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        self.kind, self.utility, self.server, self.pool, self.clock = kind, utility, server, pool, clock
        self.max_bytes = max_bytes
        self.observed = ObservedCheckouts(pool, kind.kind, server)
        self.wholeness = Wholeness(confirm)
        self._restoring_polls = 0  # polls since the start that met borrows kept from before it
        self.health = SourceHealth(kind.kind, server)
        self.features: dict[str, dict[str, object]] = {}  # feature -> {"tool", "issued", "in_use", "expiry", "vendor", ...}

    def poll(self, timeout: float) -> bool:
        """Run one poll; return True when it was good (the pool then matches the server, for the features shown whole)."""
        started = self.clock()
        self.health.count(polls=1)
        try:
            report = self._ask(timeout, started)
        except PollFailed as failed:
            self.health.failed(started, failed.error)
            log.warning("%s %s: poll failed: %s", self.kind.kind, self.server, failed)
            return False
        known = {name: vendor if isinstance(vendor := info.get("vendor"), str) else None for name, info in self.features.items()}
        verdict = self.wholeness.judge(report, known, self.observed.held_features())
        applied = self.observed.apply(
            report.checkouts, started, verdict.applied if verdict.kept else None, self._endable(verdict)
        )
        self.health.count(borrows=applied.borrows, returns=applied.returns, malformed=applied.malformed + report.malformed)
        for feature in report.features.values():
            tool = self.pool.tool_for_feature(feature.name)
            if feature.issued is not None:
                self.pool.observe_total(tool, feature.issued, self.server)
            if feature.name in verdict.applied:  # a section cut short may have lost reservation or queue lines too
                self.pool.observe_queue(tool, feature.reserved, feature.queued, self.server)
            self.features[feature.name] = {
                "tool": tool,
                "vendor": feature.vendor,
                "issued": feature.issued,
                "in_use": feature.in_use,
                "reserved": feature.reserved,
                "queued": feature.queued,
                "expiry": feature.expiry,
                "error": feature.error,
                **({"tokens": feature.tokens} if feature.tokens is not None else {}),
            }
            if feature.expiry is not None:
                self.pool.observe_expiry(tool, feature.expiry, self.server)
        listed = set(self.features)
        good = self._judged(verdict, report, started)
        if not listed <= self.features.keys():
            # A feature gone `confirm` answers in a row: what the server said of it (total, reservations) stops counting.
            self.pool.observe_listed(self.server, {str(info["tool"]) for info in self.features.values()})
        return good

    def _endable(self, verdict: Verdict) -> set[str] | None:
        """Return the tools whose borrows from before a restart this poll may end (None: all of them)."""
        if not self.observed.restoring:
            return None
        self._restoring_polls += 1
        if self._restoring_polls >= self.wholeness.confirm and not verdict.kept:
            return None  # `confirm` answers without their features: those ended while the dashboard was down
        tool = self.pool.tool_for_feature
        return {tool(name) for name in verdict.applied} - {tool(name) for name in verdict.kept}

    def _judged(self, verdict: Verdict, report: StatusReport, started: float) -> bool:
        """Note each feature's state and the source's health from the verdict; return False if no feature was usable."""
        for name, (state, reason) in verdict.states.items():
            info = self.features.get(name)
            if info is None:
                continue  # a feature of checkouts with no section (RLM usage without a pool): nothing more to say
            if name in verdict.applied and name not in report.features:
                del self.features[name]  # missing from `confirm` answers in a row: no longer one of the server's features
                continue
            info["state"], info["reason"] = state, reason
        self.health.extra = {"features": dict(sorted(self.features.items())), "open_checkouts": self.observed.held}
        if verdict.down:
            kind = SERVER_DOWN if all(state == DOWN for state, _ in verdict.states.values()) else INCOMPLETE
            self.health.failed(started, SourceError(kind, self.server, "; ".join(verdict.reasons)))
            return False
        if verdict.reasons:
            self.health.degraded(started, SourceError(INCOMPLETE, self.server, "; ".join(verdict.reasons)))
        else:
            self.health.ok(started)
        return True

    def _ask(self, timeout: float, now: float) -> StatusReport:
        argv = self.kind.command(self.utility, self.server)
        feed = None if self.kind.stdin is None else self.kind.stdin(self.server)
        try:
            done = run_bounded(argv, timeout, self.max_bytes, feed)
        except CommandTimeout:
            raise PollFailed(SourceError(TIMEOUT, self.server, f"no answer within {timeout:g} s")) from None
        except OutputTooLarge:
            detail = f"output larger than {self.max_bytes} bytes"
            raise PollFailed(SourceError(OUTPUT_UNREADABLE, self.server, detail)) from None
        except OSError as exc:
            raise PollFailed(SourceError(CANNOT_RUN, self.server, f"{argv[0]}: {exc.strerror or exc}")) from None
        output = str(done.stdout, "utf-8", "replace")
        if done.returncode != 0:
            last = _last_line(output) or _last_line(done.stderr.decode("utf-8", "replace"))
            raise PollFailed(SourceError(exit_status(done.returncode), self.server, last))
        try:
            report = self.kind.parse(output, now)
        except UnparsableOutput as exc:
            raise PollFailed(SourceError(OUTPUT_UNREADABLE, self.server, str(exc))) from None
        if not report.up:
            raise PollFailed(SourceError(SERVER_DOWN, self.server, report.error or ""))
        return report


class PollFailed(Exception):
    """A poll that tells nothing about what is held: the error's kind, and one line of detail for admins."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(error.text)
        self.error = error


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class ServerPoller:
    """A background service polling every configured server of every kind each `poll_seconds`."""

    def __init__(self, servers: Sequence[ServerPoll], poll_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.servers = list(servers)
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._thread = BackgroundThread(self._run, "server-poller", join_seconds=poll_seconds + 5)
        self._executor: ThreadPoolExecutor | None = None
        self._rounds = 0
        self._cond = threading.Condition()
        # Submitting a poll and closing the executor take turns: a poll is never submitted to a shut executor.
        self._submitting = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start the scheduler thread; the first round of polls starts at once."""
        if not self._thread.started and self.servers:
            self._executor = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(self.servers)), thread_name_prefix="poll")
            self._thread.start()

    def stop(self) -> None:
        """Stop polling; polls under way finish (each within its timeout), none starts after this."""
        with self._submitting:
            self._closed = True
        self._thread.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        stopping = self._thread.stopping
        while not stopping.is_set():
            began = time.monotonic()
            # A round waits for all its polls (each within its timeout), so a server is never polled twice at once.
            futures = []
            for server in self.servers:
                future = self._submit(server)
                if future is None:
                    return  # stopped while this round was being submitted
                futures.append(future)
            for future in futures:
                try:
                    future.result()
                except CancelledError:
                    return  # stop() cancelled the polls not yet begun
            with self._cond:
                self._rounds += 1
                self._cond.notify_all()
            stopping.wait(max(0.0, self.poll_seconds - (time.monotonic() - began)))

    def _submit(self, server: ServerPoll) -> Future[None] | None:
        """Submit one poll of `server`; return None once the poller is stopped."""
        assert self._executor is not None

        def run() -> None:
            try:
                server.poll(timeout=self.poll_seconds)
            except Exception as exc:  # noqa: BLE001 - one server's surprise must not stop the others or this thread
                log.exception("%s %s: poll crashed", server.kind.kind, server.server)
                server.health.failed(self.clock(), SourceError(CRASHED, server.server, f"{type(exc).__name__}: {exc}"))

        with self._submitting:
            return None if self._closed else self._executor.submit(run)

    def wait_rounds(self, rounds: int = 1, timeout: float = 30) -> bool:
        """Block until `rounds` more full rounds of polls have finished; return True if they did (tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._rounds + rounds
            while self._rounds < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def health(self) -> list[SourceHealth]:
        """Return every server's health record."""
        return [server.health for server in self.servers]
