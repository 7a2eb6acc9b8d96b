"""The license pool: borrow and return rules, live counts, charges and status."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from dash_app.events import Event, borrow_event, check_name, failure_event, return_event, source_of
from dash_app.licenses.facts import ServerFacts
from dash_app.timeutil import iso_utc

if TYPE_CHECKING:  # for the annotations only
    from dash_app.licenses.inventory import ToolSpec
    from dash_app.recording import EventRecorder

EXHAUSTED = "exhausted"
MAX_OVERAGE = "max_overage"
UNKNOWN_TOOL = "unknown_tool"


class PoolStore(Protocol):
    """What the pool asks of the store at start (Store): it keeps the inventory, and gives back what was open."""

    def save_tools(self, specs: Mapping[str, ToolSpec]) -> None:
        """Replace the stored inventory with `specs`."""

    def load_open_borrows(self) -> list[tuple[str, str, str, float, int, str | None, str | None]]:
        """Return [(id, tool, user, borrowed_at, is_overage, host, version)] of borrows not yet returned."""

    def load_charges(self) -> dict[str, int]:
        """Return {tool: overage_borrows}."""


class BorrowDenied(Exception):
    """No license can be granted; `reason` is exhausted, max_overage or unknown_tool."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class UnknownBorrow(KeyError):
    """The borrow id is unknown or already returned."""


class PoolUnavailable(Exception):
    """A pool cannot decide now (the shared pool's Redis is unreachable); nothing was granted or returned."""


def check_observed(tool: str, user: str, borrow_id: str | None, host: str | None, version: str | None) -> None:
    """Raise InvalidName unless an observed borrow's names may be recorded."""
    check_name("tool", tool)
    check_name("user", user)
    _check_details(host, version)
    if borrow_id is not None:
        check_name("id", borrow_id, any_length=True)


def _check_details(host: str | None, version: str | None) -> None:
    if host is not None:
        check_name("host", host)
    if version is not None:
        check_name("version", version)


@dataclass(slots=True, unsafe_hash=True)
class Borrow:
    """One active borrow; read-only by convention."""

    # Not frozen: log sources create one per OUT line, and a frozen dataclass's __init__ costs four times as much.
    # Equal and hashed by what the pool decided; where the license is used does not make it another borrow.
    id: str
    tool: str
    user: str
    borrowed_at: float  # epoch seconds
    is_overage: bool
    host: str | None = field(default=None, compare=False, repr=False)  # the machine it is used on, if said
    version: str | None = field(default=None, compare=False, repr=False)  # the tool's version, if said

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> Borrow:
        """Return the Borrow of a stored row (id, tool, user, borrowed_at, is_overage, host, version)."""
        borrow_id, tool, user, borrowed_at, is_overage, host, version = row
        return cls(borrow_id, tool, user, borrowed_at, bool(is_overage), host, version)

    @classmethod
    def of_event(cls, event: Event) -> Borrow:
        """Return the Borrow a borrow event opens (its tool, user and id are set)."""
        tool, user, borrow_id = cast(str, event.tool), cast(str, event.user), cast(str, event.borrow_id)
        return cls(borrow_id, tool, user, event.ts, bool(event.is_overage), event.host, event.version)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON shape a borrow has in the API."""
        return {
            "id": self.id,
            "tool": self.tool,
            "user": self.user,
            "borrowed_at": iso_utc(self.borrowed_at),
            "is_overage": self.is_overage,
            "host": self.host,
            "version": self.version,
            "source": source_of(self.id),
        }


class LicensePool:
    """Decides borrows under one lock, so counts never pass the limits, and records every outcome."""

    def __init__(
        self,
        specs: Mapping[str, ToolSpec],
        recorder: EventRecorder,
        store: PoolStore | None = None,
        clock: Callable[[], float] = time.time,
        series_of: Callable[[str], str] | None = None,
    ) -> None:
        self.recorder = recorder
        self.clock = clock
        self._store = store
        # Tools outside the inventory are counted per series (see licenses.series), so a log with endless distinct
        # feature names cannot grow the status list; identity when no rule is given.
        self._series_of: Callable[[str], str] = series_of or (lambda tool: tool)
        self._lock = threading.Lock()
        self._specs = dict(specs)
        self._active: dict[str, Borrow] = {}
        self._borrowed = {tool: 0 for tool in self._specs}
        self._charges = {tool: 0 for tool in self._specs}
        # tools outside the inventory that a log source reported, in first-seen order (keys)
        self._observed: dict[str, None] = {}
        self._by_feature = {spec.feature: name for name, spec in self._specs.items() if spec.feature}
        # What polled servers say of tools, per server: licenses issued (their sum is the total of a tool the tools
        # file does not list), the expiry date of its license, and the licenses reserved and waited for.
        self._facts = ServerFacts()
        self._batches = threading.local()  # per thread: events held back by recording_batch()
        if store is not None:
            # A restart keeps active borrows and charges; the tools file may have changed the limits.
            store.save_tools(self._specs)
            for row in store.load_open_borrows():
                borrow = Borrow.of_row(row)
                self._active[borrow.id] = borrow
                key = self._key(borrow.tool)
                self._borrowed[key] = self._borrowed.get(key, 0) + 1
                self._note_tool(key)
            for tool, count in store.load_charges().items():
                self._charges[tool] = count

    @contextmanager
    def recording_batch(self) -> Iterator[None]:
        """Hold back this thread's events and record them together when the block ends (one lock, one write).

        For sources that replay many events at once, such as a log backfill; other threads are not affected.
        """
        if getattr(self._batches, "events", None) is not None:
            yield  # already inside a batch
            return
        self._batches.events = []
        try:
            yield
        finally:
            events, self._batches.events = self._batches.events, None
            if events:
                self.recorder.record_many(events)

    @contextmanager
    def as_source(self) -> Iterator[None]:
        """Mark this thread's borrows and returns as a source's (with --redis they are fenced by the lease)."""
        yield

    def _record(self, event: Event) -> None:
        held = getattr(self._batches, "events", None)
        if held is None:
            self.recorder.record(event)
        else:
            held.append(event)

    @property
    def tools(self) -> list[str]:
        """The names of the inventory's tools, in file order."""
        return list(self._specs)

    def borrow(
        self, tool: str, user: str, at: float | None = None, host: str | None = None, version: str | None = None
    ) -> Borrow:
        """Grant a license of `tool` to `user` and return the Borrow, or raise BorrowDenied (InvalidName for a bad name)."""
        check_name("tool", tool)
        check_name("user", user)
        _check_details(host, version)
        return self._grant(tool, user, at, host, version)

    def _grant(self, tool: str, user: str, at: float | None, host: str | None, version: str | None) -> Borrow:
        """Decide a borrow whose names are checked (what borrow does once its input is known good)."""
        with self._lock:
            ts = self.clock() if at is None else at  # read under the lock: events are recorded in time order
            spec = self._specs.get(tool)
            if spec is None:
                self._record(failure_event(tool, user, UNKNOWN_TOOL, ts))
                raise BorrowDenied(UNKNOWN_TOOL, f"no tool named {tool!r} in the pool")
            borrowed = self._borrowed.get(tool, 0)
            if borrowed >= spec.total:
                self._record(failure_event(tool, user, EXHAUSTED, ts))
                raise BorrowDenied(EXHAUSTED, f"all {spec.total} licenses of {tool!r} are borrowed")
            if borrowed >= spec.commit_qty and borrowed - spec.commit_qty >= spec.max_overage:
                self._record(failure_event(tool, user, MAX_OVERAGE, ts))
                raise BorrowDenied(MAX_OVERAGE, f"{tool!r} is at its maximum overage of {spec.max_overage}")
            is_overage = borrowed >= spec.commit_qty
            borrow = Borrow(uuid.uuid4().hex, tool, user, ts, is_overage, host, version)
            self._active[borrow.id] = borrow
            self._borrowed[tool] = borrowed + 1
            if is_overage:
                self._charges[tool] = self._charges.get(tool, 0) + 1
            self._record(borrow_event(tool, user, is_overage, borrow.id, ts, host, version))
            return borrow

    def return_license(self, borrow_id: str, at: float | None = None) -> Borrow:
        """End an active borrow and return it; raise UnknownBorrow for an unknown or returned id."""
        with self._lock:
            borrow = self._active.pop(borrow_id, None)
            if borrow is None:
                raise UnknownBorrow(borrow_id)
            self._borrowed[self._key(borrow.tool)] -= 1
            ts = self.clock() if at is None else at
            self._record(return_event(borrow_id, borrow.user, borrow.tool, ts))
            return borrow

    # Observed events come from a real license server that has already decided: no limits apply here.

    def tool_for_feature(self, feature: str) -> str:
        """Return the display name the tools file gives a FlexLM feature (the feature itself otherwise)."""
        return self._by_feature.get(feature, feature)

    def observe_borrow(
        self,
        tool: str,
        user: str,
        at: float,
        borrow_id: str | None = None,
        host: str | None = None,
        version: str | None = None,
    ) -> Borrow:
        """Record a borrow granted elsewhere; is_overage follows the pool's rule (in use >= commit)."""
        check_observed(tool, user, borrow_id, host, version)
        return self._record_observed(tool, user, at, borrow_id, host, version)

    def _record_observed(
        self, tool: str, user: str, at: float, borrow_id: str | None, host: str | None, version: str | None
    ) -> Borrow:
        """Record an observed borrow whose names are checked."""
        with self._lock:
            spec = self._specs.get(tool)
            key = tool if spec is not None else self._key(tool)
            borrowed = self._borrowed.get(key, 0)
            is_overage = spec is not None and borrowed >= spec.commit_qty
            borrow = Borrow(borrow_id or uuid.uuid4().hex, tool, user, at, is_overage, host, version)
            self._active[borrow.id] = borrow
            self._borrowed[key] = borrowed + 1
            if is_overage:
                self._charges[tool] = self._charges.get(tool, 0) + 1
            self._note_tool(key)
            self._record(borrow_event(tool, user, is_overage, borrow.id, at, host, version))
            return borrow

    def observe_return(self, borrow_id: str, at: float) -> Borrow:
        """Record the end of a borrow observed elsewhere; raise UnknownBorrow when it is not active."""
        return self.return_license(borrow_id, at=at)

    def observe_total(self, tool: str, issued: int, server: str = "") -> None:
        """Note the licenses `server` issues of `tool`; their sum over servers is its total if the tools file lacks it."""
        with self._lock:
            key = self._key(tool)
            self._facts.set_issued(key, f"{tool}|{server}", issued)
            self._note_tool(key)  # a feature nobody uses yet is a tool all the same

    def observe_expiry(self, tool: str, expiry: str, server: str = "") -> None:
        """Note when `server`'s license of `tool` expires ("2026-12-31" or "permanent"); the earliest is the tool's."""
        with self._lock:
            key = self._key(tool)
            self._facts.set_expiry(key, f"{tool}|{server}", expiry)
            self._note_tool(key)

    def observe_queue(self, tool: str, reserved: int, queued: int, server: str = "") -> None:
        """Note the licenses of `tool` that `server` reserves now and those its users are queued for (its last poll's
        word replaces the one before; the tool's figures are the sums over its servers)."""
        with self._lock:
            key = self._key(tool)
            self._facts.set_queue(key, f"{tool}|{server}", max(reserved, 0), max(queued, 0))
            self._note_tool(key)

    def observe_listed(self, server: str, tools: Collection[str]) -> None:
        """Forget the totals, expiry, reservations and queues `server` gave tools other than `tools` (those it lists now)."""
        with self._lock:
            self._facts.keep_only(server, {f"{tool}|{server}" for tool in tools})

    def observe_failure(self, tool: str, user: str, reason: str, at: float, event_id: str | None = None) -> None:
        """Record a denial observed elsewhere; one with an `event_id` (its log line) counts once with --redis."""
        check_name("tool", tool)
        check_name("user", user)
        check_name("reason", reason)
        self._record_failure(tool, user, reason, at, event_id)

    def _record_failure(self, tool: str, user: str, reason: str, at: float, event_id: str | None) -> None:
        """Record an observed denial whose names are checked (`event_id` matters to the shared pool only)."""
        with self._lock:
            self._note_tool(self._key(tool))
            self._record(failure_event(tool, user, reason, at))

    def _key(self, tool: str) -> str:
        """Return the name `tool` is counted under: itself in the inventory, else its series."""
        return tool if tool in self._specs else self._series_of(tool)

    def _note_tool(self, tool: str) -> None:
        if tool not in self._observed and tool not in self._specs:
            self._observed[tool] = None
            self._borrowed.setdefault(tool, 0)

    def active_borrows(self, user: str | None = None, tool: str | None = None) -> list[Borrow]:
        """Return the active borrows, oldest first, optionally of one user and/or tool."""
        with self._lock:
            borrows = list(self._active.values())
        return sorted(
            (b for b in borrows if (user is None or b.user == user) and (tool is None or b.tool == tool)),
            key=lambda b: b.borrowed_at,
        )

    def status(self, tools: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Return one status entry per tool (inventory order), limited to `tools` when given."""
        with self._lock:
            names = [*self._specs, *self._observed]
            entries = [self._status_entry(name) for name in names if tools is None or name in tools]
        return entries

    def tool_status(self, tool: str) -> dict[str, Any] | None:
        """Return one tool's status entry, or None when the pool does not know it."""
        entries = self.status(tools={tool})
        return entries[0] if entries else None

    def _status_entry(self, tool: str) -> dict[str, Any]:
        spec = self._specs.get(tool)
        borrowed = self._borrowed.get(tool, 0)
        charges = self._charges.get(tool, 0)
        # Reserved licenses are held for someone and cannot be borrowed; queued ones are wanted and not to be had.
        reserved, queued = self._facts.queue(tool)
        if spec is None:
            # A tool the tools file does not list (seen in a log, or dropped from the file): limits unknown, but for
            # the total its server issues, when a poll said it.
            issued = self._facts.total(tool)
            return {
                "tool": tool,
                "total": issued,
                "borrowed": borrowed,
                "reserved": reserved,
                "queued": queued,
                "available": None if issued is None else max(issued - borrowed - reserved, 0),
                "commit": None,
                "max_overage": None,
                "overage": None,
                "overage_borrows": charges,
                "in_commit": None,
                "commit_price": None,
                "overage_price_per_license": None,
                "current_overage_cost": None,
                "total_cost": None,
                "expiry": self._facts.expiry_of(tool),
            }
        overage_cost = charges * spec.overage_price_per_license
        return {
            "tool": tool,
            "total": spec.total,
            "borrowed": borrowed,
            "reserved": reserved,
            "queued": queued,
            "available": max(spec.total - borrowed - reserved, 0),
            "commit": spec.commit_qty,
            "max_overage": spec.max_overage,
            "overage": max(borrowed - spec.commit_qty, 0),
            "overage_borrows": charges,
            "in_commit": borrowed <= spec.commit_qty,
            "commit_price": spec.commit_price,
            "overage_price_per_license": spec.overage_price_per_license,
            "current_overage_cost": overage_cost,
            "total_cost": spec.commit_price + overage_cost,
            "expiry": self._facts.expiry_of(tool),
        }
