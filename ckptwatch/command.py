"""The wrapped training command of ``ckptwatch run DIR -- COMMAND``.

It runs in its own session (so it leads its own process group), with
``CKPTWATCH_STOP_FILE``, ``CKPTWATCH_DIR``, ``CKPTWATCH_STATE_DIR`` and
``CKPTWATCH_RUN_ID`` in its environment. The watcher forwards the first
SIGTERM/SIGINT to its group (and, with ``--on-stop signal:NAME``, sends NAME
after a stop request), fires ``end`` when it exits, and exits with its status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence

from .delivery.reaper import spawning

__all__ = ["TrainingCommand"]


class TrainingCommand:
    def __init__(self, argv: Sequence[str], env: dict[str, str], on_exit: Callable[[], None]) -> None:
        self.argv = list(argv)
        self._env = env
        self._on_exit = on_exit
        self._proc: subprocess.Popen[bytes] | None = None
        self._forwarded = False

    def start(self) -> None:
        """Start it; raises OSError (with the command's name) when it cannot start."""
        with spawning() as ours:
            self._proc = subprocess.Popen(self.argv, env=self._env, start_new_session=True)
            ours.add(self._proc.pid)
        threading.Thread(target=self._wait, name="training command", daemon=True).start()

    def _wait(self) -> None:
        assert self._proc is not None
        self._proc.wait()
        self._on_exit()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exited(self) -> bool:
        return self._proc is not None and self._proc.returncode is not None

    @property
    def exit_status(self) -> int:
        """The status to exit with: its own, or 128+N when signal N killed it."""
        assert self._proc is not None and self._proc.returncode is not None
        code = self._proc.returncode
        return 128 - code if code < 0 else code

    def forward(self, sig: int) -> bool:
        """Send ``sig`` to its group, once; False when it was already forwarded."""
        if self._forwarded or self._proc is None or self.exited:
            return False
        self._forwarded = True
        self._signal(sig)
        return True

    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` to its group (``--on-stop``); False when it has exited already."""
        if self._proc is None or self.exited:
            return False
        self._signal(sig)
        return True

    def kill(self) -> None:
        if self._proc is not None and not self.exited:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
