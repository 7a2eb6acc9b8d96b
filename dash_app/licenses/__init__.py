"""The license pool, its inventory and its REST API."""

from dash_app.licenses.inventory import InventoryError, ToolSpec, load_inventory
from dash_app.licenses.pool import BorrowDenied, LicensePool, UnknownBorrow

__all__ = ["BorrowDenied", "InventoryError", "LicensePool", "ToolSpec", "UnknownBorrow", "load_inventory"]
