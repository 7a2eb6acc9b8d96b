"""Chargeback: a period's license cost split over the groups (or cost centres) whose users held the licenses.

Pure functions over the sessions frame capacity.py takes and a GroupMapping. For a period [start, end) and the
inventory's tools (docs/chargeback.md gives the definitions with their formulas):

- Times count to the millisecond (each instant t as round(t × 1000), halves to even), so that license time is added up
  in whole numbers and the split is exact. A session of the period (as capacity.py defines it) holds
  [max(borrowed, start), min(returned, end)) (an open one runs to `end`); it is cut where its user's membership
  changes, each part going to the group the user is in when the part starts (the last membership whose start is at
  or before it; none, or a user the mapping does not know: UNASSIGNED).
- A group's license time of a tool is the sum of its parts; its overage borrows are the tool's sessions started in the
  period flagged overage whose user was in the group at the start.
- Money is in whole cents. The estate's commit cost E = Σ over tools of estate.period_commit_cost, added up exactly
  and rounded once to the cent (halves to even); E is shared over the tools as their exact commit costs rounded down,
  the cents left over one each to the tools whose costs lost the most (each tool within a cent of its own cost); each
  tool's part goes over its groups by their license time (all to UNUSED when the tool held no time in the period),
  and each tool's overage cost (its overage borrows × its overage price, rounded to the cent) over its groups by their
  overage borrows. The splits over groups round each share down to the cent and give the cents left over (fewer than
  the number of shares) to the largest share, as the issue asks; of equal largest shares, to the first by name.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd

from dash_app.analytics.bytool import cut_period, origin
from dash_app.analytics.estate import period_commit_cost
from dash_app.analytics.levels import Floats, Ints, check_period, prepare
from dash_app.analytics.spec import NO_SPEC, Spec
from dash_app.directory.mapping import ALWAYS, UNASSIGNED, UNUSED, GroupKey, GroupMapping
from dash_app.timeutil import iso_second

MS_PER_SECOND = 1000
MS_PER_HOUR = 3_600_000
# bincount adds in float64, exact below 2**53: license milliseconds are added as two halves of this many bits each.
_LOW_BITS = 24


def to_ms(seconds: Floats) -> Ints:
    """Return epoch seconds as whole milliseconds, halves to even (the instants chargeback counts in)."""
    return np.rint(np.asarray(seconds, dtype=np.float64) * MS_PER_SECOND).astype(np.int64)


@dataclass(frozen=True)
class Memberships:
    """The mapping's memberships over a span of milliseconds [origin, origin + span], ready for vectorised look-ups.

    Each known user has a run of entries sorted by start, the first starting at the span's origin (UNASSIGNED when the
    user's first membership starts later); those starting after the span start at span + 1, where nothing looks;
    `key` = user × (span + 2) + start − origin is increasing.
    """

    users: pd.Index  # the mapping's users; a user's code is its position
    names: list[str]  # the names charged under (`by`): UNASSIGNED first, then sorted
    key: Ints
    start: Ints  # ms after the origin
    following: Ints  # the start of the user's next entry, or span + 1 after their last
    code: Ints  # into `names`
    span: int
    count: Ints  # per user code: their entries, which start at first[user]
    first: Ints

    @classmethod
    def of(cls, mapping: GroupMapping, by: GroupKey, origin: int, span: int, extra: Collection[str] = ()) -> Memberships:
        """Return the memberships of `mapping` by `by` over [origin, origin + span] ms; `extra` names are added to `names`."""
        rows = list(mapping.rows())
        names = [UNASSIGNED, *sorted((set(mapping.groups(by)) | set(extra)) - {UNASSIGNED})]
        users = pd.Index(mapping.users(), dtype=object)
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return cls(users, names, empty, empty, empty, empty, span, empty, empty)
        user_of = {name: k for k, name in enumerate(users)}
        user = np.fromiter((user_of[row[0]] for row in rows), dtype=np.int64, count=len(rows))
        since = np.fromiter((row[1] for row in rows), dtype=np.float64, count=len(rows))
        charged = pd.Index(names).get_indexer(pd.Index([_key(row, by) for row in rows], dtype=object))
        code = np.asarray(charged, dtype=np.int64)
        at = np.where(since == ALWAYS, origin, to_ms(np.where(since == ALWAYS, 0.0, since)))
        rel = np.clip(at - origin, 0, span + 1)
        # Of entries of one user at one instant (all those before the origin, or two starts in one millisecond) the
        # last counts: rows come by user, then by time.
        last = np.ones(len(rows), dtype=bool)
        last[:-1] = (user[1:] != user[:-1]) | (rel[1:] != rel[:-1])
        user, rel, code = user[last], rel[last], code[last]
        first = np.ones(len(user), dtype=bool)
        first[1:] = user[1:] != user[:-1]
        late = first & (rel > 0)  # the user is UNASSIGNED from the origin to their first membership
        user = np.concatenate((user[late], user))
        rel = np.concatenate((np.zeros(int(late.sum()), dtype=np.int64), rel))
        code = np.concatenate((np.zeros(int(late.sum()), dtype=np.int64), code))
        order = np.lexsort((rel, user))
        user, rel, code = user[order], rel[order], code[order]
        following = np.full(len(user), span + 1, dtype=np.int64)
        same = user[1:] == user[:-1]
        following[:-1][same] = rel[1:][same]
        count = np.bincount(user, minlength=len(users)).astype(np.int64)
        return cls(users, names, user * (span + 2) + rel, rel, following, code, span, count, np.cumsum(count) - count)

    def user_codes(self, users: pd.Series | np.ndarray[Any, Any]) -> Ints:
        """Return each user's code in the mapping, -1 for one it does not know."""
        codes, uniques = pd.factorize(np.asarray(users, dtype=object), use_na_sentinel=False)
        found = self.users.get_indexer(pd.Index(uniques, dtype=object)) if len(self.users) else np.full(len(uniques), -1)
        return np.asarray(found, dtype=np.int64)[codes]

    def entry_at(self, user: Ints, rel: Ints, side: Literal["left", "right"] = "right") -> Ints:
        """Return the entry in force at `rel` ms after the origin for each known user (codes >= 0).

        With side="left": the last entry starting before `rel` (rel > 0), where a part ending at `rel` ends.
        """
        out = self.first[user]
        many = np.flatnonzero(self.count[user] > 1)  # most users have one entry: nothing to look up
        if len(many):
            out[many] = np.searchsorted(self.key, self.keys(user[many], rel[many]), side=side) - 1
        return out

    def keys(self, user: Ints, rel: Ints) -> Ints:
        """Return the look-up keys of (user code, ms after the origin) pairs, rel within [0, span]."""
        return user * (self.span + 2) + rel

    def code_at(self, user: Ints, rel: Ints) -> Ints:
        """Return the code of the name each user is charged under at `rel` ms after the origin (UNASSIGNED: 0)."""
        out = np.zeros(len(user), dtype=np.int64)
        known = user >= 0
        if known.any():
            out[known] = self.code[self.entry_at(user[known], rel[known])]
        return out


def _key(row: tuple[str, float, str, str], by: GroupKey) -> str:
    _user, _since, group, cost_centre = row
    return group if by == "group" else (cost_centre or UNASSIGNED)


def in_group(frame: pd.DataFrame, column: str, mapping: GroupMapping, group: str, by: GroupKey = "group") -> pd.DataFrame:
    """Return the rows of `frame` whose user is in `group` at the time in `column` (times to the millisecond)."""
    if not len(frame):
        return frame
    ms = to_ms(frame[column].to_numpy(dtype=np.float64, na_value=np.nan))
    origin = int(ms.min())
    table = Memberships.of(mapping, by, origin, int(ms.max()) - origin, (group,))
    codes = table.code_at(table.user_codes(frame["user"]), ms - origin)
    keep = codes == table.names.index(group)
    return frame if keep.all() else frame.loc[keep]


def _cell_sums(cells: Ints, values: Ints, n_cells: int) -> Ints:
    """Return the sum of `values` (whole, non-negative) in each of `n_cells` cells, exactly."""
    low = np.bincount(cells, weights=values & ((1 << _LOW_BITS) - 1), minlength=n_cells)
    high = np.bincount(cells, weights=values >> _LOW_BITS, minlength=n_cells)
    return (high.astype(np.int64) << _LOW_BITS) + low.astype(np.int64)


def split_cents(total: int, weights: Sequence[Fraction | int], names: Sequence[str]) -> list[int]:
    """Return `total` cents split in proportion to `weights`: each share rounded down, what is left to the largest."""
    whole_weights = _whole(weights)
    whole = sum(whole_weights)
    if whole == 0:
        return [0] * len(weights)
    # share_k = total × w_k / whole exactly: its floor is a whole number of cents.
    shares = [total * w // whole for w in whole_weights]
    left = total - sum(shares)
    if left:
        largest = min(range(len(shares)), key=lambda k: (-whole_weights[k], names[k]))
        shares[largest] += left
    return shares


def round_to_total(total: int, amounts: Sequence[Fraction], names: Sequence[str]) -> list[int]:
    """Return whole cents for exact `amounts` (in cents) that add up to `total`, the rounding of their sum: each amount
    rounded down, and the cents left over one each to the amounts that lost the most (of equal losses, the first by
    name). So every amount is charged to within a cent, however many there are.
    """
    shares = [math.floor(amount) for amount in amounts]
    left = total - sum(shares)
    if not 0 <= left <= len(shares):
        raise ValueError("total is not the rounding of the amounts' sum")
    order = sorted(range(len(shares)), key=lambda k: (-(amounts[k] - shares[k]), names[k]))
    for k in order[:left]:
        shares[k] += 1
    return shares


def _whole(weights: Sequence[Fraction | int]) -> list[int]:
    """Return whole numbers in the same ratios as `weights` (exact: the common denominator of fractions)."""
    if all(isinstance(w, int) for w in weights):
        return [int(w) for w in weights]
    fractions = [Fraction(w) for w in weights]
    common = math.lcm(*(f.denominator for f in fractions))
    return [f.numerator * (common // f.denominator) for f in fractions]


def _cents(amount: Fraction) -> int:
    """Return an exact amount of money rounded to whole cents, halves to even."""
    return round(amount * 100)


def _money(cents: int) -> float:
    return cents / 100


def chargeback(
    sessions: pd.DataFrame,
    specs: Mapping[str, Spec],
    start: float,
    end: float,
    billing_days: int,
    mapping: GroupMapping,
    by: GroupKey = "group",
    currency: str = "",
) -> dict[str, Any]:
    """Return the period's cost of `specs`' tools split over groups (`by`): the API's chargeback answer."""
    check_period(start, end)
    if billing_days <= 0:
        raise ValueError(f"billing_days: must be positive, not {billing_days!r}")
    tools = sorted(specs)
    start_ms, end_ms = int(to_ms(np.array([start]))[0]), int(to_ms(np.array([end]))[0])
    span = max(end_ms - start_ms, 0)
    table = Memberships.of(mapping, by, start_ms, span)
    n_names = len(table.names)

    found = origin(sessions, start, end)
    if found is not None:  # a mirror's frame: its index has the period's tools and users as codes already
        period = cut_period(found, start, end, set(), timeline=False)
        s = period.sessions
        present = period.names
    else:
        present, s = prepare(sessions, start, end, ())
    tool_of = np.asarray(pd.Index(tools, dtype=object).get_indexer(pd.Index(present, dtype=object)), dtype=np.int64)
    index = np.flatnonzero(tool_of[s.code] >= 0) if len(present) else np.zeros(0, dtype=np.int64)
    code, borrowed, returned, overage = tool_of[s.code[index]], s.borrowed[index], s.returned[index], s.overage[index]
    open_ = ~np.isfinite(returned)
    user_of = table.users.get_indexer(pd.Index(s.users, dtype=object)) if len(table.users) else np.full(len(s.users), -1)
    user = np.asarray(user_of, dtype=np.int64)[s.user[index]] if len(s.users) else np.zeros(0, dtype=np.int64)

    lo = np.maximum(to_ms(borrowed), start_ms) - start_ms
    hi = np.where(open_, end_ms, np.minimum(to_ms(np.where(open_, 0.0, returned)), end_ms)) - start_ms
    held = hi > lo
    # Each held session in parts, one per membership entry of its user it overlaps; an unknown user's is one part.
    known = held & (user >= 0)
    first = np.zeros(len(user), dtype=np.int64)
    last = np.zeros(len(user), dtype=np.int64)
    first[known] = table.entry_at(user[known], lo[known])
    last[known] = table.entry_at(user[known], hi[known], side="left")
    parts = np.where(known, last - first + 1, held.astype(np.int64))
    session = np.repeat(np.arange(len(user)), parts)
    step = np.arange(len(session)) - np.repeat(np.cumsum(parts) - parts, parts)
    entry = first[session] + step
    mapped = user[session] >= 0
    part_lo, part_hi = lo[session], hi[session]
    part_code = np.zeros(len(session), dtype=np.int64)
    if mapped.any():
        e = entry[mapped]
        part_lo[mapped] = np.maximum(part_lo[mapped], table.start[e])
        part_hi[mapped] = np.minimum(part_hi[mapped], table.following[e])
        part_code[mapped] = table.code[e]
    n_cells = len(tools) * n_names
    ms = _cell_sums(code[session] * n_names + part_code, np.maximum(part_hi - part_lo, 0), n_cells)

    started = (borrowed >= start) & overage
    rel = np.minimum(to_ms(borrowed[started]), end_ms) - start_ms
    borrow_code = table.code_at(user[started], np.maximum(rel, 0))
    borrows = np.bincount(code[started] * n_names + borrow_code, minlength=n_cells).astype(np.int64)
    cells = (ms.reshape(-1, n_names), borrows.reshape(-1, n_names))
    return _split(tools, specs, table.names, *cells, start, end, billing_days, by, currency)


def _split(
    tools: list[str],
    specs: Mapping[str, Spec],
    names: list[str],
    ms: Ints,
    borrows: Ints,
    start: float,
    end: float,
    billing_days: int,
    by: GroupKey,
    currency: str,
) -> dict[str, Any]:
    """Return the answer from each (tool, name) cell's license milliseconds and overage borrows."""
    commit = [Fraction(period_commit_cost(specs.get(tool, NO_SPEC), end - start, billing_days)) for tool in tools]
    estate = _cents(sum(commit, Fraction(0)))
    # Each tool is charged its own commit cost to within a cent: with 200 tools, the cents left by rounding them down
    # must not pile up on the costliest one.
    tool_commit = round_to_total(estate, [cost * 100 for cost in commit], tools)
    overage_total = 0
    # Per name: its license milliseconds, commit cents and overage cents per tool.
    rows: dict[str, list[tuple[str, int, int, int]]] = {}
    for k, tool in enumerate(tools):
        spec = specs.get(tool, NO_SPEC)
        tool_ms, tool_borrows = ms[k], borrows[k]
        price = Fraction(spec.overage_price) if spec.overage_price is not None else Fraction(0)
        overage = _cents(price * int(tool_borrows.sum()))
        overage_total += overage
        used = np.flatnonzero((tool_ms > 0) | (tool_borrows > 0)).tolist()
        held = [int(tool_ms[g]) for g in used]
        if sum(held):
            commit_shares = split_cents(tool_commit[k], held, [names[g] for g in used])
        else:
            commit_shares = [0] * len(used)
            if tool_commit[k]:
                rows.setdefault(UNUSED, []).append((tool, 0, tool_commit[k], 0))
        overage_shares = split_cents(overage, [int(tool_borrows[g]) for g in used], [names[g] for g in used])
        for g, held_ms, commit_share, overage_share in zip(used, held, commit_shares, overage_shares):
            rows.setdefault(names[g], []).append((tool, held_ms, commit_share, overage_share))
    groups: list[tuple[int, str, dict[str, Any]]] = []
    for name, entries in rows.items():
        entries.sort(key=lambda e: (-(e[2] + e[3]), e[0]))
        held_ms = sum(e[1] for e in entries)
        commit_cents, overage_cents = sum(e[2] for e in entries), sum(e[3] for e in entries)
        group = {
            "group": name,
            "license_hours": held_ms / MS_PER_HOUR,
            "commit_share": _money(commit_cents),
            "overage_cost": _money(overage_cents),
            "total": _money(commit_cents + overage_cents),
            "tools": [
                {
                    "tool": tool,
                    "license_hours": tool_ms / MS_PER_HOUR,
                    "commit_share": _money(c),
                    "overage_cost": _money(o),
                    "total": _money(c + o),
                }
                for tool, tool_ms, c, o in entries
            ],
        }
        groups.append((-(commit_cents + overage_cents), name, group))
    groups.sort(key=lambda g: (g[0], g[1]))
    return {
        "from": iso_second(start),
        "to": iso_second(end),
        "currency": currency,
        "by": by,
        "groups": [group for _, _, group in groups],
        "totals": {
            "commit_cost": _money(estate),
            "overage_cost": _money(overage_total),
            "total": _money(estate + overage_total),
        },
    }
