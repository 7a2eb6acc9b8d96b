"""SQLite persistence of events and pool state."""

from dash_app.store.database import Store, StoreError

__all__ = ["Store", "StoreError"]
