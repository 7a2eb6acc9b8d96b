"""A real HTTP client of /realtime/stream for tests and benchmarks: blocks and messages with their arrival times."""

import json
import time
from collections.abc import Mapping
from typing import Any

import requests


class SseClient:
    """A real HTTP client on a stream: yields blocks and messages with their arrival times."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> None:
        self.response = requests.get(url, headers=headers or {}, stream=True, timeout=(5, timeout))
        self._chunks = self.response.iter_content(chunk_size=None)
        self._pending = b""
        self.raw_start: bytes | None = None

    def next_block(self) -> bytes:
        """Return the next block of lines (the text between blank lines)."""
        while b"\n\n" not in self._pending:
            chunk = next(self._chunks)
            if self.raw_start is None:
                self.raw_start = chunk
            self._pending += chunk
        block, self._pending = self._pending.split(b"\n\n", 1)
        return block

    def next_message(self, parse: bool = True) -> dict[str, Any]:
        """Return the next message as {"id", "data", "at"}, skipping retry lines and comments."""
        while True:
            fields: dict[str, bytes] = {}
            for line in self.next_block().split(b"\n"):
                if line.startswith(b":"):
                    continue
                name, _, value = line.partition(b":")
                fields[name.decode()] = value[1:] if value.startswith(b" ") else value
            if "data" in fields:
                data = json.loads(fields["data"]) if parse else None
                return {"id": int(fields["id"]), "data": data, "at": time.monotonic()}

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> "SseClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
