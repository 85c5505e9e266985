"""The stop file: how a listener's "stop training" reaches the training job.

The watcher writes it atomically (a temp file in the same directory, fsync,
rename), as JSON that says who asked, at which step and why. Training checks
for it with :func:`stop_requested`, which ignores a file older than the
training process itself: a request left over from a finished run never stops
the next one, and the watcher never deletes a request that training may not
have seen yet.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..faults import crash_point

__all__ = ["StopRequest", "read_stop_file", "stop_requested", "write_stop_file"]


@dataclass(frozen=True)
class StopRequest:
    step: int | None
    checkpoint: str | None
    listeners: list[str]
    reason: str
    run_id: str
    time: float = field(default_factory=time.time)

    @property
    def listener(self) -> str:
        return ", ".join(self.listeners)


def write_stop_file(path: str, request: StopRequest) -> None:
    """Write ``path`` atomically; a reader sees the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    body = asdict(request)
    body["listener"] = request.listener
    import tempfile  # rarely needed: not at every start

    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, ensure_ascii=True, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("stop-file-rename")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_stop_file(path: str) -> dict[str, Any] | None:
    """The stop request at ``path``, or None when there is none (or it is unreadable)."""
    try:
        with open(path, encoding="utf-8") as handle:
            body = json.load(handle)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


_PROCESS_START = time.time()


def stop_requested(path: str | None = None, since: float | None = None) -> bool:
    """True when a listener asked training to stop (for the training loop).

    ``path`` defaults to ``$CKPTWATCH_STOP_FILE`` (set by ``ckptwatch run ...
    -- COMMAND``). A file written before ``since`` (default: when this module
    was imported, i.e. when training started) is a leftover and is ignored.
    """
    path = path or os.environ.get("CKPTWATCH_STOP_FILE")
    if not path:
        return False
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return False
    return mtime >= (_PROCESS_START if since is None else since)
