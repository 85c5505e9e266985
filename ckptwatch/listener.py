"""Listeners written in Python: TensorFlow's ``CheckpointSaverListener``, out of process.

Call order, for one watcher session::

    listener = YourListener(**args)             # once, in the listener's own process
    listener.begin(event)                       # once, first
    for each committed checkpoint, in commit order:
        listener.before_save(event)             # event.observed: was the start seen?
        stop = listener.after_save(event)       # True asks training to stop
    listener.end(event)                         # once, last; event.last_step_handled

Name the class with ``-l MODULE:CLASS`` or ``-l PATH.py:CLASS``, with
``[listener.NAME] class = "MODULE:CLASS"`` (and ``args = {...}`` for the
constructor) in ckptwatch.toml, or with a ``# ckptwatch: class=CLASS`` line
in a ``.py`` file in ``listeners.d/``. ckptwatch starts **one process per
listener for the session**, with its own interpreter, on the listener's first
event: the class is built once, ``begin`` is called once, and every later
event calls a method of the same object, so state on ``self`` persists.
TensorFlow's own ``tf.compat.v1.train.CheckpointSaverListener`` subclasses run
unchanged, with TensorFlow's signatures and ``session`` None.

A method that raises fails that run (its traceback goes to the log); the
object stays. A process that dies fails the run in flight, and the next event
starts a new one, which builds the class and calls ``begin`` again first. A
run that was cut off by a crash of the watcher is run again with
``event.retry`` set; a run that finished is never repeated. If you act on a
schedule of your own (or use ``every_n_steps``), handle the last checkpoint
in ``end`` when ``event.last_step_handled`` is False, and do not act twice.
Returning True from ``after_save`` asks for a stop: the stop file is written
after every listener of that save has run.

Example (``listeners.d/40-eval.py``; needs no executable bit)::

    # ckptwatch: class=Eval events=after_save,end
    from ckptwatch import CheckpointSaverListener

    class Eval(CheckpointSaverListener):
        def begin(self, event):
            self.best = None                    # kept between events
        def after_save(self, event):
            print(f"evaluating {event.checkpoint}")
            return event.step >= 1000           # stop training at step 1000

A single-file script can still serve one event per process:
``serve(Eval())`` at the bottom of an executable file (it does nothing when
the file is loaded as a class listener).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["CheckpointSaverListener", "ListenerEvent", "current_event", "serve"]

STOP_EXIT = 3
#: Set in a class listener's own process (ckptwatch.delivery.hostchild): ``serve()`` then does nothing.
_hosted = False
_current: ListenerEvent | None = None


def current_event() -> ListenerEvent | None:
    """The event being handled now, in a listener's process (None between events).

    TensorFlow-style methods get only ``global_step_value``; this gives them
    the rest (``current_event().checkpoint``).
    """
    return _current


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
    #: ``stale`` only: seconds since the last commit (or since the session began, when none yet).
    seconds_since_commit: float | None = None

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

    def stale(self, event: ListenerEvent) -> None:
        """Called when no save has committed for ``--stale-after`` seconds (subscribe to ``stale``).

        ``event.seconds_since_commit`` says how long; ``event.step`` is the last committed
        step. Called once per spell: a commit ends it, and the next spell calls it again.
        """


def serve(listener: CheckpointSaverListener, argv: list[str] | None = None) -> None:
    """Run one event from the ckptwatch protocol (argv[1] and JSON on stdin), then exit.

    In a class listener's process (the file loaded with ``class=``), it does nothing.
    """
    global _current
    if _hosted:
        return
    argv = sys.argv if argv is None else argv
    name = argv[1] if len(argv) > 1 else ""
    if name not in ("begin", "before_save", "after_save", "end", "stale"):
        sys.exit(f"{argv[0]}: expected an event name (begin, before_save, after_save, end, stale), got {name!r}")
    raw = sys.stdin.read()
    body = json.loads(raw) if raw.strip() else {"event": name}
    _current = ListenerEvent.from_json(body)
    result = getattr(listener, name)(_current)
    sys.exit(STOP_EXIT if name == "after_save" and result else 0)
