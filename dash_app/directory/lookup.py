"""The seam between the directory service and a company directory: what a lookup returns, and how it fails."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dash_app.directory.mapping import GroupMapping
from dash_app.sources.errors import SourceError


class DirectoryError(Exception):
    """The directory could not be asked; `error` says how, in words that name no password."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(error.text)
        self.error = error


@dataclass(frozen=True)
class Lookup:
    """What one refresh found: the users' memberships, how many were asked about, and whose entry named no usable group."""

    mapping: GroupMapping
    asked: int
    unusable: int


class Directory(Protocol):
    """A company directory the users' groups are looked up in (LdapDirectory)."""

    @property
    def name(self) -> str:
        """The directory as GET /sources names it."""

    def look_up(self, users: Iterable[str]) -> Lookup:
        """Return the memberships of those `users` the directory knows; DirectoryError when it cannot be asked."""
