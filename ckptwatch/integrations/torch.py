"""Every rank of a ``torch.distributed`` job stops at the same step.

A rank that stops alone leaves the others hanging in their next collective.
:class:`DistributedStopWatcher` reads the stop file on one rank (global rank
0), shares the answer with one all-reduce, and gives every rank the same
answer at the same call::

    from ckptwatch.integrations.torch import DistributedStopWatcher

    stop = DistributedStopWatcher("/ckpt")            # on every rank, after init_process_group
    for step in range(1, steps + 1):
        train_step()
        if stop.should_stop(step, saved=step % 100 == 0):   # every rank, same steps
            break

By hand, the same is three lines around :class:`StopWatcher`::

    request = stop.should_stop(step) if dist.get_rank() == 0 else None
    flag = torch.tensor([int(request is not None)]); dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item(): break

Every rank must call ``should_stop`` at the same steps (``every_n_steps``
counts steps, not calls, so it keeps them in step). The all-reduce costs one
tiny collective per check: use ``every_n_steps`` when steps are short. With
``sync=True`` rank 0 waits for a save's verdict while the others wait in the
all-reduce: keep ``timeout`` below the process group's own timeout. Without
an initialised process group it is a plain :class:`StopWatcher`. ``torch``
is imported when this module is.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.distributed as dist

from ._say import say
from .stopfile import StopRequest
from .watcher import StopWatcher

__all__ = ["DistributedStopWatcher", "agree"]


def _active(group: Any = None) -> bool:
    return dist.is_available() and dist.is_initialized()


def _device(group: Any = None) -> torch.device:
    """Where the collective's tensor must live: the current GPU for NCCL, else the CPU."""
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree(request: StopRequest | None, group: Any = None) -> StopRequest | None:
    """Share one rank's answer with every rank (an all-reduce, MAX); every rank must call it.

    Ranks that did not read the file get a :class:`StopRequest` that says so,
    with the step of the request.
    """
    if not _active(group):
        return request
    step = request.step if request is not None and request.step is not None else -1
    flag = torch.tensor([int(request is not None), step], dtype=torch.int64, device=_device(group))
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    if not int(flag[0].item()):
        return None
    if request is not None:
        return request
    asked = int(flag[1].item())
    return StopRequest(asked if asked >= 0 else None, None, [], "decided on rank 0 (it read the stop file)", "")


class DistributedStopWatcher(StopWatcher):
    """A :class:`StopWatcher` whose answer every rank shares: rank 0 reads, an all-reduce tells the rest.

    ``group``: the process group of the collective (default: the world).
    """

    __slots__ = ("group", "_agreed")

    def __init__(self, path: str | os.PathLike[str] | None = None, every_n_steps: int = 1, *, group: Any = None,
                 **options: Any) -> None:
        super().__init__(path, every_n_steps, **options)
        self.group = group
        self._agreed: StopRequest | None = None

    @property
    def decides(self) -> bool:
        """Whether this rank reads the stop file (global rank 0, or no process group)."""
        return not _active(self.group) or dist.get_rank() == 0

    def should_stop(self, step: int | None = None, *, saved: bool = False) -> StopRequest | None:
        if self._agreed is not None:
            return self._agreed  # every rank agreed at the same call: no collective needed any more
        if not saved and step is not None and step % self.every_n_steps:
            return None
        local = super().should_stop(step, saved=saved) if self.decides else None
        self._agreed = agree(local, self.group)
        if self._agreed is not None and not self.decides:
            say(f"rank {dist.get_rank()}: stopping at step {step} with rank 0", logging.DEBUG)
        return self._agreed

    def after_save(self, step: int | None) -> StopRequest | None:
        return self.should_stop(step, saved=True)
