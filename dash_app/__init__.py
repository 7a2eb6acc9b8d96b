"""License-usage dashboard: a Dash app over a server-side buffer of license events.

`create_app` and `build_state` live in dash_app/app.py and are loaded from here when first asked for: gunicorn's
master imports only the worker class (dash_app.worker), and importing the package must not load Dash, pandas and
the whole app into it (about 2.5 s of CPU at every server start).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dash_app.app import build_state, create_app

__all__ = ["build_state", "create_app"]


def __getattr__(name: str) -> Any:
    """Load create_app or build_state from dash_app.app when first asked for."""
    if name in __all__:
        from dash_app import app

        return getattr(app, name)
    raise AttributeError(f"module 'dash_app' has no attribute {name!r}")
