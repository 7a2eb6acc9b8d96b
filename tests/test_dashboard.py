"""The dashboard's callbacks without a browser: what one refresh sends, and that it sends only what changed."""

import copy
import json
import time

import pytest
from dash._no_update import NoUpdate

from dash_app.callbacks.page import OUTPUTS, PageUpdater
from dash_app.callbacks.snapshots import EventRows, recent_events
from dash_app.callbacks.updates import plain
from dash_app.events import public_event
from dash_app.figures.text import bucket_time, legend_name
from dash_app.layouts import parts, tables
from dash_app.licenses.pool import BorrowDenied
from dash_app.state import get_state
from dash_app.testing import FakeClock

GH = "GreenHills Multi IDE"
VECTOR = "Vector - DaVinci Configurator SE"
VECTOR_LEGEND = legend_name(VECTOR)


def updater_clock():
    """The updater's clock, moved by hand; the buffer keeps real time, so events are placed just before it."""
    return FakeClock(time.time())


def fed_app(make_app):
    app = make_app()
    state = get_state(app)
    now = time.time()
    for minutes_ago, tool, user in [(20, GH, "ann"), (12, GH, "bob"), (12, VECTOR, "cy"), (3, VECTOR, "dee"), (0.5, GH, "eve")]:
        state.pool.borrow(tool, user, at=now - minutes_ago * 60)
    first = state.pool.active_borrows(user="ann")[0]
    state.pool.return_license(first.id, at=now - 5 * 60)
    return app, state


def is_no_update(value):
    return NoUpdate.is_no_update(value)


def is_patch(value):
    return isinstance(value, dict) and value.get("__dash_patch_update") == "__dash_patch_update"


def test_first_refresh_fills_cards_and_overview_and_hides_the_tool_view(make_app):
    app, state = fed_app(make_app)
    updater = PageUpdater(state, clock=updater_clock())
    out, seen = updater.update("__all__", 1800, None)
    assert out[("active-licenses", "children")] == "4"
    assert out[("buffer-size", "children")] == "6"
    # Rates are over the window: five borrows in 30 minutes, one return; the overage card shows its counts.
    assert out[("borrow-rate", "children")] == "0.2"
    assert out[("borrow-rate-hint", "children")] == "per minute · last 30 min · all tools"
    assert out[("return-rate", "children")] == "0.033"  # one return in 30 minutes: rare, not none
    assert out[("overage-rate", "children")] == "0 %"
    assert out[("overage-rate-hint", "children")] == "0 of 5 borrows · last 30 min"
    assert out[("overview-section", "style")] == {} and out[("tool-section", "style")] == {"display": "none"}
    borrow_chart = out[("borrow-chart", "figure")]
    assert {t["name"]: sum(t["y"]) for t in borrow_chart["data"]} == {VECTOR_LEGEND: 2, GH: 3}
    for figure_id in ("tool-borrow-chart", "tool-failure-chart", "tool-commit-chart", "tool-inuse-chart"):
        assert is_no_update(out[(figure_id, "figure")])
    # Every tool has a row in the tool table; the open checkouts are listed, longest held first.
    assert [r["tool"] for r in out[("tool-table", "rowData")]] == state.pool.tools
    # Each tool's checkouts together, longest held first; the tool named on its first row only.
    rows = [(r["tool_label"], r["user"]) for r in out[("checkouts-table", "rowData")]]
    by_gh, by_vector = [(GH, "bob"), ("", "eve")], [(VECTOR, "cy"), ("", "dee")]
    assert rows in (by_gh + by_vector, by_vector + by_gh)  # bob and cy borrowed at the same instant
    assert [c["headerName"] for c in out[("checkouts-table", "columnDefs")]][:3] == ["Tool", "User", "Since (UTC)"]
    # The tool picker lists the tools by name, not in the inventory's order.
    assert [o["value"] for o in out[("tool-filter", "options")]] == ["__all__"] + sorted(state.pool.tools, key=str.casefold)
    assert seen["view"] == [None, 1800, "UTC"] and set(seen["parts"]) >= {"borrow-chart", "events-table"}


def test_nothing_new_sends_nothing_and_a_later_tick_only_moves_the_window(make_app):
    app, state = fed_app(make_app)
    clock = updater_clock()
    updater = PageUpdater(state, clock=clock)
    _, seen = updater.update("__all__", 1800, None)
    out, seen = updater.update("__all__", 1800, seen)
    for key in OUTPUTS:
        if key[1] == "figure" or key[0] in ("events-table", "tool-info", "tool-filter", "overview-section"):
            assert is_no_update(out[key]), key
    clock.advance(1)
    out, seen = updater.update("__all__", 1800, seen)
    patch = out[("borrow-chart", "figure")]
    assert is_patch(patch)
    (operation,) = patch["operations"]
    assert operation["location"] == ["layout", "xaxis", "autorangeoptions"]
    assert operation["params"]["value"]["maxallowed"] == round(clock.now * 1000)
    # No time axis to move: the pool chart, and the empty states of the overage and failure charts.
    for figure_id in ("utilization-chart", "overage-chart", "failure-chart"):
        assert is_no_update(out[(figure_id, "figure")]), figure_id


def test_a_new_borrow_patches_only_its_tools_series(make_app):
    app, state = fed_app(make_app)
    clock = updater_clock()
    updater = PageUpdater(state, clock=clock)
    out, seen = updater.update("__all__", 1800, None)
    order = [t["name"] for t in out[("borrow-chart", "figure")]["data"]]
    state.pool.borrow(GH, "fay")
    out, seen = updater.update("__all__", 1800, seen)
    patch = out[("borrow-chart", "figure")]
    assert is_patch(patch)
    (operation,) = patch["operations"]
    assert operation["location"] == ["data", order.index(GH)]
    assert sum(operation["params"]["value"]["y"]) == 4
    assert out[("active-licenses", "children")] == "5"
    assert not is_no_update(out[("events-table", "children")])


def apply_patch(value, patch):
    """Dash's patch semantics for the operations our updates use, as a reference."""
    value = copy.deepcopy(value)
    for op in patch["operations"]:
        *parents, last = op["location"]
        target = value
        for key in parents:
            target = target[key]
        if op["operation"] == "Assign":
            target[last] = op["params"]["value"]
        elif op["operation"] == "Prepend":
            target[last].insert(0, op["params"]["value"])
        elif op["operation"] == "Delete":
            del target[last]
        else:
            raise AssertionError(op)
    return value


def test_patches_bring_a_tab_to_exactly_what_a_new_tab_gets(make_app):
    app, state = fed_app(make_app)
    for n in range(22):  # 50 events: the table is full, so new rows push old ones out
        state.pool.return_license(state.pool.borrow(GH, f"old{n}", at=time.time() - 100 + n).id, at=time.time() - 99 + n)
    clock = updater_clock()
    updater = PageUpdater(state, clock=clock)
    out, seen = updater.update("__all__", 1800, None)
    shown = {key: out[key] for key in (("borrow-chart", "figure"), ("events-table", "children"))}
    for n in range(3):
        state.pool.return_license(state.pool.borrow(VECTOR, f"new{n}").id)
        clock.advance(1)
        out, seen = updater.update("__all__", 1800, seen)
        fresh, _ = updater.update("__all__", 1800, None)
        for key in shown:
            assert is_patch(out[key]), key
            shown[key] = apply_patch(shown[key], out[key])
            assert shown[key] == fresh[key], key
    rows = shown[("events-table", "children")]["props"]["children"][1]["props"]["children"]
    assert len(rows) == 50 and rows[0]["props"]["children"][3]["props"]["children"] == "new2"
    ops = [(op["operation"], op["location"][-1]) for op in out[("events-table", "children")]["operations"]]
    assert ops == [("Prepend", "children"), ("Prepend", "children"), ("Delete", 51), ("Delete", 50)]


def test_tool_view_shows_that_tools_history_users_and_limits(make_app):
    app, state = fed_app(make_app)
    updater = PageUpdater(state, clock=updater_clock())
    out, seen = updater.update(GH, 1800, None)
    assert out[("overview-section", "style")] == {"display": "none"} and out[("tool-section", "style")] == {}
    (bars,) = out[("tool-borrow-chart", "figure")]["data"]
    history = state.buffer.get_tool_history(GH, 1800)
    assert bars["x"] == [bucket_time(b["timestamp"]) for b in history] and bars["y"] == [b["count"] for b in history]
    assert [r["user"] for r in out[("checkouts-table", "rowData")]] == ["bob", "eve"]
    # One tool's checkouts need no column of its name.
    assert [c["headerName"] for c in out[("checkouts-table", "columnDefs")]][:2] == ["User", "Since (UTC)"]
    (in_use,) = out[("tool-inuse-chart", "figure")]["data"]
    assert in_use["y"][-1] == 2 and max(in_use["y"]) == 2
    # The cards are the tool's: in use of its total, its borrows over the window.
    assert out[("active-licenses", "children")] == "2" and out[("active-licenses-hint", "children")] == "of 15 · this tool"
    assert out[("overage-rate-hint", "children")] == "0 of 3 borrows · last 30 min"
    assert out[("tool-commit-chart", "figure")]["data"][0]["values"] == [2, 0, 13]
    info = str(out[("tool-info", "children")])
    assert GH in info and "'Commit'" in info and "8,000" in info
    for figure_id in ("borrow-chart", "overage-chart", "utilization-chart", "failure-chart"):
        assert is_no_update(out[(figure_id, "figure")])


def test_switching_tools_and_back_sends_the_first_tools_full_history_again(make_app):
    app, state = fed_app(make_app)
    updater = PageUpdater(state, clock=updater_clock())
    out, seen = updater.update(GH, 1800, None)
    first = out[("tool-borrow-chart", "figure")]
    out, seen = updater.update(VECTOR, 1800, seen)
    assert out[("tool-borrow-chart", "figure")]["data"][0]["name"] == VECTOR
    out, seen = updater.update(GH, 1800, seen)
    again = out[("tool-borrow-chart", "figure")]
    assert not is_patch(again) and again["data"] == first["data"]


def test_a_new_window_resends_figures_with_that_window(make_app):
    app, state = fed_app(make_app)
    clock = updater_clock()
    updater = PageUpdater(state, clock=clock)
    _, seen = updater.update("__all__", 1800, None)
    out, seen = updater.update("__all__", 300, seen)
    figure = out[("borrow-chart", "figure")]
    limits = figure["layout"]["xaxis"]["autorangeoptions"]
    assert limits["maxallowed"] - limits["minallowed"] == 300_000
    assert figure["layout"]["uirevision"] == "None|300|UTC"
    assert {t["name"]: sum(t["y"]) for t in figure["data"]} == {VECTOR_LEGEND: 1, GH: 1}


def test_open_tabs_on_one_tick_share_one_build(make_app):
    app, state = fed_app(make_app)
    clock = updater_clock()
    updater = PageUpdater(state, clock=clock)
    tabs = [updater.update("__all__", 1800, None)[0] for _ in range(3)]
    assert tabs[0][("borrow-chart", "figure")] == tabs[2][("borrow-chart", "figure")]
    # Two reads a second apart inside one minute (views are per minute, so a read in the next one builds anew).
    at = clock.now - clock.now % 60 + 20
    _, _, first = updater.snapshots.get(None, 1800, at)
    _, _, second = updater.snapshots.get(None, 1800, at + 1)
    assert first is second
    state.pool.borrow(GH, "fay")
    _, _, third = updater.snapshots.get(None, 1800, at + 1)
    assert third is not first


def test_unknown_or_forged_inputs_fall_back_to_the_defaults(make_app):
    app, state = fed_app(make_app)
    updater = PageUpdater(state, clock=updater_clock())
    out, seen = updater.update(None, 12345, None)
    assert seen["view"] == [None, 1800, "UTC"]
    out, seen = updater.update("<no such tool>", 300, {"parts": {"borrow-chart": "x", "events-table": [1]}, "mode": 7})
    assert seen["view"] == [None, 300, "UTC"] and out[("tool-section", "style")] == {"display": "none"}
    assert out[("borrow-chart", "figure")]["data"] and out[("events-table", "children")]["type"] == "Table"
    out, seen = updater.update(GH, 300, "not a render state")
    assert seen["view"] == [GH, 300, "UTC"]
    # A zone no browser has, and hidden entries that are no list of uids, are ignored.
    out, seen = updater.update(GH, 300, None, "local", "../../etc/passwd", {"borrow-chart": "x", "tool-borrow-chart": [1, "u"]})
    assert seen["view"] == [GH, 300, "UTC"]


def test_events_are_newest_first_and_a_rare_tool_still_fills_its_table(make_app):
    app, state = fed_app(make_app)
    now = time.time()
    for n in range(30):
        borrow = state.pool.borrow(VECTOR, f"busy{n}", at=now - 30 + n * 0.5)
        state.pool.return_license(borrow.id, at=now - 30 + n * 0.5 + 0.1)
    events = recent_events(state.buffer, 1800, rows=10)
    assert [e.ts for e in events] == sorted((e.ts for e in events), reverse=True)
    assert {e.user for e in events} <= {f"busy{n}" for n in range(30)}
    # With 10 rows, the newest 10 of each kind would hold no GreenHills event; the table looks further back.
    rare = recent_events(state.buffer, 1800, tool=GH, rows=10)
    assert [(e.kind, e.user) for e in rare] == [("borrow", "eve"), ("return", "ann"), ("borrow", "bob"), ("borrow", "ann")]


def test_event_rows_are_built_once_per_stored_event_and_match_a_fresh_build(make_app):
    app, state = fed_app(make_app)
    rows = EventRows()
    before = recent_events(state.buffer, 1800)
    first, _ = rows.rows(before, {}, "UTC")
    state.buffer.add_borrow(GH, "zed", False, "late-1")
    after = recent_events(state.buffer, 1800)
    second, _ = rows.rows(after, {}, "UTC")
    assert after[0].user == "zed" and after[1:] == before[: len(after) - 1]
    # The rows are what a fresh build gives, and those of events shown before are the very rows built then.
    assert second == [plain(tables.event_row(public_event(e), None, "UTC")) for e in after]
    assert all(row is old for row, old in zip(second[1:], first))
    assert second[0] is not first[0]


def test_events_table_shows_time_type_tool_user_and_detail(make_app):
    app, state = fed_app(make_app)
    state.buffer.add_failure(GH, "<b>x</b>", "exhausted")
    events = recent_events(state.buffer, 1800)
    table = tables.events_table([tables.event_row(public_event(e), "#000000") for e in events])
    rows = table.children[1].children
    cells = rows[0].children
    assert cells[1].children.children == "failure"
    assert cells[2].children[1] == GH and cells[3].children == "<b>x</b>" and cells[4].children == "Pool exhausted"
    assert tables.events_table([]).children == "No activity in this window"


def test_overage_card_turns_amber_above_15_and_red_above_30():
    assert parts.overage_class(15) == "card-value"
    assert parts.overage_class(15.1) == "card-value text-warning"
    assert parts.overage_class(30) == "card-value text-warning"
    assert parts.overage_class(30.1) == "card-value text-danger"
    # A share of a handful of borrows is shown with its counts, not as an alarm.
    assert parts.overage_class(80, borrows=parts.OVERAGE_MIN_BORROWS - 1) == "card-value"
    assert (parts.number(2.0), parts.number(2.5), parts.number(12345)) == ("2", "2.5", "12,345")


def test_a_cards_rate_unit_follows_the_window_and_a_rare_event_is_not_zero():
    from dash_app.layouts.controls import TIME_RANGES, rate_unit

    # Per minute up to 6 h, per hour to 7 days, per day beyond: each window's unit, from the dropdown's choices.
    units = {r.short: rate_unit(r.seconds)[1] for r in TIME_RANGES}
    assert units == {
        **dict.fromkeys(("1 min", "5 min", "10 min", "30 min", "1 h", "3 h", "6 h"), "minute"),
        "24 h": "hour",
        "7 days": "hour",
        "30 days": "day",
    }
    assert rate_unit(21600 + 1) == (3600, "hour") and rate_unit(7 * 86400 + 1) == (86400, "day")
    # Five borrows in 7 days are 0.03 an hour, not 0; a rate of 0.05 or more keeps one decimal.
    assert [parts.rate(v) for v in (0, 5 / 168, 0.05, 1 / 6, 1234.56)] == ["0", "0.03", "0.1", "0.2", "1,234.6"]


def test_the_browser_route_answers_a_refresh(make_app):
    """The registered callback, reached the way the browser reaches it."""
    app, state = fed_app(make_app)
    client = app.server.test_client()
    dependencies = client.get("/_dash-dependencies").get_json()
    (refresh,) = [d for d in dependencies if "render-state.data" in d["output"] and d["clientside_function"] is None]
    outputs = [{"id": i, "property": p} for i, p in OUTPUTS]
    body = {
        "output": refresh["output"],
        "outputs": outputs,
        "inputs": [
            {"id": "refresh", "property": "n_intervals", "value": 1},
            {"id": "tool-filter", "property": "value", "value": "__all__"},
            {"id": "time-range", "property": "value", "value": 1800},
            {"id": "tz-select", "property": "value", "value": "UTC"},
            {"id": "browser-tz", "property": "data", "value": "Asia/Tokyo"},
        ],
        "state": [
            {"id": "render-state", "property": "data", "value": None},
            {"id": "legend-hidden", "property": "data", "value": {"borrow-chart": []}},
            {"id": "url", "property": "pathname", "value": "/"},
        ],
        "changedPropIds": ["refresh.n_intervals"],
    }
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    result = response.get_json()["response"]
    assert result["active-licenses"]["children"] == "4"
    assert {t["name"] for t in result["borrow-chart"]["figure"]["data"]} == {GH, VECTOR_LEGEND}
    assert result["render-state"]["data"]["view"] == [None, 1800, "UTC"]
    assert result["render-state"]["data"]["query"] == "?tz=UTC"


def apply_transaction(rows, transaction, key="tool"):
    """AG Grid's transaction semantics, as a reference: rows by id, updated, added and removed."""
    by_key = {row[key]: row for row in rows}
    for row in transaction.get("update", []) + transaction.get("add", []):
        by_key[row[key]] = row
    for row in transaction.get("remove", []):
        del by_key[row[key]]
    return sorted(by_key.values(), key=lambda row: row[key])


def test_the_tool_table_gets_only_the_rows_that_changed(make_app):
    app, state = fed_app(make_app)
    clock = updater_clock()
    updater = PageUpdater(state, clock=clock)
    out, seen = updater.update("__all__", 1800, None)
    rows = out[("tool-table", "rowData")]
    assert is_no_update(out[("tool-table", "rowTransaction")]) and len(rows) == len(state.pool.tools)
    state.pool.borrow(GH, "fay")
    out, seen = updater.update("__all__", 1800, seen)
    transaction = out[("tool-table", "rowTransaction")]
    assert is_no_update(out[("tool-table", "rowData")])
    assert [row["tool"] for row in transaction["update"]] == [GH] and set(transaction) == {"update"}
    fresh, _ = updater.update("__all__", 1800, None)
    assert apply_transaction(rows, transaction) == sorted(fresh[("tool-table", "rowData")], key=lambda row: row["tool"])
    out, seen = updater.update("__all__", 1800, seen)
    assert is_no_update(out[("tool-table", "rowTransaction")]) and is_no_update(out[("tool-table", "rowData")])


def test_on_the_capacity_view_a_refresh_builds_nothing_but_still_answers(make_app):
    app, state = fed_app(make_app)
    clock = updater_clock()
    updater = PageUpdater(state, clock=clock)
    _, seen = updater.update("__all__", 1800, None)
    clock.advance(5)
    values = updater(1, "__all__", 1800, "local", "UTC", seen, {}, "/capacity")
    out = dict(zip(OUTPUTS, values))
    assert all(is_no_update(value) for key, value in out.items() if key != ("render-state", "data"))
    kept = out[("render-state", "data")]
    assert kept["updated"] == clock.now and kept["parts"] == seen["parts"]


def pressed_estate(make_app, tmp_path, **config):
    """Twelve tools: a 2-of-2 pool at its total for 20 minutes with denials, a tool with a queue, ten roomy busy pools."""
    inventory = [
        {"tool": name, "total": total, "commit_qty": total, "max_overage": 0, "commit_price": 100, "overage_price_per_license": 0}
        for name, total in [("Tiny", 2), ("Quiet", 50)] + [(f"Big {n:02d}", 100) for n in range(10)]
    ]
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(inventory))
    app = make_app(tools_file=str(path), true_denial_minutes=10, **config)
    state = get_state(app)
    now = time.time()
    for user in ("ann", "bob"):
        state.pool.borrow("Tiny", user, at=now - 1200)
    # cy asks three times in five minutes (one true denial), dan once: four denials, two of them true.
    for user, minutes_ago in (("cy", 9), ("cy", 7), ("cy", 4), ("dan", 2)):
        with pytest.raises(BorrowDenied):
            state.pool.borrow("Tiny", user, at=now - minutes_ago * 60)
    state.pool.borrow("Quiet", "eve", at=now - 300)
    state.pool.observe_queue("Quiet", 0, 3, "27000@lic")
    for n in range(10):  # each holds more licenses than Tiny has, far from its total
        for k in range(5 + n):
            state.pool.borrow(f"Big {n:02d}", f"user{k}", at=now - 600)
    return state


def test_the_overview_names_the_tools_under_most_pressure_not_the_biggest(make_app, tmp_path):
    state = pressed_estate(make_app, tmp_path)
    out, _ = PageUpdater(state, clock=updater_clock()).update("__all__", 1800, None)
    # The 2-of-2 pool at its total comes first, then the one with a queue; the ten roomy pools by their peak share.
    ranked = ["Tiny", "Quiet"] + [f"Big {n:02d}" for n in range(9, -1, -1)]
    names = [t["name"] for t in out[("borrow-chart", "figure")]["data"]]
    assert names == ranked[:10] + ["Other tools (2)"]
    assert out[("utilization-chart", "figure")]["data"][0]["y"] == ranked[:10] + ["Other tools (2)"]
    rows = {r["tool"]: r for r in out[("tool-table", "rowData")]}
    assert sorted(rows, key=lambda tool: rows[tool]["rank"]) == ranked
    tiny = rows["Tiny"]
    # At its total from the borrows' minute to now: 21 of the window's 30 minutes.
    assert (tiny["denials"], tiny["true_denials"], tiny["peak_pct"], tiny["at_total_pct"]) == (4, 2, 100, 70.0)
    assert (rows["Quiet"]["queued"], rows["Quiet"]["at_total_pct"], rows["Big 09"]["peak_pct"]) == (3, 0.0, 14)
    assert out[("failure-rate-hint", "children")] == "per minute · last 30 min · 4 in all, 2 true"


def test_a_tool_card_shows_its_denials_beside_its_true_denials(make_app, tmp_path):
    state = pressed_estate(make_app, tmp_path)
    out, _ = PageUpdater(state, clock=updater_clock()).update("Tiny", 1800, None)
    text = json.dumps(out[("tool-info", "children")], ensure_ascii=False)
    assert '"Denials"' in text and '"4"' in text and "2 true denials · last 30 min" in text


def test_a_long_windows_true_denials_come_from_the_stored_denials(make_app, tmp_path):
    state = pressed_estate(make_app, tmp_path, db=str(tmp_path / "history.db"))
    state.store.run_tasks_now()  # written and folded into the stored history, as the writer does every few seconds
    out, _ = PageUpdater(state, clock=updater_clock()).update("__all__", 86400, None)
    assert out[("failure-rate-hint", "children")] == "per hour · last 24 h · 4 in all, 2 true"
    rows = {r["tool"]: r for r in out[("tool-table", "rowData")]}
    assert (rows["Tiny"]["denials"], rows["Tiny"]["true_denials"], rows["Tiny"]["rank"]) == (4, 2, 1)
