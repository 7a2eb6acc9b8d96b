"""Dash layout pieces; each module builds part of the page from plain data."""
