"""The Chargeback section's pure parts: the stacked bar against the grid's rows, the Other tools part, names as text."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app.figures.chargeback import NO_COST, chargeback_chart, shown_tools
from dash_app.figures.text import legend_name
from dash_app.layouts.chargeback import (
    NO_MAPPING,
    NO_SESSIONS,
    chargeback_note,
    group_options,
    group_rows,
    totals_row,
)
from tests.browser_helpers import XSS
from tests.test_capacity_view import PERIOD, capacity_callback
from tests.test_hardening import callback_body


def answer_of(costs, currency="EUR"):
    """A chargeback answer in GET /analytics/chargeback's shape from {group: {tool: (hours, commit, overage)}}."""
    groups = []
    for group, tools in costs.items():
        entries = [
            {
                "tool": tool,
                "license_hours": hours,
                "commit_share": commit,
                "overage_cost": overage,
                "total": round(commit + overage, 2),
            }
            for tool, (hours, commit, overage) in tools.items()
        ]
        groups.append(
            {
                "group": group,
                "license_hours": round(sum(e["license_hours"] for e in entries), 2),
                "commit_share": round(sum(e["commit_share"] for e in entries), 2),
                "overage_cost": round(sum(e["overage_cost"] for e in entries), 2),
                "total": round(sum(e["total"] for e in entries), 2),
                "tools": entries,
            }
        )
    totals = {
        "commit_cost": round(sum(g["commit_share"] for g in groups), 2),
        "overage_cost": round(sum(g["overage_cost"] for g in groups), 2),
        "total": round(sum(g["total"] for g in groups), 2),
    }
    return {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "currency": currency, "by": "group",
            "groups": groups, "totals": totals}  # fmt: skip


def estate(groups, tools, seed=1):
    """Costs of `groups` groups over `tools` tools, each group using a random part of them, money in cents."""
    rng = random.Random(seed)
    names = [f"tool {n:03d}" for n in range(tools)]
    return answer_of(
        {
            f"group {g:02d}": {
                tool: (rng.randint(0, 5000) / 10, rng.randint(0, 10**6) / 100, rng.randint(0, 3) * 800.0)
                for tool in rng.sample(names, rng.randint(1, tools))
            }
            for g in range(groups)
        }
    )


def bars(figure):
    return [trace for trace in figure["data"] if trace["type"] == "bar"]


def stacked(figure):
    """{group as drawn: the sum of its bar's parts}, whichever way the bars run."""
    sums = {}
    for trace in bars(figure):
        groups, costs = (trace["y"], trace["x"]) if trace["orientation"] == "h" else (trace["x"], trace["y"])
        for group, cost in zip(groups, costs, strict=True):
            sums[group] = sums.get(group, 0.0) + cost
    return sums


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 200), st.integers(0, 10**6), st.booleans())
def test_each_bar_holds_its_groups_total_and_all_bars_the_grids_total(groups, tools, seed, horizontal):
    answer = estate(groups, tools, seed)
    figure = chargeback_chart(answer, "EUR", horizontal=horizontal)
    rows = group_rows(answer)
    (pinned,) = totals_row(answer, rows)
    sums = stacked(figure)
    # Every group with a cost has its bar, and its parts add up to its row's total in the grid, to the cent.
    assert sums == pytest.approx({row["group"]: row["total"] for row in rows if row["total"]}, abs=0.006)
    assert sum(sums.values()) == pytest.approx(pinned["total"], abs=0.01)
    assert pinned["commit_share"] + pinned["overage_cost"] == pytest.approx(pinned["total"], abs=0.01)
    # The costliest group first, then by name.
    drawn = bars(figure)[0]["y" if horizontal else "x"]
    assert drawn == [row["group"] for row in sorted(rows, key=lambda r: (-r["total"], r["group"])) if row["total"]]


def test_the_ten_costliest_tools_are_named_and_the_rest_are_one_part_of_each_bar():
    answer = estate(60, 200)
    figure = chargeback_chart(answer, "EUR")
    per_tool = {}
    for group in answer["groups"]:
        for entry in group["tools"]:
            per_tool[entry["tool"]] = per_tool.get(entry["tool"], 0) + entry["total"]
    ranked = sorted(per_tool, key=lambda tool: (-per_tool[tool], tool))
    names = [trace["name"] for trace in bars(figure)]
    assert names == [legend_name(tool) for tool in ranked[:10]] + ["Other tools (190)"]
    assert [trace["meta"] for trace in bars(figure)[:10]] == ranked[:10]
    # The Other tools part of a group is exactly what its other tools cost.
    other = bars(figure)[-1]
    first = next(g for g in answer["groups"] if g["group"] == other["x"][0])
    expected = sum(e["total"] for e in first["tools"] if e["tool"] not in ranked[:10])
    assert other["y"][0] == pytest.approx(expected, abs=0.005)
    # Eleven tools need no Other part of one tool: the eleventh is named.
    eleven = answer_of({"g": {f"t{n:02d}": (1.0, 100.0 - n, 0.0) for n in range(11)}})
    assert shown_tools(eleven["groups"]) == [f"t{n:02d}" for n in range(11)]
    assert [trace["name"] for trace in bars(chargeback_chart(eleven))] == [f"t{n:02d}" for n in range(11)]


def test_money_in_the_hover_has_the_currency_and_names_stay_out_of_templates():
    answer = answer_of({XSS: {"%{y} <b>tool</b>": (10.0, 1234.5, 800.0)}, "(unassigned)": {"%{y} <b>tool</b>": (1, 1, 0)}})
    figure = chargeback_chart(answer, "EUR")
    (bar,) = bars(figure)
    assert bar["x"] == ["&lt;img src=x onerror=alert(1)&gt;", "(unassigned)"]
    assert bar["meta"] == "%{y} &lt;b&gt;tool&lt;/b&gt;"
    assert "%{y" not in bar["name"].replace("%{y} &lt;b", "")  # the name is the legend's, escaped
    assert bar["hovertemplate"] == "%{meta}: %{y:,.2f} EUR<extra></extra>"
    total = figure["data"][-1]
    assert total["y"] == [2034.5, 1] and total["showlegend"] is False and "EUR" in total["hovertemplate"]
    assert figure["layout"]["xaxis"]["ticktext"][0] == legend_name(XSS, 18)
    assert "%{" not in "".join(trace.get("hovertemplate", "").replace("%{meta}", "").replace("%{y:,.2f}", "")
                               .replace("%{fullData.name}", "") for trace in figure["data"])  # fmt: skip


def test_a_period_without_cost_says_so_and_unused_carries_the_commit():
    assert chargeback_chart(None)["layout"]["annotations"][0]["text"] == NO_COST
    assert chargeback_chart(answer_of({}))["layout"]["annotations"][0]["text"] == NO_COST
    unused = answer_of({"(unused)": {"GreenHills Multi IDE": (0.0, 266.67, 0.0)}})
    figure = chargeback_chart(unused, "EUR")
    assert stacked(figure) == {"(unused)": 266.67}
    note = chargeback_note(unused, configured=True)
    assert note == ["", NO_SESSIONS]
    assert group_options(["(unused)", "(unassigned)", "b", "A"]) == [
        {"label": name, "value": name} for name in ("A", "b", "(unassigned)")
    ]


def test_without_groups_the_note_says_everyone_is_unassigned_and_where_to_read_how():
    answer = answer_of({"(unassigned)": {"tool": (3.0, 10.0, 0.0)}})
    note = chargeback_note(answer, configured=False)
    assert note[0] == NO_MAPPING and "(unassigned)" in NO_MAPPING and "--user-groups" in NO_MAPPING
    assert note[2].children == "docs/directory.md"
    assert chargeback_note(answer, configured=True) == []


def test_the_section_says_when_no_groups_are_configured_and_refuses_a_by_it_cannot_send(make_app):
    client = make_app(currency="EUR").server.test_client()  # no --user-groups, no directory, no sessions
    values = {**PERIOD, ("chargeback-by", "value"): "group", ("capacity-period-text", "children"): "line"}
    text, answer = capacity_callback(client, "chargeback-note.children", values)
    note = answer["chargeback-note"]["children"]
    assert note[0] == NO_MAPPING and note[-1] == NO_SESSIONS
    # Nobody used a license: each priced tool's commit cost is all on (unused), the grid's one row.
    rows = answer["chargeback-table"]["rowData"]
    assert [row["group"] for row in rows] == ["(unused)"] and rows[0]["total"] > 0
    assert answer["chargeback-table"]["dashGridOptions"]["operations"]  # the totals row, as a Patch
    bad = client.post(
        "/_dash-update-component",
        json=callback_body(
            chargeback_dependency(client), {**values, ("chargeback-by", "value"): ["group"]}, "chargeback-by.value"
        ),
    )
    assert bad.status_code == 400 and "chargeback-by" in bad.get_data(as_text=True)


def chargeback_dependency(client):
    deps = client.get("/_dash-dependencies").get_json()
    return next(d for d in deps if "chargeback-note.children" in d["output"])
