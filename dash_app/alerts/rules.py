"""The alert rules file (`--alerts FILE`): read, checked whole at start, and turned into typed rules."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dash_app.config import ConfigError
from dash_app.jsonfile import read_json

IN_USE_PERCENT, DENIALS, HELD_LONGER_THAN = "in_use_percent", "denials", "held_longer_than"
OVERAGE_COST, SOURCE_DOWN, EXPIRES_WITHIN, NOT_PERSISTING = "overage_cost", "source_down", "expires_within", "not_persisting"
PERIODS = ("day", "week", "month")
DEFAULT_REPEAT_SECONDS = 3600.0
# How long one try of delivering a notification to one channel may take in all (connecting, sending, the answer).
DEFAULT_DELIVERY_DEADLINE_SECONDS = 15.0

# Each kind's fields: (name, required, check); `tool` and `for_seconds` are handled for every kind that has them.
_NUMBER, _COUNT, _PERIOD = "number", "count", "period"
KINDS: dict[str, dict[str, tuple[bool, str]]] = {
    IN_USE_PERCENT: {"above": (True, _NUMBER), "for_seconds": (False, _NUMBER)},
    DENIALS: {"count": (True, _COUNT), "within_seconds": (True, _NUMBER)},
    HELD_LONGER_THAN: {"seconds": (True, _NUMBER)},
    OVERAGE_COST: {"above": (True, _NUMBER), "period": (True, _PERIOD)},
    SOURCE_DOWN: {"for_seconds": (False, _NUMBER)},
    EXPIRES_WITHIN: {"days": (True, _NUMBER)},
    NOT_PERSISTING: {"for_seconds": (False, _NUMBER)},
}
# Kinds that are about tools (and so take `tool`: a name or "*").
TOOL_KINDS = (IN_USE_PERCENT, DENIALS, HELD_LONGER_THAN, OVERAGE_COST, EXPIRES_WITHIN)
# Kinds whose messages name only tools, counts and dates: every reader may read them as they are.
PLAIN_KINDS = frozenset((IN_USE_PERCENT, DENIALS, OVERAGE_COST, EXPIRES_WITHIN, NOT_PERSISTING))


class AlertRulesError(ConfigError):
    """The rules file cannot be used; the message is one line naming the file, the rule and the field."""


@dataclass(frozen=True)
class Rule:
    """One rule: its name and kind, the tool it watches ("*" for each tool), its thresholds and its channels."""

    name: str
    kind: str
    tool: str | None  # a name, "*", or None for kinds that are not about tools
    params: Mapping[str, Any]
    notify: tuple[str, ...]  # apprise URLs: the rule's own list, or the file's

    @property
    def for_seconds(self) -> float:
        """How long the condition must hold before the alert fires, and be false before it resolves."""
        return float(self.params.get("for_seconds", 0.0))

    def watches(self, tool: str) -> bool:
        """Say whether this rule applies to `tool`."""
        return self.tool == "*" or self.tool == tool


@dataclass(frozen=True)
class AlertConfig:
    """The whole file: the rules, how often a firing alert is notified again, and how long a delivery try may take."""

    rules: tuple[Rule, ...] = ()
    repeat_seconds: float = DEFAULT_REPEAT_SECONDS
    notify: tuple[str, ...] = field(default_factory=tuple)
    delivery_deadline_seconds: float = DEFAULT_DELIVERY_DEADLINE_SECONDS


def _number(where: str, name: str, value: Any, *, whole: bool = False, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise AlertRulesError(f"{where}: '{name}' must be a number, {'more than' if positive else 'at least'} 0")
    if positive and value == 0:
        raise AlertRulesError(f"{where}: '{name}' must be a number, more than 0")
    if whole and value != int(value):
        raise AlertRulesError(f"{where}: '{name}' must be a whole number")
    return float(value)


def url_list_problem(
    value: Any, check_url: Callable[[str], str | None], field: str, label: str, at_least_one: bool = False
) -> str | None:
    """Return what is wrong with a rules file's list of apprise URLs in `field`, or None; a URL is named by its place."""
    if not isinstance(value, list) or (at_least_one and not value) or not all(isinstance(url, str) for url in value):
        return f"'{field}' must be a list of apprise URLs" + (", at least one" if at_least_one else "")
    for n, url in enumerate(value):
        problem = check_url(url)
        if problem is not None:
            return f"{label} URL {n + 1} cannot be used: {problem}"  # the place, not the URL: it may hold a password
    return None


def _urls(where: str, value: Any, check_url: Callable[[str], str | None]) -> tuple[str, ...]:
    problem = url_list_problem(value, check_url, "notify", "notify")
    if problem is not None:
        raise AlertRulesError(f"{where}: {problem}")
    return tuple(value)


def parse_rules(data: Any, check_url: Callable[[str], str | None], where: str = "alerts") -> AlertConfig:
    """Return the AlertConfig of a parsed rules document, or raise AlertRulesError naming what is wrong."""
    if not isinstance(data, dict):
        raise AlertRulesError(f"{where}: expected a JSON object with 'rules'")
    unknown = set(data) - {"notify", "repeat_seconds", "delivery_deadline_seconds", "rules"}
    if unknown:
        raise AlertRulesError(f"{where}: unknown key '{sorted(unknown)[0]}'")
    notify = _urls(where, data.get("notify", []), check_url)
    repeat = _number(where, "repeat_seconds", data.get("repeat_seconds", DEFAULT_REPEAT_SECONDS))
    if repeat <= 0:
        raise AlertRulesError(f"{where}: 'repeat_seconds' must be more than 0")
    deadline = _number(
        where,
        "delivery_deadline_seconds",
        data.get("delivery_deadline_seconds", DEFAULT_DELIVERY_DEADLINE_SECONDS),
        positive=True,
    )
    entries = data.get("rules")
    if not isinstance(entries, list):
        raise AlertRulesError(f"{where}: 'rules' must be a list")
    rules: list[Rule] = []
    names: set[str] = set()
    for n, entry in enumerate(entries):
        rule = _rule(f"{where}: rule {n + 1}", entry, notify, check_url)
        if rule.name in names:
            raise AlertRulesError(f"{where}: rule {n + 1}: the name '{rule.name}' is used twice")
        names.add(rule.name)
        rules.append(rule)
    return AlertConfig(tuple(rules), repeat, notify, deadline)


def _rule(where: str, entry: Any, notify: tuple[str, ...], check_url: Callable[[str], str | None]) -> Rule:
    if not isinstance(entry, dict):
        raise AlertRulesError(f"{where}: expected an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or not name.isprintable() or "|" in name:
        raise AlertRulesError(f"{where}: 'name' must be a short printable text without '|'")
    where = f"{where} ('{name}')"
    kind = entry.get("kind")
    if kind not in KINDS:
        raise AlertRulesError(f"{where}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    fields = KINDS[kind]
    allowed = {"name", "kind", "notify", *fields} | ({"tool"} if kind in TOOL_KINDS else set())
    unknown = set(entry) - allowed
    if unknown:
        raise AlertRulesError(f"{where}: unknown field '{sorted(unknown)[0]}' for kind {kind}")
    params: dict[str, Any] = {}
    for field_name, (required, check) in fields.items():
        if field_name not in entry:
            if required:
                raise AlertRulesError(f"{where}: missing field '{field_name}'")
            continue
        value = entry[field_name]
        if check == _PERIOD:
            if value not in PERIODS:
                raise AlertRulesError(f"{where}: 'period' must be one of {', '.join(PERIODS)}")
            params[field_name] = value
        else:
            params[field_name] = _number(where, field_name, value, whole=check == _COUNT)
    tool = None
    if kind in TOOL_KINDS:
        tool = entry.get("tool", "*")
        if not isinstance(tool, str) or not tool:
            raise AlertRulesError(f"{where}: 'tool' must be a tool name or \"*\"")
    own = _urls(where, entry["notify"], check_url) if "notify" in entry else notify
    return Rule(name, kind, tool, params, own)


def load_rules(path: str | None, check_url: Callable[[str], str | None]) -> AlertConfig:
    """Read and check the rules file at `path` (None: no rules, no alerts)."""
    if not path:
        return AlertConfig()
    data = read_json(path, f"alerts {path}", AlertRulesError)
    return parse_rules(data, check_url, f"alerts {path}")
