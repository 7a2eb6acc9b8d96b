"""Analytics over stored sessions and denials: capacity, coverage, overage and commit advice per tool.

The modules are imported by name (`dash_app.analytics.capacity`, `.profiles`, `.spec`, ...), never through this package:
the serving process imports the service and the API, and pandas only once it runs an analysis itself.
"""
