"""The metrics buffer: every view and stream reads license activity from here."""

from dash_app.buffer.metrics_buffer import RealtimeMetricsBuffer
from dash_app.buffer.rows import Bucket, InUseBin, MinuteFlow, WindowCounts

__all__ = ["Bucket", "InUseBin", "MinuteFlow", "RealtimeMetricsBuffer", "WindowCounts"]
