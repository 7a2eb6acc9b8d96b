"""SQLite persistence of events and pool state."""

from dash_app.store.sqlite_store import SQLiteStore, StoreError

__all__ = ["SQLiteStore", "StoreError"]
