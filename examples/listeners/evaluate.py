"""Evaluate each committed checkpoint and write its metrics as JSON: METRICS_DIR/step-<N>.json.

    [listener.evaluate]
    class = "examples/listeners/evaluate.py:Evaluate"
    args = { fn = "myproject.eval:evaluate" }    # fn(checkpoint_path) -> {"name": number, ...}
    events = ["after_save", "end"]

Kept warm: ``fn`` is imported (your model code, your eval data) once, in
``begin``, not at every save. Without ``fn`` it evaluates the checkpoints of
``examples/train.py`` (``model.json``: y = w*x + b) on a held-out set.
Metrics go to ``args.metrics_dir`` (default ``DIR/metrics``), written whole
(temp file, then rename). A checkpoint already evaluated (a retry, a
restart) is not evaluated again; ``end`` evaluates the last checkpoint if
this listener's ``after_save`` did not (``every_n_steps``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import random

from ckptwatch import CheckpointSaverListener


def _load(spec: str):
    """``module:function`` or ``path/file.py:function``."""
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        import importlib.util

        loaded = importlib.util.spec_from_file_location(os.path.basename(where)[:-3], where)
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)


class Evaluate(CheckpointSaverListener):
    """Evaluate each checkpoint; write its metrics as JSON."""

    def __init__(self, fn: str | None = None, metrics_dir: str | None = None):
        self.fn = fn
        self.metrics_dir = metrics_dir

    def begin(self, event):
        self.metrics_dir = self.metrics_dir or os.path.join(event.dir, "metrics")
        os.makedirs(self.metrics_dir, exist_ok=True)
        if self.fn:
            self.evaluate = _load(self.fn)
        else:  # the example trainer's model: a held-out set, made once
            rng = random.Random(1234)
            self.heldout = [(x, 3 * x + 1) for x in (rng.uniform(-1, 1) for _ in range(256))]
            self.evaluate = self.heldout_mse

    def heldout_mse(self, checkpoint: str) -> dict:
        with open(os.path.join(checkpoint, "model.json")) as handle:
            weights = json.load(handle)
        errors = [(weights["w"] * x + weights["b"] - y) ** 2 for x, y in self.heldout]
        return {"heldout_mse": sum(errors) / len(errors)}

    def _path(self, step: int) -> str:
        return os.path.join(self.metrics_dir, f"step-{step}.json")

    def after_save(self, event):
        path = self._path(event.step)
        if os.path.exists(path):
            print(f"step {event.step}: already evaluated ({path})")
            return
        metrics = self.evaluate(event.checkpoint)
        body = {"step": event.step, "checkpoint": event.checkpoint, **metrics}
        with open(path + ".tmp", "w") as out:
            json.dump(body, out)
        os.replace(path + ".tmp", path)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) and math.isfinite(v) else f"{k}={v}"
                          for k, v in metrics.items())
        print(f"step {event.step}: {shown}")

    def end(self, event):
        if event.step is not None and not event.last_step_handled and os.path.exists(event.checkpoint or ""):
            self.after_save(event)  # the last checkpoint, unless it was evaluated (not twice)
