"""Waking the engine: native notifications are only a hint to look again.

The observer thread never decides anything: every notification sets one
coalesced flag (:class:`Waker`) and carries no payload; the engine then scans.
Watches are narrow: DIR itself (not recursive) plus the subdirectories where a
save is under way, and only create, move, delete and close-after-write, so
the watcher's own reads never wake it.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from .console import emit

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

__all__ = ["Waker", "Watcher"]


class Waker:
    """A coalesced "look again" flag: many wakes before a scan make one scan."""

    def __init__(self) -> None:
        self._flag = threading.Event()

    def wake(self) -> None:
        self._flag.set()

    def wait(self, timeout: float | None) -> bool:
        """Wait for a wake; True if woken. Clears the flag before the caller scans."""
        woken = self._flag.wait(timeout)
        self._flag.clear()
        return woken


def _event_filter() -> list[type[Any]]:
    from watchdog import events as ev

    return [
        ev.FileCreatedEvent,
        ev.DirCreatedEvent,
        ev.FileMovedEvent,
        ev.DirMovedEvent,
        ev.FileDeletedEvent,
        ev.DirDeletedEvent,
        ev.FileClosedEvent,
    ]


class Watcher:
    """A watchdog observer on DIR and on a changing set of its subdirectories."""

    def __init__(self, root: str, waker: Waker) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: object) -> None:
                waker.wake()

        self.root = root
        self._handler = _Wake()
        self._filter = _event_filter()
        self._observer: BaseObserver = Observer()
        self._subdirs: dict[str, ObservedWatch] = {}
        self._warned_limit = False

    def start(self) -> None:
        """Watch DIR; raises OSError when it cannot be watched."""
        # Start first: a watch scheduled on a running observer raises its
        # errors here, instead of being dropped inside the observer's start.
        self._observer.start()
        self._observer.schedule(self._handler, self.root, recursive=False, event_filter=self._filter)

    def alive(self) -> bool:
        return self._observer.is_alive()

    def watch_subdirs(self, names: list[str]) -> bool:
        """Watch exactly these subdirectories of DIR; True when a watch was added.

        A watch added late may have missed what happened before it: the caller
        scans again when this returns True.
        """
        wanted = set(names)
        for name in [n for n in self._subdirs if n not in wanted]:
            watch = self._subdirs.pop(name)
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                pass  # the directory is gone, and its watch with it
        added = False
        for name in wanted - set(self._subdirs):
            path = os.path.join(self.root, name)
            try:
                watch = self._observer.schedule(self._handler, path, recursive=False, event_filter=self._filter)
            except OSError as exc:
                if exc.errno == 28 and not self._warned_limit:  # ENOSPC: inotify watch limit
                    self._warned_limit = True
                    emit("info", "inotify watch limit reached; relying on rescans "
                         "(raise fs.inotify.max_user_watches)", logging.WARNING)
                continue
            self._subdirs[name] = watch
            added = True
        return added

    def stop(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=2)
