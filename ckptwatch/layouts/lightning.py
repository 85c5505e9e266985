"""PyTorch Lightning ``ModelCheckpoint``: ``epoch=E-step=S.ckpt`` and ``last.ckpt``.

Lightning serializes a checkpoint in memory, writes it to a temp file in
``$TMPDIR`` and moves it onto its final name: a rename when ``$TMPDIR`` is on
DIR's file system (only the arrival is seen), a copy in place under the final
name otherwise (the usual case with a mounted volume). Either way the save
commits when the file is a whole zip and unchanged for a moment (see
:mod:`.singlefile`); a copy in place is a save under way until then. Step:
``step=S`` in the name (``-vN`` version suffixes allowed), else the file's own
``global_step`` (read from ``data.pkl`` without running code), else ``epoch=E``.

``last.ckpt`` (``last-vN.ckpt``) is a second copy of the newest save: saved
again (its callback state differs, so neither size, mtime nor a content hash
matches the step file), or a symlink (``save_last="link"``). So: a symlink is
never a save; a regular ``last.ckpt`` is read for its ``global_step`` and is a
save of its own only when no step file with that step is here or was
committed before (``save_top_k=0``, or a save that did not make the top k).
Top-k rotation unlinks old step files; they simply drop out of the scan.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from .access import Access
from .base import Checkpoint, Listing, Observation
from .entries import Found
from .singlefile import FileLayout, pickled_step, temp_target

__all__ = ["LightningLayout"]

_STEP = re.compile(r"(?:^|[-_])step=(\d+)")
_EPOCH = re.compile(r"(?:^|[-_])epoch=(\d+)")
_LAST = re.compile(r"^last(?:-v\d+)?\.ckpt$")
_DETECT = re.compile(r"^epoch=\d+-step=\d+.*\.ckpt$")
_NAMES = re.compile(r"\.ckpt$")


class LightningLayout(FileLayout):
    name = "lightning"
    framework = "PyTorch Lightning ModelCheckpoint"
    starts = "epoch=E-step=S.ckpt copied in place (a rename shows no start)"
    commits = "the .ckpt renamed in or copied whole (zip), unchanged for 0.1 s; " \
              "last.ckpt only when no step file holds its step"
    object_store = "the .ckpt object is listed (visible only once whole); last.ckpt only when no step file holds its step"
    name_pattern = _NAMES

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        self._steps: set[int] = set()  # steps of step files committed so far
        self._present: Counter[int] = Counter()  # steps of the step files here now

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        for name in sorted(listing.files):
            if temp_target(name) is None and (_DETECT.match(name) or _LAST.match(name)):
                return f"Lightning checkpoint {name}"
        return None

    def owns(self, rel: str) -> bool:
        return rel.endswith(".ckpt")

    def kind(self, rel: str) -> str | None:
        return "zip"

    def step_of_name(self, rel: str) -> int | None:
        match = None if _LAST.match(rel) else _STEP.search(rel)
        return int(match.group(1)) if match else None

    def step_of_content(self, rel: str) -> int | None:
        step = pickled_step(self.fs.source(rel), ("global_step",))
        epoch = _EPOCH.search(rel)
        if step is None and epoch and not _LAST.match(rel):
            step = int(epoch.group(1))
        return step

    def keep(self, checkpoint: Checkpoint, listing: Listing, obs: Observation) -> bool:
        if not _LAST.match(checkpoint.path):
            self._steps.add(checkpoint.step)
            return True
        return not self._present[checkpoint.step] and checkpoint.step not in self._steps

    def entry_changed(self, name: str, before: Found | None, after: Found | None) -> None:
        super().entry_changed(name, before, after)
        step = None if _LAST.match(os.path.basename(name)) else self.step_of_name(name)
        if step is not None and (before is None) != (after is None):
            self._present[step] += 1 if after is not None else -1
