"""The "Download CSV" and "Download JSON" buttons: the selected tool's and window's buckets, as a file."""

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, ctx, dcc, no_update

from dash_app import export
from dash_app.auth.viewer import Names, current_viewer
from dash_app.layouts.controls import selected_tool, selected_window

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.state import AppState

BUTTON_FORMATS = {"download-csv": "csv", "download-json": "json"}
MIMETYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json; charset=utf-8"}


def render_buckets(
    state: "AppState", fmt: str, window_seconds: float, tools: Sequence[str] | None, names: Names
) -> tuple[str, str, str]:
    """Return (text, filename, mimetype) of the buckets' export, with each bin's users as `names` shows them."""
    if names.real:
        return export.render(state, "buckets", fmt, window_seconds, tools)
    rows = [{**row, "users": names.users(row["users"])} for row in export.bucket_rows(state, window_seconds, tools)]
    if not tools:
        scope = "all-tools"
    else:
        scope = "-".join("".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in t) for t in tools)[:80]
    filename = f"licenses-buckets-{scope}-{int(window_seconds)}s.{fmt}"
    if fmt == "csv":
        text = export.to_csv(rows, export.BUCKET_COLUMNS)
    else:
        text = json.dumps(rows, ensure_ascii=False)
    return text, filename, MIMETYPES[fmt]


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
        text, filename, mimetype = render_buckets(
            state, fmt, selected_window(window_value), [tool] if tool is not None else None, current_viewer().names
        )
        return dcc.send_string(text, filename, type=mimetype.split(";")[0])

    return download
