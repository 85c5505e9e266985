"""DeepSpeed ``engine.save_checkpoint``: ``global_stepN/`` committed by the ``latest`` tag file.

Every rank writes its files into ``DIR/<tag>/`` (``tag`` defaults to
``global_step{global_steps}``); then rank 0 opens ``DIR/latest`` with ``'w'``
and writes the tag, no newline (microsoft/DeepSpeed
``deepspeed/runtime/engine.py``, ``save_checkpoint``: ``checkpoint_engine.commit(tag)``
then ``open(os.path.join(save_dir, 'latest'), 'w')``). That write is in place,
so ``latest`` can be read empty or cut short: "not yet" (see :mod:`.tagged`).
DeepSpeed itself deletes nothing; rotation is the caller's.
"""

from __future__ import annotations

import re

from .base import Listing, trailing_step
from .inplace import Bad
from .tagged import TagFileLayout

__all__ = ["DeepSpeedLayout"]

_STEP_DIR = re.compile(r"^global_step(\d+)$")


class DeepSpeedLayout(TagFileLayout):
    name = "deepspeed"
    framework = "DeepSpeed engine.save_checkpoint"
    starts = "global_stepN/ newer than the step 'latest' names"
    commits = "'latest' (written in place) names global_stepN"
    object_store = "the 'latest' object names global_stepN (the same rule)"
    tag_file = "latest"
    step_dir = _STEP_DIR
    # The model states file of rank 0: without ZeRO-3 / with ZeRO-3 (weights partitioned).
    dir_markers = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        steps = sorted(n for n in listing.dirs if _STEP_DIR.match(n))
        if steps and cls.tag_file in listing.files:
            return f"tag file 'latest' beside {steps[-1]}/"
        if steps:
            return f"DeepSpeed step directory {steps[-1]}/"
        return None

    def parse_tag(self, text: str) -> tuple[str, int] | Bad:
        match = _STEP_DIR.match(text)
        step = int(match.group(1)) if match else trailing_step(text)
        if step is None:
            return Bad(f"names tag {text[:80]!r}, which carries no step number")
        return text, step
