"""Serve Bootstrap's CSS from the installed Bootstrap-Flask package, so the page needs no CDN."""

from pathlib import Path

import flask_bootstrap
from flask import send_from_directory

BOOTSTRAP_CSS_DIR = Path(flask_bootstrap.__file__).resolve().parent / "static" / "bootstrap5" / "css"


def register_vendor_assets(server):
    """Add the /vendor/<file> route for Bootstrap's stylesheet."""

    @server.get("/vendor/<path:filename>")
    def vendor_asset(filename):
        return send_from_directory(BOOTSTRAP_CSS_DIR, filename, max_age=86400)
