"""The license pool, its inventory and its REST API."""

from dash_app.licenses.inventory import InventoryError, ToolSpec, load_inventory
from dash_app.licenses.pool import BorrowDenied, LicensePool, UnknownBorrow
from dash_app.licenses.series import OTHER_UNKNOWN_TOOLS, SeriesNames

__all__ = [
    "OTHER_UNKNOWN_TOOLS",
    "BorrowDenied",
    "InventoryError",
    "LicensePool",
    "SeriesNames",
    "ToolSpec",
    "UnknownBorrow",
    "load_inventory",
]
