"""Transformers ``Trainer``: stop when a ckptwatch listener asks, with a last checkpoint.

    from ckptwatch.integrations.transformers import StopOnRequest

    Trainer(..., callbacks=[StopOnRequest()])

After each optimizer step it looks at the stop file (default: the
environment, else ``args.output_dir/ckptwatch.stop``); on a request it sets
``control.should_save`` (the Trainer saves ``checkpoint-STEP`` at this very
step) and ``control.should_training_stop`` (the Trainer leaves its loop after
that save). With ``sync=True`` it waits in ``on_save`` for that save's
``after_save`` listeners, so a request made there stops training at that
step. In distributed training (``torch.distributed``), world process 0 reads
the file and an all-reduce tells every rank, so all stop at the same step.
``transformers`` is imported when this module is.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from ._say import say
from .watcher import DEFAULT_TIMEOUT, default_path

__all__ = ["StopOnRequest"]


class StopOnRequest(TrainerCallback):
    """A ``TrainerCallback`` that stops training when a ckptwatch listener asks.

    ``path``: the checkpoint directory or the stop file (default: the
    environment, else ``args.output_dir``). ``every_n_steps``: look only every
    N optimizer steps. ``sync``/``timeout``: wait at each save for its
    verdict. ``save``: save a checkpoint at the step where training stops
    (default True).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, every_n_steps: int = 1, *, sync: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, state_dir: str | os.PathLike[str] | None = None,
                 save: bool = True) -> None:
        self.path = path
        self.every_n_steps = every_n_steps
        self.sync = sync
        self.timeout = timeout
        self.state_dir = state_dir
        self.save = save
        self.watcher: Any = None
        #: (the step of the request, the step training stopped at), once it stopped.
        self.stopped: tuple[int | None, int] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from .torch import DistributedStopWatcher

        self.watcher = DistributedStopWatcher(default_path(self.path, args.output_dir), self.every_n_steps,
                                              sync=self.sync, timeout=self.timeout, state_dir=self.state_dir,
                                              announce=False)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.watcher is None or self.stopped is not None:
            return control
        request = self.watcher.should_stop(state.global_step)
        if request is not None:
            self._stop(state, control, request)
            if self.save:
                control.should_save = True
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.watcher is None or self.stopped is not None or not self.sync:
            return control
        request = self.watcher.after_save(state.global_step)
        if request is not None:
            self._stop(state, control, request)
        return control

    def _stop(self, state: Any, control: Any, request: Any) -> None:
        control.should_training_stop = True
        self.stopped = (request.step, state.global_step)
        if state.is_world_process_zero:
            say(f"Trainer stops after step {state.global_step} (a checkpoint is saved there): {request.describe()}")
