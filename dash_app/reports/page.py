"""The scheduled reports as a card of the /sources page, for admins: each report's next run, last send and last error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

COLUMNS = (("Report", "name"), ("Next run", "next_run"), ("Last sent", "last_sent"), ("Last error", "last_error"))


def reports_card(reports: Sequence[Mapping[str, Any]]) -> Markup:
    """Return the card of GET /reports entries (every value escaped), or nothing without reports."""
    if not reports:
        return Markup("")
    head = Markup("").join(Markup("<th scope='col'>{}</th>").format(heading) for heading, _ in COLUMNS)
    body = Markup("").join(
        Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(report.get(key) or "") for _, key in COLUMNS))
        for report in reports
    )
    return Markup(
        '<section id="scheduled-reports" class="card mb-3"><div class="card-body">'
        '<h2 class="h5 card-title">Scheduled reports <a class="small" href="/reports">as JSON</a></h2>'
        '<div class="table-responsive"><table class="table table-sm mb-0">'
        "<thead><tr>{}</tr></thead><tbody>{}</tbody></table></div></div></section>"
    ).format(head, body)
