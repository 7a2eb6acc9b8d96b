"""The pool's borrow rules, charges and status against a brute-force reference."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import BorrowDenied, LicensePool, UnknownBorrow
from dash_app.licenses.inventory import parse_inventory
from dash_app.licenses.pool import Borrow
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.recording import EventRecorder
from dash_app.store import Store
from dash_app.testing.commands import run_refused

# "Tight" has room past commit + max_overage, so max_overage is reachable before exhausted.
INVENTORY = [
    {"tool": "Tight", "total": 6, "commit_qty": 2, "max_overage": 2, "commit_price": 100, "overage_price_per_license": 7},
    {"tool": "NoOverage", "total": 3, "commit_qty": 3, "max_overage": 0, "commit_price": 50, "overage_price_per_license": 0},
    {"tool": "Flexible", "total": 4, "commit_qty": 1, "max_overage": 3, "commit_price": 10, "overage_price_per_license": 2.5},
]


def make_pool(store=None, inventory=INVENTORY):
    buffer = RealtimeMetricsBuffer()
    recorder = EventRecorder(buffer, listeners=[store] if store else [])
    return LicensePool(parse_inventory(inventory), recorder, store=PoolStorage(store) if store else None), buffer


def reference_outcome(spec, borrowed):
    """The issue's rules, read literally."""
    if spec is None:
        return "unknown_tool"
    if borrowed >= spec["total"]:
        return "exhausted"
    if borrowed >= spec["commit_qty"] and borrowed - spec["commit_qty"] >= spec["max_overage"]:
        return "max_overage"
    return "overage" if borrowed >= spec["commit_qty"] else "in_commit"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("borrow"), st.sampled_from(["Tight", "NoOverage", "Flexible", "Missing"]), st.sampled_from(["ann", "bob"])
            ),
            st.tuples(st.just("return"), st.integers(0, 30)),
        ),
        max_size=80,
    )
)
def test_rules_charges_and_status_match_reference(ops):
    pool, buffer = make_pool()
    specs = {entry["tool"]: entry for entry in INVENTORY}
    borrowed = {tool: 0 for tool in specs}
    charges = {tool: 0 for tool in specs}
    granted, returned = [], set()
    successes = failures = 0
    for op in ops:
        if op[0] == "borrow":
            _, tool, user = op
            expected = reference_outcome(specs.get(tool), borrowed.get(tool, 0))
            try:
                borrow = pool.borrow(tool, user)
            except BorrowDenied as denied:
                assert denied.reason == expected
                failures += 1
                continue
            assert expected in ("overage", "in_commit")
            assert borrow.is_overage == (expected == "overage")
            borrowed[tool] += 1
            charges[tool] += borrow.is_overage
            granted.append(borrow)
            successes += 1
        elif granted:
            borrow = granted[op[1] % len(granted)]
            if borrow.id in returned:
                try:
                    pool.return_license(borrow.id)
                    raise AssertionError("a second return must fail")
                except UnknownBorrow:
                    pass
            else:
                assert pool.return_license(borrow.id).tool == borrow.tool
                returned.add(borrow.id)
                borrowed[borrow.tool] -= 1
    for entry in pool.status():
        spec = specs[entry["tool"]]
        b = borrowed[entry["tool"]]
        assert entry == {
            "tool": entry["tool"],
            "total": spec["total"],
            "borrowed": b,
            "reserved": 0,  # no polled server said
            "queued": 0,
            "available": max(spec["total"] - b, 0),
            "commit": spec["commit_qty"],
            "max_overage": spec["max_overage"],
            "overage": max(b - spec["commit_qty"], 0),
            "overage_borrows": charges[entry["tool"]],
            "in_commit": b <= spec["commit_qty"],
            "commit_price": spec["commit_price"],
            "overage_price_per_license": spec["overage_price_per_license"],
            "current_overage_cost": charges[entry["tool"]] * spec["overage_price_per_license"],
            "total_cost": spec["commit_price"] + charges[entry["tool"]] * spec["overage_price_per_license"],
            "expiry": None,  # no polled server said
        }
    assert len(pool.active_borrows()) == sum(borrowed.values())
    stats = buffer.get_stats_summary()
    assert (stats["borrow_count"], stats["failure_count"], stats["return_count"]) == (successes, failures, len(returned))


def test_restart_keeps_borrows_and_charges_and_takes_new_limits(tmp_path):
    store = Store(tmp_path / "pool.db")
    store.start()
    pool, _ = make_pool(store)
    kept = [pool.borrow("Tight", f"user{n}") for n in range(4)]  # two in commit, two overage
    pool.return_license(kept[0].id)
    store.stop()

    changed = [dict(INVENTORY[0], total=10, commit_qty=5, max_overage=5)] + INVENTORY[1:]
    store = Store(tmp_path / "pool.db")
    store.start()
    pool, _ = make_pool(store, changed)
    status = pool.tool_status("Tight")
    assert (status["borrowed"], status["total"], status["commit"], status["overage_borrows"]) == (3, 10, 5, 2)
    assert status["overage"] == 0 and status["current_overage_cost"] == 14
    assert {b.id for b in pool.active_borrows(tool="Tight")} == {b.id for b in kept[1:]}
    assert pool.borrow("Tight", "new").is_overage is False  # 3 borrowed < new commit of 5
    store.stop()


def test_unlisted_tool_with_restored_borrows_shows_with_unknown_limits(tmp_path):
    store = Store(tmp_path / "pool.db")
    store.start()
    pool, _ = make_pool(store)
    pool.borrow("Flexible", "ann")
    store.stop()
    store = Store(tmp_path / "pool.db")
    pool, _ = make_pool(store, INVENTORY[:2])
    entry = pool.tool_status("Flexible")
    assert entry["borrowed"] == 1 and entry["total"] is None and entry["available"] is None
    store.close()


def run_cli(*args):
    return run_refused(args)


def test_bad_tools_files_end_with_one_line_and_non_zero_exit(tmp_path):
    cases = {
        "missing.json": (None, "not found"),
        "broken.json": ("[{", "invalid JSON"),
        "negative.json": (json.dumps([dict(INVENTORY[0], max_overage=-1)]), "'max_overage' must not be negative"),
        "text.json": (json.dumps([dict(INVENTORY[0], total="10")]), "'total' must be a whole number"),
        "object.json": (json.dumps({"tool": "x"}), "expected a JSON list"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        result = run_cli("--tools", str(path), "--db", str(tmp_path / "x.db"))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, name
        assert len(lines) == 1 and lines[0].startswith("python -m dash_app: error: tools file") and message in lines[0], lines


def test_a_borrow_is_equal_by_what_the_pool_decided_not_by_where_it_is_used():
    first = Borrow("id-1", "Tight", "ann", 1_800_000_000.0, False, host="ws-1", version="2.0")
    again = Borrow("id-1", "Tight", "ann", 1_800_000_000.0, False)
    assert first == again and hash(first) == hash(again) and len({first, again}) == 1
    assert first != Borrow("id-1", "Tight", "ann", 1_800_000_000.0, True)
    assert repr(again) == "Borrow(id='id-1', tool='Tight', user='ann', borrowed_at=1800000000.0, is_overage=False)"
    assert Borrow.of_row(("id-1", "Tight", "ann", 1_800_000_000.0, 0, "ws-1", "2.0")).as_dict()["host"] == "ws-1"


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Tight", "Flexible", "Polled"]),
            st.sampled_from(["27000@lic01", "27001@lic02"]),
            st.integers(0, 5),
            st.integers(0, 5),
        ),
        max_size=20,
    ),
    st.integers(0, 8),
)
def test_reserved_and_queued_are_each_servers_last_word_summed_and_taken_from_available(observations, borrows):
    pool, _ = make_pool()
    pool.observe_total("Polled", 4, "27000@lic01")  # a tool the tools file does not list: its server's total
    for n in range(borrows):
        pool.observe_borrow("Tight", f"u{n}", 0.0)  # observed: granted elsewhere, so past the total too
    said = {}
    for tool, server, reserved, queued in observations:
        pool.observe_queue(tool, reserved, queued, server)
        said[(tool, server)] = (reserved, queued)
    totals, in_use = {"Tight": 6, "Flexible": 4, "Polled": 4}, {"Tight": borrows, "Flexible": 0, "Polled": 0}
    for entry in pool.status(tools=set(totals)):
        tool = entry["tool"]
        reserved = sum(r for (t, _), (r, _) in said.items() if t == tool)
        queued = sum(q for (t, _), (_, q) in said.items() if t == tool)
        assert (entry["reserved"], entry["queued"]) == (reserved, queued)
        assert entry["available"] == max(totals[tool] - in_use[tool] - reserved, 0)
        assert entry["borrowed"] == in_use[tool]  # reservations are no checkouts


def test_a_server_with_nothing_reserved_or_queued_any_more_stops_counting():
    pool, _ = make_pool()
    pool.observe_queue("Tight", 2, 1, "27000@lic01")
    pool.observe_queue("Tight", 1, 3, "27001@lic02")
    assert {k: pool.tool_status("Tight")[k] for k in ("reserved", "queued", "available")} == {
        "reserved": 3,
        "queued": 4,
        "available": 3,
    }
    pool.observe_queue("Tight", 0, 0, "27000@lic01")  # lic01's next poll shows neither
    assert (pool.tool_status("Tight")["reserved"], pool.tool_status("Tight")["queued"]) == (1, 3)
    pool.observe_queue("Tight", 0, 0, "27001@lic02")
    assert [pool.tool_status("Tight")[k] for k in ("reserved", "queued", "available")] == [0, 0, 6]


def test_what_a_server_no_longer_lists_stops_counting_and_other_servers_word_stands():
    pool, _ = make_pool()
    for server in ("27000@lic01", "27001@lic02"):
        pool.observe_total("Polled", 4, server)
        pool.observe_expiry("Polled", "2027-01-31" if server.endswith("01") else "2027-06-30", server)
        pool.observe_queue("Polled", 1, 2, server)
        pool.observe_queue("Tight", 2, 0, server)
    pool.observe_listed("27000@lic01", ["Tight"])  # lic01's poll lists Tight, no longer Polled
    polled, tight = pool.tool_status("Polled"), pool.tool_status("Tight")
    assert [polled[k] for k in ("total", "reserved", "queued", "available", "expiry")] == [4, 1, 2, 3, "2027-06-30"]
    assert (tight["reserved"], tight["available"]) == (4, 2)
    pool.observe_listed("27001@lic02", [])
    polled = pool.tool_status("Polled")
    assert [polled[k] for k in ("total", "reserved", "queued", "available", "expiry")] == [None, 0, 0, None, None]
    assert pool.tool_status("Tight")["reserved"] == 2
