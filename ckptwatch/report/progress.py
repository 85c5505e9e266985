"""Writes ``STATE_DIR/progress.json``: how far the watcher has got.

Training with ``sync=True`` reads it to wait for a save's verdict;
``ckptwatch status`` reads it too. The fields and their meaning are
documented with the format, in :mod:`ckptwatch.integrations.progress` (the
training side reads it without loading the watcher); in short: ``run_id``,
``pid``, ``host``, ``pid_ns``, ``dir``, ``stop_file``, ``state_dir``,
``role``, ``layout``, ``started``, ``updated``, ``step`` and ``checkpoint``
(the last save whose ``after_save`` runs all finished, every earlier one
too), ``committed_step``, ``pending``, ``saves``, ``stop``, ``stop_step``,
``stop_reason``, ``recent`` (the last 32 finished saves) and ``ended``.

Written at the start and the end of each session and when every
``after_save`` run of a save has finished (from that listener's worker
thread), atomically: a temp file in the state dir, then a rename. No fsync:
after a machine crash the file may be older, never torn.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from ..integrations.jsonfile import replace_text
from ..integrations.progress import PROGRESS_FILE_NAME, PROGRESS_VERSION, own_pid_namespace
from .hub import Reporter, SessionFacts

if TYPE_CHECKING:
    from ..events import Event
    from ..integrations.stopfile import StopRequest

__all__ = ["ProgressReporter"]

_RECENT = 32


def _marker_mtime(identity: str) -> float | None:
    """When the save's commit marker was written: its mtime, from the identity ``layout|path|step|mtime_ns|size``."""
    try:
        return int(identity.rsplit("|", 2)[1]) / 1e9
    except (IndexError, ValueError):
        return None


class ProgressReporter(Reporter):
    def __init__(self, role: str = "chief") -> None:
        self.role = role
        self._lock = threading.Lock()
        self._path: str | None = None
        self._body: dict[str, Any] = {}
        #: Saves committed this session, in commit order, until every earlier one has finished too.
        self._open: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._recent: deque[dict[str, Any]] = deque(maxlen=_RECENT)

    def session_started(self, facts: SessionFacts) -> None:
        with self._lock:
            self._path = os.path.join(facts.state_dir, PROGRESS_FILE_NAME)
            self._open.clear()
            self._recent.clear()
            self._body = {
                "version": PROGRESS_VERSION,
                "run_id": facts.run_id,
                "pid": facts.pid,
                "host": os.uname().nodename,  # what socket.gethostname() says, without importing socket
                "pid_ns": own_pid_namespace(),
                "dir": facts.dir,
                "stop_file": facts.stop_file,
                "state_dir": facts.state_dir,
                "role": self.role,
                "layout": None,
                "started": facts.started,
                "step": None,
                "checkpoint": None,
                "committed_step": None,
                "pending": 0,
                "saves": 0,
                "stop": False,
                "stop_step": None,
                "stop_reason": None,
                "recent": [],
                "ended": None,
            }
            self._write()

    def layout_chosen(self, name: str, why: str) -> None:
        with self._lock:
            self._body["layout"] = name

    def committed(self, event: Event, when: float, started: float | None) -> None:
        with self._lock:
            self._open[event.identity or f"{event.checkpoint}|{event.step}"] = {
                "step": event.step,
                "checkpoint": event.checkpoint,
                "saved": _marker_mtime(event.identity),
                "committed": when,
                "finished": None,
                "stop": False,
            }
            self._body["committed_step"] = event.step

    def stop_written(self, request: StopRequest) -> None:
        with self._lock:
            self._body.update(stop=True, stop_step=request.step, stop_reason=request.reason)

    def event_finished(self, event: Event, stop: bool) -> None:
        if event.name != "after_save":
            return
        with self._lock:
            if not self._body:
                return
            key = event.identity or f"{event.checkpoint}|{event.step}"
            save = self._open.get(key)
            if save is None:  # resumed from an earlier session: not committed in this one
                save = {"step": event.step, "checkpoint": event.checkpoint, "saved": _marker_mtime(event.identity),
                        "committed": None, "finished": None, "stop": False}
                if not self._open:
                    self._finish(save, stop)
                    self._write()
                return
            save["finished"] = time.time()
            save["stop"] = stop
            while self._open:
                first = next(iter(self._open.values()))
                if first["finished"] is None:
                    break
                self._open.popitem(last=False)
                self._finish(first, first["stop"])
            self._write()

    def _finish(self, save: dict[str, Any], stop: bool) -> None:
        if save["finished"] is None:
            save["finished"] = time.time()
        save["stop"] = stop
        self._recent.append(save)
        self._body["step"] = save["step"]
        self._body["checkpoint"] = save["checkpoint"] and os.path.join(self._body["dir"], save["checkpoint"])
        self._body["saves"] += 1

    def session_ended(self, reason: str) -> None:
        with self._lock:
            if self._body:
                self._body["ended"] = reason
                self._write()

    def _write(self) -> None:
        """Replace the file atomically (caller holds the lock)."""
        if self._path is None:
            return
        body = dict(self._body, pending=len(self._open), updated=time.time(),
                    recent=[dict(s, checkpoint=s["checkpoint"] and os.path.join(self._body["dir"], s["checkpoint"]))
                            for s in self._recent])
        replace_text(self._path, json.dumps(body, ensure_ascii=True) + "\n")
