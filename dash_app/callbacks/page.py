"""One refresh of the page: cards, the visible section's charts and tables, sent as patches where they can be."""

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dash import no_update

from dash_app import privacy
from dash_app.auth.viewer import FULL, Names, Viewer, current_viewer
from dash_app.callbacks.capacity import is_capacity
from dash_app.callbacks.legend import hidden_in
from dash_app.callbacks.snapshots import GRIDS, OVERVIEW_FIGURES, TOOL_FIGURES, Snapshots
from dash_app.callbacks.updates import component_update, digest, figure_update, grid_update, rows_update
from dash_app.figures import autorange_limits
from dash_app.layouts import parts, tables
from dash_app.layouts.controls import query_for_view, selected_tool, selected_window, time_zone
from dash_app.layouts.dashboard import HIDDEN, SHOWN
from dash_app.sources.health import down_sources

if TYPE_CHECKING:
    from dash_app.state import AppState

# Card values and hints a view builds (its "cards" part), in output order; the overage value's class is a prop.
VIEW_CARDS = (
    ("borrow-rate", "children"),
    ("borrow-rate-hint", "children"),
    ("overage-rate", "children"),
    ("overage-rate", "className"),
    ("overage-rate-hint", "children"),
    ("return-rate", "children"),
    ("return-rate-hint", "children"),
    ("failure-rate", "children"),
    ("failure-rate-hint", "children"),
    ("active-licenses", "children"),
    ("active-licenses-hint", "children"),
)
CARD_OUTPUTS = VIEW_CARDS + (("buffer-size", "children"),)
OUTPUTS = (
    CARD_OUTPUTS
    + (("overview-section", "style"), ("tool-section", "style"), ("tool-filter", "options"))
    + tuple((figure_id, "figure") for figure_id in OVERVIEW_FIGURES + TOOL_FIGURES)
    + tuple((grid_id, "rowData") for grid_id in GRIDS)
    + (("tool-table", "rowTransaction"), ("checkouts-table", "columnDefs"))
    + (("tool-info", "children"), ("events-table", "children"), ("render-state", "data"))
    + (("source-strip", "children"), ("source-strip", "is_open"))
    + (("alerts-banner", "children"), ("alerts-banner", "is_open"), ("alerts-list", "children"))
)


def _card_key(component_id: str, prop: str) -> str:
    return f"{component_id}-class" if prop == "className" else component_id


class PageUpdater:
    """Computes every output of one refresh for one tab from the shared snapshots and what that tab already has.

    Readers who see people's names differently (real, pseudonyms, none) get their own Snapshots, made on the first
    refresh of such a reader: every row, figure, cache and signature of one holds names only as its readers see them.
    """

    def __init__(self, state: "AppState", clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock
        self.denial_gap = state.settings.true_denial_minutes * 60
        self.snapshots = Snapshots(state.buffer, state.pool, state.history, state.settings.currency, denial_gap=self.denial_gap)
        self._by_names: dict[Names, Snapshots] = {FULL: self.snapshots}
        self._by_names_lock = threading.Lock()

    def snapshots_for(self, names: Names) -> Snapshots:
        """Return the Snapshots of readers who see names as `names` says (at most one per way: three in all)."""
        found = self._by_names.get(names)
        if found is not None:
            return found
        with self._by_names_lock:
            found = self._by_names.get(names)
            if found is None:
                state = self.state
                found = Snapshots(
                    state.buffer, state.pool, state.history, state.settings.currency, names=names, denial_gap=self.denial_gap
                )
                found.shown_tools = self.snapshots.shown_tools
                self._by_names[names] = found
            return found

    def update(
        self,
        tool_value: object,
        window_value: object,
        seen: object,
        zone_choice: object = None,
        browser_zone: object = None,
        hidden: object = None,
        viewer: object = None,
    ) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
        """Return ({(id, prop): value or no_update}, the tab's new render state) for `viewer` (the request's reader)."""
        viewer = viewer if isinstance(viewer, Viewer) else current_viewer()
        names = viewer.names
        snapshots = self.snapshots_for(names)
        now = self.clock()
        tool, window = selected_tool(tool_value), selected_window(window_value)
        zone = time_zone(zone_choice, browser_zone)
        pool, tool, view = snapshots.get(tool, window, now, zone)
        # The render state comes back from the browser: anything but what we sent counts as "nothing shown yet",
        # and so do parts sent to a reader who saw names otherwise (the tab's reader signed in with another role).
        seen = seen if isinstance(seen, dict) else {}
        had = seen.get("parts")
        if not isinstance(had, dict) or seen.get("names") != names.mode:
            had = {}
        has = dict(had)
        out: dict[tuple[str, str], Any] = dict.fromkeys(OUTPUTS, no_update)
        out[("buffer-size", "children")] = parts.number(self.state.buffer.get_stats_summary()["total_events"])

        mode = "tool" if tool is not None else "overview"
        if seen.get("mode") != mode:
            out[("overview-section", "style")] = HIDDEN if tool is not None else SHOWN
            out[("tool-section", "style")] = SHOWN if tool is not None else HIDDEN
        out[("tool-filter", "options")], has["tool-filter"] = component_update(pool.options, had.get("tool-filter"))

        time_range = autorange_limits(now - window, now, zone)
        for output_id, part in view.items():
            if output_id in OVERVIEW_FIGURES or output_id in TOOL_FIGURES:
                out[(output_id, "figure")], has[output_id] = figure_update(
                    part, had.get(output_id), time_range, hidden_in(hidden, output_id)
                )
            elif output_id == "tool-table":
                grid = grid_update(part, had.get(output_id), snapshots.row_keys)
                out[(output_id, "rowData")], out[(output_id, "rowTransaction")], has[output_id] = grid
            elif output_id in GRIDS:
                out[(output_id, "rowData")], has[output_id] = component_update(part, had.get(output_id))
            elif output_id == "checkouts-columns":
                out[("checkouts-table", "columnDefs")], has[output_id] = component_update(part, had.get(output_id))
            elif output_id == "cards":
                values, has["cards"] = component_update(part, had.get("cards"))
                if values is not no_update:
                    out.update({key: values[_card_key(*key)] for key in VIEW_CARDS})
            elif output_id == "events-table":
                update = rows_update(part, had.get(output_id), snapshots.row_keys, tables.EVENTS_ROWS_PATH)
                out[(output_id, "children")], has[output_id] = update
            else:
                out[(output_id, "children")], has[output_id] = component_update(part, had.get(output_id))
        strip = parts.sources_down(privacy.sources(down_sources(self.state), viewer), now, detailed=viewer.sees_sources)
        if had.get("source-strip") != strip:
            out[("source-strip", "children")], out[("source-strip", "is_open")] = parts.source_strip(strip), bool(strip)
        has["source-strip"] = strip
        self._alerts(zone, had, has, out, viewer)
        # "updated" changes on every answer, which is how the browser-side status pill knows updates arrive;
        # "query" is the URL of this view, which the browser writes into its address bar.
        render_state = {
            "mode": mode,
            "names": names.mode,
            "view": [tool, window, zone],
            "updated": now,
            "query": query_for_view(tool, window, zone_choice),
            "parts": has,
        }
        out[("render-state", "data")] = render_state
        return out, render_state

    def _alerts(
        self, zone: str, had: dict[str, Any], has: dict[str, Any], out: dict[tuple[str, str], Any], viewer: Viewer
    ) -> None:
        """Open the alerts banner while any alert fires, and list the recent alerts; send them only when changed.

        Both show each alert as the reader may see it (parts.alert_view); the list's signature is of what is shown.
        """
        engine = self.state.alerts
        if not engine.rules:
            return
        kinds = {name: rule.kind for name, rule in engine.rules.items()}
        firing = engine.firing()
        banner = parts.alerts_banner_text(firing, kinds, viewer.names, viewer.sees_sources)
        if had.get("alerts-banner") != banner:
            out[("alerts-banner", "children")], out[("alerts-banner", "is_open")] = banner, bool(banner)
        has["alerts-banner"] = banner
        _, recent = engine.rows()  # not snapshot(): a refresh has no use for the deliveries
        shown = parts.shown_alerts(recent, kinds, viewer.names, viewer.sees_sources)
        signature = digest([zone, shown])
        if had.get("alerts-list") != signature:
            out[("alerts-list", "children")] = parts.alerts_table(shown, zone)
        has["alerts-list"] = signature

    def __call__(
        self,
        _n_intervals: object,
        tool_value: object,
        window_value: object,
        zone_choice: object,
        browser_zone: object,
        seen: object,
        hidden: object,
        pathname: object = None,
    ) -> list[Any]:
        """The Dash callback: outputs in OUTPUTS order."""
        if is_capacity(pathname):
            # The live view is hidden: nothing is built, but the answer still says the server is there.
            kept = dict(seen) if isinstance(seen, dict) else {}
            kept["updated"] = self.clock()
            return [kept if key == ("render-state", "data") else no_update for key in OUTPUTS]
        out, _ = self.update(tool_value, window_value, seen, zone_choice, browser_zone, hidden)
        return [out[key] for key in OUTPUTS]
