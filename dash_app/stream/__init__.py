"""The SSE stream /realtime/stream: one snapshot per tick, serialized once per variant, shared by every client."""

from dash_app.stream.snapshot import Changes, Tick, Variant, diff_metrics
from dash_app.stream.ticker import StreamTicker, StreamUnavailable, stream_capacity

__all__ = ["Changes", "StreamTicker", "StreamUnavailable", "Tick", "Variant", "diff_metrics", "stream_capacity"]
