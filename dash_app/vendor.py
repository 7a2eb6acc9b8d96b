"""Serve Bootstrap's CSS from the installed Bootstrap-Flask package, so the page needs no CDN; and /healthz."""

from importlib.metadata import version
from pathlib import Path
from typing import Any

import flask_bootstrap
from flask import Blueprint, Response, request, send_from_directory

from dash_app.state import get_state

BOOTSTRAP_CSS_DIR = Path(flask_bootstrap.__file__).resolve().parent / "static" / "bootstrap5" / "css"
VENDOR_PREFIX = "/vendor/"
# The files under /vendor/ change only with the package, so its version in the URL is their fingerprint.
VERSION = version("Bootstrap-Flask")
ONE_YEAR = 31536000

bp = Blueprint("site", __name__)


def versioned(url: str) -> str:
    """Return `url` with this Bootstrap-Flask version as `?v=` if it names a file under /vendor/, else `url` unchanged."""
    if url.startswith(VENDOR_PREFIX) and "?" not in url:
        return f"{url}?v={VERSION}"
    return url


@bp.get("/vendor/<path:filename>")
def vendor_asset(filename: str) -> Response:
    # A new Bootstrap-Flask comes with a new URL, so what a versioned URL names never changes. An old or unversioned
    # URL still works, but is checked again (ETag) before each use.
    current = request.args.get("v") == VERSION
    response = send_from_directory(BOOTSTRAP_CSS_DIR, filename, max_age=ONE_YEAR if current else None)
    if current:
        response.cache_control.immutable = True
    return response


@bp.get("/healthz")
def healthz() -> dict[str, Any] | tuple[dict[str, Any], int]:
    shared = get_state().shared
    if shared is None:
        return {"status": "ok"}
    # With --redis: reads still serve from memory, but writes fail and nothing new arrives while Redis is away.
    body = {"status": "ok" if shared.healthy() else "degraded", **shared.status()}
    return body, 200 if shared.healthy() else 503
