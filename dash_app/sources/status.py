"""What a license server's status report says (lmstat, rlmstat): one type for every parser and for the poller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Checkout(NamedTuple):
    """One checkout line: `licenses` licenses of `feature` held by `user` (host, display, version and handle if shown).

    A named tuple, not a dataclass: a big server's report has tens of thousands of them, and a tuple is built in a
    fraction of a frozen dataclass's time.
    """

    feature: str
    user: str
    host: str | None = None
    display: str | None = None
    version: str | None = None
    handle: str | None = None  # the server's own name for the checkout ("lic01/27000 4225", an RLM handle)
    started_at: float | None = None  # epoch seconds, when the line gives a start time
    licenses: int = 1  # how many this checkout holds (`, N licenses`)
    vendor: str | None = None  # the vendor daemon / ISV serving it

    def key(self) -> tuple[str, str, str | None, str | None, str | None, str | None, float | None]:
        """Return what identifies this checkout from one poll to the next (the count aside): its first fields."""
        return (self.feature, self.user, self.host, self.display, self.version, self.handle, self.started_at)


KEY_FIELDS = 7  # Checkout.key() is checkout[:KEY_FIELDS]


@dataclass(frozen=True)
class Feature:
    """One feature's counts: `issued` None means uncounted; `error` is the server's complaint about it, if any."""

    name: str
    vendor: str | None = None
    issued: int | None = None
    in_use: int | None = None
    expiry: str | None = None  # ISO date "2026-12-31", "permanent", or None when not shown
    error: str | None = None
    reserved: int = 0
    queued: int = 0


@dataclass
class StatusReport:
    """One poll's parsed output: the features, every checkout, and whether the server answered at all."""

    up: bool
    error: str | None = None  # why the server counts as down ("Cannot connect to license server ..."), when not up
    features: dict[str, Feature] = field(default_factory=dict)
    checkouts: list[Checkout] = field(default_factory=list)
    queued: list[Checkout] = field(default_factory=list)  # waiting for a license: not held, not counted in use
    reservations: list[str] = field(default_factory=list)  # reservation lines as the server wrote them
    vendors: dict[str, str] = field(default_factory=dict)  # vendor daemon -> "UP", "down" or the version it says
    malformed: int = 0  # lines that looked like checkouts or features but could not be read


class UnparsableOutput(ValueError):
    """The output is not a status report at all (a failed poll); the message says what was expected."""
