"""Alembic's migration scripts: env.py runs them on the connection store.migrate hands it; versions/ holds them."""
