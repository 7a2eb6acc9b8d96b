"""The estate analytics (true denials, pressure, totals, recommendations, users, the estate heatmap) against brute force.

The references here follow the definitions in docs/capacity.md one session, one denial, one instant at a time.
"""

import json
import math
import statistics
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.analytics import estate, recommend
from dash_app.analytics import users as people
from dash_app.analytics.capacity import capacity, commit_advice
from dash_app.analytics.spec import Spec
from dash_app.pressure import Pressure, by_pressure, counted_denials, true_denials_by_tool
from dash_app.testing.synthetic import synthetic_history
from tests.test_capacity import DST_EDGES, NO_SPEC, ZONES, D, S, denial_frame, frame, histories, overlaps, pieces

FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GAPS = st.sampled_from([1.0, 5.0, 30.0, 600.0])


def ref_true(denials, tool, gap, user=None):
    """The true denials (times) of one tool, by the reference of dash_app.pressure, one user at a time."""
    out = []
    for who in sorted({d.user for d in denials if d.tool == tool and (user is None or d.user == user)}):
        times = sorted(d.ts for d in denials if d.tool == tool and d.user == who)
        out.extend(ts for ts, counts in zip(times, counted_denials(times, gap)) if counts)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# True denials


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3000), st.sampled_from([0, 0, 0.001, 0.5, 0.999]), st.sampled_from("abc"), st.sampled_from("xyz")
        ),
        max_size=60,
    ),
    GAPS,
)
@settings(max_examples=100, deadline=None)
def test_true_denials_match_the_reference(raw, gap):
    # Times near 1.8e9 s with millisecond fractions: the reference's `ts - last >= gap` decides, not a rounded key.
    denials = [D(1_800_000_000.0 + t + f, tool, user) for t, f, tool, user in raw]
    got = estate.true_denials_per_tool(denial_frame(denials), 0.0, 2e9, gap)
    assert {k: v for k, v in got.items() if v} == true_denials_by_tool([(d.ts, d.tool, d.user) for d in denials], gap)


def test_fifty_thousand_denials_match_the_reference():
    _s, denials, _specs, start, end = synthetic_history(days=30, tools=40, sessions=20_000, denials=50_000, seed=3)
    got = estate.true_denials_per_tool(denials, start, end, 600)
    want = true_denials_by_tool(zip(denials["ts"].tolist(), denials["tool"].tolist(), denials["user"].tolist()), 600)
    assert got == want and 0 < sum(got.values()) < len(denials)


# ---------------------------------------------------------------------------------------------------------------------
# The report's pressure columns and totals


@given(histories(), GAPS, st.dictionaries(st.sampled_from(["A", "B", "C", "E"]), st.integers(0, 3)))
@FEW
def test_pressure_columns_rank_and_totals_follow_the_definitions(history, gap, queued):
    sessions, denials, specs, start, end = history
    period = end - start
    rows = capacity(frame(sessions), denial_frame(denials), specs, start, end)
    true_counts = estate.true_denials_per_tool(denial_frame(denials), start, end, gap)
    got = estate.with_pressure(rows, true_counts, queued, period)
    assert [row["pressure_rank"] for row in got] == list(range(1, len(rows) + 1))
    pressures = {}
    for row in got:
        total = specs.get(row["tool"], NO_SPEC).total
        in_period = [d for d in denials if start <= d.ts < end]
        assert row["true_denials"] == len(ref_true(in_period, row["tool"], gap))
        assert row["queued"] == queued.get(row["tool"], 0)
        if total is None or total <= 0:
            assert row["share_at_total"] is None and row["peak_share"] is None
        else:
            at_total = sum(z - a for a, z, level in pieces(sessions, row["tool"], start, end) if level >= total)
            assert row["share_at_total"] == pytest.approx(at_total / period)
            assert row["peak_share"] == row["peak_in_use"] / total
        pressures[row["tool"]] = Pressure(
            row["share_at_total"] or 0.0, row["true_denials"], row["queued"], row["peak_share"] or 0.0
        )
    assert [row["tool"] for row in got] == by_pressure(pressures)

    totals = estate.totals(got, specs, start, end, 30)
    commit_cost = sum(
        spec.commit_price * period / (30 * 86400) for tool, spec in specs.items() if spec.commit and spec.commit_price is not None
    )
    held = sum(max(0.0, min(end if s.r is None else s.r, end) - max(s.b, start)) for s in sessions if overlaps(s, start, end))
    assert totals == {
        "borrows": sum(1 for s in sessions if start <= s.b and overlaps(s, start, end)),
        "overage_borrows": sum(1 for s in sessions if start <= s.b and overlaps(s, start, end) and s.overage),
        "overage_cost": round(sum(row["overage_cost"] or 0 for row in rows), 2),
        "commit_cost": round(commit_cost, 2),
        "denials": sum(1 for d in denials if start <= d.ts < end),
        "true_denials": sum(len(ref_true([d for d in denials if start <= d.ts < end], t, gap)) for t in "ABCD"),
        "license_hours": pytest.approx(held / 3600),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Recommendations


def ref_recommendation(sessions, denials, spec, advice, tool, start, end, gap):
    """(action, licenses, saving, denials_served) of one tool, by scanning every session, denial and instant."""
    if spec.total is None:
        return ("keep", 0, 0.0, 0)
    total, period = spec.total, end - start
    mine = [s for s in sessions if s.tool == tool and overlaps(s, start, end)]
    lengths = [s.r - s.b for s in mine if s.b >= start and s.r is not None and s.r > s.b]
    m = statistics.median(lengths) if lengths else 3600.0
    true = ref_true([d for d in denials if start <= d.ts < end], tool, gap)
    spans = [(s.b, math.inf if s.r is None else s.r) for s in mine if s.r is None or s.r > s.b] + [(t, t + m) for t in true]
    edges = sorted({start, end} | {x for span in spans for x in span if start < x < end})
    seconds = {}
    for a, z in zip(edges, edges[1:]):
        level = sum(1 for b, r in spans if b <= a < r)
        seconds[level] = seconds.get(level, 0.0) + (z - a)
    p99 = min(n for n in range(len(spans) + 1) if sum(t for lv, t in seconds.items() if lv <= n) * 100 >= 99 * period)
    peak = max((level for _, _, level in pieces(sessions, tool, start, end)), default=0)
    if p99 > total:
        n = p99 - total
        return ("buy", n, 0.0, sum(1 for t in true if sum(1 for b, r in spans if b <= t < r) <= total + n))
    if not true and total - peak - 1 >= 1:
        lower = advice.get("best_commit") is not None and advice["best_commit"] < advice["commit"]
        return ("drop", total - peak - 1, advice["saving"] if lower else 0.0, 0)
    return ("keep", 0, 0.0, 0)


@given(histories(), GAPS)
@FEW
def test_recommendations_match_brute_force(history, gap):
    sessions, denials, specs, start, end = history
    rows = capacity(frame(sessions), denial_frame(denials), specs, start, end)
    advice = commit_advice(frame(sessions), specs, start, end)
    got = recommend.recommendations(frame(sessions), denial_frame(denials), specs, start, end, gap, rows, advice)
    advice_of = {a["tool"]: a for a in advice}
    entries = {entry["tool"]: entry for entry in got["tools"]}
    assert sorted(entries) == sorted(row["tool"] for row in rows)
    for tool, entry in entries.items():
        spec = specs.get(tool, NO_SPEC)
        want = ref_recommendation(sessions, denials, spec, advice_of.get(tool, {}), tool, start, end, gap)
        assert (entry["action"], entry["licenses"], entry["saving"], entry["denials_served"]) == want, tool
        assert entry["reason"]
        if spec.total is None:
            assert entry["reason"] == "not in the inventory"
    order = [recommend.ACTIONS.index(entry["action"]) for entry in got["tools"]]
    assert order == sorted(order)
    assert got["totals"] == {
        "saving": round(sum(entry["saving"] for entry in got["tools"]), 2),
        "licenses_to_buy": sum(entry["licenses"] for entry in got["tools"] if entry["action"] == "buy"),
        "licenses_to_drop": sum(entry["licenses"] for entry in got["tools"] if entry["action"] == "drop"),
    }


def test_a_pool_of_two_with_repeated_denials_needs_one_more_and_an_idle_pool_can_drop():
    start, end = 1_800_000_000.0, 1_800_000_000.0 + 10 * 3600
    # "Small": two licenses held all period; ann is denied every 30 s for 5 min, twice (two true denials), and
    # bob once: each would-be session lasts the median session (the full period here), so 3 more are wanted.
    sessions = [S("Small", "x", start, end - 1, seq=1), S("Small", "y", start, end - 1, seq=2)]
    sessions += [S("Idle", "z", start + 60, start + 120, seq=3)]
    denials = [D(start + 600 + 30 * k, "Small", "ann") for k in range(10)]
    denials += [D(start + 3 * 3600 + 30 * k, "Small", "ann") for k in range(10)] + [D(start + 4 * 3600, "Small", "bob")]
    specs = {"Small": Spec(2, 2, 1000.0, 50.0), "Idle": Spec(10, 5, 1000.0, 50.0), "Gone": NO_SPEC}
    rows = capacity(frame(sessions), denial_frame(denials), specs, start, end)
    advice = commit_advice(frame(sessions), specs, start, end)
    got = recommend.recommendations(frame(sessions), denial_frame(denials), specs, start, end, 600.0, rows, advice)
    small, idle, gone = got["tools"]
    assert (small["tool"], small["action"], small["licenses"], small["denials_served"]) == ("Small", "buy", 3, 3)
    assert (idle["tool"], idle["action"], idle["licenses"]) == ("Idle", "drop", 8)
    assert idle["saving"] > 0  # its commit of 5 for a peak of 1 is dearer than no commit
    assert (gone["action"], gone["reason"]) == ("keep", "not in the inventory")
    assert got["totals"]["licenses_to_buy"] == 3 and got["totals"]["licenses_to_drop"] == 8


# ---------------------------------------------------------------------------------------------------------------------
# Users


def ref_users(sessions, denials, start, end, gap):
    in_period = [d for d in denials if start <= d.ts < end]
    names = {s.user for s in sessions if overlaps(s, start, end)} | {d.user for d in in_period}
    out = {}
    for name in names:
        tools = {}
        for s in sessions:
            if s.user == name and overlaps(s, start, end):
                inside = max(0.0, min(end if s.r is None else s.r, end) - max(s.b, start))
                tools[s.tool] = tools.get(s.tool, 0.0) + inside
        out[name] = {
            "seconds": sum(tools.values()),
            "tools": tools,
            "denials": sum(1 for d in in_period if d.user == name),
            "true_denials": sum(len(ref_true(in_period, tool, gap, name)) for tool in "ABCD"),
            "overage_borrows": sum(
                1 for s in sessions if s.user == name and start <= s.b and overlaps(s, start, end) and s.overage
            ),
            "per_tool_denials": {t: sum(1 for d in in_period if d.user == name and d.tool == t) for t in "ABCD"},
        }
    return out


@given(histories(), GAPS, st.integers(1, 5))
@FEW
def test_users_match_brute_force(history, gap, limit):
    sessions, denials, _specs, start, end = history
    got = people.users(frame(sessions), denial_frame(denials), start, end, gap, limit)
    want = ref_users(sessions, denials, start, end, gap)
    ranked = sorted(want, key=lambda name: (-want[name]["seconds"], name))[:limit]
    assert [entry["user"] for entry in got] == ranked
    for entry in got:
        ref = want[entry["user"]]
        assert entry["license_hours"] == pytest.approx(ref["seconds"] / 3600)
        assert (entry["denials"], entry["true_denials"], entry["overage_borrows"]) == (
            ref["denials"],
            ref["true_denials"],
            ref["overage_borrows"],
        )
        held = sorted(((-secs, tool) for tool, secs in ref["tools"].items() if secs > 0))
        assert [(t["tool"], t["license_hours"]) for t in entry["tools"]] == [
            (tool, pytest.approx(-secs / 3600)) for secs, tool in held
        ]

    for name, ref in want.items():
        one = people.one_user(frame(sessions), denial_frame(denials), name, start, end, gap)
        assert one["user"] == name and one["license_hours"] == pytest.approx(ref["seconds"] / 3600)
        assert (one["denials"], one["true_denials"], one["overage_borrows"]) == (
            ref["denials"],
            ref["true_denials"],
            ref["overage_borrows"],
        )
        per_tool = {t["tool"]: t for t in one["tools"]}
        for tool, secs in ref["tools"].items():
            assert per_tool[tool]["license_hours"] == pytest.approx(secs / 3600)
        for tool, count in ref["per_tool_denials"].items():
            assert per_tool.get(tool, {"denials": 0})["denials"] == count


def test_a_user_with_nothing_in_the_period_has_zeros():
    got = people.one_user(frame([]), denial_frame([]), "nobody", 0.0, 3600.0, 600.0)
    assert got == {"user": "nobody", "license_hours": 0, "denials": 0, "true_denials": 0, "overage_borrows": 0, "tools": []}


# ---------------------------------------------------------------------------------------------------------------------
# The estate heatmap


@st.composite
def estates(draw):
    edge = draw(st.sampled_from(DST_EDGES))
    start = edge - draw(st.integers(0, 2 * 86400))
    end = start + draw(st.integers(1, 3 * 86400))
    sessions = []
    for i in range(draw(st.integers(0, 10))):
        b = start + draw(st.integers(-3600, int(end - start)))
        r = None if draw(st.integers(0, 4)) == 0 else b + draw(st.integers(0, 12 * 3600))
        sessions.append(S(draw(st.sampled_from("ABC")), "ann", b, r, False, i))
    specs = {tool: Spec(draw(st.integers(0, 3)), None, None, None) for tool in "AB"}  # C: not in the inventory
    return sessions, specs, start, end


@given(estates(), st.sampled_from(ZONES))
@FEW
def test_estate_heatmap_matches_brute_force(history, zone):
    sessions, specs, start, end = history
    got = estate.heatmap(frame(sessions), specs, start, end, zone)
    tz = ZoneInfo(zone)
    cuts = [q * 900.0 for q in range(math.ceil(start / 900), math.ceil(end / 900))]
    inventory = [tool for tool, spec in specs.items() if spec.total >= 1]
    seconds, used, full = {}, {}, {}
    for a, z, _ in pieces([], "none", start, end, cuts):
        key = (datetime.fromtimestamp(a, tz).weekday(), datetime.fromtimestamp(a, tz).hour)
        seconds[key] = seconds.get(key, 0.0) + (z - a)
    for tool in inventory:
        for a, z, level in pieces(sessions, tool, start, end, cuts):
            key = (datetime.fromtimestamp(a, tz).weekday(), datetime.fromtimestamp(a, tz).hour)
            used[key] = used.get(key, 0.0) + level * (z - a)
            full[key] = full.get(key, 0.0) + (z - a) * (level >= specs[tool].total)
    capacity_total = sum(specs[tool].total for tool in inventory)
    assert got["days"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] and got["hours"] == list(range(24))
    for d in range(7):
        for h in range(24):
            if (d, h) not in seconds or not inventory:
                assert got["utilization"][d][h] is None and got["at_total"][d][h] is None
                continue
            span = seconds[(d, h)]
            assert got["utilization"][d][h] == pytest.approx(used.get((d, h), 0) / (span * capacity_total), abs=1e-9)
            assert got["at_total"][d][h] == pytest.approx(full.get((d, h), 0) / (span * len(inventory)), abs=1e-9)


def test_jobs_results_are_plain_values():
    history = synthetic_history(days=2, tools=5, sessions=300, denials=40, seed=2)
    s, d, specs, start, end = history
    rows = capacity(s, d, specs, start, end)
    for value in (
        estate.heatmap(s, specs, start, end, "Europe/Berlin"),
        recommend.recommendations(s, d, specs, start, end, 600.0, rows, commit_advice(s, specs, start, end)),
        people.users(s, d, start, end, 600.0),
        people.one_user(s, d, "user0001", start, end, 600.0),
    ):
        assert json.loads(json.dumps(value)) == value
        assert not any(isinstance(x, np.generic) for x in _leaves(value))


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value
