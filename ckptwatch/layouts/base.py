"""What every layout shares: the listing of DIR, the observation, small readers.

A layout turns one look at a directory into an :class:`Observation`: the
committed checkpoints (by the framework's own commit rule, never because a
file appeared) and the saves under way. It reads markers, not every file, and
never writes. Subclasses set the class attributes and implement ``detect`` and
``scan``; most scan entry by entry and look again only where a notification
points (:mod:`.entries`).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from .access import Access, LocalAccess, StatLike

__all__ = [
    "Checkpoint",
    "Layout",
    "Listing",
    "Observation",
    "SaveInProgress",
    "trailing_step",
]

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def trailing_step(name: str) -> int | None:
    """The number a name ends with (``step-100`` -> 100), or None."""
    match = _TRAILING_NUMBER.search(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Listing:
    """The top level of DIR at one instant: real directories and other entries.

    Symbolic links are never followed as directories, so a link cannot lead a
    scan out of DIR. ``dirs`` and ``files`` may be the index's own sets (no copy
    per look): read-only, and only during the look they were given for.
    """

    root: str
    dirs: AbstractSet[str]
    files: AbstractSet[str]
    #: Names hinted since this layout's last look (something in or at them changed);
    #: None when anything may have changed (a full listing, a poll tick, the safety timer).
    changed: frozenset[str] | None = None
    #: How to read below the top level (detection looks into a few step directories); None: local.
    fs: Access | None = None
    #: DIR as the watcher found it (nothing changed since its first listing): what is here
    #: was here before the watcher, not written while it watched.
    as_found: bool = True
    #: False while the first full listing still runs: the names are those hinted or looked at so far.
    complete: bool = True

    @classmethod
    def read(cls, root: str, ignore: frozenset[str] = frozenset(), fs: Access | None = None) -> Listing:
        dirs: set[str] = set()
        files: set[str] = set()
        for name, is_dir in (fs or LocalAccess(root)).entries(""):
            if name not in ignore:
                (dirs if is_dir else files).add(name)
        return cls(root, frozenset(dirs), frozenset(files), fs=fs)

    @property
    def access(self) -> Access:
        return self.fs if self.fs is not None else LocalAccess(self.root)

    @property
    def empty(self) -> bool:
        return not self.dirs and not self.files


@dataclass(frozen=True)
class Checkpoint:
    """One committed save.

    ``path`` is relative to DIR and is what the framework itself would load.
    ``marker`` is that checkpoint's own completion file; its mtime and size
    make the identity, so a rescan of the same save is not new and a re-save
    under the same name is.
    """

    layout: str
    step: int
    path: str
    marker: str
    mtime_ns: int
    size: int

    @cached_property
    def identity(self) -> str:
        return f"{self.layout}|{self.path}|{self.step}|{self.mtime_ns}|{self.size}"


@dataclass(frozen=True)
class SaveInProgress:
    """A save the directory shows as started and not yet committed."""

    step: int
    path: str


@dataclass
class Observation:
    """What DIR says at one instant, in the layout's terms.

    ``watch`` names subdirectories (relative) whose changes matter now, so the
    watcher can add a narrow watch on them. ``problems`` are one-line
    descriptions of anything the scan had to skip, for the log. ``recheck``
    asks for another scan within that many seconds even without a
    notification: a layout that commits a file written in place by "complete
    content, and the same size and mtime at two looks" needs the second look.

    ``delta``: ``committed`` holds only the checkpoints of the entries looked at
    this time (after notifications); every other committed checkpoint was in an
    earlier observation, as it is. ``in_progress`` and ``watch`` are always
    whole. Not a delta: everything DIR holds (the first look, a look at
    everything).
    """

    committed: list[Checkpoint] = field(default_factory=list)
    in_progress: list[SaveInProgress] = field(default_factory=list)
    watch: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    recheck: float | None = None
    delta: bool = False


class Layout:
    """One framework's save protocol on disk.

    ``name`` is the ``--layout`` value; ``starts`` and ``commits`` say in a
    phrase what the layout treats as a save starting and as its commit (shown
    by ``ckptwatch layouts``).
    """

    name: ClassVar[str]
    framework: ClassVar[str]
    starts: ClassVar[str]
    commits: ClassVar[str]
    #: The commit rule on an object store (``s3://``, ``gs://``), for ``ckptwatch layouts``; "" if unsupported.
    object_store: ClassVar[str] = ""
    #: The largest marker file read whole; a larger one is a problem, not a read.
    max_marker_bytes: ClassVar[int] = 1 << 20
    #: Layouts like ``marker:NAME`` and ``glob:PATTERN`` take an argument.
    takes_argument: ClassVar[bool] = False
    argument_help: ClassVar[str] = ""

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        """``argument`` is what follows ``NAME:`` in ``--layout`` (validated here; raise ValueError).

        ``fs`` is how DIR is read (default: the local directory ``root``).
        """
        self.root = root
        self.argument = argument
        self.fs: Access = fs if fs is not None else LocalAccess(root)
        # Bound straight to the access methods: a local stat is one call to os.lstat, no extra layer.
        self.stat = self.fs.stat  # type: ignore[method-assign]
        self.join = self.fs.join  # type: ignore[method-assign]

    #: Top-level names where this layout records every commit, whatever else DIR holds
    #: (TensorFlow's state file): a look at these alone finds each committed checkpoint, so
    #: notifications are served while the first full listing of a big DIR still runs.
    fixed_markers: ClassVar[tuple[str, ...]] = ()

    #: A regular expression (for ``re.search``) that every name ``interesting`` keeps
    #: matches, so a full listing can filter names in C; None: any name may be.
    name_pattern_hint: ClassVar[str | None] = None

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        """Whether a top-level entry can matter to this layout (cheap: called per name).

        Only these reach ``detect`` and ``scan``, so a scan costs in proportion
        to the checkpoints, not to every file beside them. Default: everything.
        """
        return True

    @classmethod
    def only_a_part(cls, name: str) -> bool:
        """Whether ``interesting`` keeps this name only as a part of a checkpoint (TF's ``.index``):
        then, owned by no checkpoint and no save under way, it is ignored (``ckptwatch doctor``)."""
        return False

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        """Why DIR looks like this layout (a phrase for the log), or None."""
        raise NotImplementedError

    def scan(self, listing: Listing) -> Observation:
        """Read the markers under ``listing`` into an observation."""
        raise NotImplementedError

    def diagnose(self) -> list[str]:
        """Suspicious things only a closer look finds (for ``ckptwatch doctor``); default none."""
        return []

    # Helpers shared by the layouts -------------------------------------------

    def join(self, *parts: str) -> str:
        """A path under DIR (bound to ``self.fs.join`` per instance)."""
        return self.fs.join(*parts)

    def stat(self, rel: str) -> StatLike | None:
        """``lstat`` of a path under DIR, or None when it is not there (bound to ``self.fs.stat`` per instance)."""
        return self.fs.stat(rel)

    def read_marker(self, rel: str, problems: list[str]) -> bytes | None:
        """A small marker file's bytes; None (and a problem) when unreadable."""
        got = self.read_marker_stat(rel, problems)
        return got[0] if got else None

    def read_marker_stat(self, rel: str, problems: list[str]) -> tuple[bytes, StatLike] | None:
        """A marker's bytes with the ``fstat`` taken after reading them.

        For a marker written in place, identity must come from the same open
        file after the read: a ``stat`` before the read can see the file
        truncated and the read its new content. None when the size moved
        during the read (still being written: look again).
        """
        try:
            # Never through a symbolic link: a marker pointing elsewhere commits nothing here.
            got = self.fs.read(rel, self.max_marker_bytes + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                problems.append(f"{rel} is a symbolic link; a marker must be a file in DIR")
            else:
                problems.append(f"cannot read {rel}: {exc.strerror or exc}")
            return None
        if got is None:
            return None
        data, st = got
        if len(data) > self.max_marker_bytes:
            problems.append(f"{rel} is larger than {self.max_marker_bytes} bytes; not read as a marker")
            return None
        if st.st_size != len(data):
            return None
        return data, st

    def inside(self, rel: str) -> bool:
        """Whether a relative path stays inside DIR once normalised."""
        norm = os.path.normpath(rel)
        return not (os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep))
