"""Ray Train v2: ``checkpoint_<timestamp>/`` committed by ``checkpoint_manager_snapshot.json``.

A worker's ``ray.train.report(checkpoint=...)`` copies the checkpoint into
``DIR/checkpoint_%Y-%m-%d_%H-%M-%S.%f/`` (``StorageContext.
persist_current_checkpoint``: ``create_dir`` then ``pyarrow.fs.copy_files``,
in place); the controller's ``CheckpointManager.register_checkpoint`` then
rewrites the snapshot in place (``open_output_stream``), and only after that
deletes the checkpoints beyond ``num_to_keep`` (ray-project/ray
``python/ray/train/v2/_internal/execution/checkpoint/checkpoint_manager.py``,
``.../execution/storage.py``). The snapshot is JSON::

    {"version": 0,
     "checkpoint_results": [{"version": 0, "checkpoint_dir_name": "checkpoint_...", "metrics": {...}}, ...],
     "latest_checkpoint_result": {...} or null}

``checkpoint_results`` are the kept checkpoints, in registration order or
sorted by ``checkpoint_score_attribute``, so the order in the list is not the
commit order. A listed directory is committed; a ``checkpoint_*`` directory
not listed is a save in progress (or one being rotated away), announced only
when the step is known before the commit (see below).

The step is the reported metrics' ``step`` (or ``global_step``,
``training_iteration``, ``iteration``, ``epoch``: the first that is an
integer); else the number a custom ``checkpoint_dir_name`` ends with; else the
default name's timestamp as ``YYYYMMDDHHMMSS``, which orders saves as they
were made and stays the same across restarts, as a checkpoint's identity must.
Metrics exist only in the snapshot, so a save in progress gets its
``before_save`` early only when the snapshot shows reports without a step
(else just before its ``after_save``, ``observed: false``).
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from .access import Access
from .base import Checkpoint, Listing, Observation, SaveInProgress, trailing_step
from .entries import EntryLayout, Found
from .inplace import Bad, InPlaceFile

__all__ = ["RayLayout", "SNAPSHOT"]

SNAPSHOT = "checkpoint_manager_snapshot.json"
_DEFAULT_NAME = re.compile(r"^checkpoint_(\d{4})-(\d\d)-(\d\d)_(\d\d)-(\d\d)-(\d\d)(?:\.\d+)?$")
_STEP_KEYS = ("step", "global_step", "training_iteration", "iteration", "epoch")

Entry = tuple[str, dict[str, Any]]  # (checkpoint_dir_name, metrics)


def parse_snapshot(data: bytes) -> list[Entry] | Bad:
    """The checkpoints a snapshot lists (kept ones and the latest), or why not."""
    try:
        state = json.loads(data)
    except ValueError:
        return Bad("is not whole JSON")
    if not isinstance(state, dict) or not isinstance(state.get("checkpoint_results"), list):
        return Bad("is not a Ray Train checkpoint manager snapshot (no checkpoint_results list)", maybe_partial=False)
    entries: dict[str, dict[str, Any]] = {}
    for result in [*state["checkpoint_results"], state.get("latest_checkpoint_result")]:
        if isinstance(result, dict) and isinstance(result.get("checkpoint_dir_name"), str):
            metrics = result.get("metrics")
            entries[result["checkpoint_dir_name"]] = metrics if isinstance(metrics, dict) else {}
    return list(entries.items())


def metrics_step(metrics: dict[str, Any]) -> int | None:
    for key in _STEP_KEYS:
        value = metrics.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    return None


def step_of(name: str, metrics: dict[str, Any]) -> int | None:
    step = metrics_step(metrics)
    if step is not None:
        return step
    default = _DEFAULT_NAME.match(name)
    if default:
        return int("".join(default.groups()))
    return trailing_step(name)


class RayLayout(EntryLayout):
    name = "ray"
    framework = "Ray Train v2 (ray.train.report)"
    starts = "checkpoint_<timestamp>/ not yet in the snapshot"
    commits = "checkpoint_manager_snapshot.json (written in place) lists it"
    object_store = "the snapshot object lists it (the same rule)"
    #: The snapshot lists every kept checkpoint with its metrics: past 1 MiB at about 10,000 of them.
    max_marker_bytes = 256 << 20

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        self._snapshot: InPlaceFile[list[Entry]] = InPlaceFile(self, SNAPSHOT, parse_snapshot)
        self._entries: list[Entry] | None = None
        #: What the snapshot lists, by directory name (its metrics).
        self._listed: dict[str, dict[str, Any]] = {}
        self._snapshot_problems: list[str] = []
        #: Listed directories whose names the index does not keep (a custom checkpoint_dir_name).
        self._custom: list[str] = []
        #: This run's reports carry no step: a directory not listed yet is announced.
        self._announce = False

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        return name.startswith("checkpoint_") if is_dir else name == SNAPSHOT

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        if SNAPSHOT in listing.files:
            return f"snapshot file {SNAPSHOT}"
        for name in sorted(listing.dirs):
            if _DEFAULT_NAME.match(name):
                return f"Ray Train checkpoint directory {name}/"
        return None

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        entries = self._snapshot.read(obs)
        announce = self._announce
        changed = self._read_listed(entries) if entries is not self._entries else ()
        obs.problems += self._snapshot_problems
        # Whether saves not listed yet are announced changed: every directory is read again.
        self.look_at_entries(listing, obs, also=changed, everything=announce != self._announce)
        for name in self._custom:  # looked at here, at every look
            checkpoint = self._checkpoint(name, obs)
            if checkpoint:
                obs.committed.append(checkpoint)
        obs.committed.sort(key=lambda c: (c.step, c.path))
        return obs

    def _read_listed(self, entries: list[Entry] | None) -> set[str]:
        """A new snapshot (or none): what it lists; the directories it lists or unlists (to look at again)."""
        self._entries = entries
        entries = entries or []
        before, self._listed, self._snapshot_problems = self._listed, {}, []
        for name, metrics in entries:
            if not self.inside(name) or os.sep in os.path.normpath(name):
                self._snapshot_problems.append(f"{SNAPSHOT} lists {name!r}, not a directory directly in DIR; ignored")
                continue
            self._listed[name] = metrics
        # A save's step may come from metrics that only the snapshot carries: announce
        # saves in progress only when this run's reports carry none (the step is the name's).
        self._announce = bool(entries) and all(metrics_step(metrics) is None for _, metrics in entries)
        self._custom = [name for name in self._listed if not self.interesting(name, True)]
        return {n for n in before.keys() | self._listed.keys() if before.get(n) != self._listed.get(n)}

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        if not is_dir:
            return None
        if name in self._listed:
            checkpoint = self._checkpoint(name, obs)
            return Found(committed=(checkpoint,)) if checkpoint else None
        step = step_of(name, {}) if self._announce else None
        if step is None:
            return Found()  # not listed yet: the snapshot that lists it commits it (and names it)
        return Found(starting=(SaveInProgress(step, name),))

    def _checkpoint(self, name: str, obs: Observation) -> Checkpoint | None:
        st = self.stat(name)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return None  # rotated away after the snapshot was read, or not there from here
        step = step_of(name, self._listed[name])
        if step is None:
            obs.problems.append(f"{SNAPSHOT} lists {name!r}: no step in its metrics or name; ignored")
            return None
        return Checkpoint(self.name, step, name, name, st.st_mtime_ns, st.st_size)
