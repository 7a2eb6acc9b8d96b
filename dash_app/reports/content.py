"""What a report says: an HTML summary of its period and the full tables as CSV attachments (the API's own CSV).

Pure functions of the figures the analyses answered; every name in the HTML (tools, groups, the report's) is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dash_app.analytics.service import (
    CHARGEBACK_COLUMNS,
    CSV_COLUMNS,
    RECOMMENDATION_COLUMNS,
    Report,
    chargeback_rows,
    table_rows,
)
from dash_app.csvtext import to_csv
from dash_app.reports.rules import CAPACITY, CHARGEBACK, RECOMMENDATIONS, SUMMARY, ReportRule
from dash_app.reports.schedule import iso_local

TOP_TOOLS = 5  # the tools under most pressure the summary names
_RIGHT = ' align="right"'


@dataclass(frozen=True)
class Figures:
    """What the analyses answered for one report's period: those its content asks for (None for the others)."""

    start: float
    end: float
    currency: str
    capacity: Report
    recommendations: Mapping[str, Any] | None = None
    chargeback: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Message:
    """One report's message: its title, HTML body and CSV attachments (file name, text)."""

    title: str
    html: str
    attachments: tuple[tuple[str, str], ...]


def title(report: ReportRule, start: float, end: float) -> str:
    """Return the message's title: the report's name and its period's local dates."""
    first, last = iso_local(report.zone, start)[:10], iso_local(report.zone, end - 1)[:10]
    dates = first if first == last else f"{first} to {last}"
    return f"[licenses] {report.name}: {dates}"


def compose(report: ReportRule, figures: Figures, link: str) -> Message:
    """Return the message of `report` over `figures`: the summary (if asked for) and an attachment per table asked for."""
    attachments: list[tuple[str, str]] = []
    if CAPACITY in report.content:
        attachments.append(("capacity.csv", to_csv(table_rows(figures.capacity), CSV_COLUMNS)))
    if RECOMMENDATIONS in report.content and figures.recommendations is not None:
        attachments.append(("recommendations.csv", to_csv(figures.recommendations["tools"], RECOMMENDATION_COLUMNS)))
    if CHARGEBACK in report.content and figures.chargeback is not None:
        attachments.append(("chargeback.csv", to_csv(chargeback_rows(figures.chargeback), CHARGEBACK_COLUMNS)))
    body = summary_html(report, figures, link) if SUMMARY in report.content else _period_html(report, figures, link)
    return Message(title(report, figures.start, figures.end), body, tuple(attachments))


def _money(value: float | None, currency: str) -> str:
    return f"{value or 0.0:,.2f} {currency}" if currency else f"{value or 0.0:,.2f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool]) -> str:
    """Return an HTML table of escaped cells; numeric columns right-aligned."""
    style = 'style="border-collapse:collapse" cellpadding="4" border="1"'
    cells = "".join(f"<th>{html.escape(name)}</th>" for name in head)
    lines = [f"<table {style}><thead><tr>{cells}</tr></thead><tbody>"]
    for row in rows:
        tds = "".join(
            f"<td{_RIGHT if right else ''}>{html.escape(str(value))}</td>" for value, right in zip(row, numeric, strict=True)
        )
        lines.append(f"<tr>{tds}</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


def _period_html(report: ReportRule, figures: Figures, link: str) -> str:
    start, end = iso_local(report.zone, figures.start), iso_local(report.zone, figures.end)
    return (
        f"<h2>{html.escape(report.name)}</h2>"
        f"<p>Period: {html.escape(start)} to {html.escape(end)} ({html.escape(report.tz)}).</p>"
        f'<p><a href="{html.escape(link, quote=True)}">Open the dashboard</a></p>'
    )


def summary_html(report: ReportRule, figures: Figures, link: str) -> str:
    """Return the HTML summary: the period, total cost, overage, the tools under most pressure, buy and drop, per group."""
    currency = figures.currency
    totals = figures.capacity.totals
    commit, overage = float(totals.get("commit_cost") or 0.0), float(totals.get("overage_cost") or 0.0)
    parts = [_period_html(report, figures, link)]
    parts.append(
        "<h3>Cost</h3>"
        + _table(
            ("commit", "overage", "total", "overage borrows", "license-hours"),
            [
                (
                    _money(commit, currency),
                    _money(overage, currency),
                    _money(commit + overage, currency),
                    int(totals.get("overage_borrows") or 0),
                    f"{float(totals.get('license_hours') or 0.0):,.1f}",
                )
            ],
            (True, True, True, True, True),
        )
    )
    pressed = figures.capacity.tools[:TOP_TOOLS]
    rows = [
        (
            entry["tool"],
            f"{entry['peak_in_use']} / {entry['total']}",
            f"{float(entry['seconds_at_total'] or 0.0) / 3600:,.1f}",
            entry["denials"],
            entry["true_denials"],
            _money(entry["overage_cost"], currency),
        )
        for entry in pressed
    ]
    parts.append(f"<h3>The {len(rows)} tools under most pressure</h3>")
    parts.append(
        _table(
            ("tool", "peak / total", "hours at total", "denials", "true denials", "overage"),
            rows,
            (False, True, True, True, True, True),
        )
        if rows
        else "<p>No tools.</p>"
    )
    if figures.recommendations is not None:
        moves = [entry for entry in figures.recommendations["tools"] if entry["action"] in ("buy", "drop")]
        parts.append("<h3>What to buy and drop</h3>")
        if moves:
            parts.append(
                _table(
                    ("tool", "action", "licenses", "saving", "reason"),
                    [(e["tool"], e["action"], e["licenses"], _money(e["saving"], currency), e["reason"]) for e in moves],
                    (False, False, True, True, False),
                )
            )
        else:
            parts.append("<p>Nothing to buy or drop: keep every tool as it is.</p>")
    if figures.chargeback is not None:
        groups = figures.chargeback["groups"]
        parts.append(f"<h3>Cost per {html.escape(str(figures.chargeback.get('by', 'group')).replace('_', ' '))}</h3>")
        parts.append(
            _table(
                ("group", "license-hours", "commit share", "overage", "total"),
                [
                    (
                        g["group"],
                        f"{float(g['license_hours']):,.1f}",
                        _money(g["commit_share"], currency),
                        _money(g["overage_cost"], currency),
                        _money(g["total"], currency),
                    )
                    for g in groups
                ],
                (False, True, True, True, True),
            )
            if groups
            else "<p>No costs in this period.</p>"
        )
    names = [name for name, _ in _attachment_names(report)]
    if names:
        parts.append(f"<p>Attached: {html.escape(', '.join(names))}.</p>")
    return "".join(parts)


def _attachment_names(report: ReportRule) -> list[tuple[str, str]]:
    return [(f"{kind}.csv", kind) for kind in (CAPACITY, RECOMMENDATIONS, CHARGEBACK) if kind in report.content]
