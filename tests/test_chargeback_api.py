"""The chargeback and the group filter through CapacityService (a real in-memory store, its own analysis runner) and
through a real server's HTTP API with a --user-groups file: answers against the brute-force reference, bad queries."""

from __future__ import annotations

import csv
import io
import json
import time

import pandas as pd
import pytest
import requests

from dash_app.analytics import recommend
from dash_app.analytics.capacity import capacity, commit_advice
from dash_app.analytics.service import CapacityService, GroupError
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.directory.mapping import ALWAYS, UNASSIGNED, GroupMapping, Membership
from dash_app.licenses import LicensePool, load_inventory
from dash_app.licenses.inventory import DEFAULT_TOOLS_FILE
from dash_app.recording import EventRecorder
from dash_app.store import Store
from dash_app.testing.servers import ServerProcess, stop_all
from dash_app.testing.synthetic import inventory_history, store_history
from dash_app.timeutil import iso_second
from tests.test_chargeback import charged_at, ms, reference

DAY = 86400.0
END = 1_800_000_000.0


def history():
    """Two days of the bundled tools' sessions and denials, ending at END."""
    return inventory_history(json.loads(DEFAULT_TOOLS_FILE.read_text()), days=2, sessions=3000, denials=300, seed=7, end=END)


def directory(users, start):
    """A third of the users in eng, a third in ops of whom every other one moves to eng half-way; the rest unknown."""
    members = {}
    for k, user in enumerate(users):
        if k % 3 == 0:
            members[user] = [Membership(ALWAYS, "eng", "c1")]
        elif k % 3 == 1:
            members[user] = [Membership(ALWAYS, "ops", "c2")] + ([Membership(start + DAY, "eng", "c1")] if k % 2 else [])
    return GroupMapping(members)


@pytest.fixture(scope="module")
def service():
    made = history()
    store = Store(":memory:")
    store_history(store, made)
    pool = LicensePool(load_inventory(), EventRecorder(RealtimeMetricsBuffer()))
    mappings = [directory(sorted(set(made.sessions["user"])), made.start)]
    analytics = CapacityService(
        store, pool, history_days=30, billing_days=30, clock=lambda: END, groups=lambda: mappings[0], currency="EUR"
    )
    yield analytics, made, mappings
    store.close()


def of_group(frame, column, mapping, group):
    rows = frame.to_dict("records")
    return pd.DataFrame(
        [row for row in rows if charged_at(mapping, row["user"], ms(row[column]), "group") == group], columns=frame.columns
    )


def test_the_service_splits_as_the_reference_does(service):
    analytics, made, mappings = service
    specs = analytics.specs()
    for by in ("group", "cost_centre"):
        got = analytics.chargeback(made.start, made.end, by=by)
        assert got == reference(made.sessions.to_dict("records"), specs, made.start, made.end, 30, mappings[0], by, "EUR")
    report = analytics.report(made.start, made.end)
    assert got["totals"]["commit_cost"] == report.totals["commit_cost"]
    assert got["totals"]["overage_cost"] == report.totals["overage_cost"]
    one = analytics.chargeback(made.start, made.end, ["GreenHills Multi IDE"])
    assert {t["tool"] for g in one["groups"] for t in g["tools"]} == {"GreenHills Multi IDE"}
    with pytest.raises(GroupError, match="^by:"):
        analytics.chargeback(made.start, made.end, by="department")  # type: ignore[arg-type]


def test_a_group_filter_counts_only_that_groups_sessions_and_denials(service):
    analytics, made, mappings = service
    specs = analytics.specs()
    for group in ("eng", UNASSIGNED):
        sessions = of_group(made.sessions, "borrowed_at", mappings[0], group)
        denials = of_group(made.denials, "ts", mappings[0], group)
        assert 0 < len(sessions) < len(made.sessions) and 0 < len(denials) < len(made.denials)
        rows = capacity(sessions, denials, specs, made.start, made.end)
        expected = {row["tool"]: row for row in rows}
        report = analytics.report(made.start, made.end, group=group)
        assert len(report.tools) == len(expected)
        for row in report.tools:
            mine = expected[row["tool"]]
            for key in ("borrows", "overage_borrows", "peak_in_use", "denials", "distinct_users", "coverage", "top_users"):
                assert row[key] == mine[key], (group, row["tool"], key)
        advice = {a["tool"]: a for a in commit_advice(sessions, specs, made.start, made.end, 30)}
        assert all(a == advice[a["tool"]] for a in report.advice)
        people = analytics.users(made.start, made.end, limit=1000, group=group)["users"]
        assert {u["user"] for u in people} == set(sessions["user"]) | set(denials["user"])
        demand = [{k: row[k] for k in ("tool", "total", "commit", "peak_in_use", "seconds_at_total")} for row in report.tools]
        tips = [{k: tip.get(k) for k in ("tool", "commit", "best_commit", "saving")} for tip in report.advice]
        answer = analytics.recommendations(made.start, made.end, group=group)
        expected_advice = recommend.recommendations(sessions, denials, specs, made.start, made.end, analytics.gap, demand, tips)
        assert {k: answer[k] for k in expected_advice} == expected_advice
        assert (
            analytics.estate(made.start, made.end, "UTC", group=group)["utilization"]
            != analytics.estate(made.start, made.end, "UTC")["utilization"]
        )
    everyone = analytics.report(made.start, made.end)
    hours = [analytics.report(made.start, made.end, group=g).totals["license_hours"] for g in ("eng", "ops", UNASSIGNED)]
    assert sum(hours) == pytest.approx(everyone.totals["license_hours"])


def test_unknown_groups_are_refused_and_a_new_mapping_is_a_new_answer(service):
    analytics, made, mappings = service
    with pytest.raises(GroupError, match="^group:"):
        analytics.report(made.start, made.end, group="marketing")
    assert analytics.group_names() == [UNASSIGNED, "eng", "ops"]
    assert analytics.group_names("cost_centre") == [UNASSIGNED, "c1", "c2"]
    before = analytics.chargeback(made.start, made.end)
    old = mappings[0]
    try:
        mappings[0] = GroupMapping({user: [Membership(ALWAYS, "everyone")] for user in set(made.sessions["user"])})
        after = analytics.chargeback(made.start, made.end)
        assert [g["group"] for g in after["groups"]] == ["everyone"] and after["totals"] == before["totals"]
        with pytest.raises(GroupError):
            analytics.report(made.start, made.end, group="eng")
    finally:
        mappings[0] = old
    assert analytics.chargeback(made.start, made.end) == before


# ---- through a real server ------------------------------------------------------------------------------------------

VIEWER = {"X-Forwarded-User": "vic"}  # no groups: the lowest role


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A gunicorn over a database holding two days of history, users placed by a --user-groups file, readers by a proxy."""
    tmp = tmp_path_factory.mktemp("chargeback")
    end = (time.time() // 60 - 1) * 60
    made = inventory_history(json.loads(DEFAULT_TOOLS_FILE.read_text()), days=2, sessions=3000, denials=300, seed=7, end=end)
    store = Store(str(tmp / "server.db"))
    store_history(store, made)
    store.close()
    users = sorted(set(made.sessions["user"]))
    # Three users in four placed, by group and (but every third) cost centre; every eighth moves to qa after a day.
    moved = iso_second(made.start + DAY + 1800)
    lines, members = ["user,group,cost_centre,from"], {}
    for k, user in enumerate(users):
        if k % 4:
            group, centre = ("eng", "ops")[k % 2], ("c1", "")[k % 3 == 0]
            lines.append(f"{user},{group},{centre},")
            members[user] = [Membership(ALWAYS, group, centre)]
            if k % 8 == 1:
                lines.append(f"{user},qa,c2,{moved}")
                members[user].append(Membership(made.start + DAY + 1800, "qa", "c2"))
    (tmp / "groups.csv").write_text("\n".join(lines) + "\n")
    mapping = GroupMapping(members)
    env = {
        "DASH_APP_USER_GROUPS": str(tmp / "groups.csv"),
        "DASH_APP_CURRENCY": "EUR",
        "DASH_APP_AUTH": "proxy",
        "DASH_APP_TRUSTED_PROXIES": "127.0.0.1/32",
        "DASH_APP_PROXY_GROUPS_HEADER": "X-Forwarded-Groups",
    }
    running = ServerProcess(env, tmp)
    yield running, made, mapping
    stop_all([running])


def ask(server, path, **params):
    running, made, _ = server
    query = {"from": iso_second(made.start), "to": iso_second(made.end), **params}
    return requests.get(running.url + path, params=query, headers=VIEWER, timeout=30)


def test_a_viewer_gets_the_split_of_the_reference_and_no_user_names(server):
    _running, made, mapping = server
    rows = made.sessions.to_dict("records")
    for by in ("group", "cost_centre"):
        response = ask(server, "/analytics/chargeback", by=by)
        assert response.status_code == 200
        assert response.json() == reference(rows, made.specs, made.start, made.end, 30, mapping, by, "EUR")
        csv_text = ask(server, "/analytics/chargeback", by=by, format="csv").text
        for text in (response.text, csv_text):
            assert not {user for user in made.sessions["user"] if user in text}
    answer = response.json()
    table = list(csv.DictReader(io.StringIO(csv_text)))
    assert list(table[0]) == ["group", "tool", "license_hours", "commit_share", "overage_cost", "total", "currency"]
    expected = []
    for group in answer["groups"]:
        expected += [(group["group"], tool["tool"], str(tool["total"])) for tool in group["tools"]]
        expected.append((group["group"], "(all tools)", str(group["total"])))
    expected.append(("(all groups)", "(all tools)", str(answer["totals"]["total"])))
    assert [(row["group"], row["tool"], row["total"]) for row in table] == expected
    assert {row["currency"] for row in table} == {"EUR"}


def test_a_group_filter_and_bad_queries_over_http(server):
    everyone = ask(server, "/analytics/capacity").json()["totals"]
    parts = [ask(server, "/analytics/capacity", group=g).json()["totals"] for g in ("eng", "ops", "qa", UNASSIGNED)]
    assert sum(p["borrows"] for p in parts) == everyone["borrows"] and all(p["borrows"] for p in parts)
    assert sum(p["denials"] for p in parts) == everyone["denials"]
    users = ask(server, "/analytics/users", group="eng", limit="1000").json()["users"]
    assert users and all(user["user"] is None for user in users)  # a viewer sees no names, here as anywhere
    assert ask(server, "/analytics/recommendations", group="ops").status_code == 200
    for path, params, field in (
        ("/analytics/chargeback", {"by": "department"}, "by"),
        ("/analytics/chargeback", {"group": "eng"}, "group"),
        ("/analytics/capacity", {"group": "marketing"}, "group"),
        ("/analytics/users", {"group": ""}, "group"),
        ("/analytics/chargeback", {"format": "xml"}, "format"),
    ):
        response = ask(server, path, **params)
        assert response.status_code == 400 and response.json()["detail"].startswith(f"{field}:"), (path, params)
