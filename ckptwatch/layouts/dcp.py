"""PyTorch Distributed Checkpoint (DCP): a step directory committed by ``.metadata``.

``dcp.save`` writes ``__R_S.distcp`` files in place, then renames
``.metadata.tmp`` onto ``.metadata`` (a dot-file: the commit). DCP records no
step; it is the number the directory's name ends with (``step-100``, ``100``).
"""

from __future__ import annotations

import stat
import re

from .base import Checkpoint, Listing, Observation, SaveInProgress, trailing_step
from .entries import EntryLayout, Found

__all__ = ["DCPLayout"]

METADATA = ".metadata"
_MEGATRON = re.compile(r"^iter_\d{7,}$")
#: How many numbered directories detection looks into.
_DETECT_LOOKS = 8


class DCPLayout(EntryLayout):
    name = "dcp"
    framework = "torch.distributed.checkpoint"
    starts = "a directory whose name ends with the step (step-N/) without .metadata"
    commits = "DIR/<name>-N/.metadata renamed in"
    object_store = "<name>-N/.metadata object there (FsspecWriter writes it last: .metadata.tmp copied onto it)"

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        return is_dir and name[-1:].isdigit()

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        # Megatron-LM's iter_NNNNNNN/ hold DCP files too, but commit later, by their tracker file.
        numbered = sorted(n for n in listing.dirs if trailing_step(n) is not None and not _MEGATRON.match(n))
        for name in numbered[-_DETECT_LOOKS:]:
            for entry in listing.access.names(name):
                if entry == METADATA or entry.endswith(".distcp"):
                    return f"step directory {name}/ holds {entry}"
        return None

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        self.look_at_entries(listing, obs)
        return obs

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        step = trailing_step(name) if is_dir else None
        if step is None:
            return None
        marker = f"{name}/{METADATA}"
        st = self.stat(marker)
        if st is not None and not stat.S_ISREG(st.st_mode):
            obs.problems.append(f"{marker} is not a regular file (a symbolic link?); not a commit")
            st = None
        if st is None or st.st_size == 0:
            return Found(starting=(SaveInProgress(step, name),), watch=(name,))
        return Found(committed=(Checkpoint(self.name, step, name, marker, st.st_mtime_ns, st.st_size),))
