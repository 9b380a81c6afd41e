"""Rate-limit log lines for events that repeat, such as refused calls.

Pure: callers pass the time in. The first event of a key (for example
``client=alice reason=handle``) is logged in full; later ones within
``interval_s`` are only counted. Once the interval since that first event
has passed, :meth:`RepeatCounter.take_due` returns the count for one
summary line, and the next event of the key is logged in full again.
"""

from __future__ import annotations

import dataclasses

__all__ = ["RepeatCounter", "RepeatSummary"]


@dataclasses.dataclass(frozen=True, slots=True)
class RepeatSummary:
    """``count`` events of ``key`` counted but not logged over ``seconds``."""

    key: str
    count: int
    seconds: float


class RepeatCounter:
    """Per-key windows of ``interval_s`` seconds; see the module docstring."""

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"repeat log interval {interval_s} s must be > 0")
        self.interval_s = interval_s
        self._started: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def note(self, key: str, now: float) -> bool:
        """Record one event; return True if it is the one to log in full."""
        if key not in self._started:
            self._started[key] = now
            self._counts[key] = 0
            return True
        self._counts[key] += 1
        return False

    def take_due(self, now: float) -> list[RepeatSummary]:
        """Close the windows at least ``interval_s`` old and return their counts.

        Windows with nothing counted end without a summary.
        """
        due = [
            k for k, start in self._started.items() if now - start >= self.interval_s
        ]
        return self._close(due, now)

    def take_all(self, now: float) -> list[RepeatSummary]:
        """Close every window (on shutdown) and return the counts."""
        return self._close(list(self._started), now)

    def _close(self, keys: list[str], now: float) -> list[RepeatSummary]:
        summaries = []
        for key in keys:
            started = self._started.pop(key)
            count = self._counts.pop(key)
            if count:
                summaries.append(RepeatSummary(key, count, now - started))
        return summaries
