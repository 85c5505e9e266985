"""Keep the best K checkpoints by a metric in DEST (hard links, else copies), never touching DIR.

    [listener.keep-best]
    class = "examples/listeners/keep_best.py:KeepBest"
    args = { k = 3, metric = "loss", mode = "min", dest = "/data/best" }
    events = ["after_save"]

Training may rotate its checkpoints away (``save_total_limit``,
``max_to_keep``); the best ones live on in ``dest`` (default ``DIR/best``),
each under its own name, with ``best.json`` listing them, best first. Hard
links cost no space and survive training deleting its copy; across file
systems the files are copied. Only what this listener put in ``dest`` is
ever removed. The metric is read from a JSON file in the checkpoint
(``metric_file``, default the Trainer's ``trainer_state.json``): a top-level
key, else the last ``log_history`` entry that has it.
"""

from __future__ import annotations

import json
import math
import os
import shutil

from ckptwatch import CheckpointSaverListener


def read_metric(checkpoint: str, metric: str, metric_file: str) -> float | None:
    try:
        with open(os.path.join(checkpoint, metric_file)) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    if metric in state:
        return float(state[metric])
    for entry in reversed(state.get("log_history", [])):
        if metric in entry:
            return float(entry[metric])
    return None


def link_tree(source: str, target: str) -> None:
    """``target``: the same files as ``source``, hard-linked (copied across file systems)."""
    tmp = target + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for root, _dirs, files in os.walk(source):
        rel = os.path.relpath(root, source)
        os.makedirs(os.path.join(tmp, rel), exist_ok=True)
        for name in files:
            src, dst = os.path.join(root, name), os.path.join(tmp, rel, name)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    os.replace(tmp, target)


class KeepBest(CheckpointSaverListener):
    """Keep the best K checkpoints by a metric."""

    def __init__(self, k: int = 3, metric: str = "loss", mode: str = "min", dest: str | None = None,
                 metric_file: str = "trainer_state.json"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, not {mode!r}")
        self.k, self.metric, self.mode, self.dest, self.metric_file = k, metric, mode, dest, metric_file

    def begin(self, event):
        self.dest = self.dest or os.path.join(event.dir, "best")
        os.makedirs(self.dest, exist_ok=True)
        self.index = os.path.join(self.dest, "best.json")
        try:
            with open(self.index) as handle:
                self.best = json.load(handle)  # a restart keeps what was kept
        except (OSError, ValueError):
            self.best = []

    def _save_index(self) -> None:
        with open(self.index + ".tmp", "w") as out:
            json.dump(self.best, out, indent=1)
        os.replace(self.index + ".tmp", self.index)

    def after_save(self, event):
        value = read_metric(event.checkpoint, self.metric, self.metric_file)
        if value is None or not math.isfinite(value):
            print(f"step {event.step}: no finite {self.metric} in {self.metric_file}; not ranked")
            return
        name = os.path.basename(event.checkpoint.rstrip("/"))
        if any(entry["name"] == name and entry["step"] == event.step for entry in self.best):
            return  # already kept (a retry): do not act twice
        ranked = sorted(self.best + [{"name": name, "step": event.step, self.metric: value}],
                        key=lambda e: e[self.metric], reverse=self.mode == "max")
        kept, dropped = ranked[: self.k], ranked[self.k:]
        if not any(entry["name"] == name for entry in kept):
            print(f"step {event.step}: {self.metric}={value:.4g}, not in the best {self.k}")
            return
        link_tree(event.checkpoint, os.path.join(self.dest, name))
        for entry in dropped:
            shutil.rmtree(os.path.join(self.dest, entry["name"]), ignore_errors=True)
        self.best = kept
        self._save_index()
        print(f"step {event.step}: {self.metric}={value:.4g}, kept; best {self.k}: "
              + ", ".join(f"{e['name']} ({e[self.metric]:.4g})" for e in kept))
