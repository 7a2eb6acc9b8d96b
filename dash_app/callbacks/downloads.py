"""The "Download CSV" and "Download JSON" buttons: the selected tool's and window's buckets, as a file."""

from dash import Input, Output, State, ctx, dcc, no_update

from dash_app import export
from dash_app.layouts.controls import selected_tool, selected_window

BUTTON_FORMATS = {"download-csv": "csv", "download-json": "json"}


def register_download_callback(app, state):
    """Send the export of what the page shows when a download button is clicked."""

    @app.callback(
        Output("download", "data"),
        Input("download-csv", "n_clicks"),
        Input("download-json", "n_clicks"),
        State("tool-filter", "value"),
        State("time-range", "value"),
        prevent_initial_call=True,
    )
    def download(_csv_clicks, _json_clicks, tool_value, window_value):
        fmt = BUTTON_FORMATS.get(ctx.triggered_id)
        if fmt is None:
            return no_update
        tool = selected_tool(tool_value)
        text, filename, mimetype = export.render(
            state, "buckets", fmt, selected_window(window_value), [tool] if tool is not None else None
        )
        return dcc.send_string(text, filename, type=mimetype.split(";")[0])

    return download
