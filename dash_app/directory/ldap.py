"""The company directory: each user's group (and cost centre) looked up with ldap3, all users over one connection."""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPResponseTimeoutError
from ldap3.utils.conv import escape_filter_chars

from dash_app.directory.lookup import DirectoryError, Lookup
from dash_app.directory.mapping import ALWAYS, UNUSED, GroupMapping, Membership
from dash_app.events import name_problem
from dash_app.sources.errors import BIND_REFUSED, NO_ANSWER, SEARCH_FAILED, TLS_FAILED, SourceError

# Seconds to wait for the directory to accept a connection, and for each answer: past either it is down.
LDAP_TIMEOUT_SECONDS = 10.0
# The LDAP result code of a search that found more entries than the server hands out: no failure of the directory.
_SIZE_LIMIT_EXCEEDED = 4


def user_filter(template: str, user: str) -> str:
    """Return the search filter for `user`: `template` with {user} as the name escaped per RFC 4515."""
    return template.format(user=escape_filter_chars(user))  # the settings' check let only {user} stand in braces


@dataclass(frozen=True)
class LdapDirectory:
    """Where and how to look users up; the bind password is never in its repr."""

    url: str
    base_dn: str
    user_filter: str = "(uid={user})"
    group_attribute: str = "departmentNumber"
    cost_centre_attribute: str = ""
    bind_dn: str = ""
    password: str = field(default="", repr=False)
    timeout: float = LDAP_TIMEOUT_SECONDS

    @property
    def name(self) -> str:
        """Return the directory as GET /sources names it: scheme, host and port."""
        parts = urlsplit(self.url)
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
        return f"{parts.scheme}://{parts.hostname}:{port}"

    def _connection(self) -> ldap3.Connection:
        """Return a connection, not yet opened (no socket, no bind)."""
        parts = urlsplit(self.url)
        secure = parts.scheme == "ldaps"
        server = ldap3.Server(
            parts.hostname,
            port=parts.port,
            use_ssl=secure,
            # ldap3 checks no certificate unless told: a directory's answers decide who pays.
            tls=ldap3.Tls(validate=ssl.CERT_REQUIRED) if secure else None,
            get_info=ldap3.NONE,
            connect_timeout=self.timeout,
        )
        return ldap3.Connection(
            server,
            user=self.bind_dn or None,
            password=self.password or None,
            auto_bind=ldap3.AUTO_BIND_NONE,
            read_only=True,
            # ldap3 would follow a referral to any host, binding there with our DN and password.
            auto_referrals=False,
            receive_timeout=max(1, math.ceil(self.timeout)),  # ldap3 packs it as whole seconds
        )

    def look_up(self, users: Iterable[str]) -> Lookup:
        """Return the memberships of those `users` the directory knows, over one connection; DirectoryError if it cannot."""
        connection = self._connection()
        try:
            connection.open()
            if self.bind_dn and not connection.bind():
                result = connection.result or {}
                raise DirectoryError(SourceError(BIND_REFUSED, detail=_said(result)))
            return self._search_all(connection, users)
        except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
            words = _one_line(exc)
            kind = TLS_FAILED if "ssl" in words.lower() or "certificate" in words.lower() else NO_ANSWER
            raise DirectoryError(SourceError(kind, detail=words)) from None
        except LDAPException as exc:
            raise DirectoryError(SourceError(SEARCH_FAILED, detail=_one_line(exc))) from None
        finally:
            try:
                connection.unbind()
            except LDAPException:
                pass  # the connection is gone already

    def _search_all(self, connection: ldap3.Connection, users: Iterable[str]) -> Lookup:
        attributes = [self.group_attribute] + ([self.cost_centre_attribute] if self.cost_centre_attribute else [])
        members: dict[str, list[Membership]] = {}
        asked = unusable = 0
        for user in sorted(set(users)):
            asked += 1
            connection.search(self.base_dn, user_filter(self.user_filter, user), ldap3.SUBTREE, attributes=attributes)
            result = connection.result or {}
            if result.get("result") not in (0, _SIZE_LIMIT_EXCEEDED):
                raise DirectoryError(SourceError(SEARCH_FAILED, detail=_said(result)))
            entries = sorted(
                (entry for entry in connection.response or [] if entry.get("type") == "searchResEntry"),
                key=lambda entry: entry.get("dn", ""),
            )
            if not entries:
                continue  # unknown to the directory: (unassigned)
            found = entries[0].get("attributes", {})
            group = _first(found.get(self.group_attribute))
            cost_centre = _first(found.get(self.cost_centre_attribute)) if self.cost_centre_attribute else ""
            if not _usable(group) or (cost_centre and not _usable(cost_centre)):
                unusable += 1
                continue
            members[user] = [Membership(ALWAYS, group, cost_centre)]
        return Lookup(GroupMapping(members), asked, unusable)


def _first(values: object) -> str:
    """Return an attribute's first value as text ("" when it has none)."""
    if isinstance(values, (list, tuple)):
        values = values[0] if values else ""
    if isinstance(values, bytes):
        values = values.decode("utf-8", "replace")
    return str(values or "").strip()


def _usable(name: str) -> bool:
    """True when a group or cost centre the directory names passes the name rule."""
    return bool(name) and name != UNUSED and name_problem(name) is None


def _said(result: dict[str, object]) -> str:
    """Return what an LDAP result says, in one line: its description and message."""
    words = " ".join(str(result.get(key) or "") for key in ("description", "message")).strip()
    return _one_line(words or "no result")


def _one_line(text: object) -> str:
    """Return `text` on one line, at most 300 characters (without the tuple's brackets and quotes ldap3 wraps it in)."""
    return " ".join(str(text).split()).strip("()'\", ")[:300]
