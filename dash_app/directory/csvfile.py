"""The --user-groups file: a CSV of `user,group[,cost_centre[,from]]` rows, read into a GroupMapping.

`from` is an ISO date (00:00 UTC that day) or an ISO date and time that names its zone; a row without one holds from
the start of the history. A user is in one group at a time: two rows of one user with the same `from` (or both
without one) are an error, as is a name the project's name rule refuses. Every error is one line naming the line.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime

from dash_app.config.parsers import ConfigError
from dash_app.directory.mapping import ALWAYS, UNUSED, GroupMapping, Membership
from dash_app.events import name_problem
from dash_app.timeutil import instant_problem

COLUMNS = ("user", "group", "cost_centre", "from")
REQUIRED = 2  # user and group; cost_centre and from may be left out of the header, or left empty in a row
HEADER_TEXT = "user,group[,cost_centre[,from]]"


class GroupsFileError(ConfigError):
    """The --user-groups file cannot be used; the message is one line naming the file and, where one is to blame, its line."""


def parse_from(text: str) -> float:
    """Return a `from` value as epoch seconds: a date is 00:00 UTC that day; a date and time must name its zone."""
    if not text:
        return ALWAYS
    if "T" not in text and " " not in text:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected an ISO date such as 2026-11-01, or a date and time with its zone, got {text!r}") from None
        seconds = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected an ISO date and time such as 2026-11-01T08:00:00+01:00, got {text!r}") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{text!r} names no time zone (add Z or an offset such as +01:00)")
        seconds = moment.timestamp()
    problem = instant_problem(seconds)
    if problem is not None:
        raise ValueError(f"{text!r}: {problem}")
    return seconds


def _header(row: list[str]) -> int:
    """Return how many columns a header row names; ValueError when it is not user,group[,cost_centre[,from]]."""
    names = tuple(cell.strip().lower() for cell in row)
    if len(names) < REQUIRED or names != COLUMNS[: len(names)]:
        raise ValueError(f"expected the header {HEADER_TEXT}, got {','.join(row)!r}")
    return len(names)


def _name(column: str, value: str) -> str:
    """Return `value` when it is an acceptable name for `column`, else raise ValueError saying why."""
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(f"{column}: {problem}")
    if value == UNUSED:
        raise ValueError(f"{column}: {UNUSED} is kept for a tool's cost nobody used")
    return value


def _membership(row: list[str], width: int) -> tuple[str, Membership]:
    """Return one data row's user and membership; ValueError says what is wrong with it."""
    if len(row) > width:
        raise ValueError(f"{len(row)} fields, the header names {width}")
    cells = [cell.strip() for cell in row] + [""] * (width - len(row))
    user = _name("user", cells[0])
    group = _name("group", cells[1])
    cost_centre = _name("cost_centre", cells[2]) if width > 2 and cells[2] else ""
    try:
        since = parse_from(cells[3]) if width > 3 else ALWAYS
    except ValueError as exc:
        raise ValueError(f"from: {exc}") from None
    return user, Membership(since, group, cost_centre)


def parse_groups(text: str, where: str) -> GroupMapping:
    """Return the mapping a --user-groups file's text gives; GroupsFileError names `where` and the line at fault."""
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines, strict=True)
    width = 0
    members: dict[str, list[Membership]] = {}
    first_line: dict[tuple[str, float], int] = {}  # (user, since) -> the line that gave it, to name both in an error
    line = 0
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            if not width:
                width = _header(row)
                continue
            user, membership = _membership(row, width)
            earlier = first_line.setdefault((user, membership.since), line)
            if earlier != line:
                when = "without a from date" if membership.since == ALWAYS else "with the same from"
                raise ValueError(f"user {user!r} is in a group at line {earlier} already {when}: one group at a time")
            members.setdefault(user, []).append(membership)
    except csv.Error as exc:
        raise GroupsFileError(f"{where}: line {reader.line_num}: {exc}") from None
    except ValueError as exc:
        raise GroupsFileError(f"{where}: line {line}: {exc}") from None
    if not width:
        raise GroupsFileError(f"{where}: line 1: expected the header {HEADER_TEXT}, the file is empty")
    return GroupMapping(members)
