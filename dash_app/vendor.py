"""Serve Bootstrap's CSS from the installed Bootstrap-Flask package, so the page needs no CDN; and /healthz."""

from pathlib import Path

import flask_bootstrap
from flask import Blueprint, send_from_directory

BOOTSTRAP_CSS_DIR = Path(flask_bootstrap.__file__).resolve().parent / "static" / "bootstrap5" / "css"

bp = Blueprint("site", __name__)


@bp.get("/vendor/<path:filename>")
def vendor_asset(filename):
    return send_from_directory(BOOTSTRAP_CSS_DIR, filename, max_age=86400)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}
