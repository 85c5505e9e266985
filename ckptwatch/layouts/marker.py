"""``marker:NAME``: the user's own convention, a file NAME that says "this save is complete".

- ``DIR/<dir>/NAME``, where ``<dir>``'s name ends with a number (the step):
  that directory is committed once NAME is in it; before that it is a save in
  progress (and watched, so NAME's creation wakes the watcher). Write NAME
  last, in one write or renamed in; an empty NAME (``touch``) counts once it
  has stayed empty for ``SETTLE_EMPTY`` (it may be a write just begun: its
  content would change its identity and deliver the save twice).
- ``DIR/NAME`` at the top: the whole of DIR is committed, at the step NAME
  holds as a decimal integer (e.g. ``echo 500 > DIR/DONE``). Each rewrite is a
  new save. No integer (yet): read as "not yet"; still none after a moment,
  one problem line. A counter would not survive a restart, so there is none.

Never auto-detected: NAME is known only to the user.
"""

from __future__ import annotations

import os
import stat
import time

from .access import Access, StatLike
from .base import Checkpoint, Listing, Observation, SaveInProgress, trailing_step
from .entries import EntryLayout, Found
from .inplace import Bad, InPlaceFile

__all__ = ["MarkerLayout", "SETTLE_EMPTY"]

#: How long an empty NAME must stay empty (by its mtime) before it commits.
SETTLE_EMPTY = 0.05


def _parse_step(data: bytes) -> int | Bad:
    text = data.strip()
    if not text.isdigit():
        return Bad(f"holds {text[:40]!r}; a top-level marker must hold the step as a decimal integer")
    return int(text)


class MarkerLayout(EntryLayout):
    name = "marker"
    framework = "your own convention: a marker file"
    starts = "DIR/<name ending in a step>/ without NAME"
    commits = "NAME appears in it (or DIR/NAME holds the step)"
    object_store = "a NAME object under <dir>/ (the same rule)"
    takes_argument = True
    argument_help = "NAME"

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        name = argument or ""
        norm = os.path.normpath(name) if name else ""
        if not name or os.path.isabs(name) or norm in (".", "..") or norm.startswith(".." + os.sep) or "\0" in name:
            raise ValueError(f"--layout marker:NAME needs a file name inside each step directory, not {name!r}")
        self.marker = norm
        self._top: InPlaceFile[int] = InPlaceFile(self, norm, _parse_step)
        self._empty_seen: dict[str, tuple[int, float]] = {}  # an empty NAME: (mtime_ns, first seen)
        self._top_name = norm.split(os.sep, 1)[0]

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        return None

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        return True  # NAME is per instance; a class-level filter cannot know it

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        self.look_at_entries(listing, obs)
        top = self._top_name
        if top in listing.files or top in listing.dirs:
            st = self.stat(self.marker)
            step = self._top.read(obs) if st is not None and stat.S_ISREG(st.st_mode) else None
            if step is not None and self._top.good_stat is not None:
                mtime_ns, size = self._top.good_stat  # as it was when whole
                obs.committed.append(Checkpoint(self.name, step, ".", self.marker, mtime_ns, size))
        obs.committed.sort(key=lambda c: (c.step, c.path))
        return obs

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        step = trailing_step(name) if is_dir else None
        if step is None or name == self._top_name:
            return None
        rel = f"{name}/{self.marker}"
        st = self.stat(rel)
        if st is not None and stat.S_ISREG(st.st_mode) and self._settled(rel, st, obs):
            return Found(committed=(Checkpoint(self.name, step, name, rel, st.st_mtime_ns, st.st_size),))
        return Found(starting=(SaveInProgress(step, name),), watch=(name,))

    def entry_changed(self, name: str, before: Found | None, after: Found | None) -> None:
        if after is None:
            self._empty_seen.pop(f"{name}/{self.marker}", None)

    def _settled(self, rel: str, st: StatLike, obs: Observation) -> bool:
        """Non-empty, or empty for SETTLE_EMPTY by its mtime (or by our clock, if the server's is ahead)."""
        if st.st_size > 0:
            self._empty_seen.pop(rel, None)
            return True
        now = time.monotonic()
        key = st.st_mtime_ns
        seen = self._empty_seen.get(rel)
        if seen is None or seen[0] != key:
            seen = self._empty_seen[rel] = (key, now)
        young = SETTLE_EMPTY - (time.time_ns() - st.st_mtime_ns) / 1e9
        if young <= 0 or now - seen[1] >= SETTLE_EMPTY:
            return True
        wait = min(young, SETTLE_EMPTY) + 0.005
        obs.recheck = wait if obs.recheck is None else min(obs.recheck, wait)
        return False
