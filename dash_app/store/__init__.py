"""Persistence of events, sessions and pool state: one database (a SQLite file or PostgreSQL) behind one writer."""

from dash_app.store.database import Store, StoreError

__all__ = ["Store", "StoreError"]
