"""Stop training when a metric diverges: NaN or infinite, or no improvement in N saves.

    [listener.divergence]
    class = "examples/listeners/stop_on_divergence.py:StopOnDivergence"
    args = { metric = "loss", patience = 5 }
    events = ["after_save"]

Returning True from ``after_save`` asks training to stop (ckptwatch writes
the stop file once every listener of that save has run). The best value and
the count of saves without improvement live on ``self``: the object is kept
between saves. The metric is read as ``keep_best.py`` reads it
(``metric_file``, default ``trainer_state.json``); ``mode = "max"`` for
accuracy-like metrics, ``min_delta`` for what counts as better.
"""

from __future__ import annotations

import json
import math
import os

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


class StopOnDivergence(CheckpointSaverListener):
    """Ask training to stop when the metric is not finite, or has not improved for ``patience`` saves."""

    def __init__(self, metric: str = "loss", patience: int = 5, mode: str = "min", min_delta: float = 0.0,
                 metric_file: str = "trainer_state.json"):
        self.metric, self.patience, self.mode = metric, patience, mode
        self.min_delta, self.metric_file = min_delta, metric_file
        self.best: float | None = None
        self.stale = 0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def after_save(self, event):
        value = read_metric(event.checkpoint, self.metric, self.metric_file)
        if value is None:
            print(f"step {event.step}: no {self.metric} in {self.metric_file}")
            return False
        if not math.isfinite(value):
            print(f"step {event.step}: {self.metric} is {value}: diverged, asking training to stop")
            return True
        if self._better(value):
            self.best, self.stale = value, 0
            print(f"step {event.step}: {self.metric}={value:.4g}, best so far")
            return False
        self.stale += 1
        print(f"step {event.step}: {self.metric}={value:.4g}, no better than {self.best:.4g} "
              f"({self.stale} of {self.patience})")
        if self.stale >= self.patience:
            print(f"{self.metric} has not improved in {self.patience} saves: asking training to stop")
            return True
        return False
