"""The facts of a session, told once to every reporter that wants them.

The engine and the dispatcher say what happened (the session started, a save
started, a checkpoint committed, a listener run finished, every run of an
event finished, the stop file was written, the session ended) to one
:class:`Hub`. What turns those facts into something a person or a machine
reads (metrics, the summary, the status and progress files) subclasses
:class:`Reporter` and overrides only what it needs; every method does
nothing by default, as in TensorFlow's ``CheckpointSaverListener``.

Call order, for one watcher::

    waiting_for_dir(dir)                     # only when DIR does not exist yet (again)
    for each session (DIR deleted and created again starts another):
        session_started(facts)
        layout_chosen(name, why)             # when auto-detection decides (or --layout)
        rescanned(reason)                    # each look at everything not hinted by a notification
        notifications_overflowed()           # the kernel dropped notifications (a rescan follows)
        for each save:
            save_started(step, path, when)   # only when the layout showed the start
            committed(event, when, started)  # just before its listeners start
            run_finished(record)             # per listener run, from its worker thread
            event_finished(event, stop)      # once every run of that event finished
            stop_written(request)            # before that event_finished, when one asked
        stale_changed(stale, seconds, step)  # --stale-after: no commit for that long; a commit clears it
        session_ended(reason)
    finished(ending)                         # once: the exit status and why (not after a usage error)
    close()                                  # once, when the watcher exits

A reporter must be quick (``committed`` runs on the engine thread, right
after the listeners of a commit were started) and thread-safe
(``run_finished`` and ``event_finished`` come from listener workers). A
reporter that raises is logged once and then left out: reporting never takes
the watcher down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .console import emit

if TYPE_CHECKING:
    from ..integrations.stopfile import StopRequest
    from ..events import Event

__all__ = ["Ending", "Hub", "Reporter", "RunRecord", "SessionFacts", "Verdict"]


@dataclass(frozen=True)
class SessionFacts:
    """What is known when a session begins."""

    run_id: str
    dir: str
    stop_file: str
    state_dir: str
    listeners: tuple[str, ...]
    pid: int
    started: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RunRecord:
    """One listener run that finished (or was skipped because its checkpoint vanished)."""

    listener: str
    event: Event
    #: done | stop | failed | timeout | vanished | interrupted (cut off by a shutdown: run again next session)
    #: | retried (failed; ``on_failure = "retry:N"`` runs it again: another record follows)
    #: | skipped (``coalesce``: a newer checkpoint was already queued for this listener)
    status: str
    exit_code: int | None
    #: Seconds from the start of the run to its end (0 for a run that never started).
    duration: float
    attempt: int
    #: The checkpoint path the listener was handed (a pin, or the path in DIR), or None.
    checkpoint: str | None
    #: The last lines of its output (stdout and stderr together), oldest first.
    output: tuple[str, ...] = ()
    finished: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Verdict:
    """One expectation (``--expect-*``), checked when the watcher ends."""

    #: The option's name less ``expect-``: checkpoints, steps, last-step, stop, no-stop, within.
    name: str
    held: bool
    #: What was expected and what was seen, in words (``at least 3 checkpoints``, ``2 committed``).
    expected: str
    seen: str
    #: The one line that says it (``expected ...; committed: ...``).
    line: str


@dataclass(frozen=True)
class Ending:
    """How the watcher ends: its exit status and why, the wrapped command's, the expectations."""

    status: int
    reason: str
    command: tuple[str, ...] = ()
    #: The wrapped command's exit status (128+N for signal N); None without one or when it never exited.
    command_status: int | None = None
    verdicts: tuple[Verdict, ...] = ()
    finished: float = field(default_factory=time.time)


class Reporter:
    """Override what you need; each method does nothing by default."""

    def waiting_for_dir(self, dir: str) -> None:
        """Called when DIR does not exist (yet, or any more) and the watcher waits for it."""

    def session_started(self, facts: SessionFacts) -> None:
        """Called once per session, before ``begin`` is handed to listeners."""

    def layout_chosen(self, name: str, why: str) -> None:
        """Called when the layout is chosen (``--layout``) or detected, and again if detection changes its mind."""

    def save_started(self, step: int, path: str, when: float) -> None:
        """Called when a save is seen starting (an observed ``before_save``); ``when`` is wall-clock time."""

    def committed(self, event: Event, when: float, started: float | None) -> None:
        """Called once per committed checkpoint (its ``after_save`` event), after its listeners were started.

        ``started`` is when the save was seen starting, or None when the layout showed no start.
        """

    def run_finished(self, run: RunRecord) -> None:
        """Called when one listener run ended, journaled (from that listener's worker thread)."""

    def event_finished(self, event: Event, stop: bool) -> None:
        """Called once every run of ``event`` has finished (at once when no listener subscribed to it).

        ``stop``: a listener asked for a stop; the stop file was written (or could not be) before this.
        """

    def stop_written(self, request: StopRequest) -> None:
        """Called when the stop file was written."""

    def rescanned(self, reason: str) -> None:
        """Called when the engine looks without a notification's hint.

        ``reason``: ``poll`` (a ``--poll`` tick), ``timer`` (with native notifications: the
        safety rescan, or another timer of the engine's), ``relist`` (DIR listed whole again:
        an overflow, a watch lost): looks at everything; ``recheck``: a layout asked for a
        second look (with native notifications, at what asked for it only).
        """

    def notifications_overflowed(self) -> None:
        """Called when the kernel's notification queue overflowed (a ``relist`` rescan follows)."""

    def stale_changed(self, stale: bool, seconds_since_commit: float, step: int | None) -> None:
        """Called when ``--stale-after`` passed with no commit (True), and at the commit that ends it (False).

        ``step`` is the last committed step (None when there was none this session).
        """

    def session_ended(self, reason: str) -> None:
        """Called once, after ``end`` was delivered (or could not be): why the session ended."""

    def finished(self, ending: Ending) -> None:
        """Called once when the watcher ends (after the wrapped command exited): its exit status and why."""

    def close(self) -> None:
        """Called once, when the watcher exits."""


class Hub(Reporter):
    """Fans each fact out to the reporters, in the order they were added."""

    def __init__(self, reporters: Iterable[Reporter] = ()) -> None:
        self.reporters: list[Reporter] = list(reporters)

    def add(self, reporter: Reporter) -> None:
        self.reporters.append(reporter)

    def _tell(self, method: str, *args: object) -> None:
        for reporter in list(self.reporters):
            try:
                getattr(reporter, method)(*args)
            except Exception as exc:  # noqa: BLE001 - reporting must not take the watcher down
                self.reporters.remove(reporter)
                emit("info", f"reporter {type(reporter).__name__} failed at {method} ({type(exc).__name__}: "
                     f"{exc}); it reports nothing more this run", logging.ERROR)

    def waiting_for_dir(self, dir: str) -> None:
        self._tell("waiting_for_dir", dir)

    def session_started(self, facts: SessionFacts) -> None:
        self._tell("session_started", facts)

    def layout_chosen(self, name: str, why: str) -> None:
        self._tell("layout_chosen", name, why)

    def save_started(self, step: int, path: str, when: float) -> None:
        self._tell("save_started", step, path, when)

    def committed(self, event: Event, when: float, started: float | None) -> None:
        self._tell("committed", event, when, started)

    def run_finished(self, run: RunRecord) -> None:
        self._tell("run_finished", run)

    def event_finished(self, event: Event, stop: bool) -> None:
        self._tell("event_finished", event, stop)

    def stop_written(self, request: StopRequest) -> None:
        self._tell("stop_written", request)

    def rescanned(self, reason: str) -> None:
        self._tell("rescanned", reason)

    def notifications_overflowed(self) -> None:
        self._tell("notifications_overflowed")

    def stale_changed(self, stale: bool, seconds_since_commit: float, step: int | None) -> None:
        self._tell("stale_changed", stale, seconds_since_commit, step)

    def session_ended(self, reason: str) -> None:
        self._tell("session_ended", reason)

    def finished(self, ending: Ending) -> None:
        self._tell("finished", ending)

    def close(self) -> None:
        self._tell("close")
