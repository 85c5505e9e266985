"""NeMo ``ModelCheckpoint``: a checkpoint is committed when its ``-unfinished`` marker is gone.

Before a save, rank 0 touches ``<name>-unfinished`` beside it (then a
barrier); the checkpoint is written as ``<name>/`` (NeMo 2 distributed
checkpoint) or ``<name>.ckpt`` (NeMo 1); the finalize callback (for async
saves, when the background write is done) removes the marker. Removal of an
old checkpoint is bracketed the same way: marker, delete, unmark (NVIDIA/NeMo
``nemo/lightning/pytorch/callbacks/model_checkpoint.py``:
``format_checkpoint_unfinished_marker_path``, ``_save_checkpoint``,
``_get_finalize_save_checkpoint_callback``, ``_remove_checkpoint``; NeMo 1:
``nemo/utils/callbacks/nemo_model_checkpoint.py``).

The step comes from the name template: ``step=N``, else the last number. A
directory counts as a checkpoint when its name has ``step=N`` or it holds
NeMo 2's ``weights/``.
``<name>-EMA.ckpt`` shares its marker and is not a save of its own; a ``-last``
copy is delivered only when no other checkpoint of its step is there, and a
``-last`` symlink (``save_last="link"``) never.
"""

from __future__ import annotations

import re
import stat
from collections import Counter
from collections.abc import Iterable

from .access import Access, StatLike
from .base import Checkpoint, Listing, Observation, SaveInProgress, trailing_step
from .entries import EntryLayout, Found

__all__ = ["NeMoLayout"]

UNFINISHED = "-unfinished"
_STEP = re.compile(r"step=(\d+)")
_DETECT_LOOKS = 8


def step_of(name: str) -> int | None:
    match = _STEP.search(name)
    return int(match.group(1)) if match else trailing_step(name.removesuffix("-last"))


class NeMoLayout(EntryLayout):
    name = "nemo"
    framework = "NeMo ModelCheckpoint (NeMo 2 and 1)"
    starts = "<name>-unfinished marker created"
    commits = "<name>-unfinished removed, <name>/ or <name>.ckpt there"
    object_store = "the <name>-unfinished object deleted (the same rule)"

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        return is_dir or name.endswith(UNFINISHED) or name.endswith(".ckpt")

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        for name in sorted(listing.files):
            if name.endswith(UNFINISHED):
                return f"NeMo save marker {name}"
        for name in sorted(n for n in listing.dirs if _STEP.search(n))[-_DETECT_LOOKS:]:
            if all(_is_dir(listing.access.stat(f"{name}/{sub}")) for sub in ("weights", "context")):
                return f"NeMo 2 checkpoint {name}/ (weights/ and context/)"
        return None

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        #: Committed checkpoints that are no -last copy, per step (a -last copy of one is no save).
        self._steps: Counter[int] = Counter()
        #: ``.ckpt`` files here (NeMo 1): a marker with no checkpoint yet names ``<name>.ckpt``.
        self._ckpt_files = 0

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        self.look_at_entries(listing, obs)
        obs.committed.sort(key=lambda c: (c.step, c.path))
        return obs

    def related(self, name: str) -> Iterable[str]:
        if name.endswith(UNFINISHED):
            base = name[: -len(UNFINISHED)]
            return (base, base + ".ckpt")  # the marker gone commits it
        return ()

    def look_order(self, name: str) -> object:
        # -last copies after the checkpoints they copy; markers after the checkpoints they guard
        return (_last(name), name.endswith(UNFINISHED), name)

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        if name.endswith(UNFINISHED) and not is_dir:
            return self._marker(name[: -len(UNFINISHED)], listing, obs)
        if is_dir:
            if not (_STEP.search(name) or self._is_dir(f"{name}/weights")):
                return None
            base, st = name, self.stat(name)
        elif name.endswith(".ckpt") and not name.endswith("-EMA.ckpt"):
            base, st = name[: -len(".ckpt")], self.stat(name)
            if st is None or not stat.S_ISREG(st.st_mode):
                return None
        else:
            return None
        if st is None:
            return None
        step = step_of(base)
        if step is None or base + UNFINISHED in listing.files:
            return Found()  # no step, or its marker says it is not finished
        checkpoint = Checkpoint(self.name, step, name, name, st.st_mtime_ns, st.st_size)
        if _last(name):  # looked at again: whether it is a save of its own depends on the others
            return Found(committed=() if self._steps[step] else (checkpoint,), again=True)
        return Found(committed=(checkpoint,))

    def _marker(self, base: str, listing: Listing, obs: Observation) -> Found | None:
        step = step_of(base)
        if step is None:
            obs.problems.append(f"{base}{UNFINISHED}: no step in the name (step=N or a number); ignored")
            return None
        if base in listing.dirs and (_STEP.search(base) or self._is_dir(f"{base}/weights")):
            path = base
        elif base + ".ckpt" in listing.files:
            path = base + ".ckpt"
        else:
            path = base + ".ckpt" if self._ckpt_files else base
        return Found(starting=(SaveInProgress(step, path),))

    def entry_changed(self, name: str, before: Found | None, after: Found | None) -> None:
        if name.endswith(".ckpt"):
            self._ckpt_files += (after is not None) - (before is not None)
        for found, sign in ((before, -1), (after, 1)):
            for checkpoint in found.committed if found else ():
                if not _last(checkpoint.path):
                    self._steps[checkpoint.step] += sign

    def _is_dir(self, rel: str) -> bool:
        return _is_dir(self.stat(rel))


def _last(name: str) -> bool:
    """A ``-last`` copy (``<name>-last/``, ``<name>-last.ckpt``)."""
    return name.removesuffix(".ckpt").endswith("-last")


def _is_dir(st: StatLike | None) -> bool:
    return st is not None and stat.S_ISDIR(st.st_mode)
