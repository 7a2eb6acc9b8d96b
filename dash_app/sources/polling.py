"""Poll license servers with their vendors' status commands (lmstat, rlmstat), many at once, and diff each poll in.

One scheduler thread starts a round of polls of every server each `poll_seconds` on a pool of worker threads, and
waits for the round to end before the next, so a server is never polled twice at once. A poll runs the command with
a timeout of the interval, parses its output, and hands the checkouts to that server's ObservedCheckouts. A failed
poll (non-zero exit, timeout, an unreachable server, output that is no status report) changes nothing in the pool:
the server is marked down, and the next good poll is diffed against the last good one.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dash_app.background import BackgroundThread
from dash_app.licenses.pool import LicensePool
from dash_app.sources.errors import CANNOT_RUN, CRASHED, OUTPUT_UNREADABLE, SERVER_DOWN, TIMEOUT, SourceError, exit_status
from dash_app.sources.health import SourceHealth
from dash_app.sources.observed import ObservedCheckouts
from dash_app.sources.status import StatusReport, UnparsableOutput

log = logging.getLogger(__name__)

MAX_WORKERS = 16  # polls at once; a poll mostly waits for the server, so threads are cheap here
MAX_OUTPUT_BYTES = 64 << 20  # an lmstat of thousands of checkouts is a few MB; more is not a status report


@dataclass(frozen=True)
class PollKind:
    """One kind of polled server: its name, the command that asks it, and the parser of the answer."""

    kind: str  # "lmstat" or "rlmstat": also the first part of its borrow ids and its sessions' source
    command: Callable[[str, str], list[str]]  # (utility path, PORT@HOST) -> argv
    parse: Callable[[str, float], StatusReport]  # (output, poll time) -> report; raises UnparsableOutput
    stdin: Callable[[str], bytes] | None = None  # PORT@HOST -> what the command reads on its standard input (DSLS)


class ServerPoll:
    """One server: the command to run, its last good poll (as pool borrows) and its health."""

    def __init__(self, kind: PollKind, utility: str, server: str, pool: LicensePool, clock: Callable[[], float]) -> None:
        self.kind, self.utility, self.server, self.pool, self.clock = kind, utility, server, pool, clock
        self.observed = ObservedCheckouts(pool, kind.kind, server)
        self.health = SourceHealth(kind.kind, server)
        self.features: dict[str, dict[str, object]] = {}  # feature -> {"tool", "issued", "in_use", "expiry", "vendor"}

    def poll(self, timeout: float) -> bool:
        """Run one poll; return True when it was good (the pool then matches the server)."""
        started = self.clock()
        self.health.count(polls=1)
        try:
            report = self._ask(timeout, started)
        except PollFailed as failed:
            self.health.failed(started, failed.error)
            log.warning("%s %s: poll failed: %s", self.kind.kind, self.server, failed)
            return False
        applied = self.observed.apply(report.checkouts, started)
        self.health.count(borrows=applied.borrows, returns=applied.returns, malformed=applied.malformed + report.malformed)
        for feature in report.features.values():
            tool = self.pool.tool_for_feature(feature.name)
            if feature.issued is not None:
                self.pool.observe_total(tool, feature.issued, self.server)
            self.features[feature.name] = {
                "tool": tool,
                "vendor": feature.vendor,
                "issued": feature.issued,
                "in_use": feature.in_use,
                "expiry": feature.expiry,
                "error": feature.error,
            }
            if feature.expiry is not None:
                self.pool.observe_expiry(tool, feature.expiry, self.server)
        self.health.extra = {"features": dict(sorted(self.features.items())), "open_checkouts": self.observed.held}
        self.health.ok(started)
        return True

    def _ask(self, timeout: float, now: float) -> StatusReport:
        argv = self.kind.command(self.utility, self.server)
        feed = None if self.kind.stdin is None else self.kind.stdin(self.server)
        try:
            stdin = subprocess.DEVNULL if feed is None else None  # with `input`, run() opens the pipe itself
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=stdin, input=feed)
        except subprocess.TimeoutExpired:
            raise PollFailed(SourceError(TIMEOUT, self.server, f"no answer within {timeout:g} s")) from None
        except OSError as exc:
            raise PollFailed(SourceError(CANNOT_RUN, self.server, f"{argv[0]}: {exc.strerror or exc}")) from None
        output = done.stdout[:MAX_OUTPUT_BYTES].decode("utf-8", "replace")
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

    def start(self) -> None:
        """Start the scheduler thread; the first round of polls starts at once."""
        if not self._thread.started and self.servers:
            self._executor = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(self.servers)), thread_name_prefix="poll")
            self._thread.start()

    def stop(self) -> None:
        """Stop polling; polls under way finish (each within its timeout)."""
        self._thread.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        stopping = self._thread.stopping
        while not stopping.is_set():
            began = time.monotonic()
            # A round waits for all its polls (each within its timeout), so a server is never polled twice at once.
            futures = [self._submit(server) for server in self.servers]
            for future in futures:
                future.result()
            with self._cond:
                self._rounds += 1
                self._cond.notify_all()
            stopping.wait(max(0.0, self.poll_seconds - (time.monotonic() - began)))

    def _submit(self, server: ServerPoll) -> Future[None]:
        assert self._executor is not None

        def run() -> None:
            try:
                server.poll(timeout=self.poll_seconds)
            except Exception as exc:  # noqa: BLE001 - one server's surprise must not stop the others or this thread
                log.exception("%s %s: poll crashed", server.kind.kind, server.server)
                server.health.failed(self.clock(), SourceError(CRASHED, server.server, f"{type(exc).__name__}: {exc}"))

        return self._executor.submit(run)

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
