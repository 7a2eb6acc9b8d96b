"""One tick's snapshot of the buffer and the pool, and the pure functions that cut it into stream messages."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Self, TypeAlias, cast

from dash_app import privacy
from dash_app.auth.viewer import FULL, Names
from dash_app.buffer import Bucket
from dash_app.timeutil import first_minute_at_or_after, iso_minute, iso_utc

if TYPE_CHECKING:  # for the annotations only
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.licenses import LicensePool

# The seed's stream: rates and recent events look back one minute; ten events of each kind at most.
RATES_SECONDS = 60
RECENT_SECONDS = 60
RECENT_LIMIT = 10

_TIMESTAMP = itemgetter("timestamp")

StatusEntry: TypeAlias = dict[str, Any]  # one tool's entry of LicensePool.status()
PublicEvent: TypeAlias = dict[str, Any]  # an event as dash_app.events.public_event gives it
RecentEvents: TypeAlias = dict[str, list[PublicEvent]]  # {"borrows": [...], "returns": [...], "failures": [...]}
ToolMetrics: TypeAlias = dict[str, list[Bucket]]  # {tool: [bucket, ...]}, oldest first
Message: TypeAlias = dict[str, Any]  # one stream message, JSON-ready


@dataclass(frozen=True)
class Tick:
    """Everything the messages of one tick are cut from, read once from the buffer and the pool."""

    id: int
    now: float
    tools: list[StatusEntry]
    rates: dict[str, float]
    recent_events: RecentEvents
    buffer_stats: dict[str, Any]
    # {tool: [bucket, ...]} over the whole retention window; lists and buckets are shared and never mutated.
    tool_metrics: ToolMetrics

    @property
    def timestamp(self) -> str:
        return iso_utc(self.now)


def take_tick(
    tick_id: int,
    buffer: RealtimeMetricsBuffer,
    pool: LicensePool,
    previous: Tick | None = None,
    persisted: Callable[[], bool] | None = None,
) -> Tick:
    """Read one snapshot; per-tool lists equal to `previous`'s are reused, so history costs little memory.

    `persisted`, when given, is a callable saying whether writes reach the database; it joins buffer_stats.
    """
    now = buffer.clock()
    metrics = buffer.aggregate_tool_metrics(buffer.retention_seconds)
    if previous is not None:
        metrics = reuse_unchanged(previous.tool_metrics, metrics)
    return Tick(
        id=tick_id,
        now=now,
        tools=pool.status(),
        rates=buffer.get_rates(RATES_SECONDS),
        recent_events=buffer.get_recent_events(RECENT_SECONDS, limit=RECENT_LIMIT),
        buffer_stats=(
            buffer.get_stats_summary() if persisted is None else {**buffer.get_stats_summary(), "persisted": persisted()}
        ),
        tool_metrics=metrics,
    )


def reuse_unchanged(old: ToolMetrics, new: ToolMetrics) -> ToolMetrics:
    """Return `new` with each tool's list replaced by `old`'s when they hold the very same buckets."""
    same = len(old) == len(new)
    for tool, buckets in new.items():
        previous = old.get(tool)
        if previous is not None and len(previous) == len(buckets) and all(a is b for a, b in zip(previous, buckets)):
            new[tool] = previous
        else:
            same = False
    return old if same else new


class ShownBuckets:
    """Buckets as one names mode (not real names) shows them, each shown once: a bucket is shared and never changes,
    so the copy made for it on one tick serves every variant of the mode, on that tick and the next ones.

    Kept by the ticker per names mode and used under its lock. A copy not used for a whole tick is let go; each
    entry holds its bucket, so no other bucket can take its id while the entry lives.
    """

    def __init__(self, names: Names) -> None:
        self.names = names
        self._tick_id: int | None = None
        self._now: dict[int, tuple[Bucket, Bucket]] = {}  # id(bucket) -> (bucket, shown copy), used on this tick
        self._before: dict[int, tuple[Bucket, Bucket]] = {}  # the same, used on the tick before and not yet on this one

    def tool_metrics(self, metrics: ToolMetrics, tick_id: int) -> ToolMetrics:
        """Return {tool: [bucket, ...]} with each bucket's users as this mode shows them."""
        if tick_id != self._tick_id:
            self._tick_id, self._before, self._now = tick_id, self._now, {}
        now, before = self._now, self._before
        out: ToolMetrics = {}
        for tool, buckets in metrics.items():
            shown = []
            for bucket in buckets:
                entry = now.get(id(bucket))
                if entry is None:
                    entry = before.pop(id(bucket), None)
                    if entry is None or entry[0] is not bucket:
                        entry = (bucket, cast(Bucket, privacy.bucket(bucket, self.names)))
                    now[id(bucket)] = entry
                shown.append(entry[1])
            out[tool] = shown
        return out


@dataclass(frozen=True)
class Variant:
    """What a client asked for: a lookback (None: the whole retention), a tool filter (None: all), delta mode; and how
    its reader may see people's names (auth.viewer.Names: its mode and key), so each mode is serialized once per tick.

    The messages are cut from the tick's shared data as it is; users, hosts and borrow ids are shown as `names` says
    on the way out (on copies), so a reader of real names gets exactly the same message as ever.
    """

    window: float | None = None
    tools: tuple[str, ...] | None = None
    delta: bool = False
    names: Names = FULL

    def tool_metrics(self, tick: Tick) -> ToolMetrics:
        """Return the tick's buckets inside this variant's window and tool filter."""
        first = None if self.window is None else iso_minute(first_minute_at_or_after(tick.now - self.window))
        out: ToolMetrics = {}
        for tool, buckets in tick.tool_metrics.items():
            if self.tools is not None and tool not in self.tools:
                continue
            if first is not None and buckets[0]["timestamp"] < first:
                buckets = buckets[bisect_left(buckets, first, key=_TIMESTAMP) :]
                if not buckets:
                    continue
            out[tool] = buckets
        return out

    def tool_status(self, tick: Tick) -> list[StatusEntry]:
        """Return the tick's pool status entries of this variant's tools."""
        if self.tools is None:
            return tick.tools
        return [entry for entry in tick.tools if entry["tool"] in self.tools]

    def shown_metrics(self, metrics: ToolMetrics, tick: Tick, shown: ShownBuckets | None = None) -> ToolMetrics:
        """Return buckets of this variant with their users as its names mode shows them (through `shown`, if given)."""
        if self.names.real:
            return metrics
        if shown is not None:
            return shown.tool_metrics(metrics, tick.id)
        return cast(ToolMetrics, privacy.tool_metrics(metrics, self.names))

    def full_message(self, tick: Tick, shown: ShownBuckets | None = None) -> Message:
        """Return the whole picture at `tick` (`shown`: the ticker's copies of buckets as this names mode shows them)."""
        return {
            "mode": "full",
            "timestamp": tick.timestamp,
            "tools": self.tool_status(tick),
            "rates": tick.rates,
            "recent_events": privacy.recent_events(tick.recent_events, self.names),
            "buffer_stats": tick.buffer_stats,
            "tool_metrics": self.shown_metrics(self.tool_metrics(tick), tick, shown),
        }

    def delta_message(
        self, since: Tick, tick: Tick, changes: Changes | None = None, shown: ShownBuckets | None = None
    ) -> Message:
        """Return what a client holding the picture at tick `since` needs to hold the one at `tick`.

        `changes` is Changes.between(since, tick), worked out once per tick for every delta variant; `shown` as in
        full_message.
        """
        if changes is None:
            changes = Changes.between(since, tick)
        # Worked out on the shared data (buckets compare by identity), then shown as this reader may see them.
        metrics, expired = diff_metrics(self.tool_metrics(since), self.tool_metrics(tick))
        if changes.tools_full:
            tools = self.tool_status(tick)
        elif self.tools is None:
            tools = changes.tools
        else:
            tools = [entry for entry in changes.tools if entry["tool"] in self.tools]
        return {
            "mode": "delta",
            "timestamp": tick.timestamp,
            "tools": tools,
            "tools_full": changes.tools_full,
            "rates": tick.rates,
            "recent_events": privacy.recent_events(changes.recent_events, self.names),
            "recent_events_full": changes.recent_events_full,
            "buffer_stats": tick.buffer_stats,
            "tool_metrics": self.shown_metrics(metrics, tick, shown),
            "expired": expired,
        }


@dataclass(frozen=True)
class Changes:
    """What changed from one tick to another in the keys every variant shares: pool status and recent events."""

    tools: list[StatusEntry]  # a new tool's entry, or a tool and its changed fields; the whole list when tools_full
    tools_full: bool
    recent_events: RecentEvents  # {kind: [events new since]}, or the whole lists when recent_events_full
    recent_events_full: bool

    @classmethod
    def between(cls, since: Tick, tick: Tick) -> Self:
        """Work out the changes from tick `since` to tick `tick`."""
        tools, tools_full = changed_tools(since.tools, tick.tools)
        recent, recent_full = new_recent_events(since.recent_events, tick.recent_events, tick.timestamp)
        return cls(tools, tools_full, recent, recent_full)


def changed_tools(old: list[StatusEntry], new: list[StatusEntry]) -> tuple[list[StatusEntry], bool]:
    """Return (the changes taking `old` to `new`, False), or (`new`, True) when changes cannot say it.

    A change is the tool and the fields of its entry that differ, which a client merges into the entry it
    holds; a tool not seen before comes whole and goes last. A tool gone, a field gone or a new order
    (none happens while the pool runs) can only be sent whole.
    """
    before = {entry["tool"]: entry for entry in old}
    changes: list[StatusEntry] = []
    for entry in new:
        held = before.get(entry["tool"])
        if held is None:
            changes.append(entry)
        elif held != entry:
            if held.keys() - entry.keys():
                return new, True
            fields = {key: value for key, value in entry.items() if key not in held or held[key] != value}
            changes.append({"tool": entry["tool"], **fields})
    order = dict.fromkeys(before)
    order.update(dict.fromkeys(change["tool"] for change in changes))
    if list(order) != [entry["tool"] for entry in new]:
        return new, True
    return changes, False


def new_recent_events(old: RecentEvents, new: RecentEvents, timestamp: str) -> tuple[RecentEvents, bool]:
    """Return ({kind: the events of `new` after those of `old`}, False), or (`new`, True) when those cannot say it.

    A client holding `old` appends the events, and keep_recent must then give exactly `new` at `timestamp`:
    each candidate is replayed, so a late event that lands among events already sent, an event dropped by a
    cap, or a millisecond lost to rounding costs a whole recent_events, never a wrong one.
    """
    fresh: RecentEvents = {}
    for kind, events in new.items():
        held = old.get(kind, [])
        for start in range(len(events), -1, -1):
            # Only new events travel: those before them are the end of what the client holds, or nothing it holds.
            if start:
                if start > len(held) or events[:start] != held[len(held) - start :]:
                    continue
            elif any(event in held for event in events):
                continue
            if keep_recent(held, events[start:], timestamp) == events:
                fresh[kind] = events[start:]
                break
        else:
            return new, True
    return fresh, False


def keep_recent(held: list[PublicEvent], fresh: list[PublicEvent], timestamp: str) -> list[PublicEvent]:
    """Return what a delta client keeps of one kind: held then fresh events of the 60 s before `timestamp`, the last 10."""
    since = _millis(timestamp) - RECENT_SECONDS * 1000
    kept = [event for event in held + fresh if _millis(event["timestamp"]) >= since]
    return kept[-RECENT_LIMIT:]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


@lru_cache(maxsize=4096)
def _millis(text: str) -> int:
    # What JavaScript's Date.parse gives for our ISO strings: whole milliseconds, so the comparison is exact.
    return (datetime.fromisoformat(text) - _EPOCH) // _MILLISECOND


def diff_metrics(
    old: Mapping[str, list[Bucket]], new: Mapping[str, list[Bucket]]
) -> tuple[dict[str, list[Bucket]], dict[str, list[str]]]:
    """Return ({tool: [new or replaced buckets]}, {tool: [timestamps gone]}) taking `old` to `new`.

    Buckets are immutable and a changed one is a new dict, so identity finds the changes.
    """
    changed: dict[str, list[Bucket]] = {}
    expired: dict[str, list[str]] = {}
    for tool, buckets in new.items():
        previous = old.get(tool)
        if previous is buckets:
            continue
        if not previous:
            changed[tool] = buckets
            continue
        by_time = {bucket["timestamp"]: bucket for bucket in previous}
        fresh = [bucket for bucket in buckets if by_time.pop(bucket["timestamp"], None) is not bucket]
        if fresh:
            changed[tool] = fresh
        if by_time:
            expired[tool] = sorted(by_time)
    for tool, buckets in old.items():
        if tool not in new:
            expired[tool] = [bucket["timestamp"] for bucket in buckets]
    return changed, expired
