"""FlexNet lmstat: the output of `lmutil lmstat -a -c PORT@HOST` read into a StatusReport."""

from dash_app.sources.lmstat.parse import parse_lmstat

__all__ = ["parse_lmstat"]
