"""What went wrong with a source: the error kinds (our words, safe to show anyone) and the SourceError record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# An error's kind is a short phrase of ours that quotes nothing a source printed, so every reader and every alert
# recipient may be told it; its detail (a poll's last output line may be a checkout line: user and client host) is not.
TIMEOUT, CANNOT_RUN, CRASHED = "timeout", "cannot run", "crashed"  # a poll's; and exit_status(N)
OUTPUT_UNREADABLE, SERVER_DOWN = "output unreadable", "server down"  # a poll's answer: no report, or one saying so
INCOMPLETE = "incomplete answer"  # a poll's answer that is not whole: features missing or not adding up, a member down
CANNOT_OPEN, NOT_A_FILE, READING_FAILED = "cannot open", "not a regular file", "reading failed"  # a FlexLM log's
MALFORMED_FILE = "malformed file"  # the --user-groups file's: it keeps its last good mapping
NO_ANSWER, BIND_REFUSED, SEARCH_FAILED = "no answer", "bind refused", "search failed"  # the company directory's
TLS_FAILED = "tls failed"  # an ldaps:// directory whose certificate is not trusted, or names another host
ERROR_KINDS = frozenset(
    {TIMEOUT, CANNOT_RUN, OUTPUT_UNREADABLE, SERVER_DOWN, INCOMPLETE, CRASHED, CANNOT_OPEN, NOT_A_FILE, READING_FAILED}
    | {MALFORMED_FILE, NO_ANSWER, BIND_REFUSED, SEARCH_FAILED, TLS_FAILED}
)
_EXIT_STATUS = re.compile(r"exit status -?\d+")


def exit_status(code: int) -> str:
    """Return the error kind of a command that ended with exit status `code`."""
    return f"exit status {code}"


def is_error_kind(text: str) -> bool:
    """True when `text` is one of our error kinds, not a source's own words."""
    return text in ERROR_KINDS or _EXIT_STATUS.fullmatch(text) is not None


def is_server_name(name: str | None) -> bool:
    """True when a source's name is a license server's PORT@HOST (a FlexLM log's name is its path, admins' only)."""
    port, at, host = (name or "").partition("@")
    return bool(at) and port.isdigit() and bool(host)


@dataclass(frozen=True)
class SourceError:
    """What went wrong with a source: its kind, the license server (None for a log file), and the source's own words."""

    kind: str  # one of ERROR_KINDS or an exit_status()
    server: str | None = None
    detail: str = ""  # one line as the source said it: shown to admins of real names only

    @property
    def text(self) -> str:
        """Return the whole one-line error: its kind, then its detail."""
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON shape of GET /sources' `error`."""
        return {"kind": self.kind, "server": self.server, "detail": self.detail}
