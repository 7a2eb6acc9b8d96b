"""The pool of a deployment on Redis (--redis): decisions in the ledger, counts read from this process's mirror.

Every borrow, return and observed event is decided by the ledger's script in Redis, which appends its events to the
shared log. This process's counts and open borrows change only when its log follower applies those events (`apply`),
exactly as in every other process; a caller waits until its own entry is applied, so it reads its own writes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import redis

from dash_app.eventlog.ledger import NotLeader, OpenBorrow, RedisLedger, Snapshot, open_borrow, ts_text
from dash_app.eventlog.progress import LogProgress
from dash_app.events import BORROW, RETURN, SOURCE_FLEXLM, Event, source_of
from dash_app.licenses.pool import (
    EXHAUSTED,
    MAX_OVERAGE,
    UNKNOWN_TOOL,
    Borrow,
    BorrowDenied,
    LicensePool,
    PoolUnavailable,
    UnknownBorrow,
)
from dash_app.store.database import entry_key

if TYPE_CHECKING:
    from dash_app.licenses.inventory import ToolSpec
    from dash_app.recording import EventRecorder

log = logging.getLogger(__name__)

BATCH_LIMIT = 5000  # commands per script call: a backfill's batch is sent in steps this size
RETRY_SECONDS = 0.2  # a source's batch is sent again after this while Redis is away and this process still leads
# Longest a caller waits to see its own write in this process; a borrow or return not seen by then answers 503.
APPLIED_TIMEOUT = 2.0


def _borrow_of(b: OpenBorrow) -> Borrow:
    """Return the Borrow of a borrow as the ledger keeps it."""
    return Borrow(b.id, b.tool, b.user, b.borrowed_at, b.is_overage, b.host, b.version)


class _Batch:
    """A source's commands held back by recording_batch, with what they do to the open borrows meanwhile."""

    __slots__ = ("commands", "borrowed", "returned")

    def __init__(self) -> None:
        self.commands: list[list[Any]] = []
        self.borrowed: set[str] = set()
        self.returned: set[str] = set()


class SharedLicensePool(LicensePool):
    """A LicensePool whose rules are applied in Redis, so they hold across every process and host."""

    def __init__(
        self,
        specs: Mapping[str, ToolSpec],
        recorder: EventRecorder,
        ledger: RedisLedger,
        clock: Callable[[], float] = time.time,
        series_of: Callable[[str], str] | None = None,
        progress: LogProgress | None = None,
        fence: Callable[[], str | None] = lambda: None,
    ) -> None:
        super().__init__(specs, recorder, store=None, clock=clock, series_of=series_of)
        self.ledger = ledger
        # This process's place in the log, which its follower moves on; without one (no follower) no write waits.
        self._follows = progress is not None
        self.progress = progress or LogProgress()
        self.fence = fence  # Lease.fence: the token a source's batch is fenced with; "" for unfenced (a backfill)
        self.seeding = ""  # which filling of the pool in Redis this copy comes from (Snapshot.seeding)
        self._snapshot_at = (0, 0)  # the entry the last snapshot taken is at (its key): it holds those up to it
        self._held = threading.local()
        self._in_doubt: list[str] = []  # borrow ids whose outcome a lost answer hid (see settle_doubts)

    # ------------------------------------------------------------- the mirror

    def load(self, snapshot: Snapshot) -> None:
        """Take the open borrows and charges of a ledger snapshot as this process's starting state."""
        with self._lock:
            self.seeding = snapshot.seeding
            self._snapshot_at = entry_key(snapshot.last_id)
            self._active.clear()
            self._borrowed = {tool: 0 for tool in self._specs}
            for b in snapshot.active:
                self._active[b.id] = _borrow_of(b)
                key = self._key(b.tool)
                self._borrowed[key] = self._borrowed.get(key, 0) + 1
                self._note_tool(key)
            self._charges = {tool: 0 for tool in self._specs} | snapshot.charges

    @property
    def last_sent(self) -> str:
        """The last log entry this process's own calls added."""
        return self.progress.sent

    def apply_entry(self, entry_id: str, events: Sequence[Event]) -> None:
        """Apply the log entry `entry_id` unless the snapshot this copy was loaded from already holds it."""
        if entry_key(entry_id) > self._snapshot_at:
            self.apply(events)

    def apply(self, events: Sequence[Event]) -> None:
        """Change the counts as the log's events say (the follower calls this for every entry, in order)."""
        with self._lock:
            for e in events:
                # Every event of the log names its tool; borrows and returns their id, borrows their user.
                tool, borrow_id = cast(str, e.tool), cast(str, e.borrow_id)
                if e.kind == BORROW:
                    if borrow_id in self._active:
                        continue
                    key = self._key(tool)
                    self._active[borrow_id] = Borrow.of_event(e)
                    self._borrowed[key] = self._borrowed.get(key, 0) + 1
                    if e.is_overage:
                        self._charges[tool] = self._charges.get(tool, 0) + 1
                    self._note_tool(key)
                elif e.kind == RETURN:
                    borrow = self._active.pop(borrow_id, None)
                    if borrow is not None:
                        key = self._key(borrow.tool)
                        self._borrowed[key] = self._borrowed.get(key, 0) - 1
                elif e.reason != UNKNOWN_TOOL:
                    self._note_tool(self._key(tool))

    def load_observed(self, doc: Mapping[str, Any]) -> None:
        """Take what the leader's polls say of issued counts, expiry dates, reservations and queues (observed()'s shape)."""
        with self._lock:
            self._facts.load(doc)
            for key in self._facts.tools():
                self._note_tool(key)

    def observed(self) -> dict[str, Any]:
        """Return what this process's polls say of the tools, as load_observed takes it."""
        with self._lock:
            return self._facts.as_dict()

    def ledger_rows(self, borrows: Iterable[Borrow]) -> list[tuple[Any, ...]]:
        """Return open borrows as RedisLedger.seed_once takes them: with the name each is counted under."""
        return [(b.id, self._key(b.tool), b.tool, b.user, b.borrowed_at, b.is_overage, b.host, b.version) for b in borrows]

    def open_state(self) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
        """Return this process's open borrows (as RedisLedger.seed_once takes them) and overage charges."""
        with self._lock:
            return self.ledger_rows(self._active.values()), {tool: n for tool, n in self._charges.items() if n}

    # ----------------------------------------------------------- decisions

    def _send(
        self,
        commands: list[list[Any]],
        fence: str | None = None,
        once: str | None = None,
        wait: bool = True,
        acknowledged: bool = False,
    ) -> list[str]:
        """Have the ledger decide `commands`, wait until this process applied them (unless not `wait`), return answers.

        With `acknowledged` (a borrow or return the caller is told of), the answer counts only once this process has
        applied its entry: then, should Redis lose it, this process hands it back (eventlog.recovery). If it cannot
        (Redis failed first, or the follower lags past APPLIED_TIMEOUT), PoolUnavailable: the caller is told 503.
        """
        epoch = self.progress.epoch  # read before the entry exists: a failure after this one may have lost it
        try:
            entry, answers = self.ledger.apply(commands, fence, once, self.progress.known())
        except NotLeader:
            raise PoolUnavailable("this process no longer runs the sources") from None
        except redis.RedisError as exc:
            raise PoolUnavailable(f"the shared pool (Redis) cannot be reached: {type(exc).__name__}: {exc}") from None
        if entry is not None:
            self.progress.mark_sent(entry)
            if wait and self._follows and not self.progress.wait_applied(entry, APPLIED_TIMEOUT, epoch) and acknowledged:
                raise PoolUnavailable("the shared pool (Redis) failed before this write was kept; it may not have been applied")
        return answers

    def _decision_fence(self) -> str | None:
        """Return the fence of a decided borrow or return: the lease's token inside as_source(), else none."""
        if not getattr(self._held, "source", False):
            return None
        fence = self.fence()
        if fence is None:
            raise PoolUnavailable("this process no longer runs the sources")
        return fence

    @contextmanager
    def as_source(self) -> Iterator[None]:
        """Fence this thread's borrows and returns with the lease: a source that lost it can decide nothing more."""
        self._held.source = True
        try:
            yield
        finally:
            self._held.source = False

    def _grant(self, tool: str, user: str, at: float | None, host: str | None, version: str | None) -> Borrow:
        """Decide a borrow in Redis; raise BorrowDenied, or PoolUnavailable."""
        self._send_held()  # a source's earlier events go first
        ts = self.clock() if at is None else at
        fence = self._decision_fence()
        spec = self._specs.get(tool)
        if spec is None:
            self._send([["f", tool, user, ts_text(ts), UNKNOWN_TOOL, None]], fence)
            raise BorrowDenied(UNKNOWN_TOOL, f"no tool named {tool!r} in the pool")
        borrow_id = uuid.uuid4().hex
        command = ["b", tool, tool, user, ts_text(ts), borrow_id, host, version, spec.total, spec.commit_qty, spec.max_overage]
        try:
            (answer,) = self._send([command], fence, once=borrow_id, acknowledged=True)
        except PoolUnavailable:
            # The script may have run with its answer lost on the way: settled once Redis answers (settle_doubts).
            with self._lock:
                self._in_doubt.append(borrow_id)
            raise
        if answer == EXHAUSTED:
            raise BorrowDenied(EXHAUSTED, f"all {spec.total} licenses of {tool!r} are borrowed")
        if answer == MAX_OVERAGE:
            raise BorrowDenied(MAX_OVERAGE, f"{tool!r} is at its maximum overage of {spec.max_overage}")
        return Borrow(borrow_id, tool, user, ts, answer == "overage", host, version)

    def settle_doubts(self) -> None:
        """Settle the borrows whose caller was told 503: one Redis granted all the same (its answer was lost) is
        returned, and one whose request is still on its way is cancelled, so it is never granted later."""
        with self._lock:
            doubts, self._in_doubt = self._in_doubt, []
        for n, borrow_id in enumerate(doubts):
            try:
                if self.ledger.settle(borrow_id):
                    # Sent from the follower's own thread: waiting for it to apply the entry would only stall it.
                    self._send([["r", borrow_id, ts_text(self.clock())]], wait=False)
                    log.warning("borrow %s was granted while its caller was told 503; returned again", borrow_id)
            except (PoolUnavailable, redis.RedisError):
                with self._lock:
                    self._in_doubt[:0] = doubts[n:]  # settled on a later try
                return

    def return_license(self, borrow_id: str, at: float | None = None) -> Borrow:
        """End an active borrow (in Redis) and return it; raise UnknownBorrow, or PoolUnavailable."""
        self._send_held()
        ts = self.clock() if at is None else at
        (answer,) = self._send([["r", borrow_id, ts_text(ts)]], self._decision_fence(), acknowledged=True)
        if answer == "unknown":
            raise UnknownBorrow(borrow_id)
        return _borrow_of(open_borrow(borrow_id, answer))

    # ------------------------------------------------ observed (the sources)

    @contextmanager
    def recording_batch(self) -> Iterator[None]:
        """Hold back this thread's observed events and send them together when the block ends."""
        if getattr(self._held, "batch", None) is not None:
            yield
            return
        self._held.batch = _Batch()
        try:
            yield
        finally:
            try:
                self._send_held()
            finally:
                self._held.batch = None

    def _send_held(self) -> None:
        batch: _Batch | None = getattr(self._held, "batch", None)
        if batch is None or not batch.commands:
            return
        commands, batch.commands = batch.commands, []
        batch.borrowed.clear()
        batch.returned.clear()
        for start in range(0, len(commands), BATCH_LIMIT):
            self._send_fenced(commands[start : start + BATCH_LIMIT])

    def _send_fenced(self, commands: list[list[Any]]) -> list[str]:
        """Send a source's commands, again and again while Redis is away, for as long as this process leads.

        Each try carries the same batch id, so a try whose answer was lost on the way is not applied twice.
        """
        once = uuid.uuid4().hex
        while True:
            fence = self.fence()
            if fence is None:
                raise NotLeader("this process no longer runs the sources; its successor reads them afresh")
            try:
                return self._send(commands, fence, once)
            except PoolUnavailable:
                time.sleep(RETRY_SECONDS)

    def _observe(self, command: list[Any]) -> str | None:
        batch: _Batch | None = getattr(self._held, "batch", None)
        if batch is not None:
            batch.commands.append(command)
            return None
        return self._send_fenced([command])[0]

    def _record_observed(
        self, tool: str, user: str, at: float, borrow_id: str | None, host: str | None, version: str | None
    ) -> Borrow:
        """Send an observed borrow to the ledger; is_overage follows the pool's rule, decided in Redis."""
        borrow_id = borrow_id or uuid.uuid4().hex
        spec = self._specs.get(tool)
        key = tool if spec is not None else self._key(tool)
        commit = spec.commit_qty if spec is not None else -1
        # A log line's borrow id names its line: read again (after a leader change), it must not count twice.
        from_log = source_of(borrow_id) == SOURCE_FLEXLM
        answer = self._observe(["o", key, tool, user, ts_text(at), borrow_id, host, version, commit, from_log])
        batch: _Batch | None = getattr(self._held, "batch", None)
        if batch is not None:
            batch.borrowed.add(borrow_id)
            batch.returned.discard(borrow_id)
            with self._lock:  # as this process sees it now; the ledger decides when the batch is sent
                over = spec is not None and self._borrowed.get(key, 0) >= commit
        else:
            over = answer == "overage"
        return Borrow(borrow_id, tool, user, at, over, host, version)

    def observe_return(self, borrow_id: str, at: float) -> Borrow:
        """Record the end of a borrow observed elsewhere; raise UnknownBorrow when it is not active."""
        batch: _Batch | None = getattr(self._held, "batch", None)
        if batch is None:
            answer = self._send_fenced([["r", borrow_id, ts_text(at)]])[0]
            if answer == "unknown":
                raise UnknownBorrow(borrow_id)
            return _borrow_of(open_borrow(borrow_id, answer))
        # Queued whatever this process's copy says (it may not have applied the last batch yet): the ledger answers
        # "unknown" for a borrow that is not open. Only one returned earlier in this same batch is surely unknown.
        if borrow_id in batch.returned:
            raise UnknownBorrow(borrow_id)
        batch.commands.append(["r", borrow_id, ts_text(at)])
        batch.returned.add(borrow_id)
        batch.borrowed.discard(borrow_id)
        with self._lock:
            held = self._active.get(borrow_id)
        return held if held is not None else Borrow(borrow_id, "", "", at, False)

    def _record_failure(self, tool: str, user: str, reason: str, at: float, event_id: str | None) -> None:
        """Send an observed denial to the ledger; one with an `event_id` (its log line) counts once, however often read."""
        self._observe(["f", tool, user, ts_text(at), reason, event_id])
