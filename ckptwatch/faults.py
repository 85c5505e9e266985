"""Test-only crash points, for fault injection without mocks.

Some crashes cannot be timed from outside (between a listener's exit and its
journal record, in the middle of one record). ``CKPTWATCH_TEST_CRASH_AT=NAME``
(or ``NAME:N`` for the Nth time) makes the watcher kill itself with SIGKILL
when it reaches that point, exactly as ``kill -9`` would. Unset, a crash
point costs one comparison.

``CKPTWATCH_TEST_HOLD=NAME:PATH`` makes the thread that reaches hold point
NAME create ``PATH.reached`` and wait there while PATH exists (the test
deletes it to let go): what happens meanwhile, outside the held thread, is
then in the test's hands.
Hold points: ``first-listing`` (the first full listing has read DIR and is
not handed over yet).

Crash points: ``event-queued`` (an event journaled, no listener started yet),
``run-spawned`` (a listener started, its process group not journaled),
``run-exited`` (a listener exited, its outcome not journaled), ``journal-record``
(half a journal line written), ``stop-file-rename`` (stop file written to its
temp name, not renamed), ``observer-dies`` (reading notifications raises).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

__all__ = ["POINTS", "armed", "crash_point", "die", "hold_point"]

POINTS = ("event-queued", "run-spawned", "run-exited", "journal-record", "stop-file-rename", "observer-dies")

_spec = os.environ.get("CKPTWATCH_TEST_CRASH_AT", "")
_name, _, _count = _spec.partition(":")
_left = int(_count) if _count.isdigit() else 1
_lock = threading.Lock()


def armed(name: str) -> bool:
    """True (once) when the crash point ``name`` is reached for the Nth time."""
    global _left
    if _name != name:
        return False
    with _lock:
        _left -= 1
        return _left == 0


def crash_point(name: str, before: Callable[[], None] | None = None) -> None:
    """Die here, as kill -9 would, when this point is armed (``before()`` first: what must be on disk by then)."""
    if _name == name and armed(name):
        if before is not None:
            before()
        die()


def die() -> None:
    """What kill -9 does: no cleanup, no flush."""
    os.kill(os.getpid(), signal.SIGKILL)


_hold_name, _, _hold_path = os.environ.get("CKPTWATCH_TEST_HOLD", "").partition(":")


def hold_point(name: str) -> None:
    """Wait here while the hold file exists, when this point is held."""
    if _hold_name == name and os.path.exists(_hold_path):
        with open(_hold_path + ".reached", "w"):
            pass  # the test can wait for this instead of guessing
        while os.path.exists(_hold_path):
            time.sleep(0.01)
