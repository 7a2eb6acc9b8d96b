"""--auth proxy: a sign-in proxy in front (oauth2-proxy, nginx auth_request) names the user in a header.

The header is believed only from the proxy's own addresses (--trusted-proxy): from anywhere else anybody could send it.
Its name is letters, digits and - (config.header_name): WSGI gives X_Forwarded_User and X-Forwarded-User the same
variable, and the servers in front drop a client's spelling with _ (gunicorn's header_map "drop", its default; nginx's
underscores_in_headers off), so only the proxy's own header is read here. The proxy must replace (or clear) every
identity header a client sends: deploy/run's nginx does (deploy/nginx.conf).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from flask import Request

from dash_app.auth.roles import claim_values

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyIdentity:
    """Reads the user and groups a trusted proxy put in the request's headers."""

    def __init__(self, user_header: str, groups_header: str, trusted: Iterable[str]) -> None:
        self.user_header = user_header
        self.groups_header = groups_header
        self.trusted: list[Network] = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted]

    def from_trusted(self, address: str | None) -> bool:
        """True when `address` (the peer that sent the request) is one of the trusted proxies."""
        try:
            peer = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(peer in network for network in self.trusted)

    def identify(self, request: Request) -> tuple[str, list[str]] | None:
        """Return (user, groups) the proxy names, or None when the request did not come through it or names no one."""
        if not self.from_trusted(request.remote_addr):
            return None
        user = request.headers.get(self.user_header, "").strip()
        if not user or not user.isprintable() or len(user) > 256:
            return None
        groups = claim_values(request.headers.get(self.groups_header, "")) if self.groups_header else []
        return user, groups
