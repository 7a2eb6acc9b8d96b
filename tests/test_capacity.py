"""The capacity analytics (dash_app.analytics) against a brute-force reference written here in plain Python.

Times are whole (or half) seconds, so every sum is exact in floating point and the figures must match exactly.
"""

import json
import math
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.analytics.bytool import Origin, build, mark, origin
from dash_app.analytics.capacity import SESSION_COLUMNS, capacity, commit_advice, empty_denials, empty_sessions
from dash_app.analytics.levels import levels_before, prepare
from dash_app.analytics.profiles import denials_over_time, duration_curve, hour_of_week
from dash_app.analytics.spec import Spec
from dash_app.testing.synthetic import synthetic_history

BASE = 1_700_000_000.0
TOOLS = ["A", "B", "C"]
USERS = ["ann", "bob", "cat", "dan"]
DAY = 86400.0
NO_SPEC = Spec(None, None, None, None)
# Each run draws new examples (no fixed seed), so runs add up; 150 a run keeps this module under half a minute.
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class S(NamedTuple):
    tool: str
    user: str
    b: float
    r: float | None  # None while open
    overage: bool = False
    seq: int = 0


class D(NamedTuple):
    ts: float
    tool: str
    user: str
    seq: int = 0


def frame(sessions):
    """The sessions as the store hands them over: object text columns, NaN for open, in the given row order."""
    rows = [
        (s.tool, s.user, None, None, "api", float(s.b), math.nan if s.r is None else float(s.r), s.overage, s.seq)
        for s in sessions
    ]
    if not rows:
        return empty_sessions()
    df = pd.DataFrame(rows, columns=list(SESSION_COLUMNS))
    for column in ("tool", "user", "host", "version", "source"):
        df[column] = pd.Series(df[column].tolist(), dtype=object)
    return df


def denial_frame(denials):
    if not denials:
        return empty_denials()
    return pd.DataFrame(
        {
            "ts": [float(d.ts) for d in denials],
            "tool": pd.Series([d.tool for d in denials], dtype=object),
            "user": pd.Series([d.user for d in denials], dtype=object),
            "reason": pd.Series(["exhausted"] * len(denials), dtype=object),
            "seq": [d.seq for d in denials],
        }
    )


# ---------------------------------------------------------------------------------------------------------------------
# The reference: every figure from its definition, by scanning all sessions.


def overlaps(s, start, end):
    return s.b < end and (s.r is None or s.r > start)


def held_at(s, t):
    return s.b <= t and (s.r is None or t < s.r)


def pieces(sessions, tool, start, end, cuts=()):
    """(from, to, in_use) between consecutive instants (session edges, the period's ends, `cuts`), by scanning every session."""
    mine = [s for s in sessions if s.tool == tool and overlaps(s, start, end)]
    instants = {start, end} | {t for t in cuts if start < t < end}
    for s in mine:
        instants |= {t for t in (s.b, s.r) if t is not None and start < t < end}
    instants = sorted(instants)
    return [(a, z, sum(1 for s in mine if held_at(s, a))) for a, z in zip(instants, instants[1:])]


def ref_levels_before(sessions, tool, start, end):
    """The level just before each start in the period: sessions in (borrowed_at, seq) order, earlier ones still held."""
    mine = sorted((s for s in sessions if s.tool == tool), key=lambda s: (s.b, s.seq))
    out = []
    for i, s in enumerate(mine):
        if start <= s.b < end and overlaps(s, start, end):
            out.append(sum(1 for o in mine[:i] if o.r is None or o.r > s.b))
    return out


def ref_capacity(sessions, denials, specs, start, end):
    period = end - start
    in_period = [d for d in denials if start <= d.ts < end]
    names = sorted({s.tool for s in sessions if overlaps(s, start, end)} | {d.tool for d in in_period} | set(specs))
    out = []
    for tool in names:
        spec = specs.get(tool, NO_SPEC)
        steps = pieces(sessions, tool, start, end)
        peak = max((level for _, _, level in steps), default=0)

        def at_least(n, steps=steps):
            return sum(z - a for a, z, level in steps if level >= n)

        def at_most(n, steps=steps):
            return sum(z - a for a, z, level in steps if level <= n)

        mine = [s for s in sessions if s.tool == tool and overlaps(s, start, end)]
        started = [s for s in mine if s.b >= start]
        overage = sum(1 for s in started if s.overage)
        seconds = {}
        for s in mine:
            inside = max(0.0, min(end if s.r is None else s.r, end) - max(s.b, start))
            seconds[s.user] = seconds.get(s.user, 0.0) + inside
        top = sorted(seconds.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        denied = [d for d in in_period if d.tool == tool]
        coverage = {f"p{x}": next(n for n in range(peak + 1) if at_most(n) * 100 >= x * period) for x in (50, 90, 95, 99)}
        coverage["p100"] = peak
        out.append(
            {
                "tool": tool,
                "total": spec.total,
                "commit": spec.commit,
                "peak_in_use": peak,
                "avg_in_use": sum(level * (z - a) for a, z, level in steps) / period,
                "seconds_at_or_above_commit": None if spec.commit is None else float(at_least(spec.commit)),
                "seconds_at_total": None if spec.total is None else float(at_least(spec.total)),
                "coverage": coverage,
                "borrows": len(started),
                "overage_borrows": overage,
                "overage_cost": None if spec.overage_price is None else round(overage * spec.overage_price, 2),
                "denials": len(denied),
                "denied_users": len({d.user for d in denied}),
                "distinct_users": len({s.user for s in mine}),
                "top_users": [{"user": user, "license_hours": secs / 3600} for user, secs in top],
            }
        )
    return out


def ref_advice(sessions, specs, start, end, billing_days=30):
    period = end - start
    names = sorted({s.tool for s in sessions if overlaps(s, start, end)} | set(specs))
    out = []
    for tool in names:
        spec = specs.get(tool, NO_SPEC)
        if spec.total is None or not spec.commit or spec.commit_price is None or spec.overage_price is None:
            out.append({"tool": tool, "commit": spec.commit, "advice": None})
            continue
        levels = ref_levels_before(sessions, tool, start, end)
        unit = spec.commit_price / spec.commit * period / (billing_days * 86400)

        def cost(c, levels=levels, unit=unit, spec=spec):
            return c * unit + spec.overage_price * sum(1 for level in levels if level >= c)

        costs = [cost(c) for c in range(spec.total + 1)]
        low = min(costs)
        best = next(c for c, x in enumerate(costs) if x <= low + 1e-9 * max(1.0, abs(low)))
        out.append(
            {
                "tool": tool,
                "commit": spec.commit,
                "cost_now": round(cost(spec.commit), 2),
                "best_commit": best,
                "best_cost": round(costs[best], 2),
                "saving": round(cost(spec.commit) - costs[best], 2),
                "curve": [{"commit": c, "cost": round(x, 2)} for c, x in enumerate(costs)],
            }
        )
    return out


def ref_duration_curve(sessions, tool, start, end):
    steps = pieces(sessions, tool, start, end)
    peak = max((level for _, _, level in steps), default=0)
    return [{"licenses": n, "share": sum(z - a for a, z, level in steps if level >= n) / (end - start)} for n in range(peak + 1)]


def ref_hour_of_week(sessions, tool, start, end, zone):
    """Split the period at every UTC quarter hour (where every zone tested changes its local hour) and read each key."""
    tz = ZoneInfo(zone)
    cuts = [q * 900.0 for q in range(math.ceil(start / 900), math.ceil(end / 900))]
    seconds, area, peak = {}, {}, {}
    for a, z, level in pieces(sessions, tool, start, end, cuts):
        local = datetime.fromtimestamp(a, tz)
        key = (local.weekday(), local.hour)
        seconds[key] = seconds.get(key, 0.0) + (z - a)
        area[key] = area.get(key, 0.0) + level * (z - a)
        peak[key] = max(peak.get(key, 0), level)
    return [
        {
            "weekday": w,
            "hour": h,
            "mean": area[(w, h)] / seconds[(w, h)] if (w, h) in seconds else None,
            "peak": peak.get((w, h)),
        }
        for w in range(7)
        for h in range(24)
    ]


def ref_denials_over_time(denials, tool, start, end, size):
    n = max(1, math.ceil((end - start) / size))
    return [
        {
            "start": start + k * size,
            "count": sum(1 for d in denials if d.tool == tool and start + k * size <= d.ts < min(start + (k + 1) * size, end)),
        }
        for k in range(n)
    ]


def without_reasons(advice):
    return [{k: v for k, v in a.items() if k != "reason"} for a in advice]


# ---------------------------------------------------------------------------------------------------------------------
# Random histories


@st.composite
def histories(draw, max_sessions=14):
    """Sessions crossing the period's edges, open, of zero length, starting together; denials; specs of every kind."""
    start = BASE + draw(st.integers(0, 10**6))
    length = draw(st.integers(1, 120))
    end = start + length
    half = draw(st.booleans())  # half seconds too, still exact in floating point
    n = draw(st.integers(0, max_sessions))
    seqs = draw(st.permutations(range(n)))
    instants = st.one_of(st.sampled_from([-7, 0, 0, 3, 3, length // 2, length - 1]), st.integers(-40, length + 5))
    sessions = []
    for i in range(n):
        b = start + draw(instants) + (0.5 if half and draw(st.booleans()) else 0)
        kind = draw(st.sampled_from(["open", "zero", "closed", "closed", "closed"]))
        r = None if kind == "open" else b if kind == "zero" else b + draw(st.integers(1, 80)) - (0.5 if half else 0)
        sessions.append(S(draw(st.sampled_from(TOOLS)), draw(st.sampled_from(USERS)), b, r, draw(st.booleans()), 3 * seqs[i] + 5))
    denials = [
        D(start + draw(st.integers(-10, length + 10)), draw(st.sampled_from(TOOLS + ["D"])), draw(st.sampled_from(USERS)), i)
        for i in range(draw(st.integers(0, 6)))
    ]
    specs = {}
    for tool in TOOLS + ["E"]:
        kind = draw(st.sampled_from(["absent", "unlimited", "limited", "limited", "limited"]))
        if kind == "unlimited":
            specs[tool] = NO_SPEC
        elif kind == "limited":
            total = draw(st.integers(0, 6))
            commit = draw(st.one_of(st.none(), st.integers(0, total + 1)))
            commit_price = draw(st.one_of(st.none(), st.sampled_from([0.0, 1e3, 1e6, 3e7]), st.integers(0, 10**8).map(float)))
            overage_price = draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 250.0]), st.integers(0, 10**4).map(float)))
            specs[tool] = Spec(total, commit, commit_price, overage_price)
    return sessions, denials, specs, start, end


@given(histories())
@PROPERTY
def test_capacity_matches_the_reference(history):
    sessions, denials, specs, start, end = history
    got = capacity(frame(sessions), denial_frame(denials), specs, start, end)
    assert got == ref_capacity(sessions, denials, specs, start, end)
    json.dumps(got)


@given(histories(), st.randoms(use_true_random=False))
@PROPERTY
def test_capacity_does_not_depend_on_row_order_or_on_prefiltering(history, rng):
    sessions, denials, specs, start, end = history
    expected = capacity(frame(sessions), denial_frame(denials), specs, start, end)
    shuffled = list(sessions)
    rng.shuffle(shuffled)
    assert capacity(frame(shuffled), denial_frame(denials), specs, start, end) == expected
    kept = [s for s in sessions if overlaps(s, start, end)]
    in_period = [d for d in denials if start <= d.ts < end]
    assert capacity(frame(kept), denial_frame(in_period), specs, start, end) == expected
    kept_advice = commit_advice(frame(kept), specs, start, end)
    assert commit_advice(frame(shuffled), specs, start, end) == kept_advice == commit_advice(frame(sessions), specs, start, end)


def indexed_frame(sessions, start, end, tools, margin):
    """The frame a mirror hands out for [start - margin, end + margin) and `tools`, marked as cut from its index."""
    everything = frame(sessions)
    codes, names = pd.factorize(pd.concat([everything["tool"], everything["user"]], ignore_index=True))
    n = len(everything)
    columns = [everything[c].to_numpy() for c in ("borrowed_at", "returned_at", "seq", "is_overage")]
    index = build(codes[:n], *columns, codes[n:], np.asarray(names, dtype=object))
    kept = [s for s in sessions if (tools is None or s.tool in tools) and overlaps(s, start - margin, end + margin)]
    return mark(frame(kept), Origin(index, start - margin, end + margin, tools)), frame(kept)


@given(histories(), st.sampled_from([None, frozenset({"A"}), frozenset({"A", "C", "E"})]), st.sampled_from([0, 30]))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_mirror_frame_is_analysed_from_its_sorted_index_with_the_same_figures(history, tools, margin):
    sessions, denials, specs, start, end = history
    marked, plain = indexed_frame(sessions, start, end, tools, margin)
    assert origin(marked, start, end) is not None and origin(plain, start, end) is None
    assert capacity(marked, denial_frame(denials), specs, start, end) == capacity(plain, denial_frame(denials), specs, start, end)
    assert commit_advice(marked, specs, start, end, 7) == commit_advice(plain, specs, start, end, 7)
    # A period the frame was not cut for is computed from the frame's rows.
    assert origin(marked, start - margin - 1, end) is None


@given(histories())
@PROPERTY
def test_the_level_before_each_start_matches_the_reference(history):
    # commit_advice only sees these levels as a multiset; each session's own level is what the generator's is_overage uses.
    sessions, _denials, _specs, start, end = history
    names, data = prepare(frame(sessions), start, end, ())
    levels = levels_before(data, len(names))
    got = sorted(
        (names[c], b, q, level)
        for c, b, q, level in zip(data.code.tolist(), data.borrowed.tolist(), data.seq.tolist(), levels.tolist())
        if b >= start
    )
    want = []
    for tool in TOOLS:
        mine = sorted(
            (s for s in sessions if s.tool == tool and start <= s.b < end and overlaps(s, start, end)), key=lambda s: (s.b, s.seq)
        )
        want += [(tool, s.b, s.seq, level) for s, level in zip(mine, ref_levels_before(sessions, tool, start, end))]
    assert got == sorted(want)


@given(histories(), st.integers(1, 31))
@PROPERTY
def test_commit_advice_matches_the_reference(history, billing_days):
    sessions, _denials, specs, start, end = history
    got = commit_advice(frame(sessions), specs, start, end, billing_days)
    assert without_reasons(got) == ref_advice(sessions, specs, start, end, billing_days)
    assert all(isinstance(a["reason"], str) and a["reason"] for a in got if a.get("advice", True) is None)
    json.dumps(got)


@given(histories())
@PROPERTY
def test_duration_curve_matches_the_reference(history):
    sessions, _denials, _specs, start, end = history
    for tool in TOOLS:
        got = duration_curve(frame(sessions), tool, start, end)
        want = ref_duration_curve(sessions, tool, start, end)
        assert [p["licenses"] for p in got] == [p["licenses"] for p in want]
        assert [p["share"] for p in got] == pytest.approx([p["share"] for p in want], rel=1e-12, abs=1e-12)
        assert got[0]["share"] == 1.0


@given(histories(), st.sampled_from([1, 7, 30, 2.5, 1000]))
@PROPERTY
def test_denials_over_time_matches_the_reference(history, size):
    _sessions, denials, _specs, start, end = history
    for tool in TOOLS + ["D", "nobody"]:
        assert denials_over_time(denial_frame(denials), tool, start, end, size) == ref_denials_over_time(
            denials, tool, start, end, size
        )


# Instants around which zones change their offset: spring and autumn in Berlin and New York, and Lord Howe Island's
# half-hour shifts (+10:30 / +11:00), plus a plain week.
DST_EDGES = [1711846800.0, 1729990800.0, 1710054000.0, 1730613600.0, 1712415600.0, 1728143999.0, 1704067200.0]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Asia/Kathmandu"]


@st.composite
def zoned_histories(draw):
    edge = draw(st.sampled_from(DST_EDGES))
    start = edge - draw(st.integers(0, 2 * DAY))
    end = start + draw(st.integers(1, int(3 * DAY)))
    length = end - start
    sessions = []
    for i in range(draw(st.integers(0, 8))):
        b = start + draw(st.integers(-3600, int(length)))
        r = None if draw(st.integers(0, 4)) == 0 else b + draw(st.integers(0, 12 * 3600))
        sessions.append(S("A", "ann", b, r, False, i))
    return sessions, start, end


@given(zoned_histories(), st.sampled_from(ZONES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hour_of_week_matches_the_reference(history, zone):
    sessions, start, end = history
    got = hour_of_week(frame(sessions), "A", start, end, zone)
    want = ref_hour_of_week(sessions, "A", start, end, zone)
    assert [(g["weekday"], g["hour"], g["peak"]) for g in got] == [(w["weekday"], w["hour"], w["peak"]) for w in want]
    for g, w in zip(got, want):
        assert (g["mean"] is None) == (w["mean"] is None)
        if g["mean"] is not None:
            assert g["mean"] == pytest.approx(w["mean"], rel=1e-12, abs=1e-12)


def test_a_synthetic_history_matches_the_reference():
    history = synthetic_history(days=2, tools=4, sessions=1500, denials=40, seed=5)
    rows = history.sessions.itertuples(index=False)
    sessions = [
        S(r.tool, r.user, r.borrowed_at, None if math.isnan(r.returned_at) else r.returned_at, r.is_overage, r.seq) for r in rows
    ]
    denials = [D(d.ts, d.tool, d.user, d.seq) for d in history.denials.itertuples(index=False)]
    start, end = history.start, history.end
    got = capacity(history.sessions, history.denials, history.specs, start, end)
    assert got == ref_capacity(sessions, denials, history.specs, start, end)
    assert without_reasons(commit_advice(history.sessions, history.specs, start, end)) == ref_advice(
        sessions, history.specs, start, end
    )
    # The generator follows the pool: never past the total, and is_overage is the level just before >= commit.
    for entry in got:
        spec = history.specs[entry["tool"]]
        assert entry["peak_in_use"] <= spec.total
        levels = ref_levels_before(sessions, entry["tool"], start, end)
        assert entry["overage_borrows"] == sum(1 for level in levels if level >= spec.commit)


# ---------------------------------------------------------------------------------------------------------------------
# Named examples, checked by hand


def test_a_thirty_second_spike_to_the_total_in_thirty_days():
    start, end = BASE, BASE + 30 * DAY
    spike = start + 10 * DAY
    sessions = [S("T", f"steady{i}", start - 3600, None) for i in range(4)]
    sessions += [S("T", f"burst{i}", spike, spike + 30) for i in range(6)]
    [entry] = capacity(frame(sessions), empty_denials(), {"T": Spec(10, 5, 5000.0, 100.0)}, start, end)
    assert entry["peak_in_use"] == 10
    assert entry["seconds_at_total"] == 30.0
    assert entry["seconds_at_or_above_commit"] == 30.0
    assert entry["avg_in_use"] == pytest.approx(4 + 6 * 30 / (30 * DAY))
    assert entry["coverage"] == {"p50": 4, "p90": 4, "p95": 4, "p99": 4, "p100": 10}
    assert entry["borrows"] == 6 and entry["distinct_users"] == 10
    assert entry["top_users"][0] == {"user": "steady0", "license_hours": 720.0}
    assert entry["top_users"][4] == {"user": "burst0", "license_hours": 30 / 3600}
    curve = duration_curve(frame(sessions), "T", start, end)
    assert [p["licenses"] for p in curve] == list(range(11))
    assert curve[4]["share"] == 1.0 and curve[5]["share"] == pytest.approx(30 / (30 * DAY))


def test_commit_advice_below_the_current_commit_saves_money():
    # 30 days = one billing period, so a committed license costs 10,000 / 10 = 1,000; an overage borrow 1,500.
    start, end = BASE, BASE + 30 * DAY
    sessions = [S("T", "u", start, None, False, seq) for seq in (1, 2, 3)]  # levels before: 0, 1, 2
    # Four borrows at one instant, rows in reverse: the recorded order (seq) sets their levels before: 3, 4, 5, 6.
    sessions += [S("T", "v", start + DAY, start + DAY + 3600, False, seq) for seq in (13, 12, 11, 10)]
    [advice] = commit_advice(frame(sessions), {"T": Spec(12, 10, 10_000.0, 1_500.0)}, start, end)
    # overage_borrows(c) = 7 - c up to 7, so cost(c) = 1,000 c + 1,500 (7 - c) = 10,500 - 500 c, then 1,000 c.
    assert advice["best_commit"] == 7
    assert advice["best_cost"] == 7000.0
    assert advice["cost_now"] == 10000.0
    assert advice["saving"] == 3000.0
    assert [p["cost"] for p in advice["curve"]] == [10500.0 - 500 * c for c in range(8)] + [
        8000.0,
        9000.0,
        10000.0,
        11000.0,
        12000.0,
    ]


def test_a_return_and_a_borrow_at_one_instant_do_not_overlap():
    start, end = BASE, BASE + 100
    sessions = [
        S("T", "x", start, start + 50, False, 1),
        S("T", "z", start + 50, start + 50, False, 2),  # zero length: covers nothing, holds nothing for later starts
        S("T", "y", start + 50, start + 100, False, 3),
        S("T", "w", start + 50, start + 60, False, 4),
    ]
    [entry] = capacity(frame(sessions), empty_denials(), {"T": Spec(3, 1, 300.0, 10.0)}, start, end)
    assert entry["peak_in_use"] == 2 and entry["seconds_at_or_above_commit"] == 100.0 and entry["borrows"] == 4
    assert entry["avg_in_use"] == (50 + 50 + 10) / 100
    [advice] = commit_advice(frame(sessions), {"T": Spec(3, 1, 300.0, 10.0)}, start, end)
    # Levels before: x 0, z 0, y 0 (x returned at that instant, z covers nothing), w 1 (y was recorded first).
    assert ref_levels_before(sessions, "T", start, end) == [0, 0, 0, 1]
    assert [p["cost"] - round(p["commit"] * 300 * 100 / (30 * 86400), 2) for p in advice["curve"]] == pytest.approx(
        [40, 10, 0, 0]
    )


def test_tools_without_limits_or_commit_get_no_advice():
    start, end = BASE, BASE + 100
    sessions = [S("typo", "u", start, None), S("free", "u", start, None), S("zero", "u", start, None)]
    specs = {"free": Spec(5, 2, None, None), "zero": Spec(5, 0, 100.0, 10.0), "idle": Spec(3, 1, 1e6, 1.0)}
    advice = {a["tool"]: a for a in commit_advice(frame(sessions), specs, start, end)}
    assert sorted(advice) == ["free", "idle", "typo", "zero"]
    for tool in ("free", "typo", "zero"):
        assert advice[tool]["advice"] is None and advice[tool]["reason"]
    assert advice["idle"]["best_commit"] == 0 and advice["idle"]["saving"] == round(1e6 * 100 / (30 * 86400), 2)
    entries = {e["tool"]: e for e in capacity(frame(sessions), empty_denials(), specs, start, end)}
    assert entries["typo"]["seconds_at_total"] is None and entries["typo"]["overage_cost"] is None
    assert entries["zero"]["seconds_at_or_above_commit"] == 100.0  # in_use >= 0 all the time
    assert entries["idle"]["peak_in_use"] == 0 and entries["idle"]["coverage"]["p100"] == 0


def test_hour_of_week_counts_the_repeated_autumn_hour_twice_and_skips_the_spring_one():
    # Berlin, Sunday 27 Oct 2024: 03:00 CEST becomes 02:00 CET at 01:00 UTC, so local 02:00-03:00 lasts two hours.
    day_start = 1729980000.0  # 2024-10-26 22:00 UTC = 27 Oct 00:00 CEST
    sessions = [S("T", "u", 1729989000.0, 1729992600.0)]  # 00:30-01:30 UTC: all of it local hour 2
    cells = {
        (c["weekday"], c["hour"]): c
        for c in hour_of_week(frame(sessions), "T", day_start, day_start + 25 * 3600, "Europe/Berlin")
    }
    assert cells[(6, 2)] == {"weekday": 6, "hour": 2, "mean": 0.5, "peak": 1}
    assert cells[(6, 1)]["mean"] == 0.0 and cells[(6, 23)]["mean"] == 0.0 and cells[(0, 0)]["mean"] is None
    # Sunday 31 Mar 2024: 02:00 CET jumps to 03:00 CEST, so local hour 2 never happens that day.
    spring = hour_of_week(frame([]), "T", 1711839600.0, 1711839600.0 + 23 * 3600, "Europe/Berlin")
    assert [c["hour"] for c in spring if c["mean"] is not None] == [h for h in range(24) if h != 2]
    assert all(c["weekday"] == 6 for c in spring if c["mean"] is not None)


def test_hour_of_week_in_utc_and_a_half_hour_zone():
    monday = 1704067200.0  # 2024-01-01 00:00 UTC, a Monday
    sessions = [S("T", "u", monday + 3600, monday + 3 * 3600), S("T", "v", monday + 5400, monday + 5400 + 60)]
    utc = hour_of_week(frame(sessions), "T", monday, monday + 7 * DAY)
    assert utc[1] == {"weekday": 0, "hour": 1, "mean": 1 + 60 / 3600, "peak": 2}
    assert utc[2]["mean"] == 1.0 and utc[3]["mean"] == 0.0 and utc[167]["mean"] == 0.0
    kolkata = hour_of_week(frame(sessions), "T", monday, monday + 7 * DAY, "Asia/Kolkata")  # +05:30
    assert kolkata[6]["mean"] == 0.5 and kolkata[7] == {"weekday": 0, "hour": 7, "mean": 1 + 60 / 3600, "peak": 2}


def test_denials_over_time_bins_from_the_start():
    start = BASE
    denials = [
        D(start, "T", "u"),
        D(start + 59.5, "T", "u"),
        D(start + 60, "T", "v"),
        D(start + 150, "T", "u"),
        D(start + 10, "X", "u"),
    ]
    got = denials_over_time(denial_frame(denials), "T", start, start + 150, 60)
    assert got == [{"start": start, "count": 2}, {"start": start + 60, "count": 1}, {"start": start + 120, "count": 0}]


def test_empty_inputs_and_specs_only():
    start, end = BASE, BASE + 10
    [entry] = capacity(empty_sessions(), empty_denials(), {"T": Spec(2, 1, 10.0, 5.0)}, start, end)
    assert entry["peak_in_use"] == 0 and entry["avg_in_use"] == 0.0 and entry["top_users"] == []
    assert entry["coverage"] == {"p50": 0, "p90": 0, "p95": 0, "p99": 0, "p100": 0}
    assert entry["seconds_at_or_above_commit"] == 0.0 and entry["overage_cost"] == 0.0
    assert capacity(empty_sessions(), empty_denials(), {}, start, end) == []
    assert commit_advice(empty_sessions(), {}, start, end) == []
    assert duration_curve(empty_sessions(), "T", start, end) == [{"licenses": 0, "share": 1.0}]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="period"):
        capacity(empty_sessions(), empty_denials(), {}, BASE, BASE)
    with pytest.raises(ValueError, match="period"):
        duration_curve(empty_sessions(), "T", BASE, BASE - 1)
    with pytest.raises(ValueError, match="billing_days"):
        commit_advice(empty_sessions(), {}, BASE, BASE + 1, billing_days=0)
    with pytest.raises(ValueError, match="zone"):
        hour_of_week(empty_sessions(), "T", BASE, BASE + 1, "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="bin_seconds"):
        denials_over_time(empty_denials(), "T", BASE, BASE + 1, 0)


def _plain(value):
    """True when `value` holds only JSON's own Python types (no numpy scalars)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_every_result_is_plain_json():
    history = synthetic_history(days=3, tools=6, sessions=3000, denials=100, seed=2)
    s, d, specs, start, end = history
    tool = next(iter(specs))
    for result in (
        capacity(s, d, specs, start, end),
        commit_advice(s, specs, start, end),
        duration_curve(s, tool, start, end),
        hour_of_week(s, tool, start, end, "Europe/Berlin"),
        denials_over_time(d, tool, start, end, 3600),
    ):
        assert _plain(result)


def test_synthetic_history_has_the_store_shapes():
    history = synthetic_history(days=5, tools=10, sessions=5000, denials=300, seed=9)
    s, d = history.sessions, history.denials
    assert list(s.columns) == list(SESSION_COLUMNS) and len(s) == 5000 and len(d) == 300
    assert all(s[c].dtype == object for c in ("tool", "user", "host", "version", "source"))
    assert s["borrowed_at"].dtype == np.float64 and s["is_overage"].dtype == bool and s["seq"].dtype == np.int64
    assert s["seq"].is_unique and list(s.sort_values(["borrowed_at", "seq"]).index) == list(range(len(s)))
    assert (s["borrowed_at"] < history.end).all() and ((s["returned_at"] > history.start) | s["returned_at"].isna()).all()
    assert s["returned_at"].isna().any() and (s["borrowed_at"] < history.start).any()
    assert (s["borrowed_at"] == s["returned_at"]).any() and s["borrowed_at"].duplicated().any()
    assert d["ts"].between(history.start, history.end, inclusive="left").all() and d["ts"].is_monotonic_increasing
    again = synthetic_history(days=5, tools=10, sessions=5000, denials=300, seed=9)
    pd.testing.assert_frame_equal(again.sessions, s)
    pd.testing.assert_frame_equal(again.denials, d)
