"""Keeps ``STATE_DIR/status.json`` up to date for ``ckptwatch status`` (format: ``statefile``).

Facts change the state in memory under a lock; a small thread writes the file
a moment later (50 ms), and at most once a second, so a burst of commits costs
one write a second and nothing on the commit path touches the disk (a write is
CPU time beside the next commit's listener start: at every commit, one start in
ten or so met one). The start and the end of a session are written at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from .console import emit
from .hub import Ending, Reporter, RunRecord, SessionFacts
from ..integrations.jsonfile import read_object
from .statefile import STATUS_NAME, STATUS_VERSION, start_ticks, write_status

if TYPE_CHECKING:
    from ..integrations.stopfile import StopRequest
    from ..events import Event

__all__ = ["StatusWriter"]

#: How long a change waits before it is written (changes meanwhile share the write).
DEBOUNCE = 0.05
#: The least time between two writes by the thread (changes meanwhile share the next).
MIN_INTERVAL = 1.0


class StatusWriter(Reporter):
    def __init__(self, state_dir: str, *, stale_after: float | None = None) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, STATUS_NAME)
        self._lock = threading.Lock()
        #: One write at a time, each of a snapshot taken under it: the file never goes back in time.
        self._write_lock = threading.Lock()
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self.min_interval = MIN_INTERVAL
        self._said_failure = False
        self._thread: threading.Thread | None = None
        pid = os.getpid()
        self.state: dict[str, Any] = {
            "version": STATUS_VERSION,
            "state": "starting",
            "pid": pid,
            "pid_start": start_ticks(pid),
            "host": os.uname().nodename,  # what socket.gethostname() says, without importing socket
            "ckptwatch": __version__,
            "state_dir": state_dir,
            "stale_after": stale_after,
            "metrics": None,
            "last_commit": None,
            "listeners": {},
            "ended": None,
        }

    def set_metrics(self, url: str) -> None:
        with self._lock:
            self.state["metrics"] = url

    # Facts -----------------------------------------------------------------------

    def waiting_for_dir(self, dir: str) -> None:
        if os.path.abspath(self.state_dir).startswith(os.path.join(dir, "")):
            return  # the state dir lives in DIR: nothing can be written until DIR exists
        with self._lock:
            self.state.update(state="waiting", dir=dir)
        self._write_now(create=True)

    def session_started(self, facts: SessionFacts) -> None:
        previous = read_object(self.path) or {}
        with self._lock:
            state = self.state
            if state["last_commit"] is None and isinstance(previous.get("last_commit"), dict):
                state["last_commit"] = previous["last_commit"]  # the last commit any session saw here
            old = previous.get("listeners") if isinstance(previous.get("listeners"), dict) else {}
            state.update(
                state="running", dir=facts.dir, stop_file=facts.stop_file, run_id=facts.run_id,
                session_started=facts.started, layout=None, layout_why=None, commits=0, stale=None,
                stale_origin=facts.started, stop=None, ended=None,
                listeners={name: _listener(old.get(name)) for name in facts.listeners},
            )
        self._write_now()
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="status file", daemon=True)
            self._thread.start()

    def layout_chosen(self, name: str, why: str) -> None:
        self._change(layout=name, layout_why=why)

    def committed(self, event: Event, when: float, started: float | None) -> None:
        with self._lock:
            self.state["last_commit"] = {"step": event.step, "checkpoint": event.checkpoint, "time": when,
                                         "run_id": self.state.get("run_id")}
            self.state["commits"] = self.state.get("commits", 0) + 1
            self.state["stale_origin"] = when
        self._dirty.set()

    def run_finished(self, run: RunRecord) -> None:
        with self._lock:
            progress = self.state["listeners"].setdefault(run.listener, _listener(None))
            progress["runs"] += 1
            if run.event.name == "after_save" and run.status in ("done", "stop"):
                progress["last_step_handled"] = run.event.step
            if run.status in ("failed", "timeout"):
                progress["failures"] += 1
                progress["last_failure"] = {
                    "event": run.event.name, "step": run.event.step, "status": run.status,
                    "exit_code": run.exit_code, "line": run.output[-1] if run.output else "", "time": run.finished,
                }
        self._dirty.set()

    def stop_written(self, request: StopRequest) -> None:
        self._change(stop={"step": request.step, "checkpoint": request.checkpoint, "listeners": request.listeners,
                           "reason": request.reason, "time": request.time})

    def stale_changed(self, stale: bool, seconds_since_commit: float, step: int | None) -> None:
        value = {"since": time.time(), "seconds_since_commit": seconds_since_commit, "step": step} if stale else None
        self._change(stale=value)

    def session_ended(self, reason: str) -> None:
        with self._lock:
            self.state.update(state="between-sessions", session_ended={"reason": reason, "time": time.time()})
        self._write_now()

    def finished(self, ending: Ending) -> None:
        with self._lock:
            self.state.update(state="ended", ended={"reason": self.state.get("session_ended", {}).get("reason"),
                                                    "time": ending.finished, "exit_status": ending.status,
                                                    "exit_reason": ending.reason})
        self._write_now()

    def close(self) -> None:
        self._closed.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # Writing ---------------------------------------------------------------------

    def _change(self, **fields: Any) -> None:
        with self._lock:
            self.state.update(fields)
        self._dirty.set()

    def _writer(self) -> None:
        written = time.monotonic() - self.min_interval
        # _closed is checked after every clear(): close() may have set _dirty just before
        # it, and a writer that then waited for _dirty again would hold the exit up.
        while not self._closed.is_set():
            self._dirty.wait()
            if self._closed.wait(max(DEBOUNCE, written + self.min_interval - time.monotonic())):
                return
            self._dirty.clear()
            self._write_now()
            written = time.monotonic()

    def _write_now(self, *, create: bool = False) -> None:
        with self._write_lock:
            with self._lock:
                self.state["updated"] = time.time()
                body = {**self.state, "listeners": {k: dict(v) for k, v in self.state["listeners"].items()}}
            try:
                if create:
                    os.makedirs(self.state_dir, exist_ok=True)
                write_status(self.path, body)
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        """Said once; a state dir that went away with DIR (deleted) is no news."""
        if not self._said_failure and os.path.isdir(self.state_dir):
            self._said_failure = True
            emit("info", f"cannot write {self.path} ({exc.strerror}): 'ckptwatch status' will not see "
                 "this watcher", logging.WARNING)


def _listener(old: Any) -> dict[str, Any]:
    """A listener's progress; the last step it handled is kept from an earlier session."""
    last = old.get("last_step_handled") if isinstance(old, dict) else None
    return {"last_step_handled": last, "runs": 0, "failures": 0, "last_failure": None}
