"""The watcher's own state file, ``STATE_DIR/status.json``: its format, writing and reading.

Why a file: ``ckptwatch status`` must answer from the state directory alone,
from another process or container, and after the watcher died. The watcher
rewrites the file atomically (a temp file in the same directory, then a
rename), so a reader sees a whole old version or a whole new one. Whether the
watcher that wrote it still runs is told by the journal's ``lock`` file, which
a running session holds with ``flock``: the kernel lets go of it when the
process dies, ``kill -9`` included.

The format (``version`` 1; fields are only added, never renamed)::

    version      1
    state        waiting (for DIR to exist) | running | between-sessions | ended
    pid, pid_start, host, ckptwatch (version), updated (unix time)
    dir, state_dir, stop_file, run_id, session_started, layout, layout_why
    listeners    {name: {last_step_handled, runs, failures, last_failure}}
                 last_failure: {event, step, status, exit_code, line, time}
    last_commit  {step, checkpoint, time, run_id} | null (kept across sessions)
    commits      committed checkpoints this session
    stale_after  seconds | null;  stale_origin: the time staleness counts from
                 (the last commit of this session, else the session's start)
    stale        {since, seconds_since_commit, step} | null
    stop         {step, checkpoint, listeners, reason, time} | null (this session)
    metrics      the metrics URL | null
    ended        {reason, time, exit_status, exit_reason} | null

This module imports nothing heavy: ``status`` is a container's health check.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from typing import Any

from ..integrations.jsonfile import replace_text

__all__ = [
    "LOCK_NAME",
    "PROGRESS_NAME",
    "STATUS_NAME",
    "STATUS_VERSION",
    "lock_state",
    "start_ticks",
    "write_status",
]

STATUS_NAME = "status.json"
STATUS_VERSION = 1
#: Written by the journal's owner (``delivery/journal.py``), held by a running session.
LOCK_NAME = "lock"
#: ``report/progress.py``'s, for training: the last step whose ``after_save`` listeners all finished.
PROGRESS_NAME = "progress.json"


def write_status(path: str, body: dict[str, Any]) -> None:
    """Replace the status file at ``path`` atomically (``jsonfile``: no fsync, it is advice)."""
    replace_text(path, json.dumps(body, ensure_ascii=True, indent=1, default=str) + "\n")


def lock_state(state_dir: str) -> str:
    """``held`` (a watcher's session runs), ``free``, ``missing`` (never used) or ``unknown``.

    Tries a shared lock for an instant, without waiting; a watcher starting in
    that instant waits it out (``journal._lock_with_grace``).
    """
    try:
        fd = os.open(os.path.join(state_dir, LOCK_NAME), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unknown"
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return "held" if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else "unknown"
    finally:
        os.close(fd)  # closing lets go of the shared lock
    return "free"


def start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (a pid alone may be reused); None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == b"Z":  # a zombie has exited
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
