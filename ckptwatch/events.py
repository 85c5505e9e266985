"""The four events of a watcher session, as plain values.

These are what the tracker produces and what listeners receive: the same names
and meanings as TensorFlow's ``CheckpointSaverListener`` (``begin``,
``before_save``, ``after_save``, ``end``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["EVENT_NAMES", "Event", "EventName"]

EventName = Literal["begin", "before_save", "after_save", "end"]
EVENT_NAMES: tuple[EventName, ...] = ("begin", "before_save", "after_save", "end")


@dataclass(frozen=True)
class Event:
    """One event, before it is fanned out to listeners.

    ``checkpoint`` is the path relative to the watched directory (``None`` for
    ``begin``, and for a ``before_save`` whose path is not known yet).
    ``identity`` names one committed save (see ``layouts.base.Checkpoint``) and
    ``marker`` is its completion file (relative); both are empty for events
    that are not about a committed checkpoint.
    """

    name: EventName
    step: int | None = None
    checkpoint: str | None = None
    identity: str = ""
    observed: bool = True
    marker: str | None = None
