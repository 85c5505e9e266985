"""What a watcher did, kept for its end: the summary line, expectations, the CI reports.

One :class:`SessionRecord` hears every fact of every session of one watcher.
Counts and the committed checkpoints are always kept (a few numbers per
save); the listener runs with their output only when a report asks for them
(``keep_runs``), so a sidecar that runs for weeks does not grow with them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .hub import Ending, Reporter, RunRecord, SessionFacts

if TYPE_CHECKING:
    from ..integrations.stopfile import StopRequest
    from ..events import Event

__all__ = ["Commit", "SessionRecord", "StaleSpell", "StartedSave"]


@dataclass(frozen=True)
class Commit:
    step: int | None
    #: The checkpoint's path, as listeners get it (absolute).
    path: str
    #: When the watcher saw it committed (unix time).
    committed: float
    #: From the save seen starting to its commit; None when the layout showed no start.
    save_duration: float | None
    run_id: str


@dataclass(frozen=True)
class StartedSave:
    """A save seen starting that has not committed (yet)."""

    step: int
    path: str
    started: float


@dataclass(frozen=True)
class StaleSpell:
    started: float
    seconds_since_commit: float
    step: int | None


class SessionRecord(Reporter):
    def __init__(self, *, keep_runs: bool = False, started: float | None = None) -> None:
        #: When the watcher started: ``--expect-within`` counts from here.
        self.started = time.time() if started is None else started
        self.keep_runs = keep_runs
        self._lock = threading.Lock()
        self.sessions: list[SessionFacts] = []
        self.layout: str | None = None
        self.dir: str = ""
        self.commits: list[Commit] = []
        self._pending: dict[tuple[str, int], StartedSave] = {}
        self.outcomes: Counter[str] = Counter()
        self.runs: list[RunRecord] = []
        self.stops: list[StopRequest] = []
        #: Events whose listeners asked for a stop (the stop file may have failed to be written).
        self.stop_asked: list[Event] = []
        self.vanished: list[RunRecord] = []
        self.stale: list[StaleSpell] = []
        self.ending: Ending | None = None

    # Facts -----------------------------------------------------------------------

    def session_started(self, facts: SessionFacts) -> None:
        with self._lock:
            self.sessions.append(facts)
            self.dir = facts.dir

    def layout_chosen(self, name: str, why: str) -> None:
        self.layout = name

    def save_started(self, step: int, path: str, when: float) -> None:
        with self._lock:
            self._pending[(path, step)] = StartedSave(step, self._abs(path), when)

    def committed(self, event: Event, when: float, started: float | None) -> None:
        assert event.checkpoint is not None
        run_id = self.sessions[-1].run_id if self.sessions else ""
        duration = None if started is None else max(0.0, when - started)
        with self._lock:
            if event.step is not None:
                self._pending.pop((event.checkpoint, event.step), None)
            self.commits.append(Commit(event.step, self._abs(event.checkpoint), when, duration, run_id))

    def run_finished(self, run: RunRecord) -> None:
        with self._lock:
            self.outcomes[run.status] += 1
            if self.keep_runs:
                self.runs.append(run)
            if run.status == "vanished":
                self.vanished.append(run)

    def event_finished(self, event: Event, stop: bool) -> None:
        if stop:
            with self._lock:
                self.stop_asked.append(event)

    def stop_written(self, request: StopRequest) -> None:
        with self._lock:
            self.stops.append(request)

    def stale_changed(self, stale: bool, seconds_since_commit: float, step: int | None) -> None:
        if stale:
            with self._lock:
                self.stale.append(StaleSpell(time.time(), seconds_since_commit, step))

    def finished(self, ending: Ending) -> None:
        self.ending = ending

    # Reading ---------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        return os.path.join(self.dir, rel) if self.dir else rel

    @property
    def run_id(self) -> str:
        return self.sessions[0].run_id if self.sessions else ""

    def never_committed(self) -> list[StartedSave]:
        """Saves seen starting that never committed, oldest first."""
        with self._lock:
            return sorted(self._pending.values(), key=lambda s: s.started)

    @property
    def done(self) -> int:
        """Listener runs that ended well (a stop request is not a failure)."""
        return self.outcomes["done"] + self.outcomes["stop"]

    @property
    def failed(self) -> int:
        return self.outcomes["failed"] + self.outcomes["timeout"]
