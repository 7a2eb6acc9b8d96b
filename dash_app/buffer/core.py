"""The state every part of the buffer shares: its event logs, minute bins, caches and lock."""

import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from dash_app.buffer.event_log import EventLog, Raw
from dash_app.buffer.rows import Bucket, InUseBin
from dash_app.events import BORROW, FAILURE, RETURN

DEFAULT_RETENTION_SECONDS = 21600
DEFAULT_MAX_BORROWS = 100_000
DEFAULT_MAX_RETURNS = 100_000
DEFAULT_MAX_FAILURES = 10_000


class Bin:
    """Counters for one tool in one minute, with its bucket dict built lazily and then reused.

    The level figures describe the minute's net borrows relative to its start level (0): `prior` and `low` are the
    highest and lowest level reached at the instants before `last` (the latest event's time), and `moment` is the sum
    of each borrow's (+1) or return's (-1) offset into the minute, so the minute's area is net * 60 - moment. They are
    worked out when read, from the minute's events: `figured` is the count + returns they were worked out for.
    """

    __slots__ = ("count", "overage", "users", "returns", "failures", "bucket", "last", "prior", "low", "moment", "figured")

    count: int
    overage: int
    users: dict[str, int]  # user -> borrows
    returns: int
    failures: dict[str, int]  # reason -> count
    bucket: Bucket | None
    last: float
    prior: int
    low: int
    moment: float
    figured: int

    def __init__(self) -> None:
        self.count = 0
        self.overage = 0
        self.users = {}
        self.returns = 0
        self.failures = {}
        self.bucket = None
        self.last = -math.inf
        self.prior = 0
        self.low = 0
        self.moment = 0.0
        self.figured = 0

    def is_empty(self) -> bool:
        return not (self.count or self.returns or self.failures)


class Levels:
    """One series' closed minutes as last computed: rows from `first` on, with each row's level before clamping."""

    __slots__ = ("first", "start", "rows", "ends")

    def __init__(self, first: int, start: int, rows: list[InUseBin], ends: list[int]) -> None:
        self.first = first  # the minute index of rows[0]
        self.start = start  # the level at rows[0]'s start, before clamping
        self.rows = rows
        self.ends = ends  # the level at each row's end, before clamping

    def end(self) -> int:
        return self.ends[-1] if self.ends else self.start

    def cut(self, n: int) -> None:
        """Drop the first n rows (fewer than all)."""
        self.start = self.ends[n - 1]
        del self.rows[:n]
        del self.ends[:n]
        self.first += n


class BufferCore:
    """The buffer's state, set up once; the parts that add, evict and read work on it under `_lock`."""

    def __init__(
        self,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        max_borrows: int = DEFAULT_MAX_BORROWS,
        max_returns: int = DEFAULT_MAX_RETURNS,
        max_failures: int = DEFAULT_MAX_FAILURES,
        clock: Callable[[], float] = time.time,
        series_of: Callable[[str], str] | None = None,
    ) -> None:
        if retention_seconds <= 0:
            raise ValueError("retention_seconds must be positive")
        for name, cap in (("max_borrows", max_borrows), ("max_returns", max_returns), ("max_failures", max_failures)):
            if cap < 0:
                raise ValueError(f"{name} must not be negative")
        self.retention_seconds = retention_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._borrows = EventLog(BORROW, max_borrows)
        self._returns = EventLog(RETURN, max_returns)
        self._failures = EventLog(FAILURE, max_failures)
        # Events added one by one wait here, as (time added at, kind, ts, tool, user, borrow_id, is_overage, reason,
        # host, version), until the next read or a full batch. Writers append without the lock and only a holder of
        # the lock takes the first n entries and then deletes them: list.append, a slice and `del pending[:n]` are
        # each atomic under the GIL, and appends only add at the end, so no add is lost or taken twice.
        self._pending: list[tuple[Any, ...]] = []
        self._bins: dict[str, dict[int, Bin]] = {}  # series -> {minute: Bin}; a series is a tool name unless folded
        # series -> the number of its latest change (an add, eviction or expiry in one of its bins), so readers can
        # rebuild only the series that changed since they last looked (series_stamps).
        self._stamps: dict[str, int] = {}
        self._failure_stamps: dict[str, int] = {}  # series -> the number of its latest failure added or dropped
        self._hot: dict[str, Bin] = {}  # series -> its bin of the minute being added, stamped in this batch
        self._next_stamp = itertools.count(1).__next__
        self._minutes: dict[str, list[int]] = {}  # series -> sorted list of minute indexes present in _bins[series]
        # borrow id -> the retained borrow event; keyed like Event.borrow_id, though a borrow always has one
        self._open_borrows: dict[str | None, Raw] = {}
        self._interned: dict[str | None, str] = {}  # None is looked up (a return's missing user), never stored
        self._series_of = series_of
        # tool name -> (shared name, series), a bounded cache; None stays None (a return of an unknown borrow).
        self._tool_keys: dict[str | None, tuple[Any, Any]] = {None: (None, None)}
        self._merged: set[str] = set()  # series that collect names other than their own
        self._oldest_bound = math.inf  # no retained event is older than this; lets most calls skip expiry
        self._version = 0
        self._aggregate_cache: dict[tuple[float, int], dict[str, list[Bucket]]] = {}
        self._aggregate_cache_version = -1
        # in_use_series keeps each series' closed minutes (Levels) up to the minute `_sealed` at most; a change to a
        # bin before it is noted in `_stale` (series -> minutes) and settled on the next read: the bin's figures
        # redone from its events, the cached rows cut.
        self._levels: dict[str, Levels] = {}
        self._sealed = -1
        self._stale: dict[str, set[int]] = {}
        self._stale_pruned = -1  # the retention's first minute when `_stale` was last pruned
        self._moves_memo: dict[int, dict[str, list[tuple[float, int]]]] = {}  # minute -> moves by series, in one read
        self._moves_wanted: set[str] | None = None  # the series that read walks (None: all)

    def _key(self, tool: str | None) -> Any:
        """Return the bin key (series) of a stored event's tool: the same one its add used, as the mapping is fixed."""
        if tool is None or self._series_of is None:
            return tool
        return self._series_of(tool)
