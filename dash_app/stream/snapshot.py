"""One tick's snapshot of the buffer and the pool, and the pure functions that cut it into stream messages."""

from bisect import bisect_left
from dataclasses import dataclass
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
        return self._message("full", tick, self.tool_metrics(tick))

    def delta_message(self, since, tick):
        """Return the picture at `tick` with only the buckets that changed after tick `since`."""
        changed, expired = diff_metrics(self.tool_metrics(since), self.tool_metrics(tick))
        message = self._message("delta", tick, changed)
        message["expired"] = expired
        return message

    def _message(self, mode, tick, metrics):
        return {
            "mode": mode,
            "timestamp": tick.timestamp,
            "tools": self.tool_status(tick),
            "rates": tick.rates,
            "recent_events": tick.recent_events,
            "buffer_stats": tick.buffer_stats,
            "tool_metrics": metrics,
        }


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
