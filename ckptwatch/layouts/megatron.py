"""Megatron-LM ``save_checkpoint``: ``iter_NNNNNNN/`` committed by its tracker file.

Every rank writes into ``DIR/iter_%07d/`` (``torch_dist``: the DCP files, then
``metadata.json`` last; legacy ``torch``: ``mp_rank_XX[_YYY]/model_optim_rng.pt``);
then rank 0 opens ``latest_checkpointed_iteration.txt`` with ``'w'`` and writes
the iteration, or ``release`` for a ``release/`` directory (NVIDIA/Megatron-LM
``megatron/training/checkpointing.py``: ``get_checkpoint_name``,
``read_metadata``, ``iter_finalize_fn``; ``megatron/core/dist_checkpointing/
serialization.py``: ``save``, step 7 ``metadata.json``). With ``--async-save``
the tracker is written by the finalize callback, later. ``--save-retain-interval``
deletes the previous iteration right after the tracker is written.
"""

from __future__ import annotations

import re

from .base import Listing
from .inplace import Bad
from .tagged import TagFileLayout

__all__ = ["MegatronLayout", "TRACKER"]

TRACKER = "latest_checkpointed_iteration.txt"
_STEP_DIR = re.compile(r"^iter_(\d{7,})$")


class MegatronLayout(TagFileLayout):
    name = "megatron"
    framework = "Megatron-LM save_checkpoint"
    starts = "iter_NNNNNNN/ newer than the tracker's iteration"
    commits = "latest_checkpointed_iteration.txt (written in place) holds the iteration"
    object_store = "the tracker object holds the iteration (the same rule)"
    tag_file = TRACKER
    step_dir = _STEP_DIR
    dir_markers = (
        "metadata.json",  # torch_dist: written last, before the tracker
        "mp_rank_00/model_optim_rng.pt",  # legacy torch format, no pipeline parallelism
        "mp_rank_00_000/model_optim_rng.pt",  # ... with pipeline parallelism
        "mp_rank_00_000_000/model_optim_rng.pt",  # ... and expert parallelism
    )

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        if TRACKER in listing.files:
            return f"tracker file {TRACKER}"
        steps = sorted(n for n in listing.dirs if _STEP_DIR.match(n))
        return f"Megatron iteration directory {steps[-1]}/" if steps else None

    def parse_tag(self, text: str) -> tuple[str, int] | Bad:
        if text == "release":
            return "release", 0
        if not text.isdigit():
            return Bad(f"holds {text[:80]!r}, neither an iteration nor 'release'")
        return f"iter_{int(text):07d}", int(text)
