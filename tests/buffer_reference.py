"""A brute-force model of the buffer contract: it keeps plain lists and rescans them on every read."""

import math
import time


def _iso_minute(minute):
    return time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute * 60))


OTHER_UNKNOWN_TOOLS = "(other unknown tools)"


class ReferenceBuffer:
    """Straight from the issue's words, with no incremental state to get wrong.

    With `max_unknown_tools`, minute aggregates fold tool names the way the issue says: names in `inventory` and
    the first `max_unknown_tools` other names (in the order their first event was kept) are their own series,
    every later name counts under OTHER_UNKNOWN_TOOLS. Raw events keep the exact name.
    """

    def __init__(self, retention_seconds, max_borrows, max_returns, max_failures, clock, inventory=(), max_unknown_tools=None):
        self.retention = retention_seconds
        self.caps = {"borrow": max_borrows, "return": max_returns, "failure": max_failures}
        self.clock = clock
        self.events = {"borrow": [], "return": [], "failure": []}
        self.seq = 0
        self.inventory = set(inventory)
        self.max_unknown_tools = max_unknown_tools
        self.decided = {}  # tool name -> series, decided when its first event is kept, never changed
        self.admitted = []

    def series(self, tool):
        """Return the series `tool` was given (the name itself when nothing folds)."""
        if tool is None or self.max_unknown_tools is None:
            return tool
        return self.decided[tool]

    def _decide(self, tool):
        if tool is None or self.max_unknown_tools is None or tool in self.decided:
            return
        if tool in self.inventory:
            self.decided[tool] = tool
        elif tool != OTHER_UNKNOWN_TOOLS and len(self.admitted) < self.max_unknown_tools:
            self.admitted.append(tool)
            self.decided[tool] = tool
        else:
            self.decided[tool] = OTHER_UNKNOWN_TOOLS

    def _retained(self, kind):
        cutoff = self.clock() - self.retention
        self.events[kind] = [e for e in self.events[kind] if e["ts"] >= cutoff]
        return self.events[kind]

    def _store(self, kind, ts, **fields):
        now = self.clock()
        if ts > now + 5:
            raise ValueError("future")
        if ts < now - self.retention:
            return False
        self._decide(fields["tool"])
        self.seq += 1
        self._retained(kind).append(dict(ts=ts, seq=self.seq, **fields))
        events = self.events[kind]
        while len(events) > self.caps[kind]:
            oldest = min(events, key=lambda e: (e["ts"], e["seq"]))
            events.remove(oldest)
        return True

    def add_borrow(self, tool, user, is_overage, borrow_id, timestamp):
        # The buffer's add_borrow knows no host or version; the source follows from the id (events.source_of).
        source = borrow_id.split("|", 1)[0] if borrow_id.startswith(("flexlm|", "lmstat|", "rlmstat|")) else "pool"
        return self._store(
            "borrow", timestamp, tool=tool, user=user, is_overage=is_overage, id=borrow_id, host=None, version=None, source=source
        )

    def add_return(self, borrow_id, user=None, timestamp=None, tool=None):
        match = [e for e in self._retained("borrow") if e["id"] == borrow_id]
        if match:
            tool = match[-1]["tool"] if tool is None else tool
            user = match[-1]["user"] if user is None else user
        return self._store("return", timestamp, id=borrow_id, user=user, tool=tool)

    def add_failure(self, tool, user, reason, timestamp):
        return self._store("failure", timestamp, tool=tool, user=user, reason=reason)

    def sorted_events(self, kind):
        return sorted(self._retained(kind), key=lambda e: (e["ts"], e["seq"]))

    def recent(self, seconds, series=None):
        """Return the events of the last `seconds` by kind; with `series`, only those of tools in that series."""
        cutoff = self.clock() - seconds
        return {
            kind + "s": [
                e for e in self.sorted_events(kind) if e["ts"] >= cutoff and (series is None or self.series(e["tool"]) == series)
            ]
            for kind in self.events
        }

    def stats(self):
        counts = {kind: len(self._retained(kind)) for kind in self.events}
        all_ts = [e["ts"] for kind in self.events for e in self.events[kind]]
        return {
            "total_events": sum(counts.values()),
            "borrow_count": counts["borrow"],
            "return_count": counts["return"],
            "failure_count": counts["failure"],
            "retention_hours": self.retention / 3600,
            "oldest_ts": min(all_ts) if all_ts else None,
        }

    def aggregate(self, window_seconds):
        cutoff = self.clock() - min(window_seconds, self.retention)
        per_tool = {}
        for e in self._retained("borrow"):
            minute = math.floor(e["ts"] / 60)
            if minute * 60 < cutoff:
                continue
            per_tool.setdefault(self.series(e["tool"]), {}).setdefault(minute, []).append(e)
        out = {}
        for tool in sorted(per_tool):
            out[tool] = [
                {
                    "timestamp": _iso_minute(minute),
                    "count": len(events),
                    "users": sorted({e["user"] for e in events}),
                    "overage_count": sum(1 for e in events if e["is_overage"]),
                }
                for minute, events in sorted(per_tool[tool].items())
            ]
        return out

    def flows(self, window_seconds):
        """Per tool and minute: borrows, overage, returns and failures by reason."""
        cutoff = self.clock() - min(window_seconds, self.retention)
        table = {}
        for kind in self.events:
            for e in self._retained(kind):
                minute = math.floor(e["ts"] / 60)
                if e["tool"] is None or minute * 60 < cutoff:
                    continue
                row = table.setdefault(self.series(e["tool"]), {}).setdefault(minute, [0, 0, 0, {}])
                if kind == "borrow":
                    row[0] += 1
                    row[1] += bool(e["is_overage"])
                elif kind == "return":
                    row[2] += 1
                else:
                    row[3][e["reason"]] = row[3].get(e["reason"], 0) + 1
        return {tool: [(m * 60, *row) for m, row in sorted(rows.items())] for tool, rows in table.items()}
