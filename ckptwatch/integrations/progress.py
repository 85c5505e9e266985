"""The progress file: how far the watcher has got, for training (``sync=True``) and ``ckptwatch status``.

``ckptwatch run`` keeps ``STATE_DIR/progress.json`` (default state dir
``DIR/.ckptwatch/``; ``--state-dir``), replaced atomically (a temp file, then
a rename: a reader sees the old file or the whole new one) at the start and
end of each session and each time every ``after_save`` run of a save has
finished. The writer is ``ckptwatch/report/progress.py``; this module holds
the format and the reading side, and imports nothing of the watcher.

Fields (``version`` 1; readers ignore fields they do not know):

==================  ==========================================================
``version``         1
``run_id``          the watcher session's run id (as in the stop file, the
                    listeners' ``CKPTWATCH_RUN_ID``)
``pid``             the watcher's process id
``host``            the watcher's host name
``pid_ns``          its pid namespace (``/proc/self/ns/pid`` inode), or null:
                    ``pid`` means something only where this matches
``dir``             the checkpoint directory
``stop_file``       the stop file's path
``state_dir``       the state directory
``role``            ``chief`` or ``worker`` (a worker never writes the stop file)
``layout``          the layout in use, or null while undecided
``started``         when the session started (Unix time)
``updated``         when this file was written (Unix time)
``step``            the last step whose ``after_save`` runs have all finished,
                    every earlier commit of the session finished too; null
                    before the first
``checkpoint``      that step's checkpoint path, or null
``committed_step``  the last step seen committed (its listeners may still run)
``pending``         saves committed whose ``after_save`` runs have not all
                    finished
``saves``           saves whose ``after_save`` runs have all finished, this session
``stop``            whether a listener asked for a stop in this session
``stop_step``       the step of the latest request, or null
``stop_reason``     its reason (the stop file's), or null
``recent``          the last 32 finished saves, oldest first: objects with
                    ``step``, ``checkpoint``, ``saved`` (the mtime of the
                    save's commit marker: when the framework committed it),
                    ``committed`` (when the watcher saw the commit),
                    ``finished``, ``stop`` (a listener of this save asked)
``ended``           null while the session runs; then why it ended
                    (``command``, ``signal``, ``idle``, ``once``, ``dir-gone``,
                    ``forced``...)
==================  ==========================================================

Where training finds it (:func:`locate_progress`): the state dir given, else
``$CKPTWATCH_STATE_DIR`` (``ckptwatch run DIR -- COMMAND`` sets it), else
``DIR/.ckptwatch/progress.json`` for the checkpoint directory in use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .jsonfile import read_object

__all__ = [
    "PROGRESS_FILE_NAME",
    "PROGRESS_VERSION",
    "STATE_DIR_NAME",
    "Progress",
    "Save",
    "locate_progress",
    "read_progress",
    "watcher_gone",
]

PROGRESS_FILE_NAME = "progress.json"
PROGRESS_VERSION = 1
#: The default state directory's name inside DIR (``ckptwatch run``'s default ``--state-dir``).
STATE_DIR_NAME = ".ckptwatch"


@dataclass(frozen=True)
class Save:
    """One save whose ``after_save`` runs have all finished."""

    step: int | None
    checkpoint: str | None
    saved: float | None
    committed: float | None
    finished: float | None
    stop: bool


@dataclass(frozen=True)
class Progress:
    """The progress file's content (see the module docstring for each field)."""

    run_id: str
    step: int | None = None
    checkpoint: str | None = None
    committed_step: int | None = None
    pending: int = 0
    saves: int = 0
    stop: bool = False
    stop_step: int | None = None
    stop_reason: str | None = None
    recent: tuple[Save, ...] = ()
    ended: str | None = None
    pid: int | None = None
    host: str | None = None
    pid_ns: int | None = None
    role: str = "chief"
    updated: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Progress:
        def number(key: str) -> int | None:
            value = body.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        def stamp(value: Any) -> float | None:
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        recent = []
        for item in body.get("recent") or ():
            if isinstance(item, dict):
                step = item.get("step")
                recent.append(Save(step if isinstance(step, int) and not isinstance(step, bool) else None,
                                   item.get("checkpoint"), stamp(item.get("saved")), stamp(item.get("committed")),
                                   stamp(item.get("finished")), bool(item.get("stop"))))
        return cls(
            run_id=str(body.get("run_id") or ""),
            step=number("step"),
            checkpoint=body.get("checkpoint") if isinstance(body.get("checkpoint"), str) else None,
            committed_step=number("committed_step"),
            pending=number("pending") or 0,
            saves=number("saves") or 0,
            stop=bool(body.get("stop")),
            stop_step=number("stop_step"),
            stop_reason=body.get("stop_reason") if isinstance(body.get("stop_reason"), str) else None,
            recent=tuple(recent),
            ended=str(body["ended"]) if body.get("ended") else None,
            pid=number("pid"),
            host=body.get("host") if isinstance(body.get("host"), str) else None,
            pid_ns=number("pid_ns"),
            role=str(body.get("role") or "chief"),
            updated=stamp(body.get("updated")),
            raw=body,
        )


def read_progress(path: str) -> Progress | None:
    """The progress file at ``path`` (a file, or a state directory), or None when there is none."""
    if os.path.isdir(path):
        path = os.path.join(path, PROGRESS_FILE_NAME)
    body = read_object(path)
    return Progress.from_json(body) if body is not None else None


def locate_progress(state_dir: str | os.PathLike[str] | None, checkpoint_dir: str | None) -> str | None:
    """The progress file's path: ``state_dir``, else ``$CKPTWATCH_STATE_DIR``, else ``DIR/.ckptwatch``."""
    folder = os.fspath(state_dir) if state_dir is not None else os.environ.get("CKPTWATCH_STATE_DIR")
    if not folder:
        if not checkpoint_dir or "://" in checkpoint_dir:
            return None  # a DIR in an object store: the state dir is the watcher's own; name it
        folder = os.path.join(checkpoint_dir, STATE_DIR_NAME)
    return os.path.join(os.path.abspath(folder), PROGRESS_FILE_NAME)


def own_pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def watcher_gone(progress: Progress) -> str | None:
    """Why the watcher that wrote ``progress`` will write no more (ended, or its process is gone), or None.

    A process is checked only on the same host and in the same pid namespace
    (a sidecar in another container has other pids).
    """
    if progress.ended:
        return f"its session ended ({progress.ended})"
    if progress.pid is None or progress.host != os.uname().nodename:  # socket.gethostname(), without socket
        return None
    if progress.pid_ns is None or progress.pid_ns != own_pid_namespace():
        return None
    try:
        os.kill(progress.pid, 0)
    except ProcessLookupError:
        return f"its process {progress.pid} is gone"
    except PermissionError:
        return None
    return None
