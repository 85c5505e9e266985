"""DIR in an object store (``s3://``, ``gs://``, any fsspec protocol): reading it cheaply, and outages.

An object store sends no notification, has no rename, lists by prefix and
may charge per request. :class:`FsspecAccess` answers the layouts' questions
(``layouts.access``) so that a poll costs few requests:

- the top level is listed once per poll (one LIST per 1,000 entries), and the
  stat of every top-level object comes with it (ETag, size, time): TF's
  ``checkpoint`` and ``.index`` objects, single-file checkpoints, tag files
  cost nothing more;
- a marker below the top (``checkpoint-N/trainer_state.json``,
  ``N/commit_success.txt``, ``step-N/.metadata``) costs one HEAD while it is
  missing (a save under way); once found, its stat is reused from poll to
  poll, and re-checked round robin, at most ``REVERIFY_PER_POLL`` a poll,
  or at once when its checkpoint disappears from the listing;
- a marker's content is read (GET) only when its version changed.

So a poll costs ``ceil(entries / 1000)`` LISTs, plus one or two HEADs per save
under way, plus at most ``REVERIFY_PER_POLL`` HEADs, plus a GET per changed
marker: it grows with the checkpoints listed, never with their files.

A stat's ``st_mtime_ns`` is the object's time in whole seconds (S3 gives
seconds in a HEAD and milliseconds in a listing) plus a number below one
second derived from its version (ETag, generation): the same object gives the
same identity whichever request saw it, and a rewrite in the same second with
the same size is still a new version.

Every failure other than "not found" raises
:class:`~ckptwatch.layouts.access.StoreUnavailable`: the engine concludes
nothing from that look, backs off (:class:`Outage`) and looks again.
"""

from __future__ import annotations

import errno
import logging
import random
import stat as stat_module
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from ..layouts.access import StoreUnavailable
from ..report.console import emit
from ..urls import EXTRAS, filesystem, info_mtime, join, strip

__all__ = ["FsspecAccess", "ObjectStat", "Outage", "REVERIFY_PER_POLL", "open_store"]

#: Markers below the top level whose stat is checked again per poll, round robin.
REVERIFY_PER_POLL = 20
#: Block size for the few content reads (a zip's tail, a pickled step): not fsspec's megabytes.
_READ_BLOCK = 1 << 16
_FILE_MODE = stat_module.S_IFREG | 0o644
_DIR_MODE = stat_module.S_IFDIR | 0o755
_THROTTLED = ("SlowDown", "reduce your request rate", "Throttl", "TooManyRequests", "RequestLimitExceeded",
              "rateLimitExceeded")

T = TypeVar("T")


@dataclass(frozen=True)
class ObjectStat:
    """What ``os.lstat`` would say of an object (or a prefix, as a directory)."""

    st_mode: int
    st_size: int
    st_mtime_ns: int
    version: str = ""

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9


def object_stat(info: dict[str, Any]) -> ObjectStat:
    if info.get("type") == "directory":
        return ObjectStat(_DIR_MODE, 0, 0)
    version = str(info.get("ETag") or info.get("etag") or info.get("generation") or info.get("md5Hash")
                  or info.get("VersionId") or "").strip('"')
    seconds = int(info_mtime(info))
    fraction = zlib.crc32(version.encode()) % 1_000_000_000 if version else 0
    return ObjectStat(_FILE_MODE, int(info.get("size") or 0), seconds * 1_000_000_000 + fraction, version)


def _throttled(exc: BaseException, text: str) -> bool:
    """Whether a failure is the store asking to slow down (429, 503, SlowDown), not an outage.

    s3fs turns SlowDown and 503 into ``OSError(EBUSY)``; gcsfs keeps the HTTP code in ``.code``.
    """
    if isinstance(exc, OSError) and exc.errno == errno.EBUSY:
        return True
    if getattr(exc, "code", None) in (429, 503, "429", "503"):
        return True
    return any(mark in text for mark in _THROTTLED)


class FsspecAccess:
    """``layouts.access.Access`` for a URL, through fsspec; counts its requests per poll."""

    remote = True
    atomic_objects = True

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, fs: Any = None) -> None:
        """Raises ``urls.MissingProtocol`` when the protocol cannot be used here."""
        self.root = strip(url)
        self.fs = fs if fs is not None else filesystem(self.root, storage_options)
        self._base = self.fs._strip_protocol(self.root).rstrip("/")
        #: Requests made since the last :meth:`begin_poll` (the debug log, the bench).
        self.requests = 0
        self.total_requests = 0
        self._listed: dict[str, dict[str, ObjectStat]] = {}  # this poll: folder -> name -> stat
        self._nested: dict[str, ObjectStat] = {}  # markers below the top level found, kept across polls
        self._checked: set[str] = set()  # nested names asked about in this poll
        self._verified: dict[str, int] = {}  # nested name -> the poll that last asked the store
        self._budget = REVERIFY_PER_POLL
        self._content: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._polls = 0
        self._lock = threading.Lock()

    # The poll ------------------------------------------------------------------------

    def begin_poll(self) -> None:
        """A new look: listings and missing markers are asked again; found markers partly."""
        self._polls += 1
        self.requests = 0
        self._listed = {}
        self._checked = set()
        self._budget = REVERIFY_PER_POLL
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One request; FileNotFoundError passes, anything else is the store being unavailable."""
        with self._lock:
            self.requests += 1
            self.total_requests += 1
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, throttling, auth: look again later
            text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            raise StoreUnavailable(text[:300], throttled=_throttled(exc, text)) from exc

    def _path(self, rel: str) -> str:
        return f"{self._base}/{rel}" if rel else self._base

    # Access ----------------------------------------------------------------------------

    def join(self, *parts: str) -> str:
        return join(self.root, "/".join(p for p in parts if p))

    def entries(self, rel: str) -> list[tuple[str, bool]]:
        """One level, listed once per poll; every object's stat comes with it."""
        listed = self._listed.get(rel)
        if listed is None:
            listed = self._list(rel)
        return [(name, stat_module.S_ISDIR(st.st_mode)) for name, st in listed.items()]

    def _list(self, rel: str) -> dict[str, ObjectStat]:
        path = self._path(rel)
        try:
            infos = self._call(self.fs.ls, path, detail=True)
        except FileNotFoundError:
            infos = []  # an empty prefix: nothing saved there yet (a bucket that is missing: see check())
        with self._lock:  # a listing comes in pages of 1,000 (S3, GCS): one request each
            extra = max(0, -(-len(infos) // 1000) - 1)
            self.requests += extra
            self.total_requests += extra
        listed: dict[str, ObjectStat] = {}
        for info in infos:
            name = str(info.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
            if name and str(info.get("name", "")).rstrip("/") != path:
                listed[name] = object_stat(info)
        self._listed[rel] = listed
        if rel == "":
            # A checkpoint gone from the listing: its markers are asked again if it comes back.
            for nested in [n for n in self._nested if n.split("/", 1)[0] not in listed]:
                del self._nested[nested]
                self._verified.pop(nested, None)
        return listed

    def stat(self, rel: str) -> ObjectStat | None:
        folder, _, name = rel.rpartition("/")
        listed = self._listed.get(folder)
        if listed is not None:
            return listed.get(name)
        known = self._nested.get(rel)
        if rel in self._checked or (known is not None and not self._due(rel)):
            return known
        self._checked.add(rel)
        try:
            found = object_stat(self._call(self.fs.info, self._path(rel)))
        except FileNotFoundError:
            self._nested.pop(rel, None)
            self._verified.pop(rel, None)
            return None
        self._nested[rel] = found
        self._verified[rel] = self._polls
        return found

    def _due(self, rel: str) -> bool:
        """Whether a found marker's stat is asked again now: the poll's budget allows, and it is
        among the oldest verified (not verified for a full round of the budget)."""
        if self._budget <= 0:
            return False
        period = -(-len(self._nested) // REVERIFY_PER_POLL)
        if self._polls - self._verified.get(rel, 0) < period:
            return False
        self._budget -= 1
        return True

    def read(self, rel: str, limit: int) -> tuple[bytes, ObjectStat] | None:
        """The object's first ``limit`` bytes, read again only when its version changed."""
        st = self.stat(rel)
        if st is None:
            return None
        if stat_module.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", rel)
        key = (st.st_mtime_ns, st.st_size)
        cached = self._content.get(rel)
        if cached is not None and cached[0] == key:
            return cached[1], st
        try:
            data = self._call(self.fs.cat_file, self._path(rel), start=0, end=min(limit, st.st_size))
        except FileNotFoundError:
            return None
        if len(data) != min(limit, st.st_size):
            return None  # replaced between the stat and the read: look again
        if len(self._content) > 4096:
            self._content.clear()
        self._content[rel] = (key, data)
        return data, st

    def names(self, rel: str) -> Iterator[str]:
        try:
            yield from (name for name, _ in self.entries(rel))
        except OSError:
            return

    def source(self, rel: str) -> IO[bytes]:
        return self._call(self.fs.open, self._path(rel), "rb", block_size=_READ_BLOCK, cache_type="readahead")

    def exists(self, rel: str) -> bool:
        """Asked by the dispatcher's threads: a fresh request, no cache."""
        try:
            self._call(self.fs.info, self._path(rel))
        except FileNotFoundError:
            return False
        except StoreUnavailable:
            return True  # cannot tell: hand the checkpoint over rather than call it vanished
        return True

    def check(self) -> None:
        """At start: the bucket exists (FileNotFoundError if not); StoreUnavailable when it cannot be asked."""
        if self.root.split("://", 1)[0].lower() not in EXTRAS:
            return  # no buckets (memory://, ...): an empty prefix is just empty
        bucket = self._base.split("/", 1)[0]
        try:
            self._call(self.fs.ls, bucket, detail=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.root}: the bucket {bucket} does not exist (or is not visible "
                                    "with these credentials)") from None

    def __repr__(self) -> str:
        return f"FsspecAccess({self.root!r})"


def open_store(url: str, storage_options: dict[str, Any] | None = None) -> FsspecAccess:
    """The access to a URL DIR, its bucket checked once.

    Raises ``urls.MissingProtocol`` (nothing installed for the protocol) or
    FileNotFoundError (no such bucket): usage errors. A store that cannot be
    reached yet is only said: the session looks again with back-off.
    """
    access = FsspecAccess(url, storage_options)
    try:
        access.check()
    except StoreUnavailable as exc:
        emit("store", f"{access.root} cannot be reached yet ({exc}); the watcher keeps looking", logging.WARNING)
    return access


class Outage:
    """Exponential back-off while the store cannot be asked, with one log line each way.

    The first failed poll says what failed and that ckptwatch backs off; the
    first poll that works again says how long it lasted. Nothing is concluded
    from a failed poll, so the next look delivers what came meanwhile, once.
    """

    def __init__(self, url: str, interval: float, cap: float = 60.0) -> None:
        self.url = url
        self.interval = interval
        self.cap = max(cap, interval)
        self.failures = 0
        self.since: float | None = None
        self.outages = 0

    def failed(self, exc: StoreUnavailable) -> float:
        """Seconds to wait before the next look."""
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            self.outages += 1
            what = "throttled" if exc.throttled else "unreachable"
            emit("store", f"{self.url} {what} ({exc}); looking again with exponential back-off "
                 f"(up to {self.cap:g} s), nothing is lost meanwhile", logging.WARNING, url=self.url,
                 outage="begin", throttled=exc.throttled)
        delay = min(self.cap, max(self.interval, 0.5) * 2 ** self.failures)
        return delay * random.uniform(0.8, 1.0)

    def succeeded(self) -> None:
        if self.since is None:
            return
        lasted = time.monotonic() - self.since
        emit("store", f"{self.url} reachable again after {lasted:.1f} s ({self.failures} failed look(s))",
             url=self.url, outage="end", seconds=round(lasted, 3), failed_looks=self.failures)
        self.since = None
        self.failures = 0
