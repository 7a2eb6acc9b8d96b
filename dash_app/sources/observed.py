"""Turn the checkouts a license server reports, poll after poll, into borrows and returns on the pool.

A poll sees what is held now, not what happened: a checkout that appears is a borrow (at its start time when the
server prints one, else at the poll), one that is gone is a return at the poll, and a checkout of N licenses is N
borrows. Each borrow's id carries the source, the server and a digest of what identifies the checkout (feature, user,
host, display, version, handle, start), so after a restart the open borrows the store kept are matched to the
first poll again: none is counted twice, and those that ended while the app was down are returned.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from dash_app.events import InvalidName
from dash_app.licenses.pool import LicensePool, UnknownBorrow
from dash_app.sources.status import Checkout

log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What one poll changed in the pool."""

    borrows: int = 0
    returns: int = 0
    malformed: int = 0  # checkouts refused by the pool (a name it does not accept)


def checkout_digest(checkout: Checkout) -> str:
    """Return a short, stable digest of what identifies `checkout` from one poll to the next (and across restarts)."""
    text = "\x1f".join("" if part is None else repr(part) if isinstance(part, float) else str(part) for part in checkout.key())
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class ObservedCheckouts:
    """One server's last good poll, as pool borrow ids per checkout; apply() diffs the next poll against it."""

    def __init__(self, pool: LicensePool, kind: str, server: str) -> None:
        self.pool = pool
        # kind|server| starts every borrow id of this source (schema.source_of reads the kind from it).
        self.prefix = f"{kind}|{server}|"
        self._held: dict[str, list[str]] = {}  # digest -> borrow ids, oldest first
        self._serial = 0
        self.restore()

    def restore(self) -> None:
        """Take this server's open borrows from the pool (restored from the store at start) as the last poll."""
        self._held.clear()
        for borrow in self.pool.active_borrows():
            if borrow.id.startswith(self.prefix):
                digest = borrow.id[len(self.prefix) :].split("|", 1)[0]
                self._held.setdefault(digest, []).append(borrow.id)
                self._serial += 1

    @property
    def held(self) -> int:
        """Licenses held by this server's checkouts, as of the last good poll."""
        return sum(len(ids) for ids in self._held.values())

    def apply(self, checkouts: Iterable[Checkout], now: float) -> Applied:
        """Record the difference between the last good poll and `checkouts` (a good poll at `now`) on the pool."""
        wanted: Counter[str] = Counter()
        first: dict[str, Checkout] = {}
        for checkout in checkouts:
            digest = checkout_digest(checkout)
            wanted[digest] += max(checkout.licenses, 1)
            first.setdefault(digest, checkout)
        applied = Applied()
        with self.pool.recording_batch():
            # Returns first: a server that moved a license from one user to another never shows both at once.
            for digest in list(self._held):
                ids = self._held[digest]
                excess = len(ids) - wanted.get(digest, 0)
                for _ in range(max(excess, 0)):
                    borrow_id = ids.pop()
                    try:
                        self.pool.observe_return(borrow_id, now)
                        applied.returns += 1
                    except UnknownBorrow:
                        pass  # returned by someone else (an admin's DELETE): nothing to undo
                if not ids:
                    del self._held[digest]
            for digest, count in wanted.items():
                ids = self._held.setdefault(digest, [])
                checkout = first[digest]
                tool = self.pool.tool_for_feature(checkout.feature)
                at = checkout.started_at if checkout.started_at is not None and checkout.started_at <= now else now
                while len(ids) < count:
                    self._serial += 1
                    borrow_id = f"{self.prefix}{digest}|{self._serial}"
                    try:
                        self.pool.observe_borrow(tool, checkout.user, at, borrow_id, host=checkout.host, version=checkout.version)
                    except InvalidName as bad:
                        log.warning("%s: checkout not recorded: %s", self.prefix.rstrip("|"), bad)
                        applied.malformed += 1
                        break
                    ids.append(borrow_id)
                    applied.borrows += 1
                if not ids:
                    del self._held[digest]
        return applied
