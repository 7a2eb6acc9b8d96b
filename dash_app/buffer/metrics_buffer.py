"""The server-side buffer of raw license events and their per-tool minute bins, put together from its parts."""

from dash_app.buffer.in_use import InUse
from dash_app.buffer.reads import Reads
from dash_app.buffer.rows import Bucket, InUseBin, MinuteFlow

__all__ = ["Bucket", "InUseBin", "MinuteFlow", "RealtimeMetricsBuffer"]


class RealtimeMetricsBuffer(InUse, Reads):
    """Capped, time-limited store of borrow, return and failure events, aggregated per tool and minute.

    Every public method is thread-safe. Events added one by one wait in a small batch that the next read (or a full
    batch) adds in one loop; aggregates are then kept up to date on each add and eviction, so reads never rescan raw
    events, and the in-use level figures of a minute are worked out from its events when first read after a change.
    Returned buckets are shared and must be treated as read-only. `series_of` maps a tool name to the series its
    minute bins are kept under (the name itself by default); it must give the same answer for a name every time.
    Raw events always keep the exact name.
    """
