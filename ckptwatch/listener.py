"""Listeners written in Python: TensorFlow's ``CheckpointSaverListener``, as a script.

Call order, for one watcher session::

    listener.begin(event)                       # once, first
    for each committed checkpoint, in commit order:
        listener.before_save(event)             # event.observed: was the start seen?
        stop = listener.after_save(event)       # True asks training to stop
    listener.end(event)                         # once, last; event.last_step_handled

Each call runs in a fresh process (the script is started once per event, as
every ckptwatch listener is), so keep state on disk, not on ``self``. A run
that was cut off by a crash is run again with ``event.retry`` set; a run that
finished is never repeated. If you act on a schedule of your own, handle the
last checkpoint in ``end`` when ``event.last_step_handled`` is False, and do
not act twice. Returning True from ``after_save`` asks for a stop: the stop
file is written after every listener of that save has run.

Example (``listeners.d/40-eval.py``, executable)::

    #!/usr/bin/env python3
    # ckptwatch: events=after_save,end
    from ckptwatch import CheckpointSaverListener
    from ckptwatch.listener import serve

    class Eval(CheckpointSaverListener):
        def after_save(self, event):
            print(f"evaluating {event.checkpoint}")
            return event.step >= 1000   # stop training at step 1000

    serve(Eval())
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["CheckpointSaverListener", "ListenerEvent", "serve"]

STOP_EXIT = 3


@dataclass(frozen=True)
class ListenerEvent:
    """The event as a listener receives it (the JSON object on stdin)."""

    event: str
    step: int | None = None
    checkpoint: str | None = None
    dir: str = ""
    layout: str = ""
    stop_file: str = ""
    run_id: str = ""
    observed: bool | None = None
    last_step_handled: bool | None = None
    retry: bool = False
    attempt: int = 1

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ListenerEvent:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in body.items() if key in known})


class CheckpointSaverListener:
    """Override the methods you need; each does nothing by default."""

    def begin(self, event: ListenerEvent) -> None:
        """Called once, before any other event of the session."""

    def before_save(self, event: ListenerEvent) -> None:
        """Called once per checkpoint, before its ``after_save``."""

    def after_save(self, event: ListenerEvent) -> bool | None:
        """Called once per committed checkpoint; return True to ask training to stop."""
        return None

    def end(self, event: ListenerEvent) -> None:
        """Called once, last, with the last committed step (``event.step``)."""


def serve(listener: CheckpointSaverListener, argv: list[str] | None = None) -> None:
    """Run one event from the ckptwatch protocol (argv[1] and JSON on stdin), then exit."""
    argv = sys.argv if argv is None else argv
    name = argv[1] if len(argv) > 1 else ""
    if name not in ("begin", "before_save", "after_save", "end"):
        sys.exit(f"{argv[0]}: expected an event name (begin, before_save, after_save, end), got {name!r}")
    raw = sys.stdin.read()
    body = json.loads(raw) if raw.strip() else {"event": name}
    result = getattr(listener, name)(ListenerEvent.from_json(body))
    sys.exit(STOP_EXIT if name == "after_save" and result else 0)
