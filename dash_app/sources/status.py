"""What a license server's status report says (lmstat, rlmstat): one type for every parser and for the poller."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import groupby
from operator import itemgetter
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
feature_of, licenses_of = itemgetter(0), itemgetter(7)  # a Checkout's feature and licenses, read in C (map, groupby)


@dataclass(frozen=True)
class Feature:
    """One feature's counts: `issued` None means uncounted; `error` is the server's complaint about it, if any."""

    name: str
    vendor: str | None = None
    issued: int | None = None
    in_use: int | None = None
    expiry: str | None = None  # ISO date "2026-12-31", "permanent", or None when not shown
    error: str | None = None
    reserved: int = 0  # licenses set aside by reservations (FlexNet counts them in use; RLM's "# reservations")
    queued: int = 0  # licenses requested by checkouts waiting in the queue (never in use)
    # What the server's in-use figure should be by its own lines (checkouts, and reservations where the server counts
    # them), as the parser counts them; None when the parser cannot tell (the section is then taken as whole).
    listed: int | None = None
    tokens: str | None = None  # a token-based product: what its tokens map to, as the server printed it

    @property
    def consistent(self) -> bool:
        """True when the server's in-use figure agrees with the lines listed (or there is no figure to check)."""
        return self.in_use is None or self.listed is None or self.in_use == self.listed


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
    unreachable: list[str] = field(default_factory=list)  # members of a redundant triad that could not be reached

    def count_listed(self) -> None:
        """Set each feature's `listed` to the licenses its checkout lines hold: for servers that count in use that way.

        A feature's section cut short then lists fewer than its server's in-use figure, and is not read as whole.
        """
        held: Counter[str] = Counter()
        for feature, checkouts in groupby(self.checkouts, feature_of):  # a feature's checkouts come together, mostly
            held[feature] += sum(map(licenses_of, checkouts))
        self.features = {name: replace(f, listed=held[name]) for name, f in self.features.items()}


class UnparsableOutput(ValueError):
    """The output is not a status report at all (a failed poll); the message says what was expected."""
