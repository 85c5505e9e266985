"""Observations in, events out: the one place that decides what is new.

Pure: no I/O, no clock. The engine feeds it every observation (rescans,
duplicates and partial views included) and it keeps the event guarantees of
DESIGN.md:

- ``begin`` first, once; ``end`` last, once, with the last committed step;
- every committed checkpoint gets exactly one ``before_save`` and then one
  ``after_save``; several new in one observation go in step order;
- a save seen starting gets its ``before_save`` then (``observed=True``), a
  save first seen committed gets it just before ``after_save``
  (``observed=False``); a save that never commits gets no ``after_save``.

A checkpoint is known by its identity (layout, path, step, and the mtime and
size of its own completion file), so a rescan of the same save is not new and
a re-save under the same name is.

An observation may be a delta (``Observation.delta``, after notifications):
its ``committed`` holds only the checkpoints of the entries a layout looked at.
That is all the tracker needs (every other one was in an earlier observation),
so an observation costs in proportion to what changed, not to the checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .events import Event
from .layouts.base import Checkpoint, Observation

__all__ = ["LastCommit", "Tracker", "TrackerError"]


class TrackerError(RuntimeError):
    """The tracker was used out of order (a bug in the caller)."""


@dataclass(frozen=True)
class LastCommit:
    """The newest delivered commit, which ``end`` reports."""

    step: int
    path: str
    identity: str
    marker: str | None = None


class Tracker:
    def __init__(
        self,
        delivered: Iterable[str] = (),
        announced: Iterable[tuple[str, int]] = (),
        last: LastCommit | None = None,
        committed: Iterable[tuple[str, int]] = (),
    ) -> None:
        """Start fresh, or from what a journal says an earlier session did.

        ``delivered``: identities whose ``after_save`` was already emitted;
        ``announced``: ``(path, step)`` of saves whose ``before_save`` was
        emitted and that have not committed yet; ``committed``: ``(path,
        step)`` of every delivered commit.
        """
        self._delivered: set[str] = set(delivered)
        self._announced: set[tuple[str, int]] = set(announced)
        self._committed_names: set[tuple[str, int]] = set(committed)
        self.last: LastCommit | None = last
        self._begun = False
        self._ended = False

    def begin(self) -> Event:
        if self._begun:
            raise TrackerError("begin was already emitted")
        self._begun = True
        return Event("begin")

    def observe(self, observation: Observation) -> list[Event]:
        if not self._begun or self._ended:
            raise TrackerError("observe() belongs between begin and end")
        events: list[Event] = []
        new = [c for c in observation.committed if c.identity not in self._delivered]
        for checkpoint in sorted(new, key=lambda c: (c.step, c.path)):
            events.extend(self._commit(checkpoint))
        if not observation.in_progress:
            return events
        committed_keys = {(c.path, c.step) for c in observation.committed}
        for save in sorted(observation.in_progress, key=lambda s: (s.step, s.path)):
            key = (save.path, save.step)
            if key in self._announced or key in committed_keys or key in self._committed_names:
                # A name already committed that looks unfinished again is most
                # often being deleted (rotation removes files one by one); a
                # real re-save gets its before_save when it commits.
                continue
            self._announced.add(key)
            events.append(Event("before_save", save.step, save.path, observed=True))
        return events

    def _commit(self, checkpoint: Checkpoint) -> list[Event]:
        key = (checkpoint.path, checkpoint.step)
        events = []
        if key in self._announced:
            self._announced.discard(key)
        else:
            events.append(
                Event(
                    "before_save",
                    checkpoint.step,
                    checkpoint.path,
                    checkpoint.identity,
                    observed=False,
                    marker=checkpoint.marker,
                )
            )
        events.append(Event("after_save", checkpoint.step, checkpoint.path, checkpoint.identity, marker=checkpoint.marker))
        self._delivered.add(checkpoint.identity)
        self._committed_names.add(key)
        self.last = LastCommit(checkpoint.step, checkpoint.path, checkpoint.identity, checkpoint.marker)
        return events

    def skip(self, checkpoints: list[Checkpoint]) -> None:
        """Take these as handled without events (``--start-from`` on a first start)."""
        for checkpoint in sorted(checkpoints, key=lambda c: (c.step, c.path)):
            self._delivered.add(checkpoint.identity)
            self._committed_names.add((checkpoint.path, checkpoint.step))
            self.last = LastCommit(checkpoint.step, checkpoint.path, checkpoint.identity, checkpoint.marker)

    def end(self) -> Event:
        if not self._begun or self._ended:
            raise TrackerError("end belongs once, after begin")
        self._ended = True
        if self.last is None:
            return Event("end")
        return Event("end", self.last.step, self.last.path, self.last.identity, marker=self.last.marker)
