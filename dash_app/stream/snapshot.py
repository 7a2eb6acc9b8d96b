"""One tick's snapshot of the buffer and the pool, and the pure functions that cut it into stream messages."""

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from operator import itemgetter

from dash_app.timeutil import first_minute_at_or_after, iso_minute, iso_utc

# The seed's stream: rates and recent events look back one minute; ten events of each kind at most.
RATES_SECONDS = 60
RECENT_SECONDS = 60
RECENT_LIMIT = 10

_TIMESTAMP = itemgetter("timestamp")


@dataclass(frozen=True)
class Tick:
    """Everything the messages of one tick are cut from, read once from the buffer and the pool."""

    id: int
    now: float
    tools: list
    rates: dict
    recent_events: dict
    buffer_stats: dict
    # {tool: [bucket, ...]} over the whole retention window; lists and buckets are shared and never mutated.
    tool_metrics: dict

    @property
    def timestamp(self):
        return iso_utc(self.now)


def take_tick(tick_id, buffer, pool, previous=None, persisted=None):
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
        buffer_stats=buffer.get_stats_summary() if persisted is None else {**buffer.get_stats_summary(), "persisted": persisted()},
        tool_metrics=metrics,
    )


def reuse_unchanged(old, new):
    """Return `new` with each tool's list replaced by `old`'s when they hold the very same buckets."""
    same = len(old) == len(new)
    for tool, buckets in new.items():
        previous = old.get(tool)
        if previous is not None and len(previous) == len(buckets) and all(a is b for a, b in zip(previous, buckets)):
            new[tool] = previous
        else:
            same = False
    return old if same else new


@dataclass(frozen=True)
class Variant:
    """What a client asked for: a lookback (None: the whole retention), a tool filter (None: all), delta mode."""

    window: float = None
    tools: tuple = None
    delta: bool = False

    def tool_metrics(self, tick):
        """Return the tick's buckets inside this variant's window and tool filter."""
        first = None if self.window is None else iso_minute(first_minute_at_or_after(tick.now - self.window))
        out = {}
        for tool, buckets in tick.tool_metrics.items():
            if self.tools is not None and tool not in self.tools:
                continue
            if first is not None and buckets[0]["timestamp"] < first:
                buckets = buckets[bisect_left(buckets, first, key=_TIMESTAMP) :]
                if not buckets:
                    continue
            out[tool] = buckets
        return out

    def tool_status(self, tick):
        """Return the tick's pool status entries of this variant's tools."""
        if self.tools is None:
            return tick.tools
        return [entry for entry in tick.tools if entry["tool"] in self.tools]

    def full_message(self, tick):
        """Return the whole picture at `tick`."""
        return {
            "mode": "full",
            "timestamp": tick.timestamp,
            "tools": self.tool_status(tick),
            "rates": tick.rates,
            "recent_events": tick.recent_events,
            "buffer_stats": tick.buffer_stats,
            "tool_metrics": self.tool_metrics(tick),
        }

    def delta_message(self, since, tick, changes=None):
        """Return what a client holding the picture at tick `since` needs to hold the one at `tick`.

        `changes` is Changes.between(since, tick), worked out once per tick for every delta variant.
        """
        if changes is None:
            changes = Changes.between(since, tick)
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
            "recent_events": changes.recent_events,
            "recent_events_full": changes.recent_events_full,
            "buffer_stats": tick.buffer_stats,
            "tool_metrics": metrics,
            "expired": expired,
        }


@dataclass(frozen=True)
class Changes:
    """What changed from one tick to another in the keys every variant shares: pool status and recent events."""

    tools: list  # a new tool's entry, or a tool and its changed fields; the whole list when tools_full
    tools_full: bool
    recent_events: dict  # {kind: [events new since]}, or the whole lists when recent_events_full
    recent_events_full: bool

    @classmethod
    def between(cls, since, tick):
        """Work out the changes from tick `since` to tick `tick`."""
        tools, tools_full = changed_tools(since.tools, tick.tools)
        recent, recent_full = new_recent_events(since.recent_events, tick.recent_events, tick.timestamp)
        return cls(tools, tools_full, recent, recent_full)


def changed_tools(old, new):
    """Return (the changes taking `old` to `new`, False), or (`new`, True) when changes cannot say it.

    A change is the tool and the fields of its entry that differ, which a client merges into the entry it
    holds; a tool not seen before comes whole and goes last. A tool gone, a field gone or a new order
    (none happens while the pool runs) can only be sent whole.
    """
    before = {entry["tool"]: entry for entry in old}
    changes = []
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


def new_recent_events(old, new, timestamp):
    """Return ({kind: the events of `new` after those of `old`}, False), or (`new`, True) when those cannot say it.

    A client holding `old` appends the events, and keep_recent must then give exactly `new` at `timestamp`:
    each candidate is replayed, so a late event that lands among events already sent, an event dropped by a
    cap, or a millisecond lost to rounding costs a whole recent_events, never a wrong one.
    """
    fresh = {}
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


def keep_recent(held, fresh, timestamp):
    """Return what a delta client keeps of one kind: held then fresh events of the 60 s before `timestamp`, the last 10."""
    since = _millis(timestamp) - RECENT_SECONDS * 1000
    kept = [event for event in held + fresh if _millis(event["timestamp"]) >= since]
    return kept[-RECENT_LIMIT:]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)


@lru_cache(maxsize=4096)
def _millis(text):
    # What JavaScript's Date.parse gives for our ISO strings: whole milliseconds, so the comparison is exact.
    return (datetime.fromisoformat(text) - _EPOCH) // _MILLISECOND


def diff_metrics(old, new):
    """Return ({tool: [new or replaced buckets]}, {tool: [timestamps gone]}) taking `old` to `new`.

    Buckets are immutable and a changed one is a new dict, so identity finds the changes.
    """
    changed, expired = {}, {}
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
