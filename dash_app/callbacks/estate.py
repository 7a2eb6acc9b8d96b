"""Callbacks of the Capacity view's estate answers: what to buy and drop, the estate's hour of week, the top users."""

from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, no_update

from dash_app import privacy
from dash_app.analytics.runners import AnalysisUnavailable
from dash_app.analytics.service import GroupError
from dash_app.auth import viewer as readers
from dash_app.callbacks.capacity_js import TOOL_FROM_ADDRESS_JS
from dash_app.callbacks.capacity_period import PERIOD_INPUTS, ZONE_INPUTS, is_capacity, resolved
from dash_app.callbacks.chargeback import checked_group
from dash_app.figures.common import empty_figure
from dash_app.figures.estate import estate_heatmap
from dash_app.layouts.controls import time_zone
from dash_app.layouts.estate import recommendation_list, users_table

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.state import AppState

TOP_USERS = 50
USERS_HIDDEN = "User names are hidden for your role."


class EstateView:
    """The estate's answers over the period the controls pick, from `state`'s analytics."""

    def __init__(self, state: "AppState") -> None:
        self.service, self.currency = state.analytics, state.settings.currency

    def show(self, *values: object) -> tuple[Any, Any, Any]:
        """Return the recommendations, the estate's heatmap and the top users of the period (nothing on a user's page).

        `values` are the grid's period line (the trigger), the period's controls, the time zone's, the group picker's,
        the address's path and the user's page's name.
        """
        _line, choice, start_date, end_date, tz_choice, browser_zone, group, pathname, user = values
        if not is_capacity(pathname) or user:
            return no_update, no_update, no_update
        group = checked_group(group)
        zone = time_zone(tz_choice, browser_zone)
        _choice, span = resolved(choice, start_date, end_date, zone, self.service.clock(), self.service.longest)
        if span is None:
            return [], empty_figure("Pick the first and last day"), []
        names = readers.current_viewer().names
        try:
            advice = self.service.recommendations(*span, group=group)
            week = self.service.estate(*span, zone, group=group)
            users = self.service.users(*span, limit=TOP_USERS, group=group)["users"]
        except AnalysisUnavailable as exc:
            return [f"{exc}. Pick the period again."], empty_figure("No figures: the analysis was interrupted"), []
        except GroupError:  # the mapping changed since the picker had it
            return [f"No group named {group} now."], empty_figure("Pick another group"), []
        if names.mode == readers.HIDDEN:
            top: Any = USERS_HIDDEN
        else:
            top = users_table(privacy.estate_users(users, names), names.real)
        return recommendation_list(advice, self.currency), estate_heatmap(week, zone), top


def register_estate_callbacks(app: "Dash", state: "AppState") -> None:
    """Wire the estate's panels to `state`'s analytics, and a recommendation's link to the tool picker."""
    view = EstateView(state)
    app.callback(
        Output("capacity-recommendations", "children"),
        Output("capacity-estate-week", "figure"),
        Output("capacity-top-users", "children"),
        # After the grid: its period line is written once the grid has its rows, so the grid is drawn first.
        Input("capacity-period-text", "children"),
        *(State(*part) for part in PERIOD_INPUTS + ZONE_INPUTS),
        State("capacity-group", "value"),
        State("url", "pathname"),
        State("capacity-user", "data"),
    )(view.show)
    app.clientside_callback(
        TOOL_FROM_ADDRESS_JS,
        Output("capacity-tool", "value", allow_duplicate=True),
        Input("url", "search"),
        State("url", "pathname"),
        prevent_initial_call=True,
    )
