"""The chargeback split against a brute-force reference: each session walked interval by interval in plain Python,
money in Decimal, on generated sessions, memberships and prices; and the sums that must add up."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dash_app.analytics import estate
from dash_app.analytics.bytool import Origin, build, mark
from dash_app.analytics.capacity import SESSION_COLUMNS, capacity
from dash_app.analytics.chargeback import chargeback, in_group, round_to_total, split_cents
from dash_app.analytics.spec import Spec
from dash_app.directory.mapping import ALWAYS, UNASSIGNED, UNUSED, GroupMapping, Membership
from dash_app.testing.synthetic import synthetic_history
from dash_app.timeutil import iso_second

# Enough examples to meet every kind of session, membership and price together; about 2 s each on 2 cores.
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = ("A", "B", "C", "D")  # D has no sessions unless drawn; "X" is outside the inventory
USERS = ("u0", "u1", "u2", "u3", "u4")  # u4 is never in the mapping
WIDE = Context(prec=400)  # enough digits for any sum of floats' exact values here


# ---- the reference -------------------------------------------------------------------------------------------------


def ms(t: float) -> int:
    """An instant as chargeback counts it: whole milliseconds, halves to even (Python's round of the float product)."""
    return round(t * 1000)


def charged_at(mapping: GroupMapping, user: str, at_ms: int, by: str) -> str:
    """The name `user` is charged under at `at_ms`: their last membership starting at or before it."""
    found = UNASSIGNED
    for membership in mapping.memberships(user):
        if membership.since == ALWAYS or ms(membership.since) <= at_ms:
            found = membership.group if by == "group" else (membership.cost_centre or UNASSIGNED)
    return found


def to_total(total: int, amounts: list[Fraction], names: list[str]) -> list[int]:
    """Each amount rounded down, the cents left over one each to the amounts that lost the most (first by name)."""
    shares = [math.floor(x) for x in amounts]
    for _ in range(total - sum(shares)):
        k = min(
            (k for k in range(len(shares)) if shares[k] == math.floor(amounts[k])),
            key=lambda k: (shares[k] - amounts[k], names[k]),
        )
        shares[k] += 1
    return shares


def to_largest(total: int, weights: list[int], names: list[str]) -> list[int]:
    """Each share rounded down to the cent, the cents left over to the largest share (first by name), in exact fractions."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    shares = [math.floor(Fraction(total * w, whole)) for w in weights]
    largest = max(weights)
    first = sorted(name for name, w in zip(names, weights) if w == largest)[0]
    shares[names.index(first)] += total - sum(shares)
    return shares


def cents(amount: Decimal) -> int:
    with localcontext(WIDE):
        return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def reference(rows, specs, start, end, billing_days, mapping, by, currency=""):
    """The chargeback answer by brute force: every session cut at its user's membership changes, one piece at a time."""
    start_ms, end_ms = ms(start), ms(end)
    held: dict[tuple[str, str], int] = {}
    borrows: dict[tuple[str, str], int] = {}
    for row in rows:
        tool, user, b, r, overage = row["tool"], row["user"], row["borrowed_at"], row["returned_at"], row["is_overage"]
        is_open = r is None or math.isnan(r)
        if tool not in specs or not b < end or not (is_open or r > start):
            continue
        lo = max(ms(b), start_ms)
        hi = end_ms if is_open else min(ms(r), end_ms)
        if hi > lo:
            cuts = {lo, hi}
            for membership in mapping.memberships(user):
                if membership.since != ALWAYS and lo < ms(membership.since) < hi:
                    cuts.add(ms(membership.since))
            cuts_sorted = sorted(cuts)
            for a, c in zip(cuts_sorted, cuts_sorted[1:]):
                key = (tool, charged_at(mapping, user, a, by))
                held[key] = held.get(key, 0) + (c - a)
        if b >= start and overage:
            key = (tool, charged_at(mapping, user, ms(b), by))
            borrows[key] = borrows.get(key, 0) + 1

    tools = sorted(specs)
    with localcontext(WIDE):
        commit = []
        for tool in tools:
            spec = specs[tool]
            priced = spec.commit and spec.commit_price is not None
            commit.append(Decimal(float(spec.commit_price) * (end - start) / (billing_days * 86400)) if priced else Decimal(0))
        estate_cents = cents(sum(commit, Decimal(0)))
    tool_cents = to_total(estate_cents, [Fraction(c) * 100 for c in commit], tools)
    lines: dict[str, list[tuple[str, int, int, int]]] = {}
    overage_total = 0
    for k, tool in enumerate(tools):
        names = sorted({g for (t, g) in held if t == tool and held[(t, g)] > 0} | {g for (t, g) in borrows if t == tool})
        hours = [held.get((tool, g), 0) for g in names]
        counts = [borrows.get((tool, g), 0) for g in names]
        price = specs[tool].overage_price
        with localcontext(WIDE):
            overage = cents(Decimal(price or 0) * sum(counts))
        overage_total += overage
        if sum(hours):
            commit_shares = to_largest(tool_cents[k], hours, names)
        else:
            commit_shares = [0] * len(names)
            if tool_cents[k]:
                lines.setdefault(UNUSED, []).append((tool, 0, tool_cents[k], 0))
        for name, h, c, o in zip(names, hours, commit_shares, to_largest(overage, counts, names)):
            lines.setdefault(name, []).append((tool, h, c, o))
    groups = []
    for name, entries in lines.items():
        entries.sort(key=lambda e: (-(e[2] + e[3]), e[0]))
        c, o = sum(e[2] for e in entries), sum(e[3] for e in entries)
        groups.append(
            {
                "group": name,
                "license_hours": sum(e[1] for e in entries) / 3_600_000,
                "commit_share": c / 100,
                "overage_cost": o / 100,
                "total": (c + o) / 100,
                "tools": [
                    {
                        "tool": t,
                        "license_hours": h / 3_600_000,
                        "commit_share": cc / 100,
                        "overage_cost": oo / 100,
                        "total": (cc + oo) / 100,
                    }
                    for t, h, cc, oo in entries
                ],
            }
        )
    groups.sort(key=lambda g: (-round(g["total"] * 100), g["group"]))
    return {
        "from": iso_second(start),
        "to": iso_second(end),
        "currency": currency,
        "by": by,
        "groups": groups,
        "totals": {
            "commit_cost": estate_cents / 100,
            "overage_cost": overage_total / 100,
            "total": (estate_cents + overage_total) / 100,
        },
    }


# ---- generated data ------------------------------------------------------------------------------------------------

# Whole seconds, and fractions that land on, beside and halfway between milliseconds.
FRACTIONS = (0.0, 0.0, 0.25, 0.0005, 0.0015, 0.3337, 0.9999)
instants = st.builds(lambda s, f: s + f, st.integers(0, 4000), st.sampled_from(FRACTIONS))
prices = st.sampled_from([None, 0.0, 0.01, 0.125, 1.0, 333.33, 1000.0, 8000.0])
specs_strategy = st.fixed_dictionaries(
    {tool: st.builds(Spec, st.sampled_from([None, 5, 10]), st.sampled_from([None, 0, 1, 3]), prices, prices) for tool in TOOLS}
)


@st.composite
def sessions_strategy(draw):
    rows = []
    for seq in range(draw(st.integers(0, 14))):
        b = draw(instants)
        kind = draw(st.sampled_from(["closed", "closed", "closed", "open", "zero", "backwards"]))
        r = {"closed": b + draw(st.integers(1, 3000)) + draw(st.sampled_from(FRACTIONS)), "open": math.nan, "zero": b}.get(
            kind, b - 5.0
        )
        rows.append(
            {
                "tool": draw(st.sampled_from(TOOLS[:3] + ("X",))),
                "user": draw(st.sampled_from(USERS)),
                "host": None,
                "version": None,
                "source": None,
                "borrowed_at": b,
                "returned_at": r,
                "is_overage": draw(st.booleans()),
                "seq": seq + 1,
            }
        )
    return rows


@st.composite
def mapping_strategy(draw):
    members = {}
    for user in USERS[:4]:
        if not draw(st.booleans()) and user != "u0":
            continue
        starts = draw(st.lists(st.one_of(st.just(ALWAYS), instants), min_size=1, max_size=3, unique=True))
        members[user] = [
            Membership(since, draw(st.sampled_from(["eng", "ops", "qa"])), draw(st.sampled_from(["", "cc1", "cc2"])))
            for since in starts
        ]
    return GroupMapping(members)


def frame(rows):
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=float if c.endswith("_at") else object) for c in SESSION_COLUMNS})
    return pd.DataFrame(rows, columns=list(SESSION_COLUMNS))


# ---- properties ----------------------------------------------------------------------------------------------------


@PROPERTY
@given(
    rows=sessions_strategy(),
    specs=specs_strategy,
    mapping=mapping_strategy(),
    start=instants,
    length=st.integers(1, 4000),
    billing_days=st.integers(1, 31),
    by=st.sampled_from(["group", "cost_centre"]),
)
# Three unused tools whose costs are fractions of a cent: the cents left by rounding down the estate's cost must not
# all go to the costliest tool (found by a run that gave D 4 cents of its exact 2.31).
@example(
    rows=[],
    specs={
        "A": Spec(None, None, None, None),
        "B": Spec(None, 1, 333.33, None),
        "C": Spec(None, 1, 333.33, None),
        "D": Spec(None, 1, 1000.0, None),
    },
    mapping=GroupMapping(),
    start=0.0,
    length=2,
    billing_days=1,
    by="group",
)
def test_the_split_equals_the_brute_force_reference(rows, specs, mapping, start, length, billing_days, by):
    end = start + length
    got = chargeback(frame(rows), specs, start, end, billing_days, mapping, by, "EUR")
    assert got == reference(rows, specs, start, end, billing_days, mapping, by, "EUR")

    # The sums add up, to the cent: groups to the totals, and each tool's commit shares to the tool's commit cost.
    c = {key: round(value * 100) for key, value in got["totals"].items()}
    assert c["commit_cost"] + c["overage_cost"] == c["total"] == sum(round(g["total"] * 100) for g in got["groups"])
    assert sum(round(g["commit_share"] * 100) for g in got["groups"]) == c["commit_cost"]
    exact = sum(Fraction(estate.period_commit_cost(spec, end - start, billing_days)) for spec in specs.values())
    assert abs(Fraction(c["commit_cost"]) - exact * 100) <= Fraction(1, 2)
    for tool, spec in specs.items():  # each tool's shares: its own commit cost, to within a cent
        shares = sum(round(t["commit_share"] * 100) for g in got["groups"] for t in g["tools"] if t["tool"] == tool)
        assert abs(shares - Fraction(estate.period_commit_cost(spec, end - start, billing_days)) * 100) < 1
    for group in got["groups"]:
        assert round(group["total"] * 100) == sum(round(t["total"] * 100) for t in group["tools"])
        assert [g["total"] for g in got["groups"]] == sorted((g["total"] for g in got["groups"]), reverse=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=sessions_strategy(), mapping=mapping_strategy(), group=st.sampled_from(["eng", "ops", "qa", UNASSIGNED]))
def test_the_group_filter_keeps_the_sessions_of_the_group_at_their_start(rows, mapping, group):
    sessions = frame(rows)
    kept = in_group(sessions, "borrowed_at", mapping, group)
    expected = [row["seq"] for row in rows if charged_at(mapping, row["user"], ms(row["borrowed_at"]), "group") == group]
    assert kept["seq"].tolist() == expected


@given(
    # Small numbers, so that equal weights (and leftover cents) are common.
    total=st.one_of(st.integers(0, 30), st.integers(0, 10_000)),
    weights=st.lists(st.one_of(st.integers(0, 6), st.integers(0, 1000)), min_size=1, max_size=8),
)
@example(total=2, weights=[1, 3])  # exact shares 0.5 and 1.5: the cent left goes to the larger
@example(total=1, weights=[2, 2])  # and between equal shares, to the first name
@example(total=5, weights=[1, 1, 1, 1, 1, 2])  # five cents left over, all to the largest share
@settings(max_examples=100, deadline=None)
def test_the_cents_left_over_go_to_the_largest_share(total, weights):
    names = [f"n{k}" for k in range(len(weights))]
    shares = split_cents(total, weights, names)
    assert shares == to_largest(total, weights, names)
    if (total, weights) == (2, [1, 3]):
        assert shares == [0, 2]
    if (total, weights) == (1, [2, 2]):
        assert shares == [1, 0]
    if (total, weights) == (5, [1, 1, 1, 1, 1, 2]):
        assert shares == [0, 0, 0, 0, 0, 5]
    if sum(weights):
        assert sum(shares) == total
        exact = [Fraction(total * w, sum(weights)) for w in weights]
        largest = shares.index(max(shares)) if total else 0
        assert all(share == math.floor(x) for k, (share, x) in enumerate(zip(shares, exact)) if k != largest)
        assert 0 <= shares[largest] - exact[largest] < len(weights)


@given(st.lists(st.fractions(0, 10_000, max_denominator=1000), min_size=1, max_size=8))
@example([Fraction(2226, 10_000)] * 3 + [Fraction(178_086, 100)])  # three tiny costs and a large one
@settings(max_examples=100, deadline=None)
def test_each_tools_commit_cost_is_rounded_to_within_a_cent_and_they_add_up_to_the_estates(amounts):
    names = [f"n{k}" for k in range(len(amounts))]
    total = round(sum(amounts))
    shares = round_to_total(total, amounts, names)
    assert shares == to_total(total, amounts, names)
    assert sum(shares) == total
    assert all(abs(share - amount) < 1 for share, amount in zip(shares, amounts))
    if amounts[:3] == [Fraction(2226, 10_000)] * 3:
        assert shares == [1, 0, 0, 1781]  # 1781.53 in all makes 1782: 1780 + 0.86 left over, then 0.22 by name


# ---- cases ---------------------------------------------------------------------------------------------------------


def test_a_worked_example():
    """Two groups, a move inside a session, a user nobody knows, a tool nobody used, a tool outside the inventory."""
    rows = [
        {"tool": "A", "user": "ann", "borrowed_at": 0.0, "returned_at": 7200.0, "is_overage": False, "seq": 1},
        {"tool": "A", "user": "bob", "borrowed_at": 1800.0, "returned_at": math.nan, "is_overage": True, "seq": 2},
        {"tool": "A", "user": "eve", "borrowed_at": -600.0, "returned_at": 900.0, "is_overage": True, "seq": 3},
        {"tool": "Z", "user": "ann", "borrowed_at": 10.0, "returned_at": 20.0, "is_overage": False, "seq": 4},
    ]
    mapping = GroupMapping(
        {"ann": [Membership(ALWAYS, "eng", "c1"), Membership(3600.0, "ops", "c2")], "bob": [Membership(ALWAYS, "eng")]}
    )
    specs = {"A": Spec(10, 5, 1200.0, 10.0), "B": Spec(5, 1, 240.0, None)}
    # 1.5 hours are 1/480 of a 30-day billing period: A's commit of 1,200 costs 2.50 in it, B's of 240 costs 0.50.
    got = chargeback(frame(rows), specs, 0.0, 5400.0, 30, mapping)
    assert got["totals"] == {"commit_cost": 3.0, "overage_cost": 10.0, "total": 13.0}
    by_name = {g["group"]: g for g in got["groups"]}
    # A's 2.50 over 2 h (eng: ann 1 h + bob 1 h), 0.5 h (ops: ann after the move), 0.25 h (eve, before 900 s).
    assert by_name["eng"]["license_hours"] == 2.0 and by_name["ops"]["license_hours"] == 0.5
    assert by_name[UNASSIGNED]["license_hours"] == 0.25
    assert by_name["eng"]["commit_share"] == pytest.approx(1.83) and by_name["eng"]["overage_cost"] == 10.0
    assert by_name["ops"]["commit_share"] == pytest.approx(0.45) and by_name[UNASSIGNED]["commit_share"] == 0.22
    assert by_name[UNUSED]["tools"] == [
        {"tool": "B", "license_hours": 0.0, "commit_share": 0.5, "overage_cost": 0.0, "total": 0.5}
    ]
    assert [g["group"] for g in got["groups"]] == ["eng", UNUSED, "ops", UNASSIGNED]
    by_centre = chargeback(frame(rows), specs, 0.0, 5400.0, 30, mapping, "cost_centre")
    # bob names no cost centre: he is charged as (unassigned) with eve.
    assert {g["group"] for g in by_centre["groups"]} == {"c1", "c2", UNASSIGNED, UNUSED}


def test_totals_agree_with_the_capacity_report():
    """On a synthetic history the split's totals are the capacity report's commit and overage cost, to the cent."""
    history = synthetic_history(days=3, tools=12, sessions=6000, denials=0, seed=3)
    users = sorted(set(history.sessions["user"]))
    mapping = GroupMapping(
        {
            user: [Membership(ALWAYS, f"g{k % 4}", f"c{k % 2}"), Membership(history.start + 86400.0 * (k % 3), f"g{k % 5}")]
            for k, user in enumerate(users[: len(users) * 3 // 4])
        }
    )
    rows = capacity(history.sessions, history.denials, history.specs, history.start, history.end)
    totals = estate.totals(rows, history.specs, history.start, history.end, 30)
    got = chargeback(history.sessions, history.specs, history.start, history.end, 30, mapping)
    assert got["totals"]["commit_cost"] == totals["commit_cost"]
    assert got["totals"]["overage_cost"] == totals["overage_cost"]
    assert sum(g["license_hours"] for g in got["groups"]) == pytest.approx(totals["license_hours"], rel=1e-6)
    assert {g["group"] for g in got["groups"]} >= {"g0", "g1", "g2", "g3", "g4", UNASSIGNED}


def test_bad_periods_and_billing_days_are_refused():
    with pytest.raises(ValueError, match="period"):
        chargeback(frame([]), {}, 10.0, 10.0, 30, GroupMapping())
    with pytest.raises(ValueError, match="billing_days"):
        chargeback(frame([]), {}, 0.0, 10.0, 0, GroupMapping())
    empty = chargeback(frame([]), {}, 0.0, 10.0, 30, GroupMapping())
    assert empty["groups"] == [] and empty["totals"] == {"commit_cost": 0.0, "overage_cost": 0.0, "total": 0.0}


def test_a_frame_marked_by_the_mirror_gives_the_same_answer():
    """The analysis process's frames are read through its sessions sorted by tool (bytool.py): the same answer."""
    history = synthetic_history(days=2, tools=6, sessions=3000, denials=0, seed=5)
    s, _d, specs, start, end = history
    users = sorted(set(s["user"]))
    mapping = GroupMapping(
        {user: [Membership(ALWAYS, f"g{k % 3}"), Membership(start + 3600.5 * k, "x")] for k, user in enumerate(users[::2])}
    )
    codes, names = pd.factorize(pd.concat([s["tool"], s["user"]], ignore_index=True))
    b, r, seq, overage = (s[c].to_numpy() for c in ("borrowed_at", "returned_at", "seq", "is_overage"))
    index = build(codes[: len(s)], b, r, seq, overage, codes[len(s) :], np.asarray(names, dtype=object))
    marked = mark(s.copy(), Origin(index, start - 86400, end, None))
    for a, z in ((start, end), (start + 7200.25, end - 600)):
        plain = chargeback(s, specs, a, z, 30, mapping)
        assert chargeback(marked, specs, a, z, 30, mapping) == plain
        assert plain == reference(s.to_dict("records"), specs, a, z, 30, mapping, "group")
