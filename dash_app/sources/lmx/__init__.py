"""X-Formation LM-X: the output of `lmxendutil -licstat -host HOST -port PORT` read into a StatusReport."""

from dash_app.sources.lmx.parse import parse_lmx

__all__ = ["parse_lmx"]
