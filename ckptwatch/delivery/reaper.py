"""Orphans and escaped children: the watcher as a child subreaper.

A listener's process group covers what it starts, unless a child calls
``setsid``. As a subreaper (``PR_SET_CHILD_SUBREAPER``, or as PID 1 in a
container) the watcher inherits every orphaned descendant, so a timeout can
find and kill all of a listener's tree, and orphans that exit do not linger
as zombies. The reaper must never reap a child that ``subprocess`` is
waiting for, or that child's exit status (exit 3: stop!) would be lost; so
children are started inside :func:`spawning`, which records their pids, and
the reaper waits only for pids it does not know.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Reaper", "become_subreaper", "descendants", "forget", "kill_all", "spawning"]

_PR_SET_CHILD_SUBREAPER = 36
_lock = threading.Lock()
_ours: set[int] = set()


def become_subreaper() -> bool:
    """Ask Linux to make orphaned descendants our children; False where it cannot."""
    if os.getpid() == 1:
        return True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@contextmanager
def spawning() -> Iterator[set[int]]:
    """Start a child inside this block and add its pid to the yielded set."""
    with _lock:
        yield _ours


def forget(pid: int) -> None:
    """``subprocess`` has reaped ``pid``; it is no longer ours to protect."""
    with _lock:
        _ours.discard(pid)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now, setsid'ed ones included (children first)."""
    seen: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        if child not in seen:
            seen.append(child)
            todo += _children(child)
    return seen


def kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Reaper(threading.Thread):
    """Reaps orphaned children that are not ours, every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(name="reaper", daemon=True)
        self.interval = interval
        self._stop_event = threading.Event()
        self.reaped = 0

    def run(self) -> None:
        me = os.getpid()
        while not self._stop_event.wait(self.interval):
            with _lock:
                strangers = [pid for pid in _children(me) if pid not in _ours]
                for pid in strangers:
                    try:
                        done, _ = os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        continue
                    if done:
                        self.reaped += 1

    def stop(self) -> None:
        self._stop_event.set()

