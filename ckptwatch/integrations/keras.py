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

Distributed: under a ``tf.distribute`` strategy with several workers
(``MultiWorkerMirroredStrategy``), the chief (``TF_CONFIG``) reads the file
and the strategy's all-reduce tells every worker, so all stop after the same
batch. Keras is imported when this module is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import keras

from ._say import say
from .roles import resolve_role
from .stopfile import StopRequest
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
        request = _agree(self.model, self.watcher.should_stop(self._batches) if _decides(self.model) else None)
        if request is not None:
            self._stop(request)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stopped is not None or not self.sync:
            return
        saved = _written_since(self.watcher.directory, self._epoch_started) if _decides(self.model) else False
        if not _agree_flag(self.model, saved):
            return
        step = self.step_of(epoch)
        request = _agree(self.model, self.watcher.after_save(step) if _decides(self.model) else None)
        if request is not None:
            self._stop(request)

    def _stop(self, request: StopRequest) -> None:
        self.model.stop_training = True
        self.stopped = (request.step, (self._epoch + 1, self._epoch_batches))
        if _decides(self.model):
            say(f"Keras stops after epoch {self._epoch + 1}, batch {self._epoch_batches} "
                f"({self._batches} batches in this fit): {request.describe()}")


def _written_since(directory: str | None, since: float) -> bool:
    """Whether a file in ``directory`` (top level, or one level down) was written since ``since``."""
    if not directory:
        return False
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return False
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= since:
                return True
        except OSError:
            continue
    return False


# Distributed ---------------------------------------------------------------------


def _strategy(model: Any) -> Any:
    """The model's tf.distribute strategy when it spans several workers, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    if strategy is None or resolver is None:
        return None
    try:
        workers = len(resolver.cluster_spec().as_dict().get("worker", []))
    except Exception:  # noqa: BLE001 - no cluster: a single worker
        return None
    return strategy if workers > 1 else None


def _decides(model: Any) -> bool:
    """Whether this process reads the stop file: the chief (TF_CONFIG) of several workers; else this one."""
    if _strategy(model) is not None:
        return resolve_role("auto", os.environ)[0] == "chief"
    return True


def _agree_flag(model: Any, flag: bool) -> bool:
    """Any worker's flag, on every worker (an all-reduce of the framework)."""
    strategy = _strategy(model)
    if strategy is not None:
        import tensorflow as tf

        value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
        return float(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)) > 0
    return flag


def _agree(model: Any, request: StopRequest | None) -> StopRequest | None:
    if not _agree_flag(model, request is not None):
        return None
    return request or StopRequest(None, None, [], "decided on the chief (it read the stop file)", "")
