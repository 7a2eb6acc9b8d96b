"""One refresh of the page: cards, the visible section's charts and tables, sent as patches where they can be."""

import time
from typing import Any

from dash import no_update

from dash_app.callbacks.snapshots import OVERVIEW_FIGURES, TOOL_FIGURES, Snapshots
from dash_app.callbacks.updates import component_update, figure_update, rows_update
from dash_app.figures.common import autorange_limits
from dash_app.layouts import parts
from dash_app.layouts.controls import selected_tool, selected_window
from dash_app.layouts.dashboard import HIDDEN, SHOWN

CARD_OUTPUTS = (
    ("borrow-rate", "children"),
    ("overage-rate", "children"),
    ("overage-rate", "className"),
    ("return-rate", "children"),
    ("failure-rate", "children"),
    ("active-licenses", "children"),
    ("buffer-size", "children"),
)
OUTPUTS = (
    CARD_OUTPUTS
    + (("overview-section", "style"), ("tool-section", "style"), ("tool-filter", "options"))
    + tuple((figure_id, "figure") for figure_id in OVERVIEW_FIGURES + TOOL_FIGURES)
    + (("tool-info", "children"), ("events-table", "children"), ("render-state", "data"))
)


class PageUpdater:
    """Computes every output of one refresh for one tab from the shared snapshots and what that tab already has."""

    def __init__(self, state, clock=time.time):
        self.state = state
        self.clock = clock
        self.snapshots = Snapshots(state.buffer, state.pool, state.history)

    def cards(self, status):
        """Return the card outputs: rates of the last minute, licenses in use and buffered events."""
        buffer = self.state.buffer
        rates = buffer.get_rates(60)
        stats = buffer.get_stats_summary()
        overage = rates["overage_percent"]
        return {
            ("borrow-rate", "children"): parts.number(rates["borrow_per_min"]),
            ("overage-rate", "children"): f"{parts.number(overage)} %",
            ("overage-rate", "className"): parts.overage_class(overage),
            ("return-rate", "children"): parts.number(rates["return_per_min"]),
            ("failure-rate", "children"): parts.number(rates["failure_per_min"]),
            ("active-licenses", "children"): parts.number(sum(entry["borrowed"] for entry in status)),
            ("buffer-size", "children"): parts.number(stats["total_events"]),
        }

    def update(self, tool_value, window_value, seen):
        """Return ({(id, prop): value or no_update}, the tab's new render state)."""
        now = self.clock()
        tool, window = selected_tool(tool_value), selected_window(window_value)
        pool, tool, view = self.snapshots.get(tool, window, now)
        # The render state comes back from the browser: anything but what we sent counts as "nothing shown yet".
        seen = seen if isinstance(seen, dict) else {}
        had = seen.get("parts") if isinstance(seen.get("parts"), dict) else {}
        has = dict(had)
        out: dict[tuple[str, str], Any] = dict.fromkeys(OUTPUTS, no_update)
        out.update(self.cards(pool.status))

        mode = "tool" if tool is not None else "overview"
        if seen.get("mode") != mode:
            out[("overview-section", "style")] = HIDDEN if tool is not None else SHOWN
            out[("tool-section", "style")] = SHOWN if tool is not None else HIDDEN
        out[("tool-filter", "options")], has["tool-filter"] = component_update(pool.options, had.get("tool-filter"))

        time_range = autorange_limits(now - window, now)
        for output_id, part in view.items():
            if output_id in OVERVIEW_FIGURES or output_id in TOOL_FIGURES:
                out[(output_id, "figure")], has[output_id] = figure_update(part, had.get(output_id), time_range)
            elif output_id == "events-table":
                update = rows_update(part, had.get(output_id), self.snapshots.row_keys, parts.EVENTS_ROWS_PATH)
                out[(output_id, "children")], has[output_id] = update
            else:
                out[(output_id, "children")], has[output_id] = component_update(part, had.get(output_id))
        # "updated" changes on every answer, which is how the browser-side status pill knows updates arrive.
        render_state = {"mode": mode, "view": [tool, window], "updated": now, "parts": has}
        out[("render-state", "data")] = render_state
        return out, render_state

    def __call__(self, _n_intervals, tool_value, window_value, seen):
        """The Dash callback: outputs in OUTPUTS order."""
        out, _ = self.update(tool_value, window_value, seen)
        return [out[key] for key in OUTPUTS]
