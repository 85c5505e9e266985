"""Durable listener progress: an append-only file of JSON lines.

Why a journal: a watcher restarted with the same state directory must neither
repeat a listener run that finished nor skip a committed checkpoint. Records:

- ``event``: a ``before_save``/``after_save`` handed to listeners, with the
  names of the listeners it was queued for;
- ``run``: one listener's run of one event: ``started`` (with its process
  group, not fsynced, so nothing on the commit path waits for the disk), then
  an outcome (``done``, ``stop``, ``failed``, ``timeout``, ``vanished``,
  ``skipped``; fsynced), ``retried`` (failed, and owed again by
  ``on_failure = "retry:N"``) or ``interrupted`` (cut off by a shutdown: run again next time).

An event's record is written with the next record (a run ``started`` just
before its spawn, in the same ``write``) or at :meth:`Journal.flush`: a commit
costs one system call before its listener starts. A crash before that write
loses only events no run has started for, which the next session sees again.

A crash can tear only the last line; loading drops it. A queued run with no
outcome is handed back by :meth:`Journal.pending` (a ``retry`` when it had
started).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..events import Event
from ..faults import armed, die
from ..tracker import LastCommit, Tracker

__all__ = ["FINISHED", "Journal", "JournalBusy", "PendingRun", "QueuedEvent"]

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
#: How long a start waits for a lock held by someone else (a ``status`` probe holds it for microseconds).
LOCK_GRACE = 1.0
#: A journal with more superseded lines than this is compacted at open.
COMPACT_AFTER = 10_000
#: Outcomes after which a run is never repeated (``skipped``: a coalescing listener was behind;
#: ``retried``, a failed attempt that ``on_failure = "retry:N"`` runs again, is not one).
FINISHED = frozenset({"done", "stop", "failed", "timeout", "vanished", "skipped"})


class JournalBusy(RuntimeError):
    """Another watcher holds this state directory."""


@dataclass(frozen=True)
class QueuedEvent:
    """An event as journaled: its id and the listeners it was queued for."""

    id: int
    event: Event
    listeners: tuple[str, ...]


@dataclass(frozen=True)
class PendingRun:
    """A run that an earlier session queued and did not finish."""

    queued: QueuedEvent
    listener: str
    attempt: int
    pgid: int | None
    pgid_start: int | None


@dataclass
class _RunState:
    status: str
    attempt: int
    pgid: int | None = None
    pgid_start: int | None = None


class Journal:
    def __init__(self, state_dir: str, compact_after: int = COMPACT_AFTER) -> None:
        """Open (creating) the journal in ``state_dir`` and lock it.

        Raises ``OSError`` when the directory cannot be made or written, and
        :class:`JournalBusy` when another watcher holds it.
        """
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, JOURNAL_NAME)
        self._lock = threading.Lock()
        self._events: dict[int, QueuedEvent] = {}
        self._runs: dict[tuple[int, str], _RunState] = {}
        self._after_save_by_identity: dict[str, int] = {}
        self._stop_written: set[int] = set()
        #: Event records not written yet (the next write carries them first).
        self._unwritten: list[bytes] = []
        self.dropped_lines = 0
        self.compacted_from = 0
        self._next_id = 1
        # The lock is a file of its own, so that compaction can replace the journal.
        self._lock_file = open(os.path.join(state_dir, LOCK_NAME), "a+b")  # noqa: SIM115
        if not _lock_with_grace(self._lock_file.fileno()):
            self._lock_file.close()
            raise JournalBusy(f"another ckptwatch is using the state directory {state_dir}") from None
        self._file = open(self.path, "a+b")  # noqa: SIM115 - held for the session
        lines = self._load()
        #: Written with os.write (the file is opened for appending), not through the buffered file.
        self._fd = self._file.fileno()
        if lines - self._live_records() > compact_after:
            self._compact(lines)

    # Loading -----------------------------------------------------------------

    def _load(self) -> int:
        """Read every record; the number of lines read."""
        self._file.seek(0)
        data = self._file.read()
        good_end = data.rfind(b"\n") + 1
        if good_end < len(data):
            # A torn last record from a crash mid-write: drop it for good.
            self.dropped_lines += 1
            self._file.truncate(good_end)
        lines = data[:good_end].splitlines()
        for line in lines:
            try:
                record = json.loads(line)
                self._apply(record)
            except (ValueError, KeyError, TypeError, AttributeError):
                self.dropped_lines += 1
        self._file.seek(0, os.SEEK_END)
        return len(lines)

    def _live_records(self) -> int:
        return len(self._events) + len(self._runs)

    def _compact(self, lines: int) -> None:
        """Rewrite the journal as one record per event and one per run (its last state).

        Written to a temp file, fsynced and renamed over the journal: a crash
        leaves the old journal or the new one, never half of one.
        """
        tmp = self.path + ".compact"
        with open(tmp, "wb") as out:
            for queued in sorted(self._events.values(), key=lambda q: q.id):
                out.write(_line(_event_record(queued, "")))
            for event_id in sorted(self._stop_written):
                out.write(_line({"r": "stopfile", "id": event_id}))
            for (event_id, listener), state in sorted(self._runs.items()):
                record = {"r": "run", "id": event_id, "listener": listener, "status": state.status}
                record.update({"attempt": state.attempt, "pgid": state.pgid, "pgid_start": state.pgid_start})
                out.write(_line(record))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._file.close()
        self._file = open(self.path, "a+b")  # noqa: SIM115
        self._file.seek(0, os.SEEK_END)
        self._fd = self._file.fileno()
        self.compacted_from = lines

    def _apply(self, record: dict[str, Any]) -> None:
        kind = record["r"]
        if kind == "event":
            event = Event(
                record["event"],
                record["step"],
                record["checkpoint"],
                record.get("identity", ""),
                record.get("observed", True),
                record.get("marker"),
            )
            queued = QueuedEvent(int(record["id"]), event, tuple(record["listeners"]))
            self._events[queued.id] = queued
            self._next_id = max(self._next_id, queued.id + 1)
            if event.name == "after_save":
                self._after_save_by_identity[event.identity] = queued.id
        elif kind == "stopfile":
            self._stop_written.add(int(record["id"]))
        elif kind == "run":
            key = (int(record["id"]), record["listener"])
            previous = self._runs.get(key)
            attempt = int(record.get("attempt", previous.attempt if previous else 1))
            self._runs[key] = _RunState(record["status"], attempt, record.get("pgid"), record.get("pgid_start"))

    # What an earlier session left ----------------------------------------------

    def tracker(self) -> Tracker:
        """A tracker that knows every event already queued by earlier sessions."""
        delivered: set[str] = set()
        announced: set[tuple[str, int]] = set()
        committed: set[tuple[str, int]] = set()
        last: LastCommit | None = None
        for queued in sorted(self._events.values(), key=lambda q: q.id):
            event = queued.event
            if event.step is None or event.checkpoint is None:
                continue
            key = (event.checkpoint, event.step)
            if event.name == "before_save":
                announced.add(key)
            elif event.name == "after_save":
                announced.discard(key)
                committed.add(key)
                delivered.add(event.identity)
                last = LastCommit(event.step, event.checkpoint, event.identity, event.marker)
        return Tracker(delivered, announced, last, committed)

    def pending(self) -> list[PendingRun]:
        """Runs queued earlier with no outcome, oldest first."""
        runs = []
        for queued in sorted(self._events.values(), key=lambda q: q.id):
            for listener in queued.listeners:
                state = self._runs.get((queued.id, listener))
                if state is None:
                    runs.append(PendingRun(queued, listener, 1, None, None))
                elif state.status not in FINISHED:
                    runs.append(PendingRun(queued, listener, state.attempt + 1, state.pgid, state.pgid_start))
        return runs

    @property
    def empty(self) -> bool:
        """No event was ever queued here: a first start."""
        return not self._events

    def stop_owed(self) -> list[tuple[QueuedEvent, list[str], bool]]:
        """Stop requests whose stop file was never written: ``(event, who asked, all runs finished)``.

        A listener's exit 3 is journaled when it exits; the file is written
        when the event's last listener is done, and journaled as ``stopfile``.
        A crash in between owes the file to the next session.
        """
        owed = []
        for queued in sorted(self._events.values(), key=lambda q: q.id):
            if queued.id in self._stop_written:
                continue
            runs = [(n, self._runs.get((queued.id, n))) for n in queued.listeners]
            asked = [n for n, state in runs if state is not None and state.status == "stop"]
            if asked:
                owed.append((queued, asked, all(st is not None and st.status in FINISHED for _, st in runs)))
        return owed

    def stop_file_written(self, event_id: int) -> None:
        with self._lock:
            self._write(_line({"r": "stopfile", "id": event_id, "t": time.time()}))
            self._stop_written.add(event_id)
        self.sync()

    def after_save_status(self, identity: str, listener: str) -> str | None:
        """The outcome of ``listener``'s ``after_save`` for that checkpoint, any session."""
        event_id = self._after_save_by_identity.get(identity)
        if event_id is None:
            return None
        state = self._runs.get((event_id, listener))
        return state.status if state else None

    # Writing -------------------------------------------------------------------

    def record_event(self, event: Event, listeners: tuple[str, ...], run_id: str) -> QueuedEvent:
        """Journal an event; written with the next record or at :meth:`flush`, whichever comes first."""
        with self._lock:
            queued = QueuedEvent(self._next_id, event, listeners)
            self._unwritten.append(_line(_event_record(queued, run_id)))
            self._events[queued.id] = queued
            self._next_id += 1
            if event.name == "after_save":
                self._after_save_by_identity[event.identity] = queued.id
        return queued

    def run_started(
        self, event_id: int, listener: str, attempt: int, pgid: int | None = None, pgid_start: int | None = None
    ) -> None:
        """Journaled before the listener starts (no group yet), and again once it has one."""
        record = {"r": "run", "id": event_id, "listener": listener, "status": "started", "attempt": attempt}
        record.update({"pgid": pgid, "pgid_start": pgid_start, "t": time.time()})
        with self._lock:
            self._write(_line(record))
            self._runs[(event_id, listener)] = _RunState("started", attempt, pgid, pgid_start)

    def run_finished(
        self, event_id: int, listener: str, attempt: int, status: str, exit_code: int | None, *, sync: bool = True
    ) -> None:
        """Journal a run's outcome, fsynced (``interrupted`` is not; ``sync=False``: the caller calls :meth:`sync`)."""
        record = {"r": "run", "id": event_id, "listener": listener, "status": status, "attempt": attempt}
        record.update({"exit": exit_code, "t": time.time()})
        with self._lock:
            self._write(_line(record))
            self._runs[(event_id, listener)] = _RunState(status, attempt)
        if sync and status != "interrupted":
            self.sync()

    def flush(self) -> None:
        """Write the event records not written yet (no fsync)."""
        with self._lock:
            if self._unwritten:
                self._write(b"")

    def sync(self) -> None:
        """Make what was written durable.

        Outside the lock: a run's start (the engine thread, on the commit
        path) never waits for another run's fsync.
        """
        fd = self._fd
        if fd >= 0:
            os.fsync(fd)

    def _write(self, line: bytes) -> None:
        """Write the unwritten event records, then ``line``, in one system call (the lock is held)."""
        lines, self._unwritten = self._unwritten, []
        if line:
            lines.append(line)
        fd = self._fd
        for i, one in enumerate(lines):
            if armed("journal-record"):  # the test hook tears the Nth line, as a crash mid-write would
                _write_all(fd, b"".join(lines[:i]) + one[: len(one) // 2])
                die()
        _write_all(fd, b"".join(lines))

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                if self._unwritten:
                    self._write(b"")
                self._fd = -1
                self._file.close()
                self._lock_file.close()


def _lock_with_grace(fd: int, grace: float = LOCK_GRACE) -> bool:
    """Take the exclusive lock; False when another watcher holds it.

    ``ckptwatch status`` tells a live watcher from a dead one by trying a
    shared lock for an instant; a watcher starting in that instant waits it
    out instead of taking the prober for another watcher.
    """
    deadline = time.monotonic() + grace
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _write_all(fd: int, data: bytes) -> None:
    """Append ``data`` (the file is opened for appending: no other writer moves its end)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: One encoder for every line (``json.dumps`` with options builds a new one per call); records hold no cycles.
_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False).encode


def _line(record: dict[str, Any]) -> bytes:
    return _encode(record).encode() + b"\n"


def _event_record(queued: QueuedEvent, run_id: str) -> dict[str, Any]:
    event = queued.event
    return {
        "r": "event",
        "id": queued.id,
        "run": run_id,
        "event": event.name,
        "step": event.step,
        "checkpoint": event.checkpoint,
        "identity": event.identity,
        "observed": event.observed,
        "marker": event.marker,
        "listeners": list(queued.listeners),
        "t": time.time(),
    }
