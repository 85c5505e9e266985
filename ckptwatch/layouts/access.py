"""How layouts read DIR: one small file-access interface, so each commit rule is written once.

A layout asks four things of DIR: list one level, stat a name, read a small
marker, open a file to check its content. :class:`LocalAccess` answers them
with direct system calls (``os.lstat``, ``os.scandir``, ``os.open``): the
local path, which the latency targets measure, gets no extra layer (the
layout binds ``stat`` and ``read`` to these methods). An object store's
implementation (``ckptwatch.sources.objstore.FsspecAccess``) answers the same
questions through fsspec, imported only for a URL.

What an implementation must keep:

- ``stat`` returns None only when the name is not there; a failure to ask
  (network, throttling) raises :class:`StoreUnavailable`, never None, so a
  failed request is never taken as "deleted" or "not committed yet";
- a stat result has ``st_mode``, ``st_size`` and ``st_mtime_ns`` (an object
  store's version, ETag or generation, is folded into ``st_mtime_ns``, so a
  rewrite with the same size in the same second is still a new identity);
- ``atomic_objects``: a file is visible only once whole (an object PUT, a
  completed multipart upload), so content checks and settle times are moot.

Issue 15 (saves under way at every look, incremental observations) builds on
this interface: a new question for DIR is a new method here, answered once
per implementation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, ClassVar, Protocol

__all__ = ["Access", "LocalAccess", "StatLike", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store could not be asked (network error, throttling, an outage): look again later.

    Not an ``OSError`` on purpose: layouts treat an ``OSError`` from a stat
    or a listing as "not there"; this one must reach the engine, which backs
    off and looks again, concluding nothing from the failed look.
    """

    def __init__(self, message: str, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


class StatLike(Protocol):
    st_mode: int
    st_size: int
    st_mtime_ns: int


class Access(Protocol):
    """What a layout may ask of DIR (paths relative to it, ``/``-separated)."""

    root: str
    #: A remote store: no notifications, every question may cost a request.
    remote: bool
    #: A file is visible only once whole.
    atomic_objects: bool

    def join(self, *parts: str) -> str: ...

    def stat(self, rel: str) -> StatLike | None: ...

    def read(self, rel: str, limit: int) -> tuple[bytes, StatLike] | None:
        """Up to ``limit`` bytes of a file and its stat taken with them; None when missing.

        Raises OSError when the name cannot be read as a file (a symbolic
        link: ``ELOOP``; a directory; permissions).
        """
        ...

    def entries(self, rel: str) -> list[tuple[str, bool]]:
        """``(name, is_dir)`` of one level; raises OSError (FileNotFoundError) when it cannot be listed."""
        ...

    def names(self, rel: str) -> Iterator[str]:
        """The names of one level, streamed (nothing when it cannot be listed)."""
        ...

    def source(self, rel: str) -> str | IO[bytes]:
        """What ``open``/``zipfile`` read a file's content from: a path, or an open binary file."""
        ...

    def exists(self, rel: str) -> bool:
        """Whether the name is there (thread-safe: the dispatcher's workers ask it)."""
        ...


class LocalAccess:
    """A local (or mounted) directory, through direct system calls."""

    remote: ClassVar[bool] = False
    atomic_objects: ClassVar[bool] = False

    def __init__(self, root: str) -> None:
        self.root = root

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def stat(self, rel: str) -> os.stat_result | None:
        """``lstat`` of a path under DIR, or None when it is not there."""
        try:
            return os.lstat(os.path.join(self.root, rel))
        except OSError:
            return None

    def read(self, rel: str, limit: int) -> tuple[bytes, os.stat_result] | None:
        """Read without following a symbolic link; the ``fstat`` after the read (see ``Layout.read_marker_stat``)."""
        try:
            fd = os.open(os.path.join(self.root, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit)
            st = os.fstat(handle.fileno())
        return data, st

    def entries(self, rel: str) -> list[tuple[str, bool]]:
        found = []
        with os.scandir(os.path.join(self.root, rel) if rel else self.root) as listing:
            for entry in listing:
                try:
                    found.append((entry.name, entry.is_dir(follow_symlinks=False)))
                except OSError:
                    continue
        return found

    def names(self, rel: str) -> Iterator[str]:
        try:
            with os.scandir(os.path.join(self.root, rel) if rel else self.root) as listing:
                for entry in listing:
                    yield entry.name
        except OSError:
            return

    def source(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def exists(self, rel: str) -> bool:
        return os.path.lexists(os.path.join(self.root, rel))

    def __repr__(self) -> str:
        return f"LocalAccess({self.root!r})"
