"""Step directories committed by a tag file at the top of DIR that names the newest one.

DeepSpeed (``latest`` -> ``global_stepN``) and Megatron-LM
(``latest_checkpointed_iteration.txt`` -> ``iter_NNNNNNN``) write every file
of a save into its step directory, then rewrite the tag file in place. So:

- the directory the tag names is committed, and so is every step directory of
  a lower step (the tag named each in its turn) that still holds its own
  completion file;
- a step directory above the tag's step is a save in progress;
- a tag read empty or cut short is "not yet" (see :mod:`.inplace`).

A checkpoint's identity comes from a file of its own (``dir_markers``, the
first present), never from the tag, which every save rewrites; the tag stands
in only for the newest one when none of those files is there. A step
directory without its completion file is not committed: it is being written,
or rotation is deleting it.
"""

from __future__ import annotations

import os
import re
import stat
from typing import ClassVar

from .access import Access
from .base import Checkpoint, Listing, Observation, SaveInProgress
from .entries import EntryLayout, Found
from .inplace import Bad, InPlaceFile

__all__ = ["TagFileLayout"]


class TagFileLayout(EntryLayout):
    #: The tag file at the top of DIR.
    tag_file: ClassVar[str]
    #: A step directory's name; group 1 is the step.
    step_dir: ClassVar[re.Pattern[str]]
    #: A committed step directory's own completion file, relative to it: the first present wins.
    dir_markers: ClassVar[tuple[str, ...]]

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        self._tag: InPlaceFile[tuple[str, int]] = InPlaceFile(self, self.tag_file, self._parse)
        #: What the tag named at this look: (directory, step).
        self._named: str | None = None
        self._tag_step: int | None = None

    def parse_tag(self, text: str) -> tuple[str, int] | Bad:
        """``(directory named, step)`` from the tag file's text, or why not."""
        raise NotImplementedError

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        return bool(cls.step_dir.match(name)) if is_dir else name == cls.tag_file

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        tag = self._tag.read(obs)
        self._named, self._tag_step = tag if tag else (None, None)
        self.look_at_entries(listing, obs)
        if self._named is not None and self._tag_step is not None:
            # The directory the tag names, at every look: its identity may be the tag's own.
            checkpoint = self._checkpoint(self._named, self._tag_step, newest=True)
            if checkpoint:
                obs.committed.append(checkpoint)
        obs.committed.sort(key=lambda c: (c.step, c.path))
        return obs

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        match = self.step_dir.match(name) if is_dir else None
        if not match or name == self._named:
            return None
        step = int(match.group(1))
        tag_step = self._tag_step
        checkpoint = self._checkpoint(name, step) if tag_step is not None and step <= tag_step else None
        if checkpoint:
            return Found(committed=(checkpoint,))
        return Found(starting=(SaveInProgress(step, name),))

    def _checkpoint(self, name: str, step: int, *, newest: bool = False) -> Checkpoint | None:
        for marker in [f"{name}/{m}" for m in self.dir_markers]:
            st = self.stat(marker)
            if st is not None and stat.S_ISREG(st.st_mode):
                return Checkpoint(self.name, step, name, marker, st.st_mtime_ns, st.st_size)
        if newest and self._tag.good_stat is not None:
            mtime_ns, size = self._tag.good_stat  # the tag as it was when it named this one
            return Checkpoint(self.name, step, name, self.tag_file, mtime_ns, size)
        return None

    def _parse(self, data: bytes) -> tuple[str, int] | Bad:
        try:
            text = data.decode().strip()
        except UnicodeDecodeError:
            return Bad("is not text")
        if text and not self.inside(text):
            return Bad(f"names {text[:80]!r}, outside DIR; ignored", maybe_partial=False)
        parsed = self.parse_tag(text)
        if isinstance(parsed, Bad):
            return parsed
        name, step = parsed
        if not self.inside(name):
            return Bad(f"names {name!r}, outside DIR; ignored", maybe_partial=False)
        name = os.path.normpath(name)
        st = self.stat(name)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return Bad(f"names {name!r}, which is not a directory in DIR")
        return name, step
