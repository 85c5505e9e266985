"""Linux inotify, read on the engine's own thread.

A reader thread (watchdog's ``InotifyFD``) costs a thread switch on every
commit, fights the engine for the GIL while it scans, and 60 ms of imports at
start. The engine instead polls this descriptor together with its wake pipe
(:class:`~ckptwatch.watch.Waker`) and reads the events itself: the hop from
the kernel to a scan is a ``poll`` returning.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import NamedTuple

__all__ = ["Inotify", "InotifyEvent"]

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
_READ_SIZE = 1 << 16


class InotifyEvent(NamedTuple):
    wd: int
    mask: int
    name: bytes


class Inotify:
    """One inotify instance, non-blocking; :meth:`read` takes what is queued."""

    def __init__(self) -> None:
        """Raises OSError where the kernel or libc has no inotify."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._init1 = libc.inotify_init1
            self._add = libc.inotify_add_watch
            self._rm = libc.inotify_rm_watch
        except (OSError, AttributeError) as exc:
            raise OSError(f"no inotify in this C library ({exc})") from None
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = self._init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        self.fd: int = fd

    def fileno(self) -> int:
        return self.fd

    def add_watch(self, path: str, mask: int) -> int:
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise _os_error("inotify_add_watch", path)
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        """Remove a watch; one whose directory is gone went with it (no error)."""
        self._rm(self.fd, wd)

    def read(self) -> list[InotifyEvent]:
        """Every event queued now (none when nothing is)."""
        return [InotifyEvent(wd, mask, name) for wd, mask, name in self.read_raw()]

    def read_raw(self) -> list[tuple[int, int, bytes]]:
        """The same as plain ``(wd, mask, name)`` tuples (the engine's hot path)."""
        events: list[tuple[int, int, bytes]] = []
        unpack, size = _HEADER.unpack_from, _HEADER.size
        while True:
            try:
                buf = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            pos, end = 0, len(buf)
            while pos < end:
                wd, mask, _cookie, length = unpack(buf, pos)
                pos += size
                events.append((wd, mask, buf[pos : pos + length].rstrip(b"\0")))
                pos += length
            if end < _READ_SIZE - 4096:
                return events  # a short read (or none): the queue is empty

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _os_error(call: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}", path)
