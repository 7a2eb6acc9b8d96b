"""Compressed responses (br, then gzip, with flask-compress) and long-lived caching of the page's static bundles.

What a response gets:

- Dash's fingerprinted bundles (`/_dash-component-suites/<pkg>/<name>.v<version>m<mtime>.js`), the assets Dash links
  with `?m=<mtime>` (Bootstrap's CSS among them) and its favicon linked with `?v=<dash version>` are cached by
  browsers for a year (`public, max-age=31536000, immutable`): their URL changes with them.
- Bundles the page loads later by a fixed URL (plotly.js, which dash-renderer fetches from
  `.../plotly/package_data/plotly.min.js`, and the chunks dcc and other component packages load on demand) are
  redirected to their fingerprinted URL, so they are cached for a year too while an upgrade still reaches every
  browser; the redirect itself is revalidated. A fixed URL the app replaces (plotly.js by its smaller bundle in
  assets/) is redirected to that asset's URL instead.
- Every other response without a Cache-Control of its own (the page, Dash's layout and callbacks, the REST API)
  gets `no-cache`: a browser may keep it but asks again before using it.
- JSON, JS, CSS, HTML, CSV and plain text are compressed when the client accepts it. A static bundle is compressed
  once per encoding and its body kept (keyed by its file and a checksum of its content, at most
  STATIC_CACHE_ENTRIES bodies); data responses are compressed per request. Streamed responses, the SSE stream
  above all, are never compressed or buffered here (the stream gzips its own messages, one flushed block each).
"""

import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import dash
from dash.fingerprint import build_fingerprint, check_fingerprint
from flask import Flask, Request, Response, g, redirect, request
from flask_compress import Compress
from werkzeug.wrappers import Response as BaseResponse

EXTENSION = "dash_app.compression"
ONE_YEAR = 31536000
REVALIDATE = "no-cache"
# Dash's own resource routes, under its routes prefix.
COMPONENT_SUITES = "_dash-component-suites/"
FAVICON = "_favicon.ico"
COMPRESSED_TYPES = (
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "text/csv",
    "text/plain",  # /metrics: Prometheus asks for gzip and decodes it
    "image/svg+xml",
    "image/x-icon",  # Dash's favicon: 15 KB of uncompressed bitmaps
    "image/vnd.microsoft.icon",
)
# Each body is one encoding of one file (plotly's is 1.3 MB in br); the page uses about 20 files.
STATIC_CACHE_ENTRIES = 64


class BodyCache:
    """flask-compress's cache of compressed static bodies: the least recently used go past `max_entries`."""

    def __init__(self, max_entries: int = STATIC_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def set(self, key: str, value: bytes) -> None:
        with self._lock:
            self._bodies[key] = value
            self._bodies.move_to_end(key)
            while len(self._bodies) > self.max_entries:
                self._bodies.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._bodies)


def register_compression(app: dash.Dash, replaced: Mapping[str, str] | None = None) -> None:
    """Compress `app`'s responses when the client accepts it and give its static bundles long-lived caching.

    `replaced` maps a bundle's fixed URL under the component suites ("package/path") to a file in the assets folder
    that is sent instead (plotly.js's smaller bundle, see vendor.py).
    """
    server: Flask = app.server
    prefix = app.config.routes_pathname_prefix
    assets_prefix = prefix + app.config.assets_url_path.strip("/") + "/"
    cache = BodyCache()
    server.config.update(
        # Compression is applied by the hook below, which knows which responses are static and which are streamed.
        COMPRESS_REGISTER=False,
        COMPRESS_ALGORITHM=["br", "gzip"],
        COMPRESS_STREAMS=False,
        COMPRESS_MIMETYPES=list(COMPRESSED_TYPES),
        # Brotli 5 takes about the time of 4 (90 ms for plotly.min.js) and makes plotly's bundle 9 % smaller.
        COMPRESS_BR_LEVEL=5,
        COMPRESS_CACHE_BACKEND=lambda: cache,
        COMPRESS_CACHE_KEY=_static_body_key,
    )
    static = Compress(server)
    dynamic = Compress(server)
    dynamic.cache = None  # data differs on every request: nothing to keep
    server.extensions[EXTENSION] = cache

    @server.before_request
    def fingerprint_fixed_urls() -> BaseResponse | None:
        if request.path.startswith(prefix + COMPONENT_SUITES):
            return _redirect_to_fingerprint(app, assets_prefix, replaced or {})
        return None

    @server.after_request
    def cache_and_compress(response: Response) -> Response:
        path = request.path
        fixed_content = (
            (path.startswith(prefix + COMPONENT_SUITES) and _fingerprinted(request))
            or (path.startswith(assets_prefix) and "m" in request.args)
            or (path == prefix + FAVICON and "v" in request.args)
        )
        if fixed_content and response.status_code in (200, 304):
            cache_for_a_year(response)
        elif "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = REVALIDATE
        if response.status_code != 200 or response.mimetype not in COMPRESSED_TYPES:
            return response
        # A file (assets: sent by Flask in passthrough) or a bundle named for its content is the same
        # bytes on every request: compress it once. Any other stream (the SSE) is sent as it is made, untouched.
        is_file = response.direct_passthrough
        if is_file or response.cache_control.immutable:
            if is_file:
                response.direct_passthrough = False
                response.make_sequence()  # read whole: the files here are at most a few MB
            g.static_body_key = f"{_file_key(request)}:{_checksum(response.get_data())}"
            return static.after_request(response)
        if response.is_streamed:
            return response
        return dynamic.after_request(response)


def cache_for_a_year(response: Response) -> None:
    """Let browsers and shared caches keep `response` for a year without asking again."""
    response.cache_control.no_cache = None  # Flask's send_file sets it on files it serves
    response.cache_control.public = True
    response.cache_control.max_age = ONE_YEAR
    response.cache_control.immutable = True


def _static_body_key(_request: Request) -> str:
    return g.static_body_key


def _checksum(body: bytes) -> str:
    return f"{len(body)}:{zlib.crc32(body):08x}"


def _file_key(req: Request) -> str:
    """Name the file a static response came from, so fingerprints made up by a client share one cached body."""
    args = req.view_args or {}
    if "fingerprinted_path" in args:
        return f"{args.get('package_name')}/{check_fingerprint(args['fingerprinted_path'])[0]}"
    return req.path


def _fingerprinted(req: Request) -> bool:
    return check_fingerprint((req.view_args or {}).get("fingerprinted_path", ""))[1]


def asset_query(app: dash.Dash, asset: str) -> str:
    """Return the query Dash links `asset` with (?m= its mtime): the URL changes with the file, so it is cached for a year."""
    return f"?m={(Path(app.config.assets_folder) / asset).stat().st_mtime}"


def _redirect_to_fingerprint(app: dash.Dash, assets_prefix: str, replaced: Mapping[str, str]) -> BaseResponse | None:
    """Answer a request for a registered bundle without fingerprint with a redirect to its fingerprinted URL."""
    args = request.view_args or {}
    package, path = args.get("package_name"), args.get("fingerprinted_path")
    if not isinstance(package, str) or not isinstance(path, str) or check_fingerprint(path)[1]:
        return None
    asset = replaced.get(f"{package}/{path}")
    if asset is not None:
        return _revalidated_redirect(f"{request.script_root}{assets_prefix}{asset}{asset_query(app, asset)}")
    if path not in app.registered_paths.get(package, ()):
        return None  # Dash answers what it does not serve
    target = fingerprinted(package, path)
    if target is None:
        return None
    return _revalidated_redirect(request.script_root + request.path[: -len(path)] + target)


def fingerprinted(package: str, path: str) -> str | None:
    """Return the fingerprinted name of a component package's file (None when the package or the file is missing).

    It is the fingerprint Dash puts in the page's script tags: the package's version and the file's mtime.
    """
    module = sys.modules.get(package)
    if module is None or module.__file__ is None:
        return None
    try:
        modified = int((Path(module.__file__).parent / path).stat().st_mtime)
    except OSError:
        return None
    return build_fingerprint(path, getattr(module, "__version__", "0"), modified)


def _revalidated_redirect(location: str) -> BaseResponse:
    """Return a redirect to `location` that browsers ask again for, since its target changes with each release."""
    response = redirect(location)
    response.headers["Cache-Control"] = REVALIDATE
    return response
