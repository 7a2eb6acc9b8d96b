"""The "Download CSV" and "Download JSON" buttons: the selected tool's and window's buckets, as a file."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, ctx, dcc, no_update

from dash_app import export
from dash_app.auth.viewer import current_viewer
from dash_app.layouts.controls import selected_tool, selected_window

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.state import AppState

BUTTON_FORMATS = {"download-csv": "csv", "download-json": "json"}


def register_download_callback(app: "Dash", state: "AppState") -> Callable[..., Any]:
    """Send the export of what the page shows when a download button is clicked."""

    @app.callback(
        Output("download", "data"),
        Input("download-csv", "n_clicks"),
        Input("download-json", "n_clicks"),
        State("tool-filter", "value"),
        State("time-range", "value"),
        prevent_initial_call=True,
    )
    def download(_csv_clicks: object, _json_clicks: object, tool_value: object, window_value: object) -> Any:
        fmt = BUTTON_FORMATS.get(ctx.triggered_id)
        if fmt is None:
            return no_update
        tool = selected_tool(tool_value)
        tools = [tool] if tool is not None else None
        text, filename, mimetype = export.render(
            state, "buckets", fmt, selected_window(window_value), tools, current_viewer().names
        )
        return dcc.send_string(text, filename, type=mimetype.split(";")[0])

    return download
