"""The watcher's side of a Python class listener: one warm process for the session.

A :class:`WarmHost` starts the listener's process (:mod:`.hostchild`, with
the watcher's own interpreter, ``sys.executable``, in a session of its own)
on the listener's first event, and keeps it for the session. A run is one
JSON line written to the process's command pipe: no interpreter start, no
thread hop and no disk wait, so the engine thread sends an idle listener its
event itself, as it starts a script. One reader thread per process streams
its output to the log, line by line with the listener's name, and takes the
outcome of each run; the listener's worker waits for that outcome, with the
same timeout, cut-off and kill (TERM, then KILL, to the process group) as a
script gets.

A process that dies fails the run in flight (the log says how it died); the
next event starts a new one, which builds the class and calls ``begin``
again before that event.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import selectors
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .hostchild import BOOT
from .pytarget import PythonTarget
from .reaper import forget, spawning
from .runner import KILL_GRACE, TAIL_LINES, RunOutcome, _LineReader, _std_fds_open, kill_group, process_start_ticks

__all__ = ["CLOSE_GRACE", "PACKAGE_ROOT", "WarmHost", "WarmRun", "host_logger"]

#: Seconds a process has to exit by itself at the end of the session before its group is killed.
CLOSE_GRACE = 5.0
#: The directory that holds the ``ckptwatch`` package: the listener's process imports the same one.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _how(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


class WarmRun:
    """One event handed to the listener's process, and its outcome once the process answers."""

    def __init__(self, proc: _Process, event: str, step: int | None) -> None:
        self.proc = proc
        self.event = event
        self.step = step
        self.started = time.monotonic()
        self.done = threading.Event()
        self.status: str | None = None
        self.error: str | None = None
        self.exit_code: int | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_line = ""

    def finish(self, status: str, error: str | None, exit_code: int | None = None) -> None:
        if self.done.is_set():
            return
        self.status, self.error, self.exit_code = status, error, exit_code
        self.done.set()


class _Process:
    """One started listener process: its pid (= its process group), its pipes, its reader thread."""

    def __init__(self, host: WarmHost, pid: int, cmd_fd: int, out_fd: int, res_fd: int) -> None:
        self.host = host
        self.pid = pid
        self.ticks = process_start_ticks(pid)
        self.cmd_fd: int | None = cmd_fd
        self.returncode: int | None = None
        self.dead = threading.Event()
        self.current: WarmRun | None = None
        self._out_fd = out_fd
        self._res_fd = res_fd
        self.thread = threading.Thread(target=self._read, name=f"listener {host.name} output", daemon=True)
        self.thread.start()

    def send(self, line: bytes) -> None:
        assert self.cmd_fd is not None
        view = memoryview(line)
        while view:
            view = view[os.write(self.cmd_fd, view):]

    def close_commands(self) -> None:
        if self.cmd_fd is not None:
            fd, self.cmd_fd = self.cmd_fd, None
            os.close(fd)

    def kill(self, grace: float, say: Callable[[str], None]) -> None:
        if not self.dead.is_set():
            kill_group(self.pid, grace, say, lambda: not self.dead.is_set())

    # The reader thread ---------------------------------------------------------

    def _line(self, text: str) -> None:
        run = self.current
        if run is None:
            self.host.output(text)
            return
        if text.strip():
            run.last_line = text.strip()
            run.tail.append(text)
        self.host.output(text, run.event, run.step)

    def _read(self) -> None:
        reader = _LineReader(self._out_fd, self._line)
        pending = b""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._out_fd, selectors.EVENT_READ)
                selector.register(self._res_fd, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select():
                        if key.fd == self._out_fd:
                            if not reader.read():
                                selector.unregister(self._out_fd)  # every holder closed it
                            continue
                        chunk = os.read(self._res_fd, 65536)
                        if not chunk:
                            return
                        pending += chunk
                        *answers, pending = pending.split(b"\n")
                        reader.flush()  # the run's output was flushed before its answer
                        for answer in answers:
                            self._answer(answer)
        finally:
            reader.flush()
            self._ended()

    def _answer(self, raw: bytes) -> None:
        run, self.current = self.current, None
        try:
            body = json.loads(raw)
            status, error = body["status"], body.get("error")
        except (ValueError, KeyError, TypeError):
            status, error = "failed", f"unreadable answer from the listener's process: {raw[:200]!r}"
        if run is not None:
            run.finish(status if status in ("done", "stop", "failed") else "failed", error)

    def _ended(self) -> None:
        """The answer channel closed: the process died (or broke the channel); reap it and fail the run in flight."""
        status: int | None = None

        def reaped() -> bool:
            nonlocal status
            if status is None:
                try:
                    pid, code = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, code = self.pid, 0  # reaped elsewhere: its status is lost
                if pid:
                    status = code
            return status is not None

        deadline = time.monotonic() + 1.0
        while not reaped() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not reaped():  # alive, with its answer channel closed: it cannot be talked to any more
            kill_group(self.pid, KILL_GRACE, self.host.say, lambda: not reaped())
            while not reaped():
                time.sleep(0.01)
        assert status is not None
        forget(self.pid)
        self.returncode = os.waitstatus_to_exitcode(status)
        for fd in (self._out_fd, self._res_fd):
            os.close(fd)
        run, self.current = self.current, None
        if self.host.closing and run is None:
            self.dead.set()
            return
        during = f" during {run.event}" + ("" if run.step is None else f" step {run.step}") if run else " while idle"
        self.host.say(f"its process (pid {self.pid}) died{during} ({_how(self.returncode)}); the next event "
                      "starts a new one, which builds the class and calls begin again first")
        if run is not None:
            run.finish("failed", f"the listener's process died ({_how(self.returncode)})", self.returncode)
        self.dead.set()


def _above_four(fd: int) -> int:
    """The same pipe end on a descriptor above 4, so that the child's dup2s onto 1-4 overwrite none of them."""
    if fd > 4:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


class WarmHost:
    """One Python class listener's process for the session, started on its first event."""

    def __init__(self, name: str, target: PythonTarget, say: Callable[[str], None],
                 output: Callable[[str, str | None, int | None], None]) -> None:
        """``say`` logs a line about the process; ``output(text, event, step)`` one line it printed."""
        self.name = name
        self.target = target
        self.say = say
        self._output = output
        self.closing = False
        self.processes = 0
        self._proc: _Process | None = None

    def output(self, text: str, event: str | None = None, step: int | None = None) -> None:
        self._output(text, event, step)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and not proc.dead.is_set() else None

    def _spawn(self, env: Mapping[str, str], why: str) -> _Process:
        _std_fds_open()
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        out_r, out_w = os.pipe()
        cmd_r, res_w, out_w = _above_four(cmd_r), _above_four(res_w), _above_four(out_w)
        argv = [sys.executable, "-c", BOOT, PACKAGE_ROOT, "3", "4"]
        try:
            with spawning() as ours:  # registered before the reaper can see it exit
                pid = os.posix_spawn(
                    sys.executable,
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, out_w, 1),
                        (os.POSIX_SPAWN_DUP2, out_w, 2),
                        (os.POSIX_SPAWN_DUP2, cmd_r, 3),
                        (os.POSIX_SPAWN_DUP2, res_w, 4),
                    ],
                    setsid=True,
                )
                ours.add(pid)
        except BaseException:
            for fd in (cmd_w, res_r, out_r):
                os.close(fd)
            raise
        finally:
            for fd in (cmd_r, res_w, out_w):
                os.close(fd)
        self.processes += 1
        proc = _Process(self, pid, cmd_w, out_r, res_r)
        init = {"init": {**self.target.to_json(), "name": self.name}}
        proc.send(json.dumps(init, ensure_ascii=True).encode() + b"\n")
        self.say(f"started its process (pid {pid}, {sys.executable}) for {self.target}{why}")
        return proc

    def start(self, payload: Mapping[str, Any], own_env: Mapping[str, str], env: Mapping[str, str],
              before_send: Callable[[int, int | None], None]) -> WarmRun:
        """Hand one event to the process (started first when there is none, or it died); raises OSError.

        ``env`` is the whole environment for a new process, ``own_env`` the
        ``CKPTWATCH_*`` values of this event; ``before_send(pid, start_ticks)``
        journals the run before the process can see it.
        """
        line = json.dumps({"payload": payload, "env": dict(own_env)}, ensure_ascii=True).encode() + b"\n"
        for attempt in (1, 2):
            proc = self._proc
            if proc is None or proc.dead.is_set() or proc.cmd_fd is None:
                why = "" if proc is None else " (a new process: the class is built again and begin called first)"
                proc = self._proc = self._spawn(env, why)
            run = WarmRun(proc, payload["event"], payload.get("step"))
            before_send(proc.pid, proc.ticks)
            proc.current = run
            try:
                proc.send(line)
                return run
            except BrokenPipeError:
                # It died between two events and its reader has not said so yet.
                proc.current = None
                proc.dead.wait(5)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def wait(self, run: WarmRun, timeout: float | None, say: Callable[[str], None], cancel: threading.Event,
             force: threading.Event) -> RunOutcome:
        """Wait for the run's outcome; on a timeout or a cut-off, kill the process group (the next event starts anew)."""
        deadline = run.started + timeout if timeout else None
        cut: str | None = None
        while True:
            wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
            if run.done.wait(wait):
                break
            if cancel.is_set():
                cut = "interrupted"
                break
            if deadline is not None and time.monotonic() >= deadline:
                cut = "timeout"
                break
        proc = run.proc
        if cut is not None:
            what = f"timed out after {timeout:g} s" if cut == "timeout" else "cut off by shutdown"
            say(f"{what}; stopping its process group")
            proc.kill(0.0 if force.is_set() else KILL_GRACE, say)
            proc.dead.wait(10)
            run.finish(cut, None, proc.returncode)
            return RunOutcome(cut, proc.returncode, time.monotonic() - run.started, run.last_line, tuple(run.tail))
        status = run.status or "failed"
        last = run.error or run.last_line if status == "failed" else run.last_line
        return RunOutcome(status, run.exit_code, time.monotonic() - run.started, last, tuple(run.tail))

    def close(self, *, force: bool = False) -> None:
        """End the process: end of file on its commands, then its group killed if it lingers."""
        self.closing = True
        proc = self._proc
        if proc is None:
            return
        proc.close_commands()
        if not proc.dead.wait(0.0 if force else CLOSE_GRACE):
            if not force:
                self.say(f"its process did not exit within {CLOSE_GRACE:g} s of the session's end; "
                         "stopping its process group")
            proc.kill(0.0 if force else 1.0, self.say)
            proc.dead.wait(5)
        proc.thread.join(5)


def host_logger(name: str) -> tuple[Callable[[str], None], Callable[[str, str | None, int | None], None]]:
    """The ``say`` and ``output`` callbacks that log for listener ``name``."""
    from ..report.console import emit

    def say(text: str) -> None:
        emit("info", f"{name}: {text}", logging.INFO if text.startswith("started its process") else logging.WARNING,
             listener=name)

    def output(text: str, event: str | None, step: int | None) -> None:
        if event is None:
            emit("output", text, listener=name)
        else:
            emit("output", text, listener=name, event=event, step=step)

    return say, output
