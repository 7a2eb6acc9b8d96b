"""Which chart series a tool name is counted in, so names outside the inventory cannot grow memory without bound."""

import threading
from collections.abc import Iterable

OTHER_UNKNOWN_TOOLS = "(other unknown tools)"


class SeriesNames:
    """Maps a tool name to its series: its own for inventory tools and the first unknown names, else one shared series."""

    # The first `max_unknown_tools` distinct names outside the inventory are admitted; every later one is folded
    # into OTHER_UNKNOWN_TOOLS. A name's series never changes for the life of the object (admitted stays admitted,
    # folded stays folded), so the buffer can undo an evicted event in the bin it was added to. Only the inventory
    # and the admitted names are remembered: the admitted count only grows, so once it is full a name that is not
    # remembered is folded, and a flood of distinct names costs nothing here.

    def __init__(self, inventory: Iterable[str], max_unknown_tools: int, admitted: Iterable[str] = ()) -> None:
        if max_unknown_tools < 0:
            raise ValueError("max_unknown_tools must not be negative")
        self.max_unknown_tools = max_unknown_tools
        # name -> series for every name with a series of its own; read without the lock, written under it.
        self._series = {name: name for name in inventory}
        self._inventory = frozenset(self._series)
        self._admitted: list[str] = []
        self._lock = threading.Lock()
        # Names admitted by an earlier run (its stored history) come first, so a restart keeps their series.
        for name in admitted:
            self(name)

    def __call__(self, name: str) -> str:
        """Return the series `name` is counted in, admitting it when there is room."""
        series = self._series.get(name)
        if series is not None:
            return series
        return self._admit(name)

    def _admit(self, name: str) -> str:
        # The admitted count never goes down: once full, a new name is folded without taking the lock.
        if len(self._admitted) >= self.max_unknown_tools:
            return OTHER_UNKNOWN_TOOLS
        with self._lock:
            series = self._series.get(name)  # another thread may have admitted it meanwhile
            if series is not None:
                return series
            # The shared series' own name never gets a slot: its series would be ambiguous.
            if len(self._admitted) >= self.max_unknown_tools or name == OTHER_UNKNOWN_TOOLS:
                return OTHER_UNKNOWN_TOOLS
            self._admitted.append(name)
            self._series[name] = name
            return name

    @property
    def admitted(self) -> list[str]:
        """The names outside the inventory that have a series of their own, in the order they were admitted."""
        with self._lock:
            return list(self._admitted)

    def in_inventory(self, name: str) -> bool:
        """Say whether `name` is one of the inventory's tools."""
        return name in self._inventory
