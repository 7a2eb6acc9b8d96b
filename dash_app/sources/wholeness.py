"""Which features of a poll are whole enough to diff: a cut-off or inconsistent section keeps its last-known checkouts.

A feature's checkouts are diffed only when its section is present and its lines add up to the server's in-use figure
(Feature.consistent). A section that is missing, or does not add up, keeps what the last good poll saw, and the source
is degraded with the reason; its vendor daemon reported down makes it down, never returned. A gap that stays exactly
the same over `confirm` polls in a row is taken as the server's own count and applied as listed (the source stays
degraded, saying so), so no feature is frozen for good and no cut-off answer returns anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dash_app.sources.status import Feature, StatusReport

UP, DEGRADED, DOWN = "up", "degraded", "down"  # a feature's state in GET /sources


@dataclass
class Verdict:
    """What to do with one poll: the features to diff, the reasons the source is not whole, each feature's state."""

    applied: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)  # keep their last-known checkouts
    states: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # feature -> (state, reason)
    reasons: list[str] = field(default_factory=list)  # why the source is degraded, one per feature or server

    @property
    def down(self) -> bool:
        """True when the poll had features and none of them could be used."""
        return bool(self.kept) and not self.applied


class Wholeness:
    """One server's judge of its polls: it remembers each feature's gap, to take one that lasts as the server's count."""

    def __init__(self, confirm: int) -> None:
        self.confirm = confirm
        self._gaps: dict[str, tuple[tuple[object, ...], int]] = {}  # feature -> (its gap, polls in a row showing it)

    def judge(self, report: StatusReport, known: Mapping[str, str | None], held: Iterable[str]) -> Verdict:
        """Return the verdict on `report`, given the features seen before (with their vendors) and those holding checkouts."""
        verdict = Verdict()
        vendors, features = report.vendors, report.features
        # Checkouts under no section with counts (an RLM product with usage lines and no pool): nothing to check them by.
        unchecked = {checkout.feature for checkout in report.checkouts}.difference(features)
        shown = frozenset(features)  # a missing feature is missing "the same way" only from answers showing the same others
        for name in dict.fromkeys([*features, *known, *held, *unchecked]):
            feature = features.get(name)
            vendor = feature.vendor if feature is not None else known.get(name)
            if vendor is not None and vendors.get(vendor) == "down":
                self._keep(verdict, name, DOWN, f"{name}: vendor daemon {vendor} is down")
            elif feature is not None and feature.error is not None:
                self._keep(verdict, name, DOWN, f"{name}: {feature.error}")
            elif feature is not None and feature.consistent or name in unchecked:
                self._apply(verdict, name)
            elif not features:
                # No feature section at all: no count of the server's, however often it comes.
                self._keep(verdict, name, DEGRADED, f"{name}: not in the answer")
            else:
                self._gap(verdict, name, feature, shown)
        verdict.reasons += [f"{member}: cannot be reached" for member in report.unreachable]
        return verdict

    def _apply(self, verdict: Verdict, name: str) -> None:
        self._gaps.pop(name, None)
        verdict.applied.add(name)
        verdict.states[name] = (UP, None)

    def _keep(self, verdict: Verdict, name: str, state: str, reason: str) -> None:
        self._gaps.pop(name, None)  # a daemon down, or no section at all, is no count of the server's: never confirmed
        verdict.kept.add(name)
        verdict.states[name] = (state, reason)
        verdict.reasons.append(reason)

    def _gap(self, verdict: Verdict, name: str, feature: Feature | None, shown: frozenset[str]) -> None:
        """A section missing, or one whose lines do not add up: kept, unless the very same gap has lasted `confirm` polls."""
        if feature is None:
            gap: tuple[object, ...] = ("absent", shown)
            reason = f"{name}: not in the answer"
        else:
            gap = (feature.in_use, feature.listed)
            reason = f"{name}: {feature.in_use} in use, {feature.listed} listed"
        seen, times = self._gaps.get(name, (gap, 0))
        times = times + 1 if seen == gap else 1
        self._gaps[name] = (gap, times)
        verdict.states[name] = (DEGRADED, reason)
        verdict.reasons.append(reason)
        if times >= self.confirm:
            verdict.applied.add(name)  # the server's own count: applied as listed
        else:
            verdict.kept.add(name)
