"""PyTorch Lightning: stop when a ckptwatch listener asks, on every rank at the same step, with a last checkpoint.

    from ckptwatch.integrations.lightning import StopOnRequest

    Trainer(..., callbacks=[ModelCheckpoint(...), StopOnRequest()])

Works with both import names of Lightning (``lightning.pytorch`` and
``pytorch_lightning``): the callback subclasses the ``Callback`` of the one
your script imported (pass ``lightning="pytorch_lightning"`` when it
imported both). After each training batch, global rank 0 looks at the stop
file (default: the environment, else the ModelCheckpoint's ``dirpath``);
``trainer.strategy.reduce_boolean_decision`` shares the answer, so every
rank sets ``trainer.should_stop`` after the same step, as ``EarlyStopping``
does. At the end of a stopped fit, a checkpoint of the last step is saved
through the ModelCheckpoint's file name (``epoch=E-step=S.ckpt``) unless
that step was saved already.

With ``sync=True``, after each save (Lightning's ``on_save_checkpoint``) the
next batch first waits for that save's ``after_save`` listeners; when one
asked, the batch is skipped the way Lightning skips one (the module's
``on_train_batch_start`` returns -1, which the callback arranges for the
fit), so training ends at the very step that was saved.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ._say import say
from .stopfile import StopRequest
from .watcher import DEFAULT_TIMEOUT, StopWatcher, default_path

__all__ = ["StopOnRequest"]

_NAMES = ("lightning.pytorch", "pytorch_lightning")


class _StopLogic:
    """The callback's behaviour; mixed with the ``Callback`` of one Lightning import name."""

    #: Which Lightning this class was made for.
    lightning: str = ""

    def __init__(self, path: str | os.PathLike[str] | None = None, every_n_steps: int = 1, *, sync: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, state_dir: str | os.PathLike[str] | None = None,
                 save: bool = True) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be 1 or more, not {every_n_steps}")
        self.path = path
        self.every_n_steps = every_n_steps
        self.sync = sync
        self.timeout = timeout
        self.state_dir = state_dir
        self.save = save
        self.watcher: StopWatcher | None = None
        #: (the step of the request, the step training stopped at), once it stopped.
        self.stopped: tuple[int | None, int] | None = None
        self._saved_steps: set[int] = set()
        self._pending: int | None = None
        self._skip = False
        self._module: Any = None
        self._stop_epoch = 0

    # Lightning hooks -------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        if not type(trainer).__module__.startswith(self.lightning):
            say(f"StopOnRequest was made for {self.lightning} but the Trainer is {type(trainer).__module__}: "
                f"pass lightning=\"{type(trainer).__module__.split('.trainer')[0]}\"")
        if self.sync:
            self._wrap_batch_start(pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        checkpoint = getattr(trainer, "checkpoint_callback", None)
        where = default_path(self.path, getattr(checkpoint, "dirpath", None) or None)
        self.watcher = StopWatcher(where, 1, sync=self.sync, timeout=self.timeout, state_dir=self.state_dir,
                                   announce=False)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.watcher is None or self.stopped is not None or step % self.every_n_steps:
            return
        watcher = self.watcher
        request = self._decide(trainer, lambda: watcher.should_stop(step))
        if request is not None:
            trainer.should_stop = True
            self._stopped(trainer, request, step)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._saved_steps.add(trainer.global_step)
        if self.sync and self.stopped is None:
            self._pending = trainer.global_step

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._pending is None or self.watcher is None or self.stopped is not None:
            return
        step, self._pending = self._pending, None
        watcher = self.watcher
        request = self._decide(trainer, lambda: watcher.after_save(step))
        if request is not None:
            self._skip = True  # the module's on_train_batch_start returns -1: this batch does not run
            trainer.should_stop = True
            self._stopped(trainer, request, step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.stopped is None or not self.save or trainer.global_step in self._saved_steps:
            return
        path = self._final_path(trainer)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            say(f"saved the last checkpoint, {path}")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._module is not None:
            try:
                del self._module.on_train_batch_start
            except AttributeError:
                pass
            self._module = None

    # Helpers ----------------------------------------------------------------------

    def _decide(self, trainer: Any, look: Any) -> StopRequest | None:
        """Rank 0 looks; every rank gets its answer (``reduce_boolean_decision``, any; then the request's step)."""
        request = look() if trainer.is_global_zero else None
        if not trainer.strategy.reduce_boolean_decision(request is not None, all=False):
            return None
        asked = trainer.strategy.broadcast(request.step if request else None, src=0)  # once, at the stop
        return request or StopRequest(asked, None, [], "decided on rank 0 (it read the stop file)", "")

    def _stopped(self, trainer: Any, request: StopRequest, step: int) -> None:
        self.stopped = (request.step, step)
        self._stop_epoch = trainer.current_epoch  # the loop counts the epoch as done once it ends
        if trainer.is_global_zero:
            say(f"Lightning stops after step {step}: {request.describe()}")

    def _final_path(self, trainer: Any) -> str:
        import torch

        epoch, step = self._stop_epoch, trainer.global_step
        checkpoint = getattr(trainer, "checkpoint_callback", None)
        if checkpoint is not None and getattr(checkpoint, "dirpath", None):
            metrics = dict(trainer.callback_metrics)
            metrics.update(epoch=torch.tensor(epoch), step=torch.tensor(step))
            return str(checkpoint.format_checkpoint_name(metrics))
        folder = (self.watcher.directory if self.watcher else None) or trainer.default_root_dir
        return os.path.join(folder, f"epoch={epoch}-step={step}.ckpt")

    def _wrap_batch_start(self, pl_module: Any) -> None:
        """Let the module's ``on_train_batch_start`` return -1 when a sync stop says so (undone at teardown)."""
        original = pl_module.on_train_batch_start
        callback = self

        def on_train_batch_start(batch: Any, batch_idx: int) -> Any:
            if callback._skip:
                return -1
            return original(batch, batch_idx)

        pl_module.on_train_batch_start = on_train_batch_start
        self._module = pl_module


_made: dict[str, type] = {}


def _class_name(module: str) -> str:
    return "StopOnRequest_" + module.replace(".", "_")


def _class_for(module: str) -> type:
    """The callback class for one Lightning import name (made once; picklable by its name here)."""
    if module not in _made:
        callback_base = importlib.import_module(module).Callback
        name = _class_name(module)
        cls = type(name, (_StopLogic, callback_base), {
            "__module__": __name__, "__qualname__": name, "__doc__": StopOnRequest.__doc__, "lightning": module,
        })
        globals()[name] = cls
        _made[module] = cls
    return _made[module]


def _pick() -> str:
    """The Lightning the script imported (``lightning.pytorch`` when both), else the one installed."""
    for name in _NAMES:
        if name in sys.modules:
            return name
    for name in _NAMES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name
    raise ImportError("StopOnRequest needs Lightning: pip install lightning (or pytorch-lightning)")


class StopOnRequest:
    """A Lightning ``Callback`` that stops training when a ckptwatch listener asks.

    ``path``: the checkpoint directory or the stop file (default: the
    environment, else the ModelCheckpoint's ``dirpath``). ``every_n_steps``:
    look only every N optimizer steps. ``sync``/``timeout``: wait after each
    save for its verdict. ``save``: save a last checkpoint at the stop step
    (default True). ``lightning``: ``"lightning.pytorch"`` or
    ``"pytorch_lightning"`` (default: the one imported).
    """

    def __new__(cls, *args: Any, lightning: str | None = None, **kwargs: Any) -> Any:
        if lightning is not None and lightning not in _NAMES:
            raise ValueError(f"lightning must be one of {', '.join(_NAMES)}, not {lightning!r}")
        return _class_for(lightning or _pick())(*args, **kwargs)


def __getattr__(name: str) -> Any:
    for module in _NAMES:
        if name == _class_name(module):
            return _class_for(module)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
