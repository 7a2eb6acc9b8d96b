"""GroupMapping, the seam between the directory's sources (a CSV file, LDAP) and its readers (chargeback, reports).

A user belongs to one group (and optionally one cost centre) at a time. Memberships may start at an instant (the
`from` column of the file); a user's membership runs until their next one starts. A user found nowhere, or a time
before their first membership, is in UNASSIGNED. The mapping is a plain, picklable value: the analysis process gets
a copy with each question.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

UNASSIGNED = "(unassigned)"
# Where a tool's commit cost goes in a period with no sessions of it (chargeback).
UNUSED = "(unused)"
ALWAYS = -math.inf

GroupKey = Literal["group", "cost_centre"]
GROUP_KEYS: tuple[GroupKey, ...] = ("group", "cost_centre")


@dataclass(frozen=True, order=True)
class Membership:
    """One user's group and cost centre from `since` (epoch seconds; ALWAYS: from the start) until their next one."""

    since: float
    group: str
    cost_centre: str = ""  # "" when nobody said: counts as UNASSIGNED when charging by cost centre

    def key(self, by: GroupKey) -> str:
        """Return the name this membership is charged under, by group or by cost centre."""
        if by == "group":
            return self.group
        return self.cost_centre or UNASSIGNED


NOWHERE = Membership(ALWAYS, UNASSIGNED, "")


class GroupMapping:
    """Every known user's memberships in time order; immutable once made."""

    __slots__ = ("_members", "_fingerprint")

    def __init__(self, members: Mapping[str, Iterable[Membership]] | None = None) -> None:
        cleaned: dict[str, tuple[Membership, ...]] = {}
        for user, memberships in (members or {}).items():
            ordered = tuple(sorted(memberships))
            if not ordered:
                continue
            starts = [membership.since for membership in ordered]
            if len(set(starts)) != len(starts):
                raise ValueError(f"{user}: two memberships start at the same time")
            cleaned[user] = ordered
        self._members = cleaned
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, user: object) -> bool:
        return user in self._members

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupMapping) and self._members == other._members

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"GroupMapping({len(self)} users, {self.fingerprint[:12]})"

    def __reduce__(self) -> tuple[type[GroupMapping], tuple[dict[str, tuple[Membership, ...]]]]:
        return GroupMapping, (self._members,)

    def users(self) -> list[str]:
        """Return the users the mapping knows, sorted."""
        return sorted(self._members)

    def memberships(self, user: str) -> tuple[Membership, ...]:
        """Return `user`'s memberships in time order (empty when unknown)."""
        return self._members.get(user, ())

    def at(self, user: str, when: float) -> Membership:
        """Return the membership `user` has at `when`: NOWHERE when unknown or before their first one."""
        found = NOWHERE
        for membership in self._members.get(user, ()):
            if membership.since > when:
                break
            found = membership
        return found

    def rows(self) -> Iterator[tuple[str, float, str, str]]:
        """Yield (user, since, group, cost_centre) for every membership, by user then time: the columns for arrays."""
        for user in sorted(self._members):
            for membership in self._members[user]:
                yield user, membership.since, membership.group, membership.cost_centre

    def overlaid(self, over: GroupMapping) -> GroupMapping:
        """Return this mapping with `over`'s users replaced by `over`'s memberships (the file wins over the directory)."""
        merged = dict(self._members)
        merged.update(over._members)
        return GroupMapping(merged)

    def groups(self, by: GroupKey = "group") -> list[str]:
        """Return the names users are charged under, sorted (UNASSIGNED not included unless someone is in it)."""
        return sorted({membership.key(by) for memberships in self._members.values() for membership in memberships})

    @property
    def fingerprint(self) -> str:
        """Return a digest of the whole mapping: equal mappings have equal fingerprints (a cache key)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for row in self.rows():
                digest.update(repr(row).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


def mapping_of(rows: Sequence[tuple[str, str, str, float]]) -> GroupMapping:
    """Return the mapping of (user, group, cost_centre, since) rows; ValueError names a user with two at one time."""
    members: dict[str, list[Membership]] = {}
    for user, group, cost_centre, since in rows:
        members.setdefault(user, []).append(Membership(since, group, cost_centre))
    return GroupMapping(members)
