"""TensorFlow 1 (``tf.compat.v1``): a ``SessionRunHook`` that stops a ``MonitoredTrainingSession``.

    from ckptwatch.integrations.tf1 import StopHook

    with tf.compat.v1.train.MonitoredTrainingSession(checkpoint_dir="/ckpt", save_checkpoint_steps=100,
                                                     hooks=[StopHook("/ckpt")]) as sess:
        while not sess.should_stop():
            sess.run(train_op)

After each ``session.run`` it looks at the stop file and calls
``run_context.request_stop()``, as ``CheckpointSaverHook`` does when a
listener's ``after_save`` returns True; ``MonitoredTrainingSession`` then ends
and its ``CheckpointSaverHook.end`` saves the last step.

``sync=True``: after a run in which the ``checkpoint`` state file changed (one
``stat`` per run), the hook waits for that save's ``after_save`` listeners and
stops at that step when one asked. Where you build the ``CheckpointSaverHook``
yourself, :class:`StopListener` (a ``CheckpointSaverListener``) does the same
from inside the save: ``listeners=[StopListener("/ckpt", sync=True)]``.

Distributed TF1 (between-graph, parameter servers) has no collective to hang
in: each worker's hook reads the file and stops itself. TensorFlow is
imported when this module is.
"""

from __future__ import annotations

import os
import re
from typing import Any

import tensorflow as tf

from ._say import say
from .stopfile import StopRequest
from .watcher import DEFAULT_TIMEOUT, StopWatcher

__all__ = ["StopHook", "StopListener"]

v1 = tf.compat.v1
_LATEST = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)
_STEP = re.compile(r"-(\d+)$")


class StopHook(v1.train.SessionRunHook):
    """Stops a ``MonitoredSession`` when a ckptwatch listener asks.

    ``path``: the checkpoint directory or the stop file (default: the
    environment). ``every_n_steps``: look only every N global steps.
    ``sync``/``timeout``: after each save, wait for its verdict.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, every_n_steps: int = 1, *, sync: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.watcher = StopWatcher(path, every_n_steps, sync=sync, timeout=timeout, state_dir=state_dir,
                                   announce=False)
        self.sync = sync
        #: (the step of the request, the step training stopped at), once it stopped.
        self.stopped: tuple[int | None, int] | None = None
        self._global_step: Any = None
        self._state_seen: tuple[int, int, int] | None = None
        self._state_step: int | None = None

    def begin(self) -> None:
        self._global_step = v1.train.get_global_step()
        if self._global_step is None:
            raise RuntimeError("StopHook needs a global step: tf.compat.v1.train.get_or_create_global_step()")
        if self.sync:
            self._state_changed()  # what is there before training: not a save of this run

    def before_run(self, run_context: Any) -> Any:
        return v1.train.SessionRunArgs(self._global_step)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        if self.stopped is not None:
            return
        step = int(run_values.results) + 1  # read with the train op: the value before its increment
        request: StopRequest | None = None
        if self.sync and self._state_changed() and self._state_step is not None:
            request = self.watcher.after_save(self._state_step)
            if request is not None:
                step = self._state_step
        if request is None:
            request = self.watcher.should_stop(step)
        if request is not None:
            step = int(run_context.session.run(self._global_step))
            run_context.request_stop()
            self.stopped = (request.step, step)
            say(f"TF session stops at global step {step}: {request.describe()}")

    def _state_changed(self) -> bool:
        """Whether the ``checkpoint`` state file changed since the last look (and the step it names now)."""
        directory = self.watcher.directory
        if not directory:
            return False
        path = os.path.join(directory, "checkpoint")
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._state_seen:
            return False
        self._state_seen = key
        try:
            with open(path, encoding="utf-8") as handle:
                match = _LATEST.search(handle.read())
        except (OSError, UnicodeDecodeError):
            return False
        found = _STEP.search(match.group(1)) if match else None
        self._state_step = int(found.group(1)) if found else None
        return True


class StopListener(v1.train.CheckpointSaverListener):
    """A ``CheckpointSaverListener`` whose ``after_save`` returns True when a ckptwatch listener asked.

    With ``sync=True`` it first waits for that save's ``after_save`` listeners
    in ckptwatch, so the ``CheckpointSaverHook`` stops at that very step.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, sync: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.watcher = StopWatcher(path, 1, sync=sync, timeout=timeout, state_dir=state_dir,
                                   announce=False)
        self.stopped: tuple[int | None, int] | None = None

    def after_save(self, session: Any, global_step_value: int) -> bool:
        step = int(global_step_value)
        request = self.watcher.after_save(step)
        if request is None:
            return False
        if self.stopped is None:
            self.stopped = (request.step, step)
            say(f"TF session stops at global step {step}: {request.describe()}")
        return True
