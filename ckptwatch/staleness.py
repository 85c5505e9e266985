"""``--stale-after``: when no save has committed for that long (pure: the caller passes the clock).

Training that hangs without crashing saves nothing and exits never; this is
how an operator is told. A spell starts when ``after`` seconds pass with no
commit (counted from the session's start until the first commit), and ends at
the next commit; each spell is told once.
"""

from __future__ import annotations

__all__ = ["Staleness"]


class Staleness:
    __slots__ = ("after", "origin", "stale")

    def __init__(self, after: float | None, now: float) -> None:
        self.after = after
        self.origin = now
        self.stale = False

    def __repr__(self) -> str:
        return f"Staleness(after={self.after!r}, origin={self.origin!r}, stale={self.stale!r})"

    def left(self, now: float) -> float | None:
        """Seconds until the next spell starts (for the main loop's wait); None when none can."""
        if self.after is None or self.stale:
            return None
        return max(0.0, self.origin + self.after - now)

    def check(self, now: float) -> float | None:
        """The seconds since the last commit when a spell starts now, else None."""
        left = self.left(now)
        if left is None or left > 0:
            return None
        self.stale = True
        return now - self.origin

    def committed(self, now: float) -> float | None:
        """A commit: the seconds since the one before when it ends a spell, else None."""
        ended = now - self.origin if self.stale else None
        self.origin = now
        self.stale = False
        return ended
