"""GET /sources as a page for a person: each source, its state and counters, and a polled server's features.

It shows exactly what the JSON shows the same reader (dash_app.privacy.sources has already cut it): every value is
text, escaped, and the page runs no script.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from dash_app.vendor import BOOTSTRAP_CSS

# A state's badge colour, as Bootstrap names it; an unknown state is grey.
STATE_STYLE = {"up": "success", "degraded": "warning", "down": "danger", "catching_up": "info"}
# What needs a person first comes first: down, then degraded, then catching up, then up (else as listed).
STATE_ORDER = {"down": 0, "degraded": 1, "catching_up": 2, "up": 3}
COUNTERS = ("polls", "borrows", "returns", "denials", "malformed")
# A polled server's feature columns: (heading, key).
FEATURE_COLUMNS = (
    ("Feature", None),
    ("Tool", "tool"),
    ("Vendor", "vendor"),
    ("Issued", "issued"),
    ("In use", "in_use"),
    ("Reserved", "reserved"),
    ("Queued", "queued"),
    ("Expiry", "expiry"),
    ("Tokens", "tokens"),
    ("State", "state"),
    ("Why", "reason"),
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sources · License usage</title><link rel="icon" href="/_favicon.ico">
<link rel="stylesheet" href="{stylesheet}"></head>
<body class="bg-light"><main class="container-lg py-4">
<p class="mb-2"><a href="/">License usage</a> · <a href="/sources?format=json">as JSON</a></p>
<h1 class="h3 mb-1">Sources of events</h1><p id="sources-summary" class="text-muted">{summary}</p>
{sections}{extra}</main></body></html>"""


def sources_page(sources: Sequence[Mapping[str, Any]], extra: Markup | None = None) -> str:
    """Return the HTML page of GET /sources entries (as the reader may see them), then `extra` (admins' cards)."""
    states = Counter(str(source.get("state")) for source in sources)
    summary = f"{len(sources)} source{'s' if len(sources) != 1 else ''}: " + ", ".join(
        f"{n} {state.replace('_', ' ')}" for state, n in sorted(states.items())
    )
    ordered = sorted(sources, key=lambda source: STATE_ORDER.get(str(source.get("state")), 4))
    sections = Markup("").join(_section(source) for source in ordered) or Markup("<p>No sources.</p>")
    return _PAGE.format(stylesheet=BOOTSTRAP_CSS, summary=escape(summary), sections=sections, extra=extra or "")


def _section(source: Mapping[str, Any]) -> Markup:
    state = str(source.get("state"))
    facts = [("Last good", source.get("last_ok")), ("Down since", source.get("down_since"))]
    facts.append(("Last error", source.get("last_error")))
    if "open_checkouts" in source:
        facts.append(("Open checkouts", source["open_checkouts"]))
    counters = source.get("counters") or {}
    shown = " · ".join(f"{key} {counters[key]}" for key in COUNTERS if key in counters)
    rows = Markup("").join(
        Markup('<dt class="col-sm-3">{}</dt><dd class="col-sm-9">{}</dd>').format(label, value)
        for label, value in facts
        if value not in (None, "")
    )
    return Markup(
        '<section class="card mb-3 source"><div class="card-body">'
        '<h2 class="h5 card-title"><span class="text-muted">{kind}</span> {name} '
        '<span class="badge text-bg-{style} source-state">{state}</span></h2>'
        '<dl class="row mb-2">{rows}</dl><p class="small text-muted mb-2">{counters}</p>{features}</div></section>'
    ).format(
        kind=source.get("kind"),
        name=source.get("name"),
        style=STATE_STYLE.get(state, "secondary"),
        state=state.replace("_", " "),
        rows=rows,
        counters=shown,
        features=_features(source.get("features")),
    )


def _features(features: Mapping[str, Mapping[str, Any]] | None) -> Markup:
    """Return a polled server's features as a table that scrolls sideways on a narrow screen, or nothing."""
    if not features:
        return Markup("")
    head = Markup("").join(
        Markup("<th scope='col' class='text-nowrap'>{}</th>").format(heading) for heading, _ in FEATURE_COLUMNS
    )
    body = Markup("").join(
        Markup("<tr>{}</tr>").format(
            Markup("").join(
                Markup("<td>{}</td>").format(name if key is None else _cell(info.get(key))) for _, key in FEATURE_COLUMNS
            )
        )
        for name, info in features.items()
    )
    return Markup(
        '<div class="table-responsive"><table class="table table-sm mb-0 source-features">'
        "<thead><tr>{}</tr></thead><tbody>{}</tbody></table></div>"
    ).format(head, body)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)
