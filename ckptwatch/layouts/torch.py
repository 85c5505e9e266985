"""``torch.save`` files: ``model_1000.pt``, ``ckpt-step500.pth``, ``last.pt``.

``torch.save`` writes a zip in place under the final name (its end record
comes last); scripts that want atomic saves write ``NAME.tmp`` and
``os.replace`` it onto the name. Both commit when the file is a whole zip and
unchanged for a moment (see :mod:`.singlefile`: a rename cannot be told from
an in-place write once it is done). ``model_1000.pt.tmp`` is a save of step
1000 under way. Legacy non-zip files (``_use_new_zipfile_serialization=False``)
have no end marker: only their settle time speaks for them. ``*.bin`` counts
only as a zip (``pytorch_model.bin``).

Step: the number after ``step``/``iteration``/``iter`` in the name, else the
last number. A name with no number (``last.pt``, ``best.pth``) is rewritten
in place: each complete rewrite is a new save (a new mtime and size make a new
identity). Its step comes from the content when that is cheap (the top-level
``global_step``/``step``/``iteration``/``iter_num``/``iter``/``epoch`` int
of ``data.pkl``, read without running code, capped), else it is the newest
step a numbered file has shown, else 0. Not a counter: the step is part of a
checkpoint's identity, and a counter restarts with the watcher, so a restarted
watcher would deliver the same file again; content and names can be read
again. (The sibling fallback can still change across a restart when files
were rotated meanwhile: that file is then delivered once more.)
"""

from __future__ import annotations

import os
import re

from .base import Listing
from .singlefile import FileLayout, name_step, pickled_step, temp_target

__all__ = ["TorchLayout"]

_SUFFIX = re.compile(r"\.(pt|pth|bin)$")
_NUMBERED = re.compile(r"\d.*\.(pt|pth)$")
STEP_KEYS = ("global_step", "step", "iteration", "iter_num", "iter", "epoch")


class TorchLayout(FileLayout):
    name = "torch"
    framework = "torch.save (*.pt, *.pth, *.bin)"
    starts = "NAME.pt written in place, or NAME.pt.tmp (step from the name)"
    commits = "NAME.pt a whole zip, unchanged for 0.1 s (renamed in or written in place)"
    object_store = "the object is listed (visible only once whole); last.pt: each new version is a save"
    name_pattern = _SUFFIX

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        for name in sorted(listing.files):
            target = temp_target(name)
            if _NUMBERED.search(name if target is None else target):
                return f"torch.save file {name}" + ("" if target is None else " being written")
        return None

    def owns(self, rel: str) -> bool:
        return bool(_SUFFIX.search(rel)) and "/" not in rel

    def kind(self, rel: str) -> str | None:
        return "zip" if rel.endswith(".bin") else None

    def step_of_name(self, rel: str) -> int | None:
        return name_step(_SUFFIX.sub("", os.path.basename(rel)), ("step", "iteration", "iter"))

    def step_of_content(self, rel: str) -> int | None:
        return pickled_step(self.fs.source(rel), STEP_KEYS)
