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
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from dash_app.events import InvalidName
from dash_app.licenses.pool import LicensePool, UnknownBorrow
from dash_app.sources.status import KEY_FIELDS, Checkout

log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What one poll changed in the pool."""

    borrows: int = 0
    returns: int = 0
    malformed: int = 0  # checkouts refused by the pool (a name it does not accept)


_ENDED = "(ended while the dashboard was down)"  # the key of restored borrows no poll claimed: returned at once
CheckoutKey = tuple[Any, ...]  # Checkout.key(): what identifies a checkout from one poll to the next


def checkout_digest(key: CheckoutKey) -> str:
    """Return a short, stable digest of a checkout's key, for its borrow ids (so a restart can match them again)."""
    text = "\x1f".join(_digest_text(part) for part in key)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _digest_text(part: object) -> str:
    # None as before, "" apart from it (a checkout may show an empty display): two checkouts never share a digest.
    if part is None:
        return ""
    if part == "":
        return "\x00"
    return repr(part) if isinstance(part, float) else str(part)


class ObservedCheckouts:
    """One server's last good poll, as pool borrow ids per checkout; apply() diffs the next poll against it."""

    def __init__(self, pool: LicensePool, kind: str, server: str) -> None:
        self.pool = pool
        # kind|server| starts every borrow id of this source (events.source_of reads the kind from it).
        self.prefix = f"{kind}|{server}|"
        self._held: dict[CheckoutKey, list[str]] = {}  # key -> borrow ids, oldest first
        # Borrows the pool kept from before a restart, by the digest in their ids, until a poll claims or ends them.
        self._restored: dict[str, list[str]] = {}
        self._restored_tools: dict[str, str] = {}  # a restored borrow's digest -> its tool
        self._serial = 0
        # The last poll's checkouts, when it was applied whole and listed each once: the next is diffed against them.
        self._last: set[Checkout] | None = None
        self._short: dict[CheckoutKey, int] = {}  # keys whose borrows fell short of their count (a name refused)
        self.restore()

    def restore(self) -> None:
        """Take this server's open borrows from the pool (restored from the store at start) as the last poll."""
        self._held.clear()
        self._last = None
        self._restored.clear()
        self._restored_tools.clear()
        for borrow in self.pool.active_borrows():
            if borrow.id.startswith(self.prefix):
                digest, _, serial = borrow.id[len(self.prefix) :].partition("|")
                self._restored.setdefault(digest, []).append(borrow.id)
                self._restored_tools[digest] = borrow.tool
                # New ids continue after the highest restored one, so none is ever given twice.
                self._serial = max(self._serial, int(serial) if serial.isdigit() else 0)

    @property
    def held(self) -> int:
        """Licenses held by this server's checkouts, as of the last good poll."""
        return sum(len(ids) for ids in self._held.values()) + sum(len(ids) for ids in self._restored.values())

    def held_features(self) -> set[str]:
        """Return the features this server's last good poll saw checkouts of."""
        return {key[0] for key in self._held}

    @property
    def restoring(self) -> bool:
        """True while borrows kept from before a restart wait for a poll to claim or end them."""
        return bool(self._restored)

    def apply(
        self,
        checkouts: Iterable[Checkout],
        now: float,
        only: AbstractSet[str] | None = None,
        endable: AbstractSet[str] | None = None,
    ) -> Applied:
        """Record the difference between the last good poll and `checkouts` (a good poll at `now`) on the pool.

        With `only`, the poll is whole for those features alone: the others keep their last-known checkouts. Of the
        borrows kept from before a restart that no checkout claims, only those of the tools in `endable` (all when
        None) are ended; the others wait for a poll that shows their feature whole.
        """
        listed = checkouts if isinstance(checkouts, list) else list(checkouts)
        polled = set(listed) if only is None else None
        whole = polled is not None and len(polled) == len(listed)  # each checkout listed once
        if polled is not None and whole and self._last is not None and not self._restored:
            return self._apply_changes(listed, polled, now)
        self._last = None
        if only is not None:
            listed = [checkout for checkout in listed if checkout.feature in only]
        wanted = _count(listed)
        self._short = {}
        if self._restored:
            self._claim_restored(wanted, endable)
        held = self._held
        applied = Applied()
        with self.pool.recording_batch():
            # Returns first: a server that moved a license from one user to another never shows both at once.
            gone = [
                key
                for key, ids in held.items()
                if len(ids) > wanted.get(key, 0) and (only is None or key[0] in only or key[0] == _ENDED)
            ]
            for key in gone:
                self._return(key, wanted.get(key, 0), now, applied)
            for key, count in wanted.items():
                ids = held.get(key)
                if ids is not None and len(ids) >= count:
                    continue
                if ids is None:
                    ids = held[key] = []
                self._borrow(key, count, ids, now, applied)
                if not ids:
                    del held[key]
        if whole and not self._restored:
            self._last = polled
        return applied

    def _apply_changes(self, listed: list[Checkout], polled: set[Checkout], now: float) -> Applied:
        """Apply a whole poll as apply() does, working on the checkouts that differ from the last poll's alone.

        The keys no checkout of which came or went hold what they held (their borrows matched the last poll's count),
        so only the others are counted; the returns and borrows come in the order apply() gives them.
        """
        last, self._last = self._last or set(), polled
        short, self._short = self._short, {}
        wanted = dict(short)  # keys that fell short are tried again, as apply() tries every key
        held = self._held
        added = polled - last
        for checkouts, sign in ((last - polled, -1), (added, 1)):
            for checkout in checkouts:
                key = checkout[:KEY_FIELDS]
                count = wanted.get(key)
                if count is None:
                    ids = held.get(key)
                    count = len(ids) if ids is not None else 0
                wanted[key] = count + sign * max(checkout.licenses, 1)
        applied = Applied()
        if not wanted:
            return applied
        fewer = {key for key, count in wanted.items() if len(held.get(key, ())) > count}
        more = {key for key, count in wanted.items() if len(held.get(key, ())) < count}
        with self.pool.recording_batch():
            for key in [key for key in held if key in fewer] if len(fewer) > 1 else fewer:
                self._return(key, wanted[key], now, applied)
            new = not any(key in held or key in short for key in more)
            for key in _in_order(listed, more, added, new):
                ids = held.setdefault(key, [])
                self._borrow(key, wanted[key], ids, now, applied)
                if not ids:
                    del held[key]
        return applied

    def _claim_restored(self, wanted: dict[CheckoutKey, int], endable: AbstractSet[str] | None) -> None:
        """Give the borrows kept from before a restart to the checkouts of this poll that they were; end the others."""
        held = self._held
        for key in wanted:
            if key not in held:
                ids = self._restored.pop(checkout_digest(key), None)
                if ids is not None:
                    held[key] = ids
        # Whatever no checkout claimed ended while we were not looking, if this poll shows its tool whole.
        for digest, ids in list(self._restored.items()):
            if endable is None or self._restored_tools.get(digest) in endable:
                held[(_ENDED, ids[0])] = ids
                del self._restored[digest]

    def _return(self, key: CheckoutKey, keep: int, now: float, applied: Applied) -> None:
        """Return the borrows of `key` past the first `keep`, newest first."""
        ids = self._held[key]
        for _ in range(len(ids) - keep):
            try:
                self.pool.observe_return(ids.pop(), now)
                applied.returns += 1
            except UnknownBorrow:
                pass  # returned by someone else (an admin's DELETE): nothing to undo
        if not ids:
            del self._held[key]

    def _borrow(self, key: CheckoutKey, count: int, ids: list[str], now: float, applied: Applied) -> None:
        """Add borrows to `ids` until it holds `count`: the licenses of the checkout of `key` not yet in the pool."""
        feature, user, host, _display, version, _handle, started_at = key
        tool = self.pool.tool_for_feature(feature)
        at = started_at if started_at is not None and started_at <= now else now
        digest = checkout_digest(key)
        while len(ids) < count:
            self._serial += 1
            borrow_id = f"{self.prefix}{digest}|{self._serial}"
            try:
                self.pool.observe_borrow(tool, user, at, borrow_id, host=host, version=version)
            except InvalidName as bad:
                log.warning("%s: checkout not recorded: %s", self.prefix.rstrip("|"), bad)
                applied.malformed += 1
                self._short[key] = count
                return
            ids.append(borrow_id)
            applied.borrows += 1


def _count(checkouts: Iterable[Checkout]) -> dict[CheckoutKey, int]:
    """Return the licenses a poll shows per checkout key, in the order the keys first come."""
    # Keys are plain tuples, hashed by Python: a digest is worked out only for a checkout not seen before.
    wanted: dict[CheckoutKey, int] = {}
    for checkout in checkouts:
        key = checkout[:KEY_FIELDS]
        wanted[key] = wanted.get(key, 0) + max(checkout.licenses, 1)
    return wanted


def _in_order(listed: list[Checkout], keys: set[CheckoutKey], added: set[Checkout], new: bool) -> list[CheckoutKey]:
    """Return `keys` in the order their first checkouts come in `listed` (`new`: every checkout of theirs is in `added`)."""
    if len(keys) <= 1:
        return list(keys)
    if new:  # all their checkouts came with this poll: only those are looked at, by identity (no key is sliced)
        fresh = {id(checkout) for checkout in added}
        listed = [checkout for checkout in listed if id(checkout) in fresh]
    return [key for key in dict.fromkeys(checkout[:KEY_FIELDS] for checkout in listed) if key in keys]
