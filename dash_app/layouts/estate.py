"""The Capacity view's estate answers: what to buy and what to drop, the estate's hour of week, the top users."""

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import dcc, html
from dash.development.base_component import Component

from dash_app.layouts.panels import ROW_CLASS, chart_panel, panel_header
from dash_app.layouts.parts import money, number

CAPACITY_PATH = "/capacity"
# Actions in the order the list shows them: what changes the estate first, what stays as it is folded away.
ACTIONS = ("buy", "drop")
# The changes listed, biggest effect first: each is a link, and a page of hundreds of links takes seconds to draw.
CHANGES_SHOWN = 25
TOOLS_SHOWN = 3  # of each top user's tools, the heaviest, by name in the table; the rest counted
NAMES_HIDDEN = "hidden"


def estate_panels() -> html.Div:
    """Return the estate's panels: recommendations beside the hour-of-week heatmap, the top users below them."""
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Card(
                            [
                                panel_header("What to buy, what to drop", "biggest effect first · click one to open its tool"),
                                dbc.CardBody(html.Div(id="capacity-recommendations"), class_name="panel-body"),
                            ],
                            class_name="h-100",
                        ),
                        xs=12,
                        xl=5,
                    ),
                    dbc.Col(
                        chart_panel(
                            "capacity-estate-week",
                            "Estate by hour of week",
                            "licenses in use over every tool's total; tools at total in the hover",
                            placeholder="Waiting for the period…",
                        ),
                        xs=12,
                        xl=7,
                    ),
                ],
                class_name=ROW_CLASS,
            ),
            dbc.Row(
                dbc.Col(
                    dbc.Card(
                        [
                            panel_header("Top users across tools", "license-hours in the period · click a name for the user"),
                            dbc.CardBody(html.Div(id="capacity-top-users", className="estate-scroll"), class_name="panel-body"),
                        ]
                    )
                ),
                class_name=ROW_CLASS,
            ),
        ],
        id="capacity-estate",
    )


def item_text(item: Mapping[str, Any], currency: str) -> str:
    """Return a recommendation in a line: the action and licenses, the tool, why, and what it saves or serves."""
    licenses = item.get("licenses") or 0
    plural = "license" if licenses == 1 else "licenses"
    head = f"{item['action'].capitalize()} {licenses} {plural}" if licenses else item["action"].capitalize()
    parts = [f"{head} · {item['tool']}", str(item.get("reason") or "")]
    if item.get("saving"):
        parts.append(f"saves {money(item['saving'], currency)}")
    if item.get("denials_served"):
        parts.append(f"serves {number(item['denials_served'])} denials")
    return " — ".join(part for part in parts if part)


def tool_href(tool: str) -> str:
    """Return the address that opens a tool in the Capacity view (the period stays as the controls have it)."""
    return CAPACITY_PATH + "?" + urlencode({"tool": tool})


def _item(item: Mapping[str, Any], currency: str) -> html.Li:
    # A link in the page (no reload, a history entry): the view opens the tool the address names.
    return html.Li(dcc.Link(item_text(item, currency), href=tool_href(item["tool"]), className=f"rec-item rec-{item['action']}"))


def recommendation_list(answer: Mapping[str, Any] | None, currency: str) -> list[Component]:
    """Return the recommendations as the view lists them: buy and drop items, then the tools to keep, folded."""
    if not answer:
        return [html.Div("No recommendations for this period.", className="empty-note")]
    tools = answer.get("tools") or []
    changes = [item for item in tools if item["action"] in ACTIONS]
    keep = [item for item in tools if item["action"] not in ACTIONS]
    totals = answer.get("totals") or {}
    summary = (
        f"Buy {number(totals.get('licenses_to_buy') or 0)}, drop {number(totals.get('licenses_to_drop') or 0)} licenses;"
        f" saving {money(totals.get('saving') or 0, currency)} over the period."
    )
    children: list[Component] = [html.Div(summary, className="rec-summary")]
    if changes:
        children.append(html.Ol([_item(item, currency) for item in changes[:CHANGES_SHOWN]], className="rec-list"))
    else:
        children.append(html.Div("Nothing to buy or drop: every pool fits its use.", className="empty-note"))
    if len(changes) > CHANGES_SHOWN:
        more = len(changes) - CHANGES_SHOWN
        children.append(html.Div(f"…and {more} smaller: GET /analytics/recommendations lists them all.", className="rec-more"))
    if keep:
        names = ", ".join(item["tool"] for item in keep)
        children.append(html.Details([html.Summary(f"Keep as they are: {len(keep)} tools"), names], className="rec-keep"))
    return children


def user_link(user: str | None, real: bool) -> Component | str:
    """Return a user's name as the table shows it: a link to their page for readers of real names, else plain text."""
    if user is None:
        return NAMES_HIDDEN
    if not real:
        return user
    return html.A(user, href=CAPACITY_PATH + "?" + urlencode({"user": user}), className="user-link")


def _tools_text(tools: Sequence[Mapping[str, Any]]) -> str:
    shown = [f"{entry['tool']} ({entry['license_hours']:,.1f} h)" for entry in tools[:TOOLS_SHOWN]]
    if len(tools) > TOOLS_SHOWN:
        shown.append(f"+{len(tools) - TOOLS_SHOWN} more")
    return ", ".join(shown)


USER_COLUMNS = ("User", "License-hours", "Tools", "Denials (true)", "Overage borrows")


def users_table(users: Sequence[Mapping[str, Any]], real: bool) -> Component:
    """Return the top users across tools: license-hours, their heaviest tools, denials and overage borrows."""
    if not users:
        return html.Div("Nobody held a license in this period.", className="empty-note")
    head = html.Thead(html.Tr([html.Th(name) for name in USER_COLUMNS]))
    rows = [
        html.Tr(
            [
                html.Td(user_link(entry.get("user"), real)),
                html.Td(f"{entry['license_hours']:,.1f}", className="num"),
                html.Td(_tools_text(entry.get("tools") or []), className="estate-tools"),
                html.Td(f"{number(entry.get('denials') or 0)} ({number(entry.get('true_denials') or 0)})", className="num"),
                html.Td(number(entry.get("overage_borrows") or 0), className="num"),
            ]
        )
        for entry in users
    ]
    return html.Table([head, html.Tbody(rows)], className="table table-sm estate-users")
