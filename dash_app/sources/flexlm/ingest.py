"""One FlexLM log stream's lines applied to the pool: OUT is a borrow, IN ends the oldest matching one, a daemon
restart ends every license of its vendor; borrow ids are deterministic, so a restart rebuilds what is open."""

# Each log's events go through the pool's observe_* methods (the license server already decided, so no
# limits apply), and from there into the same buffer, store and status as the REST API's events.

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from dash_app.events import InvalidName
from dash_app.licenses.pool import UnknownBorrow
from dash_app.sources.flexlm.parse import DATE, DENIED, DEQUEUED, DOWN, IN, OUT, QUEUED, LineParser, Record

if TYPE_CHECKING:
    from dash_app.licenses.pool import LicensePool

log = logging.getLogger(__name__)

# (vendor, feature, user, host) of open borrows.
OpenKey: TypeAlias = tuple[str | None, str, str, str]

COUNTERS = (
    "lines",
    "borrows",
    "returns",
    "denials",
    "queued",
    "dequeued",
    "malformed",
    "ended_by_restart",
    "unmatched_returns",
    "clock_skew",
)
ID_PREFIX = "flexlm"
MAX_PENDING = 200_000  # undated lines held back while waiting for a date line
MALFORMED_LOGGED = 5
_ROTATED_SUFFIX = re.compile(r"\.\d+$")


def source_id(path: str) -> str:
    """Return the id of the log stream `path` belongs to; rotated copies (`PATH.1`, `PATH.2`) share it."""
    stem = _ROTATED_SUFFIX.sub("", os.path.realpath(path))
    return hashlib.sha1(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]


class LogIngest:
    """Applies one log stream's records to the pool: IN ends the oldest matching OUT, a daemon restart ends all of its vendor."""

    def __init__(self, pool: "LicensePool", source: str, name: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.pool = pool
        self.source = source
        self.name = name or source
        self.clock = clock
        self.parser = LineParser()
        self.counts = dict.fromkeys(COUNTERS, 0)
        # (vendor, feature, user, host) -> list of borrow-id groups, oldest first (rarely more than one)
        self.open: dict[OpenKey, list[tuple[str, ...]]] = {}
        self.pending: list[tuple[int, Record]] = []  # (line number, record) read before the log's date is known
        self.file_id: str | None = None
        self.line = 0
        self.last_event_at: float | None = None
        self.reference_time: float | None = None  # when the file was last written: dates undated lines if no date line comes
        self.open_borrows = 0  # licenses checked out in this log and not yet seen returned
        self._tools: dict[str, str] = {}
        # Borrow ids are self-describing and deterministic, `flexlm|source|vendor|feature|host|file:line`:
        # the same line always gives the same id, and a restart rebuilds which IN line ends which borrow
        # from the pool's active borrows alone.
        self._id_prefix = f"{ID_PREFIX}|{source}|"
        self._restored: dict[str, tuple[str, int]] = {}  # base id -> (file id, line) of borrows still open at start
        self._replayed: set[str] = set()  # restored borrows whose OUT line lies ahead in the current file
        self._appliers: dict[str, Callable[[int, Record, float], None]] = {
            OUT: self._apply_out,
            IN: self._apply_in,
            DENIED: self._apply_denied,
            QUEUED: self._apply_queued,
            DEQUEUED: self._apply_dequeued,
            DOWN: self._apply_down,
            DATE: self._apply_date,
        }
        self._restore_open()

    # ------------------------------------------------------------ ids and restart

    def _restore_open(self) -> None:
        groups: dict[str, list[Any]] = {}  # base id -> [open key, (borrowed_at, line), [ids]]
        for borrow in self.pool.active_borrows():
            parts = borrow.id.split("|")
            if len(parts) != 6 or parts[0] != ID_PREFIX or parts[1] != self.source:
                continue
            base = borrow.id.split("#", 1)[0]
            file_id, _, line = parts[5].split("#", 1)[0].partition(":")
            line_no = int(line) if line.isdigit() else 0
            key = (parts[2], parts[3], borrow.user, parts[4])
            groups.setdefault(base, [key, (borrow.borrowed_at, line_no), []])[2].append(borrow.id)
            self._restored[base] = (file_id, line_no)
        # Oldest first, as IN lines end them.
        for _base, (key, _order, ids) in sorted(groups.items(), key=lambda item: item[1][1]):
            self.open.setdefault(key, []).append(tuple(sorted(ids, key=len)))
            self.open_borrows += len(ids)

    def _born_after(self, group: tuple[str, ...], line_no: int) -> bool:
        # While lines after the last saved position are read again (after a crash), a restored borrow
        # whose OUT line is still ahead does not exist yet at this line.
        place = self._restored.get(group[0])
        return place is not None and place[0] == self.file_id and place[1] > line_no

    # ------------------------------------------------------------------- lines

    def start_file(self, file_id: str | None, line: int, day: int | None = None, last_tod: int | None = None) -> None:
        """Continue with a file: its id, the line number reached, and the date there when known."""
        self.file_id, self.line = file_id, line
        if day is not None:
            self.parser.day, self.parser.last_tod = day, last_tod
        self._replayed = {base for base, (f, n) in self._restored.items() if f == file_id and n > line}

    def feed(self, lines: Sequence[str]) -> None:
        """Parse and apply complete lines, in order; their events reach the buffer and the store as one batch."""
        with self.pool.recording_batch():
            self._feed(lines)

    def _feed(self, lines: Sequence[str]) -> None:
        parse = self.parser.parse
        pending = self.pending
        apply = self._apply
        now = self.clock()
        line_no = self.line
        # Most lines are an OUT or IN of one license: those are applied here, as _apply would, with the
        # lookups hoisted out of the loop; everything else (and every line read again after a crash) goes to _apply.
        fast = not self._replayed
        open_groups = self.open
        tools = self._tools
        observe_borrow = self.pool.observe_borrow
        id_prefix, id_file = self._id_prefix, f"|{self.file_id}:"
        borrows = returns = unmatched = 0
        try:
            for line in lines:
                line_no += 1
                try:
                    record = parse(line)
                    if record is None:
                        continue
                    if isinstance(record, str):  # MALFORMED
                        self._malformed(line_no, line)
                        continue
                    kind, ts, _tod, vendor, feature, user, host, count, _detail = record
                    if ts is None:
                        self._hold(line_no, record, now)
                        continue
                    if pending:
                        self._resolve_pending(now)  # this line gave the date
                    if not (fast and count == 1 and ts <= now):
                        apply(line_no, record, now)
                    elif kind == OUT:
                        group: tuple[str, ...] = (f"{id_prefix}{vendor}|{feature}|{host}{id_file}{line_no}",)
                        observe_borrow(tools.get(feature) or self._tool(feature), user, ts, group[0], host or None)
                        key = (vendor, feature, user, host)
                        groups = open_groups.get(key)
                        if groups is None:
                            open_groups[key] = [group]
                        else:
                            groups.append(group)
                        self.open_borrows += 1
                        borrows += 1
                        self.last_event_at = ts
                    elif kind == IN:
                        taken = self._take_oldest((vendor, feature, user, host))
                        if taken is None:
                            unmatched += 1  # checked out before this log began
                            continue
                        returns += self._end(taken, ts)
                        self.last_event_at = ts
                    else:
                        apply(line_no, record, now)
                except InvalidName:
                    self._malformed(line_no, line)  # a name no event may carry (see dash_app.events)
                except Exception:  # whatever one line holds, the lines after it are still read
                    self._malformed(line_no, line)
                    log.exception("%s line %d could not be applied", self.name, line_no)
        finally:
            counts = self.counts
            counts["borrows"] += borrows
            counts["returns"] += returns
            counts["unmatched_returns"] += unmatched
            counts["lines"] += len(lines)
            self.line = line_no

    def _hold(self, line_no: int, record: Record, now: float) -> None:
        """Keep an undated record until a date line comes; past MAX_PENDING, date them from the file's time."""
        self.pending.append((line_no, record))
        if len(self.pending) >= MAX_PENDING:
            log.warning("%s: no date line in %d lines; dating them from the file's time", self.name, len(self.pending))
            self.line = line_no
            self.resolve_undated(self.reference_time or now)

    def resolve_undated(self, reference: float) -> None:
        """Date lines still waiting for a date line as if the last of them was written at or before `reference`."""
        if not self.pending or self.parser.day is not None:
            return
        self.parser.anchor(reference)
        last = self._resolve_pending(self.clock())
        self.parser.anchor(last)  # go on from the last undated line's date and time

    def _resolve_pending(self, now: float) -> float:
        pending = self.pending[:]
        self.pending.clear()  # in place: feed() holds this list
        epochs = self.parser.backdate([record[2] for _, record in pending])
        for (line_no, record), ts in zip(pending, epochs):
            self._apply(line_no, (record[0], ts) + record[2:], now)
        return epochs[-1]

    def skip_line(self, text: str) -> None:
        """Count a line that was too long to be a debug-log line."""
        self.line += 1
        self._malformed(self.line, text)

    def _malformed(self, line_no: int, line: str) -> None:
        self.counts["malformed"] += 1
        if self.counts["malformed"] <= MALFORMED_LOGGED:
            log.warning("%s line %d is not a FlexNet debug-log line; skipped: %r", self.name, line_no, line[:200])

    def _tool(self, feature: str) -> str:
        tool = self._tools.get(feature)
        if tool is None:
            tool = self._tools[feature] = self.pool.tool_for_feature(feature)
        return tool

    def _apply(self, line_no: int, record: Record, now: float) -> None:
        kind, ts = record[0], record[1]
        assert ts is not None, "only dated records are applied"
        if ts > now:
            # The server's clock or time zone is ahead of ours; the buffer refuses the future.
            ts = now
            self.counts["clock_skew"] += 1
        handle = self._appliers.get(kind)
        if handle is None:
            raise ValueError(f"unknown record kind {kind!r}")
        handle(line_no, record, ts)

    def _apply_out(self, line_no: int, record: Record, ts: float) -> None:
        _kind, _ts, _tod, vendor, feature, user, host, count, _detail = record
        base = f"{self._id_prefix}{vendor}|{feature}|{host}|{self.file_id}:{line_no}"
        if self._replayed and base in self._replayed:
            self._replayed.discard(base)  # read again after a crash: it is already counted
            return
        group = (base,) if count == 1 else (base, *(f"{base}#{k}" for k in range(1, count)))
        tool = self._tools.get(feature) or self._tool(feature)
        observe = self.pool.observe_borrow
        for borrow_id in group:
            observe(tool, user, ts, borrow_id, host or None)
        groups = self.open.setdefault((vendor, feature, user, host), [])
        if self._replayed:
            # Keep file order: ahead of restored borrows whose OUT line comes later.
            at = next((i for i, g in enumerate(groups) if self._born_after(g, line_no)), len(groups))
            groups.insert(at, group)
        else:
            groups.append(group)
        self.open_borrows += count
        self.counts["borrows"] += count
        self.last_event_at = ts

    def _apply_in(self, line_no: int, record: Record, ts: float) -> None:
        _kind, _ts, _tod, vendor, feature, user, host, _count, _detail = record
        key = (vendor, feature, user, host)
        group = self._take_oldest(key) if not self._replayed else self._take_born(key, line_no)
        if group is None:
            self.counts["unmatched_returns"] += 1  # checked out before this log began
            return
        self.counts["returns"] += self._end(group, ts)
        self.last_event_at = ts

    def _apply_denied(self, line_no: int, record: Record, ts: float) -> None:
        _kind, _ts, _tod, _vendor, feature, user, _host, _count, detail = record
        # Its line names it, so a line read again (after a leader change, with --redis) counts once.
        line_id = f"{self._id_prefix}{self.file_id}:{line_no}"
        self.pool.observe_failure(self._tools.get(feature) or self._tool(feature), user, detail, ts, line_id)
        self.counts["denials"] += 1
        self.last_event_at = ts

    def _apply_queued(self, _line_no: int, _record: Record, _ts: float) -> None:
        self.counts["queued"] += 1

    def _apply_dequeued(self, _line_no: int, _record: Record, _ts: float) -> None:
        self.counts["dequeued"] += 1

    def _apply_down(self, line_no: int, record: Record, ts: float) -> None:
        # The vendor daemon (or lmgrd with all of them) stopped or started afresh: nothing is checked out any more.
        vendor = record[3]
        for key in [k for k in self.open if vendor is None or k[0] == vendor]:
            groups = self.open.pop(key)
            later = [g for g in groups if self._replayed and self._born_after(g, line_no)]
            if later:
                self.open[key] = later
            for group in groups:
                if group not in later:
                    self.counts["ended_by_restart"] += self._end(group, ts)

    def _apply_date(self, _line_no: int, _record: Record, _ts: float) -> None:
        pass  # a date line only dates the lines after it (the parser keeps the date)

    def _take_oldest(self, key: OpenKey) -> tuple[str, ...] | None:
        """Remove and return the oldest open borrow group of `key`, or None when it has none."""
        groups = self.open.get(key)
        if not groups:
            return None
        group = groups.pop(0)
        if not groups:
            del self.open[key]
        return group

    def _take_born(self, key: OpenKey, line_no: int) -> tuple[str, ...] | None:
        """Like _take_oldest, while lines are read again: the oldest group that already exists at `line_no`."""
        groups = self.open.get(key)
        if not groups:
            return None
        group = next((g for g in groups if not self._born_after(g, line_no)), None)
        if group is not None:
            groups.remove(group)
        if not groups:
            del self.open[key]
        return group

    def _end(self, group: tuple[str, ...], ts: float) -> int:
        self.open_borrows -= len(group)
        ended = 0
        for borrow_id in group:
            try:
                self.pool.observe_return(borrow_id, ts)
                ended += 1
            except UnknownBorrow:
                pass  # already ended elsewhere
        return ended
