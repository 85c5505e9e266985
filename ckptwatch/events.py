"""The events of a watcher session, as plain values.

These are what the tracker produces and what listeners receive: the same names
and meanings as TensorFlow's ``CheckpointSaverListener`` (``begin``,
``before_save``, ``after_save``, ``end``), and ``stale`` (``--stale-after``),
which goes only to listeners that subscribe to it by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ALL_EVENT_NAMES", "EVENT_NAMES", "Event", "EventName", "OPT_IN_EVENTS"]

EventName = Literal["begin", "before_save", "after_save", "end", "stale"]
#: The four of TensorFlow's listener: a listener that names no events gets these.
EVENT_NAMES: tuple[EventName, ...] = ("begin", "before_save", "after_save", "end")
#: Events a listener gets only when it names them (existing listeners see nothing new).
OPT_IN_EVENTS: tuple[EventName, ...] = ("stale",)
ALL_EVENT_NAMES: tuple[EventName, ...] = EVENT_NAMES + OPT_IN_EVENTS


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
    #: ``stale`` only: seconds since the last commit (or the session's start).
    seconds_since_commit: float | None = None
