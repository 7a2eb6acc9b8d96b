"""Who is looking: a signed-in identity's role, and what of people's names that role may see.

Roles, lowest first: `viewer` sees aggregates and no names; `analyst` also user names and client hosts; `admin`
also the sources' health details and the alerts' configuration. A viewer never gets a real user name: with
--pseudonymize-users it gets a stable pseudonym (a keyed HMAC, so patterns stay visible), otherwise none at all.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import g, has_request_context

VIEWER, ANALYST, ADMIN = "viewer", "analyst", "admin"
ROLES = (VIEWER, ANALYST, ADMIN)  # lowest first
REAL, PSEUDONYM, HIDDEN = "real", "pseudonym", "hidden"  # what a Viewer sees of a user name
PSEUDONYM_PREFIX = "user-"
BORROW_ID_PREFIX = "b-"


def rank(role: str) -> int:
    """Return the place of `role` among ROLES (higher sees more)."""
    return ROLES.index(role)


@dataclass(frozen=True)
class Names:
    """How user names, hosts and borrow ids are shown to one kind of reader; `mode` is REAL, PSEUDONYM or HIDDEN."""

    mode: str
    key: bytes = b""  # the HMAC key of pseudonyms and of borrow ids shown to viewers

    @property
    def real(self) -> bool:
        """True when names, hosts and borrow ids are shown as they are."""
        return self.mode == REAL

    def user(self, name: str | None) -> str | None:
        """Return what this reader sees of user `name`: itself, its pseudonym, or None."""
        if name is None or self.mode == REAL:
            return name
        if self.mode == PSEUDONYM:
            return PSEUDONYM_PREFIX + _digest(self.key, "user", name)[:10]
        return None

    def users(self, names: list[str]) -> list[str]:
        """Return what this reader sees of a list of distinct user names (sorted; none when hidden)."""
        if self.mode == REAL:
            return names
        if self.mode == HIDDEN:
            return []
        return sorted({self.user(n) or "" for n in names})

    def digest(self, kind: str, value: str) -> str:
        """Return a keyed digest of `value`, for ids that must not be read but must stay distinct (16 hex digits)."""
        return _digest(self.key, kind, value)[:16]

    def host(self, host: str | None) -> str | None:
        """Return the client host as this reader sees it: only readers of real names see hosts."""
        return host if self.mode == REAL else None

    def borrow_id(self, borrow_id: str | None) -> str | None:
        """Return a borrow id as this reader sees it: ids of log lines and polls name hosts, so others get a digest."""
        if borrow_id is None or self.mode == REAL:
            return borrow_id
        return BORROW_ID_PREFIX + self.digest("borrow", borrow_id)


def _digest(key: bytes, kind: str, value: str) -> str:
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()


FULL = Names(REAL)


@dataclass(frozen=True)
class Viewer:
    """The reader of one request: who (None without sign-in), their role, and how names are shown to them."""

    user: str | None
    role: str
    names: Names = FULL

    @property
    def sees_sources(self) -> bool:
        """True when this reader may see the sources' health details and the alerts' configuration."""
        return self.role == ADMIN

    @property
    def sees_errors(self) -> bool:
        """True when this reader may read the sources' errors in full: a poll's output may name a user and a host."""
        return self.role == ADMIN and self.names.real


# Without --auth: everyone may see everything (names as --pseudonymize-users says); also outside a request.
ANONYMOUS = Viewer(None, ADMIN)


def current_viewer() -> Viewer:
    """Return the reader of the current request (set by the auth guard), or ANONYMOUS outside one."""
    if not has_request_context():
        return ANONYMOUS
    return g.get("viewer", ANONYMOUS)
