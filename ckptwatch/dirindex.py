"""The top level of DIR, kept up to date by name instead of relisted at every wake.

Listing a directory costs time in proportion to its entries (about 1 ms per
2,000 here, half a second for a million), so a watcher that lists DIR at every
notification falls behind in a burst of saves and burns CPU next to a big
directory. The index lists DIR whole only when it must (at the start, when
asked, and on a timer only if DIR's mtime moved); otherwise it re-``lstat``s
the names that notifications hinted at. That stays level-triggered, per name:
a hint says where to look, the file system says what is there, so a lost,
doubled or reordered hint cannot double an event, and the next full listing
finds what a lost one hid.

Each layout says which names interest it (``Layout.interesting``); the index
keeps one small view per layout, so a layout's scan costs in proportion to
its checkpoints, not to the files beside them.
"""

from __future__ import annotations

import itertools
import operator
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from .faults import hold_point
from .layouts.access import Access
from .layouts.base import Layout, Listing

__all__ = ["DirIndex", "let_others_run", "matching_entries"]

_entry_name = operator.attrgetter("name")

#: An mtime this much older than the listing that read it cannot hide a later change
#: in the same coarse clock tick (the "racy mtime" of git's index).
_RACY_NS = 100_000_000


class _View:
    """The entries one layout class finds interesting."""

    def __init__(self, layout: type[Layout]) -> None:
        self.layout = layout
        self.dirs: set[str] = set()
        self.files: set[str] = set()
        self.changed: set[str] | None = None  # None: anything may have changed

    def put(self, name: str, is_dir: bool | None) -> None:
        """Record ``name`` as a dir, a file, or gone (None)."""
        self.dirs.discard(name)
        self.files.discard(name)
        if is_dir is not None and self.layout.interesting(name, is_dir):
            (self.dirs if is_dir else self.files).add(name)

    def touch(self, name: str) -> None:
        if self.changed is not None:
            self.changed.add(name)


class DirIndex:
    def __init__(
        self, root: str, candidates: list[type[Layout]], ignore: frozenset[str] = frozenset(),
        fs: Access | None = None,
    ) -> None:
        """Index DIR for these candidate layouts: only names one of them finds interesting are kept.

        ``fs``: a remote store (``FsspecAccess``), listed through it at every
        :meth:`relist` (a poll); None: the local directory, listed directly.
        """
        self.root = root
        self.fs = fs if fs is not None and fs.remote else None
        self.ignore = ignore
        self._candidates = list(candidates)
        self._name_filter = _name_filter(self._candidates)
        self._entries: dict[str, bool] = {}  # interesting name -> is a directory
        self._views: dict[type[Layout], _View] = {}
        self._listed_mtime: int | None = None
        self._listed_at = 0
        self.full_listings = 0
        #: Something in DIR changed since the first listing (a hint, or a later listing that differs).
        self._moved = False
        self._background: _BackgroundListing | None = None

    @property
    def candidates(self) -> list[type[Layout]]:
        """The layouts whose names the index keeps (one, once auto-detection has decided)."""
        return self._candidates

    def _keep(self, name: str, is_dir: bool) -> bool:
        return any(cls.interesting(name, is_dir) for cls in self._candidates)

    def narrow(self, layout: type[Layout]) -> None:
        """From now on only ``layout`` matters (auto-detection decided): forget the rest."""
        self._candidates = [layout]
        self._name_filter = _name_filter(self._candidates)
        self._entries = {n: d for n, d in self._entries.items() if layout.interesting(n, d)}
        self._views = {cls: view for cls, view in self._views.items() if cls is layout}

    def view(self, layout: type[Layout]) -> Listing:
        """The interesting part of DIR for ``layout``, for its scan: what changes next is news."""
        listing = self.peek(layout)
        self._views[layout].changed = set()
        return listing

    def peek(self, layout: type[Layout]) -> Listing:
        """The same listing without taking the changes (for detection, which is no scan).

        Its names are the view's own sets, not copies (a copy per look would cost
        in proportion to the checkpoints): read them before the index changes again.
        """
        view = self._views.get(layout)
        if view is None:
            view = self._views[layout] = _View(layout)
            for name, is_dir in self._entries.items():
                view.put(name, is_dir)
        changed = None if view.changed is None else frozenset(view.changed)
        return Listing(self.root, view.dirs, view.files, changed=changed, fs=self.fs, as_found=not self._moved,
                       complete=self._background is None)

    def everything_changed(self) -> None:
        """The next look of every layout is at everything (a poll tick, the safety timer)."""
        for view in self._views.values():
            view.changed = None

    def relist(self, *, only_if_changed: bool = False) -> bool:
        """List DIR whole; with ``only_if_changed``, skip when its mtime says nothing moved.

        Raises FileNotFoundError/NotADirectoryError when DIR is gone. True when it listed.
        """
        if self.fs is not None:
            self._relist_remote()
            return True
        self._background = None  # this listing is newer than one still running
        st = os.stat(self.root)
        if (
            only_if_changed
            and st.st_mtime_ns == self._listed_mtime
            and self._listed_at - st.st_mtime_ns > _RACY_NS
        ):
            return False
        started = time.time_ns()
        self._replace(self._list(self._name_filter))
        self._listed_mtime = st.st_mtime_ns
        self._listed_at = started
        return True

    def relist_in_background(self, done: Callable[[], None]) -> None:
        """Start a full listing on a thread; :meth:`refresh` keeps serving hinted names meanwhile.

        Beside a million files a listing takes a second or more. The watch on
        DIR is set before this starts, so every name that changes while the
        listing runs is hinted; :meth:`merge_listing` looks at each of those
        again after taking the listing in, so the merged index says what a
        listing taken at that moment would. ``done`` is called on the thread
        when the listing is ready to merge. Local DIR only (a store is polled).
        """
        st = os.stat(self.root)
        pattern = self._name_filter
        self._background = _BackgroundListing(lambda: self._list(pattern, let_others_run), st.st_mtime_ns, done)

    @property
    def listing_pending(self) -> bool:
        """A background listing has started and is not merged yet: the index knows hinted names only."""
        return self._background is not None

    def merge_listing(self) -> bool:
        """Take a finished background listing in (True), or say it is still running (False).

        Raises what the listing raised (FileNotFoundError: DIR is gone).
        """
        background = self._background
        if background is None or not background.finished:
            return False
        self._background = None
        if background.error is not None:
            raise background.error
        assert background.entries is not None
        # The candidates may have narrowed while it ran; the names hinted meanwhile are looked at again.
        self._replace({n: d for n, d in background.entries.items() if self._keep(n, d)})
        self._listed_mtime = background.mtime
        self._listed_at = background.started
        self.refresh(background.hinted)
        return True

    def _replace(self, entries: dict[str, bool]) -> None:
        """A full listing's entries replace the index; every view's next look is at everything."""
        changed = [n for n in self._entries.keys() - entries.keys()]
        changed += [n for n, d in entries.items() if self._entries.get(n) is not d]
        self._moved = self._moved or bool(changed and self.full_listings)
        self._entries = entries
        for view in self._views.values():
            for name in changed:
                view.put(name, entries.get(name))
            view.changed = None
        self.full_listings += 1

    def _relist_remote(self) -> None:
        """A poll of an object store: a new look, one listing (the store has no mtime to skip it by)."""
        assert self.fs is not None
        self.fs.begin_poll()  # type: ignore[attr-defined]
        self._replace({name: is_dir for name, is_dir in self.fs.entries("")
                       if name not in self.ignore and self._keep(name, is_dir)})

    def _list(self, pattern: re.Pattern[str] | None, pause: Callable[[], None] | None = None) -> dict[str, bool]:
        """Every entry the candidates keep, its kind from the directory itself (``d_type``).

        With ``pattern`` (the layouts' name patterns), names are filtered in C
        first: beside a million unrelated files that takes two thirds of the
        time. ``pause`` runs between slices of the directory (a background
        listing lets the engine thread have the interpreter there).
        """
        search = pattern.search if pattern is not None else None
        entries: dict[str, bool] = {}
        for found in matching_entries(self.root, search, pause):
            entries.update(self._kept(found))
        return entries

    def _kept(self, found: Iterable[os.DirEntry[str]]) -> dict[str, bool]:
        entries: dict[str, bool] = {}
        for entry in found:
            if entry.name in self.ignore:
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if self._keep(entry.name, is_dir):
                entries[entry.name] = is_dir
        return entries

    def refresh(self, names: Iterable[str], *, hinted: bool = True) -> None:
        """Look again at these names only: they were hinted by notifications, or (``hinted=False``)
        the engine looks at fixed names while the first listing runs, which is no change."""
        if self._background is not None and hinted:
            names = list(names)
            self._background.hinted.update(names)
        for name in names:
            if hinted:
                self._moved = True  # DIR is no longer as the watcher found it
            name = name.split("/", 1)[0]  # from a watch deeper down: the top-level entry it is in
            if name in self.ignore or not name:
                continue
            if name not in self._entries and not (self._keep(name, False) or self._keep(name, True)):
                for view in self._views.values():
                    view.touch(name)  # a layout may still care that it changed (a file it stats)
                continue  # no layout keeps it, as a file or a directory: no need to look
            try:
                is_dir: bool | None = stat.S_ISDIR(os.lstat(os.path.join(self.root, name)).st_mode)
            except OSError:
                is_dir = None  # gone (or unreadable: the next full listing decides)
            if is_dir is not None and not self._keep(name, is_dir):
                is_dir = None
            for view in self._views.values():
                view.touch(name)  # even when its kind stays: something in it changed
            if self._entries.get(name) is is_dir:
                continue
            if is_dir is None:
                self._entries.pop(name, None)
            else:
                self._entries[name] = is_dir
            for view in self._views.values():
                view.put(name, is_dir)

    def dirs(self, limit: int) -> list[str]:
        """Up to ``limit`` subdirectories, whatever their names (for an undecided layout)."""
        return sorted(name for name, is_dir in self._entries.items() if is_dir)[:limit]


#: Entries read from a directory between two pauses of a background listing (a millisecond or two).
_SLICE = 4096


def matching_entries(
    folder: str, search: Callable[[str], object] | None = None, pause: Callable[[], None] | None = None,
) -> Iterator[list[os.DirEntry[str]]]:
    """The entries of ``folder`` whose name ``search`` accepts (all without it), a slice at a time.

    Constant memory whatever the size of the folder; the names are tested in
    C. ``pause`` runs after each slice.
    """
    with os.scandir(folder) as found:
        while True:
            entries = list(itertools.islice(found, _SLICE))
            if not entries:
                return
            yield entries if search is None else list(itertools.compress(entries, map(search, map(_entry_name, entries))))
            if pause is not None:
                pause()


def let_others_run() -> None:
    """Release the interpreter for a moment.

    A thread reading a directory in C holds it nearly all the time and gives
    it back for each ``readdir`` only to take it again at once: the engine
    thread, waiting for it to handle a notification, would wait for the
    whole listing.
    """
    time.sleep(0.0005)


class _BackgroundListing:
    """One full listing of DIR running on its own thread, and what it found."""

    def __init__(self, lister: Callable[[], dict[str, bool]], mtime: int, done: Callable[[], None]) -> None:
        self.mtime = mtime
        self.started = time.time_ns()
        self.entries: dict[str, bool] | None = None
        self.error: OSError | None = None
        #: Names hinted while it ran: the listing may have read them before they changed.
        self.hinted: set[str] = set()
        self.finished = False
        self.thread = threading.Thread(target=self._run, args=(lister, done), name="first listing", daemon=True)
        self.thread.start()

    def _run(self, lister: Callable[[], dict[str, bool]], done: Callable[[], None]) -> None:
        try:
            self.entries = lister()
            hold_point("first-listing")
        except OSError as exc:
            self.error = exc
        finally:
            self.finished = True  # before done(): the engine may look the moment it is woken
            done()


def _name_filter(candidates: list[type[Layout]]) -> re.Pattern[str] | None:
    """One pattern that every name any candidate keeps matches; None when a candidate has none."""
    patterns = [cls.name_pattern_hint for cls in candidates]
    if not patterns or any(p is None for p in patterns):
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))
