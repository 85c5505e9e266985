"""``--on-stop signal:NAME``: stop a wrapped command whose code cannot change.

By default a stop request is the stop file alone, which training must read.
With ``--on-stop signal:SIGTERM`` (wrapper mode only), once the stop file is
written (after every ``after_save`` listener of that save ran) the signal is
sent to the training command's process group, once; the watcher then waits
for the command as it always does, fires ``end`` and exits with its status.
Frameworks that save and exit on such a signal (Lightning on SIGTERM,
a loop with ``signal.signal``) then stop cleanly without a line of ckptwatch.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from ..report.console import emit
from ..report.hub import Reporter

if TYPE_CHECKING:
    from ..command import TrainingCommand
    from ..events import Event

__all__ = ["OnStopSignal", "parse_on_stop"]


def parse_on_stop(value: str) -> signal.Signals | None:
    """None for ``file``; the signal for ``signal:NAME`` (``SIGTERM``, ``TERM``, ``sigint``...).

    Raises ValueError with a line that says what is allowed.
    """
    text = value.strip()
    if text == "file":
        return None
    kind, _, name = text.partition(":")
    if kind == "signal" and name:
        upper = name.strip().upper()
        upper = upper if upper.startswith("SIG") else "SIG" + upper
        try:
            sig = signal.Signals[upper]
        except KeyError:
            pass
        else:
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                return sig
    raise ValueError(f"on-stop must be 'file' or 'signal:NAME' with a signal name such as SIGTERM or SIGINT, "
                     f"not {value!r}")


class OnStopSignal(Reporter):
    """Sends the signal to the command's group after the first stop request's file was written."""

    def __init__(self, command: TrainingCommand, sig: signal.Signals) -> None:
        self.command = command
        self.sig = sig
        self.sent = False

    def event_finished(self, event: Event, stop: bool) -> None:
        if not stop or self.sent:
            return
        self.sent = True
        if not self.command.send_signal(self.sig):
            emit("stop", f"--on-stop: the training command has exited already; no {self.sig.name} sent",
                 logging.INFO)
            return
        emit("stop", f"--on-stop: sent {self.sig.name} to the training command (process group "
             f"{self.command.pid}) after the stop request at step {event.step}",
             step=event.step, signal=self.sig.name)
