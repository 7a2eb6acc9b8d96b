"""--auth oidc: sign-in with OpenID Connect (authorization code with PKCE) through Authlib, and sign-out.

Routes: /auth/login (to the identity provider), /auth/callback (back from it: the ID token is checked, the session
starts), /auth/logout (a form; its POST, with the session's CSRF token, ends the session here and at the provider)
and /auth/signed-out.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, Response, redirect, request, session
from markupsafe import escape

from dash_app.auth.cookie import SESSION_KEY
from dash_app.auth.pages import page
from dash_app.auth.roles import claim_values, role_of
from dash_app.config import ConfigError

log = logging.getLogger(__name__)


def safe_next(target: str | None) -> str:
    """Return `target` if it is a path on this site, else "/": a sign-in must not send anyone to another site."""
    # A browser drops tabs and newlines, trims controls and spaces and reads a backslash as a slash before it resolves a Location,
    # so "/\t/evil.example" goes to evil.example: a target with any such character is refused, not cleaned. The same
    # holds for its decoded path, which the server sees and may send back in a redirect of its own.
    if not target or not target.startswith("/") or target.startswith("//") or not _plain(target):
        return "/"
    parts = urlsplit(target)
    path = unquote(parts.path)
    if parts.scheme or parts.netloc or not path.startswith("/") or path.startswith("//") or not _plain(path):
        return "/"
    return target


def _plain(text: str) -> bool:
    """True when `text` has no control, space (of any kind), invisible format character or backslash."""
    return all(ch.isprintable() and not ch.isspace() and ch != "\\" for ch in text)


def user_name(claims: dict[str, Any]) -> str:
    """Return the name a person is shown by: preferred_username, else email, else name, else the subject."""
    for claim in ("preferred_username", "email", "name", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return value.strip()[:256]
    return "unknown"


def register_oidc(
    server: Flask,
    *,
    issuer: str,
    client_id: str,
    client_secret: str,
    scopes: str,
    roles_claim: str,
    role_map: Mapping[str, str],
    public_url: str,
    session_hours: float,
) -> Blueprint:
    """Register the identity provider with Authlib and return the sign-in routes' blueprint."""
    oauth = OAuth(server)
    oauth.register(
        "idp",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        # PKCE (S256) on top of the client secret: a stolen code cannot be redeemed without this session's verifier.
        client_kwargs={"scope": scopes, "code_challenge_method": "S256"},
    )
    client: Any = oauth.create_client("idp")
    bp = Blueprint("auth", __name__)

    def base_url() -> str:
        return (public_url or request.host_url).rstrip("/")

    @bp.get("/auth/login")
    def login() -> Any:
        session["next"] = safe_next(request.args.get("next"))
        return client.authorize_redirect(f"{base_url()}/auth/callback")

    @bp.get("/auth/callback")
    def callback() -> Any:
        target = safe_next(session.get("next"))
        try:
            token = client.authorize_access_token()
        except OAuthError as exc:
            log.warning("sign-in failed: %s", exc.error)
            return page("Sign-in failed", f"The identity provider said: {exc.error}.", retry=True), 401
        claims = dict(token.get("userinfo") or {})
        user = user_name(claims)
        role = role_of(claim_values(claims.get(roles_claim)), role_map)
        session.clear()  # a new session for a new sign-in: nothing from before carries over
        session.permanent = True
        session[SESSION_KEY] = {
            "user": user,
            "role": role,
            "exp": time.time() + session_hours * 3600,
            "csrf": secrets.token_urlsafe(24),
            "id_token": token.get("id_token", ""),
        }
        log.info("signed in: %s as %s", user, role)
        return redirect(target)

    @bp.get("/auth/logout")
    def logout_form() -> Any:
        who = session.get(SESSION_KEY)
        if not who:
            return redirect("/auth/signed-out")
        return page(
            "Sign out",
            f"Signed in as {escape(who['user'])} ({escape(who['role'])}).",
            form=("/auth/logout", "Sign out", who["csrf"]),
        )

    @bp.post("/auth/logout")
    def logout() -> Any:
        who = session.get(SESSION_KEY) or {}
        given = request.form.get("csrf", "")
        if not who or not hmac.compare_digest(given.encode(), str(who.get("csrf", "")).encode()):
            return page("Sign out", "This form has expired; open the page again to sign out.", retry=False), 403
        session.clear()
        end = client.load_server_metadata().get("end_session_endpoint")
        if not end:
            return redirect("/auth/signed-out")
        query = {"post_logout_redirect_uri": f"{base_url()}/auth/signed-out", "client_id": client_id}
        if who.get("id_token"):
            query["id_token_hint"] = who["id_token"]
        return redirect(f"{end}?{urlencode(query)}")

    @bp.get("/auth/signed-out")
    def signed_out() -> Response:
        return page("Signed out", "You are signed out.", retry=True)

    return bp


def check_issuer(issuer: str) -> None:
    """Raise ConfigError unless the issuer's discovery document answers and names this issuer (checked at start)."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        named = response.json().get("issuer", "")
    except (requests.RequestException, ValueError) as exc:
        raise ConfigError(f"--oidc-issuer: {url} does not answer with a discovery document: {type(exc).__name__}") from None
    if named.rstrip("/") != issuer:
        raise ConfigError(f"--oidc-issuer: the provider names itself {named!r}, not {issuer!r}")
