"""Which alert conditions hold at one tick: the rules applied to the tick's snapshot and the facts (facts.py).

Only conditions that hold are returned; the engine treats every alert it tracks and does not see here as false.
Keys name an alert: `rule|tool`, `rule|checkout id`, `rule|source name`, or the rule alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dash_app.alerts.facts import DenialWindow, OpenCheckouts, OverageLedger
from dash_app.alerts.rules import (
    DENIALS,
    EXPIRES_WITHIN,
    HELD_LONGER_THAN,
    IN_USE_PERCENT,
    NOT_PERSISTING,
    OVERAGE_COST,
    SOURCE_DOWN,
    Rule,
)
from dash_app.sources.errors import is_error_kind, is_server_name
from dash_app.timeutil import parse_iso


class HeldText(str):
    """The text of a held_longer_than observation, which keeps apart the user and the borrow id it names.

    The engine takes an observation's text onto its alert as it is, so GET /alerts can say it again, with `said_as`,
    for a reader who may not see the user or the borrow id (an id of a log line or a poll names the client host).
    A text read back from the store is a plain str.
    """

    tool: str
    user: str
    held: float
    limit: float
    borrow_id: str

    def __new__(cls, tool: str, user: str, held: float, limit: float, borrow_id: str) -> HeldText:
        text = super().__new__(cls, held_text(tool, user, held, limit, borrow_id))
        text.tool, text.user, text.held, text.limit, text.borrow_id = tool, user, held, limit, borrow_id
        return text

    def __reduce__(self) -> tuple[type[HeldText], tuple[str, str, float, float, str]]:
        return HeldText, (self.tool, self.user, self.held, self.limit, self.borrow_id)

    def said_as(self, user: str | None, borrow_id: str | None) -> str:
        """Return the text with `user` (None: "a user") and `borrow_id` in place of the real ones."""
        return held_text(self.tool, user, self.held, self.limit, borrow_id)


def held_text(tool: str, user: str | None, held: float, limit: float, borrow_id: str | None) -> str:
    """Return what a held_longer_than alert says; a user not to be named is "a user"."""
    who = "a user" if user is None else user
    return f"{tool}: {who} has held a license for {held / 3600:.1f} h (limit {limit / 3600:g} h; {borrow_id})"


def down_text(kind: str, name: str, error_kind: str | None) -> str:
    """Return what a source_down alert says: the source and its error's kind, never the error's own words.

    Its recipients are no signed-in readers, and a poll's last output line may be a checkout line (user, client host).
    """
    return f"{kind} {name} is down" + (f": {error_kind}" if error_kind else "")


def down_said(message: str, name: str | None, named: bool) -> str:
    """Return a source_down alert's message as said again to a reader, from what down_text makes of it only.

    `named` readers may see every source's name; others see a license server's PORT@HOST but no log's path. Of the
    error, only one of our kinds is said: a message stored by an older release may quote a poll's output after it.
    """
    kind = message.partition(" ")[0]  # kinds are single words
    head = f"{kind} {name} is down"
    if name is None or not kind.isalnum() or not message.startswith(head):
        return "a source is down"
    rest = message[len(head) :]
    error = rest[2:].partition(": ")[0] if rest.startswith(": ") else None  # the kind, without words that follow it
    error = error if error and is_error_kind(error) else None
    if named or is_server_name(name):
        return down_text(kind, name, error)
    return f"a {kind} source is down" + (f": {error}" if error else "")


@dataclass(frozen=True)
class Observation:
    """A condition that holds now: its alert's key, rule and subject, value and threshold, and what to say."""

    key: str
    rule: Rule
    subject: str | None  # the tool, the source, or None
    value: float
    threshold: float
    text: str  # one line: what holds, for the notification and /alerts (a HeldText keeps the names it holds apart)
    since: float | None = None  # when it began to hold, where the facts know (a source's down_since)
    tool: str | None = None  # the tool the dashboard link opens, if any


@dataclass
class Facts:
    """Everything a tick's evaluation reads."""

    now: float
    tools: Sequence[Mapping[str, Any]]  # the pool's status entries (tick.tools)
    persisted: bool
    denials: DenialWindow
    checkouts: OpenCheckouts
    overage: OverageLedger | None
    sources: Callable[[], list[dict[str, Any]]]  # the down sources' GET /sources entries, asked only when a rule needs them


def _pct(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def evaluate(rules: Iterable[Rule], facts: Facts) -> list[Observation]:
    """Return an Observation for every alert whose condition holds now."""
    # The down sources are asked for once per evaluation, however many source_down rules read them.
    facts = dataclasses.replace(facts, sources=functools.cache(facts.sources))
    return [observation for rule in rules for observation in _CONDITIONS[rule.kind](rule, facts)]


def _in_use_percent(rule: Rule, facts: Facts) -> Iterator[Observation]:
    above = rule.params["above"]
    for entry in facts.tools:
        total, tool = entry["total"], entry["tool"]
        if not total or not rule.watches(tool):
            continue
        percent = 100.0 * entry["borrowed"] / total
        if percent >= above:
            text = f"{tool}: {entry['borrowed']} of {total} licenses in use ({_pct(percent)} %), at or above {_pct(above)} %"
            yield Observation(f"{rule.name}|{tool}", rule, tool, percent, above, text, tool=tool)


def _denials(rule: Rule, facts: Facts) -> Iterator[Observation]:
    within, count = rule.params["within_seconds"], rule.params["count"]
    for tool, seen in facts.denials.counts_since(facts.now - within, facts.now).items():
        if seen >= count and rule.watches(tool):
            text = f"{tool}: {seen} denials in the last {within:g} s (alert at {count:g})"
            yield Observation(f"{rule.name}|{tool}", rule, tool, seen, count, text, tool=tool)


def _held_longer_than(rule: Rule, facts: Facts) -> Iterator[Observation]:
    limit = rule.params["seconds"]
    for borrowed_at, borrow_id, tool, user in facts.checkouts.started_before(facts.now - limit):
        if rule.watches(tool):
            held = facts.now - borrowed_at
            text = HeldText(tool, user, held, limit, borrow_id)
            yield Observation(f"{rule.name}|{borrow_id}", rule, tool, held, limit, text, tool=tool)


def _overage_cost(rule: Rule, facts: Facts) -> Iterator[Observation]:
    if facts.overage is None:
        return
    above, period = rule.params["above"], rule.params["period"]
    counts = facts.overage.counts(period, facts.now)
    for entry in facts.tools:
        tool = entry["tool"]
        price = entry.get("overage_price_per_license")
        if not price or not counts.get(tool) or not rule.watches(tool):
            continue
        cost = counts[tool] * price
        if cost > above:
            text = f"{tool}: overage cost this {period} {cost:,.2f} ({counts[tool]} overage borrows), above {above:,.2f}"
            yield Observation(f"{rule.name}|{tool}", rule, tool, cost, above, text, tool=tool)


def _source_down(rule: Rule, facts: Facts) -> Iterator[Observation]:
    for source in facts.sources():
        if source["state"] != "down":
            continue
        since = parse_iso(source["down_since"]) if source.get("down_since") else None
        down_for = facts.now - since if since is not None else 0.0
        name = source["name"]
        text = down_text(source["kind"], name, (source.get("error") or {}).get("kind"))
        yield Observation(f"{rule.name}|{name}", rule, name, down_for, rule.for_seconds, text, since=since)


def _expires_within(rule: Rule, facts: Facts) -> Iterator[Observation]:
    days = rule.params["days"]
    today = datetime.datetime.fromtimestamp(facts.now, datetime.UTC).date()
    for entry in facts.tools:
        expiry, tool = entry.get("expiry"), entry["tool"]
        if not expiry or expiry == "permanent" or not rule.watches(tool):
            continue
        left = (datetime.date.fromisoformat(expiry) - today).days
        if left <= days:
            when = "expired" if left < 0 else f"expires in {left} days"
            text = f"{tool}: the license {when} ({expiry}; alert at {days:g} days)"
            yield Observation(f"{rule.name}|{tool}", rule, tool, float(left), days, text, tool=tool)


def _not_persisting(rule: Rule, facts: Facts) -> Iterator[Observation]:
    if not facts.persisted:
        text = "writes to the database are failing: new events are kept in memory only"
        yield Observation(rule.name, rule, None, 1.0, 0.0, text)


# Each kind's condition: the observations of one rule of that kind at one tick.
_CONDITIONS: dict[str, Callable[[Rule, Facts], Iterator[Observation]]] = {
    IN_USE_PERCENT: _in_use_percent,
    DENIALS: _denials,
    HELD_LONGER_THAN: _held_longer_than,
    OVERAGE_COST: _overage_cost,
    SOURCE_DOWN: _source_down,
    EXPIRES_WITHIN: _expires_within,
    NOT_PERSISTING: _not_persisting,
}
