"""Hugging Face Transformers ``Trainer``: ``checkpoint-N/`` with ``trainer_state.json`` last.

The directory is created under its final name and filled in place;
``trainer_state.json`` is the last file written (in place, not atomically).
A save commits when that file parses as JSON (and its ``global_step`` is N).
Versions 4.36-4.38 wrote ``tmp-checkpoint-N/`` and renamed it.
"""

from __future__ import annotations

import json
import re
import time

from .access import Access
from .base import Checkpoint, Listing, Observation, SaveInProgress
from .entries import EntryLayout, Found

__all__ = ["HFLayout"]

STATE_FILE = "trainer_state.json"
#: A state file that still does not parse this long after its last write is reported.
_BROKEN_AFTER = 5.0
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_TMP_DIR = re.compile(r"^tmp-checkpoint-(\d+)$")


class HFLayout(EntryLayout):
    name = "hf"
    framework = "Hugging Face Transformers Trainer"
    starts = "checkpoint-N/ (or tmp-checkpoint-N/) created"
    commits = "checkpoint-N/trainer_state.json complete (parses, global_step == N)"
    #: A long run's log_history makes trainer_state.json grow to megabytes.
    object_store = "checkpoint-N/trainer_state.json object there and parses (the same rule)"
    max_marker_bytes = 256 << 20

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        # (mtime_ns, size) of a state file already parsed, per directory:
        # a settled checkpoint costs one stat per scan, not a read.
        self._parsed: dict[str, tuple[int, int, bool]] = {}

    name_pattern_hint = r"\A(?:tmp-)?checkpoint-"

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        return is_dir and (name.startswith("checkpoint-") or name.startswith("tmp-checkpoint-"))

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        for name in sorted(listing.dirs):
            if _CHECKPOINT_DIR.match(name) or _TMP_DIR.match(name):
                return f"Trainer directory {name}/"
        return None

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        self.look_at_entries(listing, obs)
        return obs

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        if not is_dir:
            return None
        tmp = _TMP_DIR.match(name)
        if tmp:
            return Found(starting=(SaveInProgress(int(tmp.group(1)), name),))
        match = _CHECKPOINT_DIR.match(name)
        if not match:
            return None
        step = int(match.group(1))
        checkpoint = self._committed(name, step, obs.problems)
        if checkpoint is None:
            return Found(starting=(SaveInProgress(step, name),), watch=(name,))
        return Found(committed=(checkpoint,))

    def entry_changed(self, name: str, before: Found | None, after: Found | None) -> None:
        if after is None:
            self._parsed.pop(name, None)

    def _committed(self, name: str, step: int, problems: list[str]) -> Checkpoint | None:
        marker = f"{name}/{STATE_FILE}"
        st = self.stat(marker)
        if st is None:
            return None
        known = self._parsed.get(name)
        if not (known and known[:2] == (st.st_mtime_ns, st.st_size)):
            got = self.read_marker_stat(marker, problems)
            if got is None:
                return None  # gone, or being written: the close wakes us
            data, st = got
            known = (st.st_mtime_ns, st.st_size, self._state_complete(marker, data, step, problems))
            self._parsed[name] = known
        if not known[2]:
            age = time.time() - known[0] / 1e9
            if age > _BROKEN_AFTER:  # reported by the first scan after that (deduplicated by the engine)
                problems.append(f"{marker} does not parse {_BROKEN_AFTER:g} s after its last write; "
                                "not a commit (a crashed or broken save?)")
            return None
        return Checkpoint(self.name, step, name, marker, known[0], known[1])

    def _state_complete(self, marker: str, data: bytes, step: int, problems: list[str]) -> bool:
        if not data:
            return False
        try:
            state = json.loads(data)
        except ValueError:
            if not data.lstrip().startswith(b"{") or b"\0" in data:
                problems.append(f"{marker} is not JSON (binary?); not taken as a commit")
            return False  # else still being written in place; the close will wake us
        if not isinstance(state, dict):
            problems.append(f"{marker} is JSON but not an object; not taken as a commit")
            return False
        global_step = state.get("global_step")
        if global_step is not None and global_step != step:
            problems.append(f"{marker} says global_step {global_step!r}, the directory says {step}; using {step}")
        return True
