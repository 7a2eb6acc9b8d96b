"""The Capacity view's callbacks in-process: what a tool's pick sends back, and what the grid is made of."""

from dash_app.layouts.capacity_grid import money_js, totals_row


def test_a_tool_pick_never_sends_the_grid_its_rows_again(make_app):
    dependencies = make_app().server.test_client().get("/_dash-dependencies").get_json()
    for callback in dependencies:
        inputs = {f"{d['id']}.{d['property']}" for d in callback["inputs"]}
        if "capacity-tool.value" in inputs or "capacity-table.cellClicked" in inputs:
            assert "capacity-table.rowData" not in callback["output"], callback["output"]


def test_the_currency_is_text_in_the_grids_money_formatter():
    assert money_js('EUR"); alert(1); ("').endswith(' + " EUR\\"); alert(1); (\\""')
    assert money_js("").endswith(' + ""')


def test_the_totals_row_names_all_tools_and_keeps_the_totals():
    totals = {"borrows": 1200, "overage_borrows": 30, "overage_cost": 2400.5, "denials": 9, "true_denials": 4}
    assert totals_row({**totals, "commit_cost": 1, "license_hours": 2}, 200) == [{"tool": "All tools (200)", **totals}]
    assert totals_row(None, 200) == []
