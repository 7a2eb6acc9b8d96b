"""The metrics buffer: every view and stream reads license activity from here."""

from dash_app.buffer.metrics_buffer import Bucket, InUseBin, MinuteFlow, RealtimeMetricsBuffer

__all__ = ["Bucket", "InUseBin", "MinuteFlow", "RealtimeMetricsBuffer"]
