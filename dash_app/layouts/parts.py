"""Pieces of the page that callbacks rebuild: card values, the tool summary, the sources strip and the alerts."""

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from dash import html
from dash.development.base_component import Component

from dash_app.alerts.conditions import down_said
from dash_app.alerts.rules import HELD_LONGER_THAN, PLAIN_KINDS, SOURCE_DOWN
from dash_app.auth.viewer import FULL, Names
from dash_app.layouts.tables import since_text, tool_dot
from dash_app.timeutil import parse_iso

if TYPE_CHECKING:
    from dash_app.alerts.alert import Alert
    from dash_app.callbacks.window_stats import ToolStats

# An Alert, or its entry in GET /alerts.
AlertLike: TypeAlias = "Alert | dict[str, Any]"

# Overage share of the window's borrows above which the card turns amber, then red; below OVERAGE_MIN_BORROWS
# borrows the share is shown with its counts but not coloured, so a handful of borrows does not read as an alarm.
OVERAGE_WARNING_PERCENT = 15
OVERAGE_DANGER_PERCENT = 30
OVERAGE_MIN_BORROWS = 20


def number(value: float) -> str:
    """Format a count or rate for a card: thousands separated, one decimal only when there is one."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def rate(value: float) -> str:
    """Format a rate for a card: one decimal, or two significant digits where one decimal would show a rare event as 0."""
    if 0 < value < 0.05:
        return f"{value:.2g}"
    return number(round(value, 1))


def money(amount: float, currency: str) -> str:
    """Format an amount of money with the configured currency (none when unset): "1,500 EUR"."""
    rounded = round(amount, 2)
    text = f"{rounded:,.2f}" if isinstance(rounded, float) and not rounded.is_integer() else f"{int(rounded):,}"
    return f"{text} {currency}" if currency else text


def overage_class(percent: float, borrows: int = OVERAGE_MIN_BORROWS) -> str:
    """Return the card value's class for an overage share of `borrows`: warning above 15 %, danger above 30 %."""
    if borrows < OVERAGE_MIN_BORROWS:
        return "card-value"
    if percent > OVERAGE_DANGER_PERCENT:
        return "card-value text-danger"
    if percent > OVERAGE_WARNING_PERCENT:
        return "card-value text-warning"
    return "card-value"


def _stat(label: str, value: str, note: str | None = None) -> html.Div:
    children: list[Component] = [html.Div(label, className="stat-label"), html.Div(value, className="stat-value")]
    if note:
        children.append(html.Div(note, className="stat-note"))
    return html.Div(children, className="stat")


def _waiting(entry: Mapping[str, Any] | None) -> list[html.Div]:
    """Return the stats of the licenses a tool's servers reserve and those its users queue for, each only when some."""
    if entry is None:
        return []
    stats = []
    if entry.get("reserved"):
        stats.append(_stat("Reserved", number(entry["reserved"]), "held for named users or hosts"))
    if entry.get("queued"):
        stats.append(_stat("Queued", number(entry["queued"]), "licenses users wait for"))
    return stats


def _denials(denials: "tuple[ToolStats, str] | None") -> list[html.Div]:
    """Return the stat of a tool's denials in the window beside its true denials, given (its ToolStats, the window)."""
    if denials is None:
        return []
    stats, span = denials
    return [_stat("Denials", number(stats.failures), f"{stats.true_denials:,} true denials · last {span}")]


def tool_info(
    tool: str,
    entry: Mapping[str, Any] | None,
    color: str | None,
    currency: str = "",
    denials: "tuple[ToolStats, str] | None" = None,
) -> list[Component]:
    """Return the tool summary: name, in use, reserved and queued, denials, limits, prices, the overage to date, expiry."""
    title = html.H2([tool_dot(color), html.Span(tool)], className="tool-title")
    expiry = [_stat("License expires", _expiry_text(entry["expiry"]))] if entry and entry.get("expiry") else []
    expiry = _denials(denials) + expiry  # the window's denials go last but the expiry
    if entry is None or entry.get("commit") is None:
        borrowed = entry["borrowed"] if entry else 0
        issued = entry.get("total") if entry else None
        if issued is None:
            in_use, note = number(borrowed), "This tool is not in the inventory, so its limits and prices are unknown."
        else:
            in_use = f"{number(borrowed)} of {number(issued)}"
            note = "This tool is not in the inventory: its total is what its server issues; commit and prices are unknown."
        stats = html.Div([_stat("In use now", in_use), *_waiting(entry), *expiry], className="stats")
        return [title, stats, html.P(note, className="text-muted small mb-0")]
    cost_note = (
        f"{money(entry['commit_price'], currency)} commit per term + {money(entry['current_overage_cost'], currency)} "
        f"for {number(entry['overage_borrows'])} overage borrows to date"
    )
    return [
        title,
        html.Div(
            [
                _stat("In use now", f"{number(entry['borrowed'])} of {number(entry['total'])}"),
                *_waiting(entry),
                _stat("Total", number(entry["total"])),
                _stat("Commit", number(entry["commit"])),
                _stat("Max overage", number(entry["max_overage"])),
                _stat("Commit price", money(entry["commit_price"], currency), "per term"),
                _stat("Overage price", money(entry["overage_price_per_license"], currency), "per overage borrow"),
                _stat("Cost to date", money(entry["total_cost"], currency), cost_note),
                *expiry,
            ],
            className="stats",
        ),
    ]


SOURCES_LISTED = 5  # sources named in the strip; the rest are counted


def sources_down(down: Sequence[Mapping[str, Any]], now: float, detailed: bool = True) -> str:
    """Return the source strip's text for the sources that are down (their names are text, never markup), or "".

    `down` are GET /sources entries as the reader may see them (dash_app.privacy.sources). Without `detailed` (readers
    who may not see the sources' health details) a source is named by its kind, and by its license server when its
    error says which, and its error by its kind: no log path, no error's own words.
    """
    if not down:
        return ""
    shown = []
    for entry in down[:SOURCES_LISTED]:
        since = entry.get("down_since")
        minutes = int(max(0.0, now - parse_iso(since)) // 60) if since else None
        how_long = f" for {minutes} min" if minutes is not None else ""
        if not detailed:
            error = entry.get("error") or {}
            named = f"{entry['kind']} {error['server']}" if error.get("server") else f"{entry['kind']} source"
            shown.append(f"{named} down{how_long}" + (f" ({error['kind']})" if error else ""))
            continue
        error = f" ({entry['last_error']})" if entry.get("last_error") else ""
        shown.append(f"{entry['kind']} {entry['name']} down{how_long}{error}")
    more = f"; and {len(down) - SOURCES_LISTED} more" if len(down) > SOURCES_LISTED else ""
    return "Sources down, their licenses shown as last seen: " + "; ".join(shown) + more + "."


def source_strip(text: str) -> list[Component | str] | str:
    """Return the source strip's children for its text (sources_down's): the text, then a link to the sources page."""
    if not text:
        return ""
    return [text, " ", html.A("See /sources", href="/sources", className="alert-link")]


# A name from the address bar is shown up to this long: enough for any tool's name, never a page of text.
NAME_SHOWN = 120


def no_such_tool(name: str) -> str:
    """Return what the page says when its address names no tool (text: Dash shows it as such, never as markup)."""
    shown = name if len(name) <= NAME_SHOWN else name[: NAME_SHOWN - 1] + "…"
    return f"No tool named “{shown}”; showing all tools."


def _expiry_text(expiry: str) -> str:
    """Return a license expiry as the page says it: the date, or "never"."""
    return "never (permanent)" if expiry == "permanent" else expiry


ALERTS_NAMED = 3  # firing alerts the banner names; the rest are counted

_HELD_TEXT = " has held a license for "


def _field(alert: AlertLike, name: str) -> Any:
    """Return a field of an Alert or of its GET /alerts dict (None when it has none)."""
    return alert.get(name) if isinstance(alert, dict) else getattr(alert, name, None)


def _subject(alert: AlertLike) -> str | None:
    """Return an alert's subject (a tool, a source name, or None): an Alert's `subject`, its dict's `tool`."""
    return alert.get("tool") if isinstance(alert, dict) else alert.subject


def _held_user(alert: AlertLike, tool: str, borrow_id: str | None) -> str | None:
    """Return the user a held_longer_than alert names: its own field, else read back from its message, else None."""
    message = _field(alert, "message") or ""
    user = _field(alert, "user") or getattr(message, "user", None)  # alerts.conditions.HeldText carries its user
    if user is not None:
        return user
    head, tail = f"{tool}: ", f"; {borrow_id})"
    if borrow_id is None or not message.startswith(head) or not message.endswith(tail):
        return None
    user, found, _rest = message[len(head) : -len(tail)].rpartition(_HELD_TEXT)
    return user if found and user else None


def _held_text(alert: AlertLike, names: Names) -> str | None:
    """Return a held_longer_than alert's message with its user and borrow id as `names` shows them, or None."""
    rule, tool, key = _field(alert, "rule"), _subject(alert), _field(alert, "key") or ""
    held, limit = _field(alert, "value"), _field(alert, "threshold")
    borrow_id = _field(alert, "borrow_id") or getattr(_field(alert, "message"), "borrow_id", None)
    if borrow_id is None and key.startswith(f"{rule}|"):
        borrow_id = key[len(rule) + 1 :]  # the key is "rule|borrow id"; rule names have no "|"
    if tool is None or borrow_id is None or not isinstance(held, (int, float)) or not isinstance(limit, (int, float)):
        return None
    user = names.user(_held_user(alert, tool, borrow_id)) or "a user"
    return f"{tool}: {user}{_HELD_TEXT}{held / 3600:.1f} h (limit {limit / 3600:g} h; {names.borrow_id(borrow_id)})"


def alert_view(alert: AlertLike, kind: str | None, names: Names = FULL, sees_sources: bool = True) -> tuple[str | None, str]:
    """Return (subject, message) of an alert (an Alert or its GET /alerts dict) as one reader may see them.

    `kind` is its rule's kind (None when the rule is gone). Held-too-long messages name a user and a borrow id (which
    names a client host): readers without real names get them as `names` shows them. Source-down messages name the
    source and its error's kind: readers without real names get nothing more (conditions.down_said), and readers who
    may not see the sources' details no log's path. Messages of kinds not known here are shown only to readers who may
    see everything.
    """
    rule, subject, message = _field(alert, "rule"), _subject(alert), _field(alert, "message") or ""
    if kind in PLAIN_KINDS:
        return subject, message
    if kind == HELD_LONGER_THAN:
        if names.real:
            return subject, message
        text = _held_text(alert, names)
        if text is None:  # not the shape this module knows: say only which rule fires on which tool
            text = f"{rule} on {subject}" if subject else str(rule)
        return subject, text
    if kind == SOURCE_DOWN:
        if sees_sources and names.real:
            return subject, message
        return (subject if sees_sources else None), down_said(message, subject, sees_sources)
    if names.real and sees_sources:
        return subject, message
    return None, f"alert {rule}"


def shown_alerts(
    recent: Iterable[dict[str, Any]], kinds: Mapping[str, str], names: Names = FULL, sees_sources: bool = True
) -> list[dict[str, Any]]:
    """Return the GET /alerts `recent` entries with subject and message as one reader may see them, and no key."""
    shown = []
    for alert in recent:
        subject, message = alert_view(alert, kinds.get(alert["rule"]), names, sees_sources)
        row = {key: value for key, value in alert.items() if key not in ("key", "user", "borrow_id")}
        shown.append({**row, "tool": subject, "message": message})
    return shown


def alerts_banner_text(
    firing: Sequence["Alert"], kinds: Mapping[str, str] | None = None, names: Names = FULL, sees_sources: bool = True
) -> str:
    """Return the alerts banner's text for the firing Alerts (oldest first), or "" when none fires.

    `kinds` ({rule name: kind}) says how each alert's message may be shown to the reader (see alert_view); without
    it the messages are shown as they are.
    """
    if not firing:
        return ""
    if kinds is None:
        messages = [alert.message for alert in firing[:ALERTS_NAMED]]
    else:
        messages = [alert_view(alert, kinds.get(alert.rule), names, sees_sources)[1] for alert in firing[:ALERTS_NAMED]]
    named = "; ".join(messages)
    more = f"; and {len(firing) - ALERTS_NAMED} more" if len(firing) > ALERTS_NAMED else ""
    count = f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing"
    return f"{count}: {named}{more}."


def alerts_table(recent: Sequence[Mapping[str, Any]], zone: str = "UTC") -> html.Div:
    """Return the table of recent alerts (GET /alerts' `recent` entries, newest first), or a note that there are none."""
    if not recent:
        return html.Div("No alerts yet", className="empty-note")
    now = time.time()
    rows = [
        html.Tr(
            [
                html.Td(html.Span(alert["state"], className=f"alert-state alert-{alert['state']}")),
                html.Td(alert["rule"]),
                html.Td(alert["tool"] or ""),
                html.Td(alert["message"], className="alert-message"),
                html.Td(since_text(parse_iso(alert["since"]), now, zone)),
                html.Td(since_text(parse_iso(alert["resolved_at"]), now, zone) if alert["resolved_at"] else ""),
            ]
        )
        for alert in recent
    ]
    head = html.Thead(html.Tr([html.Th(name) for name in ("State", "Rule", "Tool", "What", "Fired", "Resolved")]))
    # A long message or rule name scrolls the table inside its card: a phone's page never widens.
    table = html.Table([head, html.Tbody(rows)], className="table table-sm align-middle mb-0 alerts")
    return html.Div(table, className="table-responsive alerts-scroll")
