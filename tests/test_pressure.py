"""The pressure order and true denials against brute force."""

from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app.pressure import Pressure, by_pressure, counted_denials, true_denials_by_tool


def brute_true(times: list[float], gap: float) -> int:
    """Count true denials the slow way: a denial counts unless one that counted lies less than `gap` before it."""
    counted: list[float] = []
    for ts in sorted(times):
        if not any(0 <= ts - c < gap for c in counted):
            counted.append(ts)
    return len(counted)


def test_retries_within_the_gap_of_the_first_count_once() -> None:
    # 0 counts; 300 and 599 are within 600 s of it; 600 is not; 1000 is within 600 s of 600.
    assert counted_denials([0, 300, 599, 600, 1000, 1300], 600) == [True, False, False, True, False, True]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.sampled_from("ab"), st.sampled_from("xyz")), max_size=40))
def test_true_denials_match_brute_force(denials: list[tuple[int, str, str]]) -> None:
    got = true_denials_by_tool([(float(t), tool, user) for t, tool, user in denials], 600)
    want: dict[str, int] = {}
    for tool in "ab":
        for user in "xyz":
            n = brute_true([t for t, k, u in denials if k == tool and u == user], 600)
            if n:
                want[tool] = want.get(tool, 0) + n
    assert got == want


def test_a_small_pool_with_denials_outranks_a_big_busy_one() -> None:
    pressures = {
        "Big": Pressure(0.0, 0, 0, 0.9),  # 90 of 100 at peak, never at total
        "Small": Pressure(0.2, 6, 0, 1.0),  # 2 of 2 a fifth of the time, 6 true denials
        "Queued": Pressure(0.2, 6, 3, 1.0),
        "Idle": Pressure(0.0, 0, 0, 0.0),
        "Also idle": Pressure(0.0, 0, 0, 0.0),
    }
    assert by_pressure(pressures) == ["Queued", "Small", "Big", "Also idle", "Idle"]


def test_pressures_and_grid_rows_kept_from_tick_to_tick_equal_fresh_ones() -> None:
    import random

    from dash_app.callbacks.window_stats import ToolStats, WindowData, pressures
    from dash_app.layouts.tables import tool_rows

    rng = random.Random(9)
    tools = [f"t{n}" for n in range(12)]
    kept_pressure: dict = {}
    kept_rows: dict = {}
    status = [{"tool": t, "total": rng.choice([None, 2, 5]), "borrowed": 0, "queued": 0} for t in tools]
    peaks = {t: {1: 3} for t in tools}
    stats = {t: ToolStats(0, 0, 0, 0, 0) for t in tools}
    for _ in range(60):
        # A tick changes one thing at a time of a few tools (a count, its levels, its total, queue or price); the
        # other tools keep the very same objects.
        for t in rng.sample(tools, 3):
            entry = next(e for e in status if e["tool"] == t)
            what = rng.choice(["borrowed", "queued", "total", "price", "stats", "peaks"])
            if what == "borrowed":
                entry["borrowed"] = rng.randint(0, 5)
            elif what == "queued":
                entry["queued"] = rng.choice([0, 1, 2])
            elif what == "total":
                entry["total"] = rng.choice([None, 2, 5])
            elif what == "price":
                entry["overage_price_per_license"] = rng.choice([None, 12.5, 20.0])
            elif what == "stats":
                stats[t] = ToolStats(*(rng.randint(0, n) for n in (9, 3, 0, 4, 6, 2)))
            else:
                peaks[t] = {rng.randint(0, 6): rng.randint(1, 30)}
        snapshot = [dict(e) for e in status]
        data = WindowData(60, {}, {}, {}, peak_bins=dict(peaks))
        fresh = pressures(snapshot, data, stats, 1800)
        assert pressures(snapshot, data, stats, 1800, kept_pressure) == fresh
        ranked = by_pressure(fresh)
        assert tool_rows(snapshot, stats, "EUR", fresh, ranked, kept_rows) == tool_rows(snapshot, stats, "EUR", fresh, ranked)
