"""The parsers of one setting's text (a DASH_APP_* variable's or a flag's): each returns the value or raises ValueError."""

import ipaddress
import os
from urllib.parse import urlsplit

AUTH_MODES = ("none", "oidc", "proxy")


class ConfigError(ValueError):
    """A setting has a value the app cannot use; the message names the setting."""


def parse_bool(text: object) -> bool:
    """Parse 1/true/yes/on or 0/false/no/off (and "" for off)."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean, got {text!r}")


def parse_currency(text: object) -> str:
    """Parse a short printable currency name such as EUR."""
    value = str(text).strip()
    if len(value) > 8 or not all(ch.isprintable() for ch in value):
        raise ValueError(f"expected a short currency name such as EUR, got {text!r}")
    return value


def parse_folder_or_none(text: object) -> str:
    """Parse a folder's path, or `none` (any case) for no folder at all ("")."""
    value = str(text).strip()
    return "" if value.lower() == "none" else value


def parse_paths(text: object) -> tuple[str, ...]:
    """Parse paths separated as PATH separates them (: on POSIX)."""
    return tuple(part for part in str(text).split(os.pathsep) if part)


def parse_redis_url(text: object) -> str:
    """Parse a redis://, rediss:// or unix:// URL."""
    value = str(text).strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"expected redis://HOST:PORT/DB (or rediss://, unix://), got {value!r}")
    return value


def parse_prefix(text: object) -> str:
    """Parse a key prefix: up to 64 letters, digits or _-.:"""
    value = str(text).strip()
    if not value or len(value) > 64 or not all(ch.isalnum() or ch in "_-.:" for ch in value):
        raise ValueError(f"expected up to 64 letters, digits or _-.: , got {text!r}")
    return value


def parse_servers(text: object) -> tuple[str, ...]:
    """Parse `PORT@HOST,PORT@HOST`: license servers as their vendors' tools name them."""
    servers = tuple(part.strip() for part in str(text).split(",") if part.strip())
    for server in servers:
        port, at, host = server.partition("@")
        if not at or not port.isdigit() or not host or any(ch.isspace() or not ch.isprintable() for ch in host):
            raise ValueError(f"expected PORT@HOST, got {server!r}")
    return servers


def parse_auth_mode(text: object) -> str:
    """Parse one of AUTH_MODES."""
    value = str(text).strip().lower()
    if value not in AUTH_MODES:
        raise ValueError(f"expected one of {', '.join(AUTH_MODES)}, got {text!r}")
    return value


def parse_http_url(text: object) -> str:
    """Parse an http(s):// URL without query or fragment, without its trailing slash."""
    value = str(text).strip().rstrip("/")
    if not value.startswith(("https://", "http://")) or "#" in value or "?" in value:
        raise ValueError(f"expected an https:// URL without query or fragment, got {text!r}")
    return value


def parse_ldap_url(text: object) -> str:
    """Parse an ldap:// or ldaps:// URL naming a host (and optionally a port), without a path, user or query ("": none)."""
    value = str(text).strip().rstrip("/")
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("ldap", "ldaps")
        or not parts.hostname
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
        or port == 0
    ):
        raise ValueError(f"expected ldap://HOST:PORT or ldaps://HOST:PORT, got {text!r}")
    return value


def parse_networks(text: object) -> tuple[str, ...]:
    """Parse comma-separated address ranges (CIDR)."""
    parts = tuple(part.strip() for part in str(text).split(",") if part.strip())
    for part in parts:
        ipaddress.ip_network(part, strict=False)  # ValueError names the bad one
    return parts


def header_name(text: object) -> str:
    """Parse an HTTP header name of letters, digits and - ("" for none)."""
    value = str(text).strip()
    # nginx and gunicorn drop a name with _ (a client could spell X_User for X-User); anything else is no header name.
    if value and not all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in value):
        raise ValueError(f"expected a header name of letters, digits and -, got {text!r}")
    return value


def parse_role_map(text: object) -> tuple[tuple[str, str], ...]:
    """Parse `GROUP=ROLE,...` pairs, each ROLE viewer, analyst or admin."""
    pairs = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        group, eq, role = part.rpartition("=")
        if not eq or not group.strip() or role.strip() not in ("viewer", "analyst", "admin"):
            raise ValueError(f"expected GROUP=viewer|analyst|admin, got {part!r}")
        pairs.append((group.strip(), role.strip()))
    return tuple(pairs)
