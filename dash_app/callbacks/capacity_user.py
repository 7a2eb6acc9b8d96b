"""Callbacks of the Capacity view of one user (/capacity?user=NAME): what they hold now and their period per tool."""

import time
from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, no_update

from dash_app.analytics.runners import AnalysisUnavailable
from dash_app.auth import viewer as readers
from dash_app.callbacks.capacity_period import PERIOD_INPUTS, ZONE_INPUTS, is_capacity, resolved
from dash_app.layouts.capacity_user import NAMES_NEEDED, user_body
from dash_app.layouts.controls import time_zone
from dash_app.layouts.tables import checkout_rows

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.state import AppState


class UserView:
    """One user's page over the period the controls pick: the live pool's open checkouts and the analytics' figures."""

    def __init__(self, state: "AppState") -> None:
        self.pool, self.service = state.pool, state.analytics

    def show(
        self,
        user: object,
        choice: object,
        start_date: object,
        end_date: object,
        tz_choice: object,
        browser_zone: object,
        pathname: object,
    ) -> tuple[Any, Any]:
        """Return the user page's title and body; a reader who may not see names gets a message, and nobody's figures."""
        if not is_capacity(pathname) or not isinstance(user, str) or not user:
            return no_update, no_update
        names = readers.current_viewer().names
        if not names.real:
            return "A user's page", NAMES_NEEDED
        zone = time_zone(tz_choice, browser_zone)
        _choice, span = resolved(choice, start_date, end_date, zone, self.service.clock(), self.service.longest)
        if span is None:
            return user, "Pick the first and last day."
        held = checkout_rows(self.pool.active_borrows(user=user), time.time(), zone, names=names)
        try:
            answer = self.service.user(user, *span)
        except AnalysisUnavailable as exc:
            return user, f"{exc}. Pick the period again."
        return user, user_body(answer, held, zone)


def register_user_callbacks(app: "Dash", state: "AppState") -> None:
    """Wire the one-user page to `state`'s pool and analytics."""
    app.callback(
        Output("capacity-user-title", "children"),
        Output("capacity-user-body", "children"),
        Input("capacity-user", "data"),
        *(Input(*part) for part in PERIOD_INPUTS + ZONE_INPUTS),
        State("url", "pathname"),
    )(UserView(state).show)
