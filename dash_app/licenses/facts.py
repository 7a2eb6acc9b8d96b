"""What polled license servers say of each tool, server by server: licenses issued, expiry, reserved and queued."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

PERMANENT = "permanent"


class ServerFacts:
    """Each server's last word per counted tool, keyed "tool|server" (the pool's lock guards it)."""

    def __init__(self) -> None:
        self.issued: dict[str, dict[str, int]] = {}
        self.expiry: dict[str, dict[str, str]] = {}
        # [reserved, queued]; a server with neither has no entry, so a tool nobody reserves costs nothing here.
        self.queues: dict[str, dict[str, list[int]]] = {}

    def set_issued(self, key: str, source: str, issued: int) -> None:
        """Note that `source` ("tool|server") issues `issued` licenses of the tool counted as `key`."""
        self.issued.setdefault(key, {})[source] = issued

    def set_expiry(self, key: str, source: str, expiry: str) -> None:
        """Note when `source`'s license of the tool counted as `key` expires ("2026-12-31" or "permanent")."""
        self.expiry.setdefault(key, {})[source] = expiry

    def set_queue(self, key: str, source: str, reserved: int, queued: int) -> None:
        """Note the licenses `source` reserves and the licenses its users wait for; zeros drop what it said before."""
        if reserved or queued:
            self.queues.setdefault(key, {})[source] = [reserved, queued]
            return
        said = self.queues.get(key)
        if said is not None and said.pop(source, None) is not None and not said:
            del self.queues[key]

    def keep_only(self, server: str, sources: Collection[str]) -> None:
        """Drop what `server` said of any tool but `sources` ("tool|server"): a feature its last poll no longer lists."""
        suffix = f"|{server}"
        facts: tuple[dict[str, dict[str, Any]], ...] = (self.issued, self.expiry, self.queues)
        for by_tool in facts:
            for key, said in list(by_tool.items()):
                for source in [s for s in said if s.endswith(suffix) and s not in sources]:
                    del said[source]
                if not said:
                    del by_tool[key]

    def total(self, key: str) -> int | None:
        """Return the licenses the servers issue of `key`, summed, or None when no server said."""
        counts = self.issued.get(key)
        return sum(counts.values()) if counts is not None else None

    def expiry_of(self, key: str) -> str | None:
        """Return the earliest expiry any server gives `key` ("permanent" only when none gives a date), or None."""
        dates = self.expiry.get(key)
        if not dates:
            return None
        # ISO dates sort as text.
        return min(dates.values(), key=lambda expiry: (expiry == PERMANENT, expiry))

    def queue(self, key: str) -> tuple[int, int]:
        """Return (reserved, queued) of `key`, summed over its servers."""
        said = self.queues.get(key)
        if not said:
            return 0, 0
        return sum(r for r, _ in said.values()), sum(q for _, q in said.values())

    def tools(self) -> list[str]:
        """Return every counted tool some server said something of."""
        return list(dict.fromkeys([*self.issued, *self.expiry, *self.queues]))

    def as_dict(self) -> dict[str, Any]:
        """Return the facts as JSON takes them (load() reads them back)."""
        return {
            "issued": {k: dict(v) for k, v in self.issued.items()},
            "expiry": {k: dict(v) for k, v in self.expiry.items()},
            "queues": {k: {s: list(v) for s, v in said.items()} for k, said in self.queues.items()},
        }

    def load(self, doc: Mapping[str, Any]) -> None:
        """Replace the facts with those of an as_dict() document (a missing part is empty)."""
        self.issued = {k: dict(v) for k, v in doc.get("issued", {}).items()}
        self.expiry = {k: dict(v) for k, v in doc.get("expiry", {}).items()}
        self.queues = {k: {s: [int(r), int(q)] for s, (r, q) in said.items()} for k, said in doc.get("queues", {}).items()}
