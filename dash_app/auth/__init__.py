"""Who may look (--auth none|oidc|proxy): every read needs a signed-in identity, and its role decides what it sees.

`register_auth` wires a guard that runs before every request. It finds the reader (from the session cookie, or from
a trusted proxy's headers), puts it in `flask.g.viewer` for the routes and callbacks (see auth.viewer), and answers
401 (or, for a page, sends to the sign-in) when there is none. Static files, /healthz and the sign-in routes are
open; the write API keeps its bearer token (machine clients); /metrics also takes --metrics-token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from flask import Flask, g, jsonify, redirect, request, session
from werkzeug.wrappers import Response

from dash_app.auth.cookie import SESSION_KEY
from dash_app.auth.proxy import ProxyIdentity
from dash_app.auth.roles import role_of
from dash_app.auth.viewer import ANALYST, FULL, HIDDEN, PSEUDONYM, Names, Viewer, rank
from dash_app.config import Config

# Open to everyone: files that hold no data, the health check, and the way in.
OPEN_PREFIXES = ("/_dash-component-suites/", "/assets/", "/auth/")
OPEN_PATHS = frozenset({"/healthz", "/_favicon.ico", "/favicon.ico"})
# Machine writes: the bearer token decides (web.require_token), not a session.
TOKEN_WRITES = frozenset({("POST", "/licenses/borrow"), ("POST", "/licenses/return")})
ME_PATH = "/auth/me"


class Readers:
    """Builds the Viewer of an identity: its role, and how names are shown to it (one Names per mode, one key)."""

    def __init__(self, key: bytes, pseudonymize: bool) -> None:
        self.below_analyst = Names(PSEUDONYM if pseudonymize else HIDDEN, hashlib.sha256(key).digest())
        # Without --auth everyone may see everything but the names: --pseudonymize-users hides those from everyone.
        self.anonymous = Viewer(None, "admin", self.below_analyst if pseudonymize else FULL)
        self.nobody = Viewer(None, "viewer", self.below_analyst)  # not signed in: what the open routes may show

    def of(self, user: str, role: str) -> Viewer:
        """Return the Viewer of `user` in `role`."""
        return Viewer(user, role, FULL if rank(role) >= rank(ANALYST) else self.below_analyst)


def register_auth(server: Flask, config: Config) -> Readers:
    """Add the guard (and with --auth oidc the sign-in routes) to `server`; return how readers are built."""
    # The pseudonyms' key (fixed, so pseudonyms last across restarts and workers); without one, ids shown to
    # readers without names are digested with a key of this run.
    key = (config.pseudonym_key or config.secret_key or secrets.token_hex(32)).encode()
    readers = Readers(key, config.pseudonymize_users)
    server.config.update(
        SESSION_COOKIE_NAME="license_dashboard_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=config.session_hours),
        # Only a request that changes the session may send it back: otherwise a page's slow callback, begun before
        # /auth/login stored its OAuth state, would answer after it with the older cookie and lose that state.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    server.secret_key = config.secret_key or secrets.token_bytes(32)
    if config.auth == "none":
        server.before_request(lambda: _set(readers.anonymous))
        server.add_url_rule(ME_PATH, "auth_me", lambda: _me(config.auth))
        return readers
    proxy = ProxyIdentity(config.proxy_user_header, config.proxy_groups_header, config.trusted_proxies)
    role_map = dict(config.role_map)
    if config.auth == "oidc":
        # Authlib and its HTTP client load only where sign-in goes through a provider: a worker starts lighter.
        from dash_app.auth.oidc import register_oidc  # noqa: PLC0415

        oidc = register_oidc(
            server,
            issuer=config.oidc_issuer,
            client_id=config.oidc_client_id,
            client_secret=config.oidc_client_secret,
            scopes=config.oidc_scopes,
            roles_claim=config.oidc_roles_claim,
            role_map=role_map,
            public_url=config.public_url,
            session_hours=config.session_hours,
        )
        server.register_blueprint(oidc)

    def identify() -> Viewer | None:
        if config.auth == "proxy":
            found = proxy.identify(request)
            return None if found is None else readers.of(found[0], role_of(found[1], role_map))
        who = session.get(SESSION_KEY)
        if not who:
            return None
        if time.time() >= float(who.get("exp", 0)):
            session.clear()  # expired: signed out here, and asked to sign in again
            return None
        return readers.of(str(who["user"]), str(who["role"]))

    @server.before_request
    def guard() -> Any:
        viewer = identify()
        g.viewer = viewer or readers.nobody
        path = request.path
        if viewer is not None:
            return _same_origin_post()
        if path in OPEN_PATHS or (path.startswith(OPEN_PREFIXES) and path != ME_PATH):
            return None
        if (request.method, path) in TOKEN_WRITES:
            return None
        if path == "/metrics" and config.metrics_token and _bearer_is(config.metrics_token):
            return None
        if config.auth == "oidc" and request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            # A person opening a page: to the sign-in, and back here after.
            return redirect(f"/auth/login?next={_quoted(request.full_path.rstrip('?'))}")
        response = jsonify(
            {"error": "unauthorized", "detail": "sign in first (this dashboard shows its data to signed-in users)"}
        )
        response.status_code = 401
        return response

    server.add_url_rule(ME_PATH, "auth_me", lambda: _me(config.auth))
    return readers


def _set(viewer: Viewer) -> None:
    g.viewer = viewer


def _me(auth: str) -> Response:
    """GET /auth/me: who is signed in, their role and how they see names (for the page's sign-in bar)."""
    viewer: Viewer = g.viewer
    who = session.get(SESSION_KEY) or {}
    return jsonify(
        {
            "auth": auth,
            "user": viewer.user,
            "role": viewer.role,
            "names": viewer.names.mode,
            "csrf": who.get("csrf") if auth == "oidc" else None,
        }
    )


def _bearer_is(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _same_origin_post() -> Any:
    """Refuse a cross-site POST that carries a session (CSRF): the browser names its page's origin in Origin."""
    if request.method != "POST" or (request.method, request.path) in TOKEN_WRITES:
        return None
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
        response = jsonify({"error": "forbidden", "detail": "Origin: a request from another site is not accepted"})
        response.status_code = 403
        return response
    return None


def _quoted(path: str) -> str:
    return quote(path, safe="/")
