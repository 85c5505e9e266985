"""The stop file, as training reads it: where it is, what it says, whether it counts.

The watcher writes ``ckptwatch.stop`` (``delivery/stopfile.py``) atomically,
as JSON: ``step``, ``checkpoint``, ``listeners``, ``listener``, ``reason``,
``run_id``, ``time``. This module holds that format (:class:`StopRequest`),
finds the file, and decides whether a request counts for *this* training
process:

- a file older than the training process is a leftover of an earlier run
  and never counts (the watcher never deletes a request that training may
  not have seen, so leftovers exist);
- a file written by another watcher session does not count when training
  knows its own (``$CKPTWATCH_RUN_ID``, set by ``ckptwatch run DIR --
  COMMAND``); later sessions of the same watcher (DIR deleted and created
  again) have ids ``RUN_ID.2``, ``RUN_ID.3``... and count;
- a file that is not ckptwatch's JSON (``touch DIR/ckptwatch.stop`` by a
  person) counts, once it is newer than the process: someone asked.

Where the file is, in one place (:func:`locate`, :func:`stop_file_of`,
:func:`look`): the path given (a checkpoint directory, or the stop file
itself), else ``$CKPTWATCH_STOP_FILE``, else ``$CKPTWATCH_DIR/ckptwatch.stop``;
a URL (``s3://bucket/run``) is read through fsspec (``ckptwatch.urls``: one
request a check). Nothing here imports the watcher.
"""

from __future__ import annotations

import json
import os
import stat as _stat
import time
from dataclasses import dataclass, field
from typing import Any

from .jsonfile import read_object

__all__ = [
    "STOP_FILE_NAME",
    "StopLocation",
    "StopRequest",
    "counts",
    "locate",
    "process_start_time",
    "look",
    "read_request",
    "read_stop_file",
    "run_id_matches",
    "stop_file_of",
    "stop_requested",
]

#: The stop file's name in the checkpoint directory (``ckptwatch run``'s default ``--stop-file``).
STOP_FILE_NAME = "ckptwatch.stop"


@dataclass(frozen=True)
class StopRequest:
    """Who asked training to stop, at which save, and why (the stop file's content)."""

    step: int | None
    checkpoint: str | None
    listeners: list[str]
    reason: str
    run_id: str
    time: float = field(default_factory=time.time)

    @property
    def listener(self) -> str:
        return ", ".join(self.listeners)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "checkpoint": self.checkpoint,
            "listeners": list(self.listeners),
            "reason": self.reason,
            "run_id": self.run_id,
            "time": self.time,
            "listener": self.listener,
        }

    @classmethod
    def from_json(cls, body: Any, mtime: float | None = None) -> StopRequest:
        """The request a stop file holds; anything else (empty, not JSON, by hand) is a request by hand."""
        if not isinstance(body, dict):
            return cls(None, None, [], "stop file written by hand (not ckptwatch's JSON)", "",
                       mtime if mtime is not None else time.time())
        step = body.get("step")
        listeners = body.get("listeners")
        if not isinstance(listeners, list):
            listeners = [str(body["listener"])] if body.get("listener") else []
        stamp = body.get("time")
        return cls(
            step if isinstance(step, int) and not isinstance(step, bool) else None,
            body.get("checkpoint") if isinstance(body.get("checkpoint"), str) else None,
            [str(name) for name in listeners],
            str(body.get("reason") or ""),
            str(body.get("run_id") or ""),
            float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool)
            else (mtime if mtime is not None else time.time()),
        )

    def describe(self) -> str:
        """One line for a training log: who asked, at which step, why."""
        who = f"listener {self.listener}" if self.listeners else "someone"
        at = f" at step {self.step}" if self.step is not None else ""
        why = self.reason
        if len(self.listeners) == 1 and why.startswith(self.listeners[0] + ": "):
            why = why[len(self.listeners[0]) + 2:]
        why = "" if not why or why == self.listener else f": {why}"
        return f"{who} asked for a stop{at}{why}"


def read_stop_file(path: str) -> dict[str, Any] | None:
    """The stop file's JSON object at ``path``, or None (missing, unreadable, not a JSON object)."""
    return read_object(path)


@dataclass(frozen=True)
class StopLocation:
    """Where to look: ``path`` is the stop file, or (``is_dir``) the checkpoint directory holding it.

    ``is_dir`` None: not known yet (the path does not exist); :meth:`stop_file` decides at each look.
    """

    path: str
    is_dir: bool | None

    @property
    def directory(self) -> str:
        """The checkpoint directory (the stop file's folder when only the file was named)."""
        return self.path if self.is_dir else os.path.dirname(self.path)


def locate(path: str | os.PathLike[str] | None = None) -> StopLocation | None:
    """Where the stop file is: ``path`` (a checkpoint dir or the stop file), else the environment.

    ``$CKPTWATCH_STOP_FILE`` (``ckptwatch run DIR -- COMMAND`` sets it), else
    ``$CKPTWATCH_DIR/ckptwatch.stop``; None when nothing names it. A path that
    does not exist yet is decided when it appears: a directory then means
    ``PATH/ckptwatch.stop``, a file is the stop file itself.
    """
    if path is not None and _is_url(os.fspath(path)):
        return _url_location(os.fspath(path))
    if path is not None:
        text = os.path.abspath(os.fspath(path))
        if os.path.isdir(text):
            return StopLocation(text, True)
        if os.path.lexists(text) or os.path.basename(text) == STOP_FILE_NAME:
            return StopLocation(text, False)
        return StopLocation(text, None)
    named = os.environ.get("CKPTWATCH_STOP_FILE")
    if named:
        return StopLocation(named, False) if _is_url(named) else StopLocation(os.path.abspath(named), False)
    directory = os.environ.get("CKPTWATCH_DIR")
    if directory:
        return StopLocation(directory, True) if _is_url(directory) else StopLocation(os.path.abspath(directory), True)
    return None


def _is_url(path: str) -> bool:
    return "://" in path and _urls().is_url(path)


def _urls():  # noqa: ANN202 - ckptwatch.urls: shared with the watcher, imports nothing of it
    from .. import urls

    return urls


def _url_location(url: str) -> StopLocation:
    """An object-store URL: the stop file when its name is ``ckptwatch.stop``, else the checkpoint prefix."""
    url = _urls().strip(url)
    return StopLocation(url, not url.endswith("/" + STOP_FILE_NAME))


def stop_file_of(where: StopLocation) -> str:
    """The stop file's path or URL (the one place a checkpoint dir becomes its stop file)."""
    if not where.is_dir:
        return where.path
    return _urls().join(where.path, STOP_FILE_NAME) if _is_url(where.path) else os.path.join(where.path, STOP_FILE_NAME)


def look(path: str) -> tuple[tuple[int, int, int], float] | None:
    """``(identity, mtime)`` of the stop file at a path or URL (one ``stat``, or one request), or None."""
    if _is_url(path):
        found = _urls().stat_url(path)
        return None if found is None else ((0, found[1], int(found[0] * 1e9)), found[0])
    try:
        st = os.stat(path)
    except OSError:
        return None
    if _stat.S_ISDIR(st.st_mode):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns), st.st_mtime


def read_request(path: str, mtime: float) -> StopRequest:
    """The request in the stop file at a path or URL (by hand when it is not ckptwatch's JSON)."""
    if _is_url(path):
        data = _urls().read_bytes(path)
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = None
        return StopRequest.from_json(body, mtime)
    return StopRequest.from_json(read_stop_file(path), mtime)


def process_start_time() -> float:
    """When this process started (wall clock), from /proc; the import time where /proc says nothing.

    ``btime`` has whole seconds, so this may be up to a second early: a
    leftover written in the second before the process started may count.
    Read once per process.
    """
    global _started
    if _started is None:
        _started = _read_process_start()
    return _started


def _read_process_start() -> float:
    try:
        with open("/proc/self/stat", "rb") as handle:
            ticks = int(handle.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED
    return min(started, _IMPORTED)


_IMPORTED = time.time()
_started: float | None = None


def run_id_matches(written: str, own: str | None) -> bool:
    """A request from ``written`` counts for a process that knows its watcher's run id ``own``."""
    if not own or not written:
        return True
    return written == own or written.startswith(own + ".")


def counts(request: StopRequest, mtime: float, since: float, run_id: str | None) -> bool:
    """Whether a stop file (its content and mtime) is a request for this process."""
    return mtime >= since and run_id_matches(request.run_id, run_id)


def stop_requested(path: str | os.PathLike[str] | None = None, since: float | None = None) -> bool:
    """True when a listener asked training to stop (for a hand-written loop).

    ``path``: the checkpoint directory or the stop file; default
    ``$CKPTWATCH_STOP_FILE``, else ``$CKPTWATCH_DIR/ckptwatch.stop``. A file
    written before ``since`` (default: when this process started) or by
    another watcher session (``$CKPTWATCH_RUN_ID``) is ignored. For step
    numbers, ``sync=True`` and distributed training, see :class:`StopWatcher`.
    """
    where = locate(path)
    if where is None:
        return False
    stop_file = stop_file_of(where)
    if where.is_dir is None and os.path.isdir(stop_file):
        return stop_requested(os.path.join(stop_file, STOP_FILE_NAME), since)
    found = look(stop_file)
    if found is None:
        return False
    started = process_start_time() if since is None else since
    if found[1] < started:
        return False
    request = read_request(stop_file, found[1])
    return counts(request, found[1], started, os.environ.get("CKPTWATCH_RUN_ID"))
