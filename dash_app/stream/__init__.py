"""The SSE stream /realtime/stream: one snapshot per tick, serialized once per variant, shared by every client."""

from dash_app.stream.routes import register_stream
from dash_app.stream.snapshot import Changes, Tick, Variant, diff_metrics
from dash_app.stream.ticker import StreamTicker, StreamUnavailable

__all__ = ["Changes", "StreamTicker", "StreamUnavailable", "Tick", "Variant", "diff_metrics", "register_stream"]
