"""Waking the engine: native notifications are only a hint to look again.

Nothing here decides anything: a notification sets one coalesced flag
(:class:`Waker`) with the top-level name it was about, and the engine looks.
Watches are narrow: DIR itself (not recursive) plus the subdirectories where
a save is under way, and only create, move, delete and close-after-write, so
the watcher's own reads never wake it.

On Linux the engine reads inotify itself (:class:`InotifyWatcher`): the
waker's ``poll`` covers the inotify descriptor, so a commit reaches the scan
without a thread switch. Elsewhere watchdog's observer thread hints
(:class:`ObserverWatcher`).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..report.console import emit
from ..faults import armed

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

__all__ = ["InotifyWatcher", "ObserverWatcher", "Waker", "Watcher"]


class Waker:
    """A coalesced "look again" flag, with hints of where to look.

    A hint is the top-level name under DIR that a notification was about; it
    says where to look, never what happened (the engine looks). Many wakes
    before a scan make one scan.

    The flag is a pipe, so the engine's wait can ``poll`` it together with
    other descriptors (inotify), and any thread or a signal handler can set
    it: a write needs no lock. As the interpreter's wakeup descriptor
    (:meth:`wake_on_signals`), a signal the kernel gives to any thread also
    ends the wait, and Python then runs its handler on the main thread.
    """

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._everything = False
        self._poller = select.poll()
        self._poller.register(self._read_end, select.POLLIN)
        self._sources: dict[int, Callable[[], None]] = {}
        #: The thread running sources inside :meth:`wait`: its hints need no wake, wait returns True.
        self._hinting_thread: int | None = None

    def wake(self) -> None:
        """Look again at what is known (markers), without relisting DIR."""
        if threading.get_ident() == self._hinting_thread:
            return  # a source's hint, inside wait: no write to read back at once
        try:
            os.write(self._write_end, b"w")
        except BlockingIOError:
            pass  # the pipe is full: a wake is already pending

    def hint(self, name: str) -> None:
        """Something changed at top-level entry ``name``."""
        with self._lock:
            self._names.add(name)
        self.wake()

    def hint_names(self, names: set[str]) -> None:
        """Something changed at each of these top-level entries."""
        with self._lock:
            self._names |= names
        self.wake()

    def hint_everything(self) -> None:
        """Hints were lost (or DIR itself changed): list DIR whole."""
        with self._lock:
            self._everything = True
        self.wake()

    def add_source(self, fd: int, on_ready: Callable[[], None]) -> None:
        """Poll ``fd`` in :meth:`wait` too; ``on_ready`` (hinting) runs on the waiting thread."""
        self._sources[fd] = on_ready
        self._poller.register(fd, select.POLLIN)

    def remove_source(self, fd: int) -> None:
        if self._sources.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for a wake; True if woken (the flag is then clear)."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        ready = self._poller.poll(ms)
        self._hinting_thread = threading.get_ident()
        try:
            for fd, _mask in ready:
                if fd == self._read_end:
                    self._drain()
                else:
                    self._sources[fd]()
        finally:
            self._hinting_thread = None
        return bool(ready)

    def _drain(self) -> None:
        try:
            while os.read(self._read_end, 4096):
                pass
        except BlockingIOError:
            pass

    def take(self) -> tuple[bool, set[str]]:
        """``(list everything?, hinted names)`` gathered since the last take."""
        with self._lock:
            everything, names = self._everything, self._names
            self._everything, self._names = False, set()
        return everything, names

    def wake_on_signals(self) -> Callable[[], None]:
        """Make this the interpreter's signal wakeup descriptor (main thread); returns the undo."""
        previous = signal.set_wakeup_fd(self._write_end, warn_on_full_buffer=False)
        return lambda: signal.set_wakeup_fd(previous)

    def close(self) -> None:
        os.close(self._read_end)
        os.close(self._write_end)


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


def Watcher(  # noqa: N802 - a factory
    root: str, waker: Waker, on_overflow: Callable[[], None] | None = None
) -> InotifyWatcher | ObserverWatcher:
    """The native watcher for this platform: inotify read by the engine on Linux, watchdog's observer elsewhere.

    ``CKPTWATCH_NOTIFY=watchdog`` picks watchdog's observer on Linux too. ``on_overflow`` is
    called (on the engine thread) when the kernel's queue overflowed.
    """
    if os.environ.get("CKPTWATCH_NOTIFY") != "watchdog":
        try:
            return InotifyWatcher(root, waker, on_overflow)
        except OSError:
            pass
    return ObserverWatcher(root, waker)


class InotifyWatcher:
    """Raw inotify, read on the engine thread when the waker's ``poll`` says so: a hint per event.

    watchdog's emitter pairs every move through a delayed queue searched
    linearly, and its reader thread competes with the engine for the GIL; we
    need only the name that changed. The kernel's queue overflowing hints
    everything: the engine lists DIR whole.
    """

    def __init__(self, root: str, waker: Waker, on_overflow: Callable[[], None] | None = None) -> None:
        from . import inotify as ino

        self.root = root
        self._waker = waker
        self._on_overflow = on_overflow
        self._ino = ino.Inotify()
        self._mask = (
            ino.IN_CREATE | ino.IN_DELETE | ino.IN_MOVED_FROM | ino.IN_MOVED_TO | ino.IN_CLOSE_WRITE
            | ino.IN_DELETE_SELF | ino.IN_MOVE_SELF | ino.IN_ONLYDIR | ino.IN_DONT_FOLLOW | ino.IN_EXCL_UNLINK
        )
        self._self_gone = ino.IN_DELETE_SELF | ino.IN_MOVE_SELF
        self._overflow = ino.IN_Q_OVERFLOW
        self._ignored = ino.IN_IGNORED
        #: Events that are more than a name to look at again (handled one by one by _on_event).
        self._special = self._self_gone | self._overflow | self._ignored
        self._top_by_wd: dict[int, str] = {}  # "" for DIR itself
        self._wd_by_name: dict[str, int] = {}
        self.failure: str | None = None

    def start(self) -> None:
        """Watch DIR; raises OSError when it cannot be watched."""
        self._add("")
        self._waker.add_source(self._ino.fileno(), self._on_ready)

    def _add(self, name: str) -> None:
        path = os.path.join(self.root, name) if name else self.root
        wd = self._ino.add_watch(path, self._mask)
        self._top_by_wd[wd] = name
        if name:
            self._wd_by_name[name] = wd

    def _on_ready(self) -> None:
        """Read what is queued; the names go to the waker in one hint (this is the commit's path)."""
        try:
            if armed("observer-dies"):
                raise RuntimeError("test hook: reading notifications fails")
            names: set[str] = set()
            special, tops = self._special, self._top_by_wd
            for wd, mask, name in self._ino.read_raw():
                top = tops.get(wd)
                if mask & special or top is None or not (top or name):
                    self._on_event(wd, mask, name)
                else:
                    names.add(top or name.decode(_FS_ENCODING, _FS_ERRORS))
            if names:
                self._waker.hint_names(names)
        except Exception as exc:  # noqa: BLE001 - the engine says so, once, and scans on a timer
            self.failure = f"{type(exc).__name__}: {exc}"
            self.stop()
            self._waker.hint_everything()

    def _on_event(self, wd: int, mask: int, name: bytes) -> None:
        if mask & self._overflow:
            emit("info", "inotify queue overflowed: notifications were lost; listing the directory again",
                 logging.WARNING)
            self._waker.hint_everything()
            if self._on_overflow is not None:
                self._on_overflow()
            return
        top = self._top_by_wd.get(wd)
        if top is None:
            return
        if mask & self._ignored:  # the watch is gone (its directory was deleted or moved)
            del self._top_by_wd[wd]
            if top:
                self._wd_by_name.pop(top, None)
            else:
                self._waker.hint_everything()
            return
        if top:
            self._waker.hint(top)  # something inside a watched subdirectory
        elif name:
            self._waker.hint(os.fsdecode(name))
        elif mask & self._self_gone:
            self._waker.hint_everything()

    # What the engine calls -------------------------------------------------------

    def alive(self) -> bool:
        return self.failure is None

    def watch_subdirs(self, names: list[str]) -> bool:
        """Watch exactly these subdirectories of DIR; True when a watch was added.

        A watch added late may have missed what happened before it: the caller
        looks again when this returns True.
        """
        wanted = set(names)
        for name in [n for n in self._wd_by_name if n not in wanted]:
            wd = self._wd_by_name.pop(name)
            self._top_by_wd.pop(wd, None)
            self._ino.rm_watch(wd)
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
        if self._ino.fd >= 0:
            self._waker.remove_source(self._ino.fileno())
            self._ino.close()


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
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
