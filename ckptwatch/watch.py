"""Waking the engine: native notifications are only a hint to look again.

The observer thread never decides anything: every notification sets one
coalesced flag (:class:`Waker`) and carries no payload; the engine then scans.
Watches are narrow: DIR itself (not recursive) plus the subdirectories where a
save is under way, and only create, move, delete and close-after-write, so
the watcher's own reads never wake it.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from .console import emit
from .faults import armed

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

__all__ = ["InotifyWatcher", "ObserverWatcher", "Waker", "Watcher"]


class Waker:
    """A coalesced "look again" flag, with hints of where to look.

    A hint is the top-level name under DIR that a notification was about; it
    says where to look, never what happened (the engine looks). Many wakes
    before a scan make one scan.
    """

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._everything = False

    def wake(self) -> None:
        """Look again at what is known (markers), without relisting DIR."""
        self._flag.set()

    def hint(self, name: str) -> None:
        """Something changed at top-level entry ``name``."""
        with self._lock:
            self._names.add(name)
        self._flag.set()

    def hint_everything(self) -> None:
        """Hints were lost (or DIR itself changed): list DIR whole."""
        with self._lock:
            self._everything = True
        self._flag.set()

    def wait(self, timeout: float | None) -> bool:
        """Wait for a wake; True if woken. Clears the flag before the caller scans.

        Only a wake is cleared: after a timeout, a wake that lands before the
        clear (a signal handler runs between any two bytecodes) would be lost.
        """
        woken = self._flag.wait(timeout)
        if woken:
            self._flag.clear()
        return woken

    def take(self) -> tuple[bool, set[str]]:
        """``(list everything?, hinted names)`` gathered since the last take."""
        with self._lock:
            everything, names = self._everything, self._names
            self._everything, self._names = False, set()
        return everything, names


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


def Watcher(root: str, waker: Waker) -> InotifyWatcher | ObserverWatcher:  # noqa: N802 - a factory
    """The native watcher for this platform: raw inotify on Linux, watchdog's observer elsewhere."""
    try:
        return InotifyWatcher(root, waker)
    except ImportError:
        return ObserverWatcher(root, waker)


class InotifyWatcher:
    """Raw inotify through watchdog's ``InotifyFD``: one reader thread, a hint per event.

    watchdog's higher-level emitter pairs every move through a delayed queue
    searched linearly; in a burst of saves that costs more than the saves. We
    need only the name that changed, so we take the raw events. The kernel's
    queue overflowing is reported here too (``on_queue_overflow``): then the
    engine lists DIR whole.
    """

    def __init__(self, root: str, waker: Waker) -> None:
        from watchdog.observers.inotify_c import InotifyConstants as C  # noqa: N814
        from watchdog.observers.inotify_c import InotifyFD

        self.root = root
        self._waker = waker
        self._fd = InotifyFD()
        self._mask = (
            C.IN_CREATE | C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO | C.IN_CLOSE_WRITE
            | C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_ONLYDIR | C.IN_DONT_FOLLOW | C.IN_EXCL_UNLINK
        )
        self._self_gone = C.IN_DELETE_SELF | C.IN_MOVE_SELF
        self._top_by_wd: dict[int, str] = {}  # "" for DIR itself
        self._wd_by_name: dict[str, int] = {}
        self.failure: str | None = None

    def start(self) -> None:
        """Watch DIR; raises OSError when it cannot be watched."""
        self._fd.start()
        self._add("")

    def _add(self, name: str) -> None:
        path = os.path.join(self.root, name) if name else self.root
        wd = self._fd.add_callback(os.fsencode(path), self._mask, self, 0)  # type: ignore[arg-type]
        self._top_by_wd[wd] = name
        if name:
            self._wd_by_name[name] = wd

    # watchdog's WatchCallback protocol, called on the reader thread -----------

    def on_event(self, event: Any) -> None:
        try:
            self._on_event(event)
        except Exception as exc:  # noqa: BLE001 - the thread dies; the engine says so, once
            self.failure = f"{type(exc).__name__}: {exc}"
            self._waker.hint_everything()
            raise SystemExit from None  # ends the thread without a traceback on stderr

    def _on_event(self, event: Any) -> None:
        if armed("observer-dies"):
            raise RuntimeError("test hook: the notification thread dies")
        top = self._top_by_wd.get(event.wd)
        if top is None:
            return
        if top:
            self._waker.hint(top)  # something inside a watched subdirectory
        elif event.name:
            self._waker.hint(os.fsdecode(event.name))
        elif event.mask & self._self_gone:
            self._waker.hint_everything()

    def on_watch_deleted(self, wd: int) -> None:
        name = self._top_by_wd.pop(wd, None)
        if name:
            self._wd_by_name.pop(name, None)
        elif name == "":
            self._waker.hint_everything()

    def on_queue_overflow(self) -> None:
        emit("info", "inotify queue overflowed: notifications were lost; listing the directory again",
             logging.WARNING)
        self._waker.hint_everything()

    # What the engine calls -------------------------------------------------------

    def alive(self) -> bool:
        return self.failure is None and self._fd.is_alive()

    def watch_subdirs(self, names: list[str]) -> bool:
        """Watch exactly these subdirectories of DIR; True when a watch was added.

        A watch added late may have missed what happened before it: the caller
        looks again when this returns True.
        """
        wanted = set(names)
        for name in [n for n in self._wd_by_name if n not in wanted]:
            wd = self._wd_by_name.pop(name)
            self._top_by_wd.pop(wd, None)
            try:
                self._fd.remove_callbacks([(wd, 0)])  # type: ignore[list-item]
            except OSError:
                pass  # the directory is gone, and its watch with it
        added = False
        for name in sorted(wanted - set(self._wd_by_name)):
            try:
                self._add(name)
            except OSError as exc:
                _watch_failed(exc)
                continue
            added = True
        return added

    def stop(self) -> None:
        self._fd.stop()
        if self._fd.is_alive():
            self._fd.join(timeout=2)


_warned_limit = False


def _watch_failed(exc: OSError) -> None:
    global _warned_limit
    if exc.errno == errno.ENOSPC and not _warned_limit:
        _warned_limit = True
        emit("info", "inotify watch limit reached; relying on rescans (raise fs.inotify.max_user_watches)",
             logging.WARNING)


class ObserverWatcher:
    """watchdog's observer, for platforms without inotify: a hint per event."""

    def __init__(self, root: str, waker: Waker) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        prefix = os.path.join(root, "")

        def top_level(path: str | bytes) -> str | None:
            path = os.fsdecode(path)
            return path[len(prefix) :].split(os.sep, 1)[0] if path.startswith(prefix) else None

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                for path in (event.src_path, getattr(event, "dest_path", "")):
                    if not path:
                        continue
                    name = top_level(path)
                    if name:
                        waker.hint(name)
                    else:
                        waker.hint_everything()  # DIR itself

        self.root = root
        self._handler = _Wake()
        self._filter = _event_filter()
        self._observer: BaseObserver = Observer()
        self._subdirs: dict[str, ObservedWatch] = {}

    def start(self) -> None:
        """Watch DIR; raises OSError when it cannot be watched."""
        # Start first: a watch scheduled on a running observer raises its
        # errors here, instead of being dropped inside the observer's start.
        self._observer.start()
        self._observer.schedule(self._handler, self.root, recursive=False, event_filter=self._filter)

    def alive(self) -> bool:
        return self._observer.is_alive()

    def watch_subdirs(self, names: list[str]) -> bool:
        """As :meth:`InotifyWatcher.watch_subdirs`."""
        wanted = set(names)
        for name in [n for n in self._subdirs if n not in wanted]:
            watch = self._subdirs.pop(name)
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                pass
        added = False
        for name in wanted - set(self._subdirs):
            path = os.path.join(self.root, name)
            try:
                watch = self._observer.schedule(self._handler, path, recursive=False, event_filter=self._filter)
            except OSError as exc:
                _watch_failed(exc)
                continue
            self._subdirs[name] = watch
            added = True
        return added

    def stop(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=2)
