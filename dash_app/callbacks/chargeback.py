"""Callbacks of the Capacity view's Chargeback section, and of the group picker that filters the rest of the view."""

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from dash import Input, Output, Patch, State, no_update

from dash_app.analytics.runners import AnalysisUnavailable
from dash_app.callbacks.capacity_period import PERIOD_INPUTS, ZONE_INPUTS, is_capacity, query_values, resolved
from dash_app.directory.mapping import UNUSED, GroupKey
from dash_app.figures.chargeback import chargeback_chart
from dash_app.figures.common import empty_figure
from dash_app.layouts.chargeback import (
    BY_NAMES,
    chargeback_note,
    chart_size,
    group_options,
    group_rows,
    totals_row,
)
from dash_app.layouts.controls import time_zone
from dash_app.web import ApiError

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.state import AppState

# A click on a group's row picks the group, in the browser, as a tool's row picks the tool; the totals row, (unused)
# (no one's) and a cost centre's row pick nothing.
GROUP_CLICK_JS = (
    """
function(clicked, by) {
    const ns = window.dash_clientside;
    const group = clicked && clicked.rowId;
    if (by !== 'group' || typeof group !== 'string' || group === """
    + json.dumps(UNUSED)
    + """) {
        return ns.no_update;
    }
    // The totals row is no group's: the grid's row model holds only the groups' rows.
    let api = null;
    try { api = window.dash_ag_grid.getApi('chargeback-table'); } catch (e) { api = null; }
    return api && api.getRowNode(group) ? group : ns.no_update;
}
"""
)
# The picked group's row is selected in the chargeback grid (none when the picker is cleared, or by cost centre); a
# picked group also clears the message about an address that named none.
SHOW_GROUP_JS = """
function(group, _rows, by) {
    const picked = typeof group === 'string' && group;
    return [by === 'group' && picked ? {ids: [group]} : [], picked ? '' : window.dash_clientside.no_update];
}
"""
# A phone's screen (Bootstrap's xs): the chargeback's bars lie down there.
NARROW_JS = """
function(_pathname) {
    return window.matchMedia('(max-width: 575.98px)').matches;
}
"""
# The grid's own CSV: its rows as sorted and filtered, the totals row last, numbers as they are.
CSV_JS = """
function(clicks) {
    return clicks ? true : window.dash_clientside.no_update;
}
"""


def picked_group(search: object, groups: Collection[str]) -> tuple[str | None, list[dict[str, str]], str]:
    """Return the group the address's ?group= picks among `groups` (None for none or an unknown one), the picker's
    options and why no group was picked ("" when the address names one that exists, or none)."""
    asked = query_values(search).get("group") or None
    group = asked if asked in groups else None
    message = f"No group named {asked}; showing everyone." if asked and group is None else ""
    return group, group_options(sorted(groups), group), message


def checked_group(group: object) -> str | None:
    """Return the group picker's value, or raise ApiError 400 for one it cannot send."""
    if group is not None and not isinstance(group, str):
        raise ApiError(400, "invalid_input", "capacity-group: must be a group name")
    return group or None


def checked_by(by: object) -> GroupKey:
    """Return the "By" switch's value, or raise ApiError 400 for one it cannot send."""
    if by is None or by == "group":
        return "group"
    if by == "cost_centre":
        return "cost_centre"
    raise ApiError(400, "invalid_input", f"chargeback-by: must be one of {', '.join(BY_NAMES)}")


class ChargebackView:
    """The Chargeback section over the period the controls pick, from `state`'s analytics and directory."""

    def __init__(self, state: "AppState") -> None:
        self.service, self.directory = state.analytics, state.directory
        self.currency = state.settings.currency
        self.pool = state.pool

    def show(self, *values: object) -> tuple[Any, ...]:
        """Return the grid's rows, its totals row and first column's name, the stacked bar, its width and the note.

        `values` are the grid's period line (the trigger), the "By" switch, whether the screen is a phone's, the
        period's controls, the time zone's, the address's path and the user's page's name.
        """
        _line, by, narrow, choice, start_date, end_date, tz_choice, browser_zone, pathname, user = values
        if not is_capacity(pathname) or user:
            return (no_update,) * 6
        by = checked_by(by)
        zone = time_zone(tz_choice, browser_zone)
        _choice, span = resolved(choice, start_date, end_date, zone, self.service.clock(), self.service.longest)
        columns = Patch()
        columns[0]["headerName"] = BY_NAMES[by]
        if span is None:
            return [], no_update, columns, empty_figure("Pick the first and last day"), chart_size(0), ""
        try:
            answer = self.service.chargeback(*span, by=by)
        except AnalysisUnavailable as exc:
            return [], no_update, columns, empty_figure("No figures: the analysis was interrupted"), chart_size(0), str(exc)
        rows = group_rows(answer)
        pinned = Patch()
        pinned["pinnedBottomRowData"] = totals_row(answer, rows)
        inventory = [entry["tool"] for entry in self.pool.status()]
        horizontal = narrow is True
        figure = chargeback_chart(answer, self.currency, inventory, horizontal=horizontal)
        shown = sum(1 for row in rows if row["total"])
        # Configured: a --user-groups file or a directory, whether or not it has named anyone yet.
        note = chargeback_note(answer, configured=bool(self.directory.health()))
        return rows, pinned, columns, figure, chart_size(shown, figure["layout"].get("height")), note


def register_chargeback_callbacks(app: "Dash", state: "AppState") -> None:
    """Wire the Chargeback section to `state`'s analytics, and its rows to the group picker."""
    app.callback(
        Output("chargeback-table", "rowData"),
        Output("chargeback-table", "dashGridOptions"),
        Output("chargeback-table", "columnDefs"),
        Output("chargeback-chart", "figure"),
        Output("chargeback-chart", "style"),
        Output("chargeback-note", "children"),
        # After the grid, as the estate's answers: its period line is written once the grid has its rows.
        Input("capacity-period-text", "children"),
        Input("chargeback-by", "value"),
        Input("chargeback-narrow", "data"),
        *(State(*part) for part in PERIOD_INPUTS + ZONE_INPUTS),
        State("url", "pathname"),
        State("capacity-user", "data"),
    )(ChargebackView(state).show)
    app.clientside_callback(
        GROUP_CLICK_JS,
        Output("capacity-group", "value", allow_duplicate=True),
        Input("chargeback-table", "cellClicked"),
        State("chargeback-by", "value"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        SHOW_GROUP_JS,
        Output("chargeback-table", "selectedRows"),
        Output("capacity-group-message", "children", allow_duplicate=True),
        Input("capacity-group", "value"),
        Input("chargeback-table", "rowData"),
        State("chargeback-by", "value"),
        prevent_initial_call=True,
    )
    app.clientside_callback(NARROW_JS, Output("chargeback-narrow", "data"), Input("url", "pathname"))
    app.clientside_callback(
        CSV_JS, Output("chargeback-table", "exportDataAsCsv"), Input("chargeback-csv", "n_clicks"), prevent_initial_call=True
    )
