"""The Capacity view of one user (/capacity?user=NAME): what they hold now, and their use of each tool in the period."""

from collections.abc import Mapping, Sequence
from typing import Any

import dash_bootstrap_components as dbc
from dash import html
from dash.development.base_component import Component

from dash_app.layouts.parts import number

NAMES_NEEDED = "User names are hidden for your role, so a user's page cannot be opened by name."


def user_section() -> html.Div:
    """Return the one-user part of the view, hidden until the address names a user."""
    return html.Div(
        dbc.Card(
            dbc.CardBody(
                [
                    html.A("← All tools", href="/capacity", className="user-back small"),
                    html.H2(id="capacity-user-title", className="tool-title"),
                    html.Div(id="capacity-user-body"),
                ]
            ),
            class_name="mb-3",
        ),
        id="capacity-user-section",
        style={"display": "none"},
    )


def _stat(label: str, value: str) -> html.Div:
    return html.Div([html.Div(label, className="stat-label"), html.Div(value, className="stat-value")], className="stat")


def held_list(held: Sequence[Mapping[str, Any]]) -> Component:
    """Return what the user holds now: each open checkout's tool, since when and for how long, overage marked."""
    if not held:
        return html.Div("Holds no license now.", className="user-held-none")
    return html.Ul(
        [
            html.Li(
                [
                    html.Span(row["tool"], className="user-held-tool"),
                    f" since {row['since']} ({row['held']})",
                    *([html.Span(" overage", className="text-warning")] if row.get("overage") else []),
                ]
            )
            for row in held
        ],
        className="user-held",
    )


TOOL_COLUMNS = ("Tool", "License-hours", "Denials (true)", "Overage borrows")


def tools_table(tools: Sequence[Mapping[str, Any]]) -> Component:
    """Return the user's license-hours, denials and overage borrows per tool over the period, heaviest first."""
    if not tools:
        return html.Div("No sessions or denials in this period.", className="empty-note")
    rows = [
        html.Tr(
            [
                html.Td(entry["tool"]),
                html.Td(f"{entry['license_hours']:,.1f}", className="num"),
                html.Td(f"{number(entry.get('denials') or 0)} ({number(entry.get('true_denials') or 0)})", className="num"),
                html.Td(number(entry.get("overage_borrows") or 0), className="num"),
            ]
        )
        for entry in tools
    ]
    head = html.Thead(html.Tr([html.Th(name) for name in TOOL_COLUMNS]))
    return html.Div(html.Table([head, html.Tbody(rows)], className="table table-sm estate-users"), className="estate-scroll")


def user_body(answer: Mapping[str, Any], held: Sequence[Mapping[str, Any]], zone: str) -> list[Component]:
    """Return the user's page: what they hold now, their totals over the period, and each tool's share of them."""
    totals = html.Div(
        [
            _stat("Holds now", number(len(held))),
            _stat("License-hours", f"{answer.get('license_hours') or 0:,.1f}"),
            _stat("Denials (true)", f"{number(answer.get('denials') or 0)} ({number(answer.get('true_denials') or 0)})"),
            _stat("Overage borrows", number(answer.get("overage_borrows") or 0)),
        ],
        className="stats mb-3",
    )
    return [
        totals,
        html.H3(f"Holds now (times in {zone})", className="panel-title"),
        held_list(held),
        html.H3("Each tool in the period", className="panel-title mt-3"),
        tools_table(answer.get("tools") or []),
    ]
