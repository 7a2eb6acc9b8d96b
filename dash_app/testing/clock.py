"""The fake clock that tests and benchmarks hand to the buffer, the pool, the history and the page updater."""


class FakeClock:
    """A clock that stands still until moved: call it for the time, set `now` or call advance() to move it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock `seconds` forward (back, if negative) and return the new time."""
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock({self.now!r})"
