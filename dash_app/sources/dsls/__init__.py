"""Dassault Systèmes DSLS: the answer of `DSLicSrv -admin` to `connect HOST PORT` and `getLicenseUsage -csv`."""

from dash_app.sources.dsls.parse import parse_dsls

__all__ = ["parse_dsls"]
