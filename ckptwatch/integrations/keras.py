"""Keras 3: stop ``model.fit`` when a ckptwatch listener asks.

    from ckptwatch.integrations.keras import StopOnRequest

    model.fit(..., callbacks=[keras.callbacks.ModelCheckpoint("/ckpt/epoch-{epoch:03d}.weights.h5"),
                              StopOnRequest("/ckpt")])

After each training batch it looks at the stop file (the path given, else
the environment) and sets ``model.stop_training``: Keras leaves the batch
loop, runs the epoch's end (where ``ModelCheckpoint`` saves, so the stopped
epoch is saved too) and ends ``fit``.

With ``sync=True`` (list it after ``ModelCheckpoint``), at the end of each
epoch in which a file in the checkpoint directory was written, it waits for
that save's ``after_save`` listeners; when one asked, training ends with
that epoch. Keras names the save by the 1-based epoch (``{epoch}``), which is
the step ckptwatch reads from the file name; pass ``step=`` (a function of
the 0-based epoch) when your file names count otherwise.

Distributed: one process decides, which is all a single-process strategy
(``MirroredStrategy``, several devices) needs. Keras 3's ``fit`` under a
multi-worker strategy did not run here (Keras 3.15.1, TensorFlow 2.21:
``MultiWorkerMirroredStrategy`` fails on ``PerReplica`` values before any
callback), so no cross-worker agreement is offered for it. Keras is
imported when this module is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import keras

from ._say import say
from .stopfile import STOP_FILE_NAME, StopRequest
from .watcher import DEFAULT_TIMEOUT, StopWatcher

__all__ = ["StopOnRequest"]


class StopOnRequest(keras.callbacks.Callback):
    """A Keras callback that stops ``fit`` when a ckptwatch listener asks.

    ``path``: the checkpoint directory or the stop file (default: the
    environment). ``every_n_steps``: look only every N batches.
    ``sync``/``timeout``: wait at the end of each epoch that saved for that
    save's verdict. ``step``: the step ckptwatch reads from the file saved at
    a 0-based epoch (default ``epoch + 1``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, every_n_steps: int = 1, *, sync: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, state_dir: str | os.PathLike[str] | None = None,
                 step: Callable[[int], int] | None = None) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be 1 or more, not {every_n_steps}")
        self.watcher = StopWatcher(path, 1, sync=sync, timeout=timeout, state_dir=state_dir,
                                   announce=False)
        self.every_n_steps = every_n_steps
        self.sync = sync
        self.step_of = step or (lambda epoch: epoch + 1)
        #: (the step of the request, (epoch, batches done in it)), once it stopped.
        self.stopped: tuple[int | None, tuple[int, int]] | None = None
        self._batches = 0
        self._epoch = 0
        self._epoch_batches = 0
        self._epoch_started = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._batches = 0
        self.stopped = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_batches = 0
        self._epoch_started = time.time()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches += 1
        self._epoch_batches += 1
        if self.stopped is not None or self._batches % self.every_n_steps:
            return
        request = self.watcher.should_stop(self._batches)
        if request is not None:
            self._stop(request)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stopped is not None or not self.sync:
            return
        if not _written_since(self.watcher.directory, self._epoch_started):
            return  # no save this epoch (save_best_only, save_freq): no verdict to wait for
        request = self.watcher.after_save(self.step_of(epoch))
        if request is not None:
            self._stop(request)

    def _stop(self, request: StopRequest) -> None:
        self.model.stop_training = True
        self.stopped = (request.step, (self._epoch + 1, self._epoch_batches))
        say(f"Keras stops after epoch {self._epoch + 1}, batch {self._epoch_batches} "
            f"({self._batches} batches in this fit): {request.describe()}")


def _written_since(directory: str | None, since: float) -> bool:
    """Whether an entry of ``directory`` changed since ``since`` (a file written, a directory filled).

    Hidden names (the state dir) and the stop file itself do not count: they are not saves.
    """
    if not directory:
        return False
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return False
    for entry in entries:
        if entry.name.startswith(".") or entry.name == STOP_FILE_NAME:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= since:
                return True
        except OSError:
            continue
    return False
