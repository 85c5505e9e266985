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

from .access import StatLike
from .base import Checkpoint, Layout, Listing, Observation, SaveInProgress, trailing_step

__all__ = ["NeMoLayout"]

UNFINISHED = "-unfinished"
_STEP = re.compile(r"step=(\d+)")
_DETECT_LOOKS = 8


def step_of(name: str) -> int | None:
    match = _STEP.search(name)
    return int(match.group(1)) if match else trailing_step(name.removesuffix("-last"))


class NeMoLayout(Layout):
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

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        unfinished = {n[: -len(UNFINISHED)] for n in listing.files if n.endswith(UNFINISHED)}
        files_form = False
        candidates: dict[str, str] = {}  # base name -> checkpoint path
        for name in listing.dirs:
            if _STEP.search(name) or self._is_dir(f"{name}/weights"):
                candidates[name] = name
        for name in listing.files:
            if name.endswith(".ckpt") and not name.endswith("-EMA.ckpt"):
                st = self.stat(name)
                if st is not None and stat.S_ISREG(st.st_mode):
                    candidates.setdefault(name[: -len(".ckpt")], name)
                    files_form = True
        committed: list[Checkpoint] = []
        for base, path in sorted(candidates.items()):
            step = step_of(base)
            if step is None or base in unfinished:
                continue
            st = self.stat(path)
            if st is not None:
                committed.append(Checkpoint(self.name, step, path, path, st.st_mtime_ns, st.st_size))
        steps = {c.step for c in committed if not c.path.removesuffix(".ckpt").endswith("-last")}
        obs.committed = sorted(
            (c for c in committed if c.step not in steps or not c.path.removesuffix(".ckpt").endswith("-last")),
            key=lambda c: (c.step, c.path),
        )
        for base in sorted(unfinished):
            step = step_of(base)
            if step is None:
                obs.problems.append(f"{base}{UNFINISHED}: no step in the name (step=N or a number); ignored")
                continue
            path = candidates.get(base) or (base + ".ckpt" if files_form else base)
            obs.in_progress.append(SaveInProgress(step, path))
        return obs

    def _is_dir(self, rel: str) -> bool:
        return _is_dir(self.stat(rel))


def _is_dir(st: StatLike | None) -> bool:
    return st is not None and stat.S_ISDIR(st.st_mode)
