"""Apprise URLs and their secrets: checking a URL, redacting it for display, and scrubbing secrets out of log lines.

Channels are shown, stored and logged only through `redact`, which also remembers the URL's secrets; a filter on
apprise's logger blanks every secret remembered here out of apprise's own log lines.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import quote, unquote

import apprise

REDACTED = "***"
# Secrets remembered for scrubbing log lines; a rules file holds a handful, tests may make thousands.
_SECRETS_KEPT = 4096

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
# Query parameters whose values are credentials by their name (apprise's pass=, token=, apikey=, ...).
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred|session|cookie|bearer", re.IGNORECASE)
# A password in any URL written into a log line.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:)[^\s@/?#]+@")
# apprise's own privacy masks ('t...n', '...abcd') still show some characters of a secret: hide those too.
_APPRISE_MASK = re.compile(r"[^\s/:@?&=.]?\.\.\.[^\s/:@?&=.]{1,4}")
# Where a URL splits into the pieces that apprise reads as tokens.
_URL_DELIMITERS = re.compile(r"([/:@?&=#,])")

_secrets_lock = threading.Lock()
_secrets: dict[str, None] = {}  # insertion-ordered, so the oldest go first past _SECRETS_KEPT
_capture = threading.local()


def _remember(values: Iterable[str]) -> None:
    """Add secret values to those blanked out of apprise's log lines."""
    with _secrets_lock:
        for value in values:
            if value and value not in _secrets:
                _secrets[value] = None
        while len(_secrets) > _SECRETS_KEPT:
            del _secrets[next(iter(_secrets))]


def scrub(text: str) -> str:
    """Return `text` with every known secret, URL password and apprise privacy mask replaced by '***'."""
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
    with _secrets_lock:
        secrets = list(_secrets)
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, quote(secret, safe="")}:
            if len(form) >= 4:
                text = text.replace(form, REDACTED)
            elif form in text:
                # A short secret is replaced only where it stands alone, not inside every word that contains it.
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", REDACTED, text)
    return _APPRISE_MASK.sub(REDACTED, text)


class _ScrubFilter(logging.Filter):
    """Rewrites apprise's records without secrets, and keeps them to the calling thread while it probes a URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for records captured by a probe; scrub the others in place and let them through."""
        message = scrub(record.getMessage())
        captured: list[tuple[int, str]] | None = getattr(_capture, "records", None)
        if captured is not None:
            captured.append((record.levelno, message))
            return False
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER = _ScrubFilter()
# apprise logs through one logger; urllib3 logs request lines (with any query tokens) at DEBUG.
for _name in ("apprise", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_FILTER)


@contextmanager
def _captured() -> Iterator[list[tuple[int, str]]]:
    """Collect apprise's log records of this thread instead of logging them (for probing a URL quietly)."""
    outer = getattr(_capture, "records", None)
    records: list[tuple[int, str]] = []
    _capture.records = records
    try:
        yield records
    finally:
        _capture.records = outer


def apprise_asset() -> apprise.AppriseAsset:
    """Return apprise's settings for one use: nothing on disk, sends in the calling thread, no deadline of its own."""
    # With a service_timeout apprise sends from a pool thread and only stops waiting for it at the timeout, leaving the
    # thread stuck on a trickling server; without one it sends here, under the deadline that Deliveries enforces.
    return apprise.AppriseAsset(storage_mode="memory", async_mode=False, app_id="license-dashboard", service_timeout=0)


def probe(url: str) -> tuple[apprise.NotifyBase | None, list[tuple[int, str]]]:
    """Return apprise's service object for `url` (None when it cannot use it) and what apprise said about it."""
    with _captured() as records:
        try:
            plugin = apprise.Apprise.instantiate(url, asset=apprise_asset())
        except Exception as exc:  # apprise reports bad URLs by logging, but a plugin may still raise
            plugin = None
            records.append((logging.ERROR, scrub(f"{type(exc).__name__}: {exc}")))
    return (plugin if isinstance(plugin, apprise.NotifyBase) else None), records


def _private_values(plugin: apprise.NotifyBase) -> set[str]:
    """Return the values of the tokens and arguments that the service's plugin declares private (its secrets)."""
    values: set[str] = set()
    declared = {**getattr(plugin, "template_tokens", {}), **getattr(plugin, "template_args", {})}
    for name, meta in declared.items():
        if not isinstance(meta, dict) or not meta.get("private"):
            continue
        value = getattr(plugin, str(meta.get("map_to", name)), None)
        items = value if isinstance(value, list | tuple | set | frozenset) else [value]
        values.update(item for item in items if isinstance(item, str) and item)
    return values


def _redact_structure(url: str) -> tuple[str, set[str]]:
    """Return `url` with its userinfo password and secret-looking query values hidden, and the values hidden."""
    match = _SCHEME.match(url)
    if match is None:
        return url, set()
    scheme, rest = match.groups()
    head, question, query = rest.partition("?")
    netloc, slash, path = head.partition("/")
    hidden: set[str] = set()
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon and password:
            hidden.update({password, unquote(password)})
            netloc = f"{user}:{REDACTED}@{hostport}"
    params = []
    for param in query.split("&") if question else []:
        name, equals, value = param.partition("=")
        plain = unquote(name)
        # '+name' is a header that apprise's json://, xml:// and form:// send: Authorization and API keys live there.
        if equals and value and (plain.startswith("+") or _SECRET_NAME.search(plain)):
            hidden.update({value, unquote(value)})
            value = REDACTED
        params.append(f"{name}{equals}{value}")
    return f"{scheme}://{netloc}{slash}{path}{question}{'&'.join(params)}", hidden


@lru_cache(maxsize=512)
def redact(url: str) -> str:
    """Return `url` with its password, token and query secrets replaced by '***' (for logs, /alerts and the database)."""
    redacted, secrets = _redact_structure(url)
    plugin, _ = probe(url)
    if plugin is not None:
        # Tokens in the path (slack://A/B/C, discord://id/token) are secrets only the service's plugin knows about.
        secrets |= _private_values(plugin)
    secrets.discard(REDACTED)
    secrets.discard("")
    _remember(secrets)
    # Odd pieces are the delimiters themselves: a secret that is one delimiter (a password ":") leaves them alone.
    pieces = _URL_DELIMITERS.split(redacted)
    redacted = "".join(
        REDACTED if n % 2 == 0 and piece and unquote(piece) in secrets else piece for n, piece in enumerate(pieces)
    )
    # A secret that spans delimiters (a token with '/' in it) is only found as a whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 6:
            redacted = redacted.replace(secret, REDACTED).replace(quote(secret, safe=""), REDACTED)
    return redacted


def check_url(url: str) -> str | None:
    """Return None when apprise can deliver to `url`, else a one-line reason (used to refuse a bad rules file at start)."""
    if not isinstance(url, str) or not url.strip():
        return "empty URL"
    match = _SCHEME.match(url.strip())
    if match is None:
        return "not an apprise URL: expected scheme://..., e.g. json://host/path or mailto://host?to=someone@example.com"
    scheme = match.group(1).lower()
    if scheme not in apprise.NotificationManager():
        return f"apprise has no service for {scheme}://"
    redact(url)  # so that apprise's complaint below, if any, is scrubbed of this URL's secrets
    plugin, records = probe(url)
    if plugin is None:
        # Every complaint, in order: apprise's last line ("Could not load ...") often follows the one that says why.
        complaints = list(dict.fromkeys(message for level, message in records if level >= logging.WARNING))
        detail = "; ".join(complaints) if complaints else "it cannot parse it"
        return " ".join(f"apprise cannot use this {scheme}:// URL: {detail}".split())
    if not plugin.enabled:
        return f"apprise's {scheme}:// service needs packages that are not installed"
    return None
