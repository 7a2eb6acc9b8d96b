"""Reprise RLM: the output of `rlmutil rlmstat -a -c PORT@HOST` read into a StatusReport."""

from dash_app.sources.rlm.parse import parse_rlmstat

__all__ = ["parse_rlmstat"]
