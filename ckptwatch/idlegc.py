"""Garbage collection between looks, not in the middle of one.

CPython collects its youngest generation whenever enough container objects
were allocated, wherever that happens: here one commit in ten or so paid a
collection (0.1-0.3 ms, a second-generation one 1.6 ms) between its
notification and its listener's start. :class:`IdleCollector` raises the
automatic threshold out of the way (it stays as a safety net, so memory stays
bounded whatever the other threads allocate) and the engine calls
:meth:`~IdleCollector.collect` once it has been quiet for a moment, where a
collection delays nothing (not a look, nor the start of the listeners a look
just started): it runs the generations that the normal thresholds would have
run by then. What was alive at start-up (imports, listeners, the journal) is
frozen out of later collections.
"""

from __future__ import annotations

import gc
from types import TracebackType

__all__ = ["IdleCollector", "SAFETY_NET"]

#: Allocations (net, of container objects) after which CPython still collects on its own.
SAFETY_NET = 50_000


class IdleCollector:
    """A context: automatic collection deferred to :meth:`collect` while inside it."""

    def __init__(self, safety_net: int = SAFETY_NET) -> None:
        self._saved = gc.get_threshold()
        self._safety_net = safety_net
        self.collections = 0

    def __enter__(self) -> IdleCollector:
        self._saved = gc.get_threshold()
        gc.freeze()
        if self._saved[0] > 0:  # 0: collection is off altogether; leave it so
            gc.set_threshold(max(self._safety_net, self._saved[0]), *self._saved[1:])
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        gc.set_threshold(*self._saved)
        gc.unfreeze()

    def due(self) -> bool:
        """Whether the normal thresholds would have collected by now."""
        return gc.isenabled() and 0 < self._saved[0] < gc.get_count()[0]

    def collect(self) -> int | None:
        """Collect what the normal thresholds would have by now; the generation collected, or None."""
        if not self.due():
            return None
        counts = gc.get_count()
        # As CPython picks: the oldest generation whose count is past its own threshold.
        generation = max(g for g in range(len(counts)) if counts[g] > self._saved[g] or g == 0)
        gc.collect(generation)
        self.collections += 1
        return generation
