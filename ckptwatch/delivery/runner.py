"""Running one listener once: its own process group, streamed output, a deadline.

The listener leads its own process group, so a timeout can kill
everything it started (``sh -c``, uploaders) with ``os.killpg``: TERM, then
KILL after a grace period, each step logged. Output (stdout and stderr) is
read line by line and handed to ``on_line`` as it comes.

A process group, not a new session, unless the watcher has a controlling
terminal: ``setsid`` makes Linux create a scheduling group per session
(autogroup), and on a loaded 2-core machine a listener then took about 2 ms
longer to start at p90 (0.2 ms at p50). With a terminal, a new session keeps
a listener from reading it (it fails at once instead of being stopped by
``SIGTTIN`` as a background job).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..faults import crash_point
from .reaper import descendants, forget, kill_all, spawning

__all__ = [
    "KILL_GRACE",
    "ListenerProcess",
    "RunOutcome",
    "StartedRun",
    "close_inherited_fds",
    "kill_group",
    "process_start_ticks",
    "start_listener",
    "supervise",
]

#: Seconds between TERM and KILL when a listener's group is stopped.
KILL_GRACE = 3.0
#: A longer line than this is cut (a listener that floods must not eat memory).
MAX_LINE = 16384
#: How many of a run's last output lines its outcome keeps (for reports).
TAIL_LINES = 20
STOP_EXIT = 3


@dataclass(frozen=True)
class RunOutcome:
    status: str  # done | stop | failed | timeout | interrupted
    exit_code: int | None
    duration: float
    last_line: str
    #: The last lines of its output, oldest first (at most ``TAIL_LINES``).
    tail: tuple[str, ...] = ()


def process_start_ticks(pid: int) -> int | None:
    """The start time of a process in clock ticks since boot (to recognise a pid later)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def kill_group(pgid: int, grace: float, say: Callable[[str], None], alive: Callable[[], bool]) -> None:
    """Stop a listener's whole tree: TERM, up to ``grace`` seconds for ``alive()`` to turn false, KILL.

    The tree is its process group plus every descendant found under it now,
    so a child that called ``setsid`` (and left the group) dies too.
    """
    tree = descendants(pgid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        kill_all(tree, sig)
        escaped = f" and {len(tree)} process(es) below it" if tree else ""
        say(f"sent {signal.Signals(sig).name} to process group {pgid}{escaped}")
        if sig == signal.SIGKILL:
            return
        deadline = time.monotonic() + grace
        while alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        tree += [pid for pid in descendants(pgid) if pid not in tree]


class ListenerProcess:
    """A started listener: its pid (= its process group), the read end of its output, its exit code.

    ``os.posix_spawn`` (a ``vfork`` and ``exec`` in the C library) starts it
    in about half the time ``subprocess.Popen`` takes here, which matters on
    the commit-to-start path. Every descriptor of ours is close-on-exec
    (Python's default; :func:`close_inherited_fds` takes care of those we
    inherited), so the listener gets only the three it is given.
    """

    def __init__(self, pid: int, output_fd: int) -> None:
        self.pid = pid
        self.output_fd = output_fd
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once it has exited (negative: killed by that signal), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0  # reaped elsewhere: its status is lost
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds (forever with None); the exit code, or None if still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return self.returncode


@dataclass
class StartedRun:
    """A listener process that has been started and fed its payload."""

    proc: ListenerProcess
    started: float  # time.monotonic() at the spawn


def start_listener(argv: list[str], payload: Mapping[str, Any], env: Mapping[str, str]) -> StartedRun:
    """Start ``argv`` leading its own process group, with ``payload`` as JSON on stdin; raises OSError.

    Cheap enough for the engine thread, which calls it when the listener is
    idle: the commit-to-start path then crosses no thread.
    """
    _std_fds_open()
    started = time.monotonic()
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        with spawning() as ours:  # registered before the reaper can see it exit
            pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin_r, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, out_w, 2),
                ],
                **_own_group(),
            )
            ours.add(pid)
    except BaseException:
        os.close(out_r)
        os.close(stdin_w)
        raise
    finally:
        os.close(stdin_r)
        os.close(out_w)
    try:
        os.write(stdin_w, json.dumps(payload, ensure_ascii=True).encode() + b"\n")
    except OSError:
        pass  # the listener does not read stdin (or exited already): fine
    finally:
        os.close(stdin_w)
    return StartedRun(ListenerProcess(pid, out_r), started)


_detach: dict[str, Any] | None = None


def _own_group() -> dict[str, Any]:
    """``posix_spawn``'s keywords for a listener's own group: a new session only beside a terminal (see above)."""
    global _detach
    if _detach is None:
        _detach = {"setsid": True} if has_controlling_terminal() else {"setpgroup": 0}
    return _detach


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal (``/dev/tty`` opens)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


_std_fds_checked = False


def _std_fds_open() -> None:
    """Open /dev/null on a closed 0, 1 or 2, so a pipe never lands there (a dup2 onto itself keeps close-on-exec).

    Once: nothing here closes them later.
    """
    global _std_fds_checked
    if _std_fds_checked:
        return
    _std_fds_checked = True
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.close(opened)


def close_inherited_fds() -> None:
    """Make descriptors we inherited (above 2) close-on-exec: listeners get only their own three."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                pass  # the directory's own descriptor, closed by now


def supervise(
    run: StartedRun,
    timeout: float | None,
    on_start: Callable[[int], None],
    on_line: Callable[[str], None],
    say: Callable[[str], None],
    cancel: threading.Event,
    force: threading.Event,
) -> RunOutcome:
    """Stream a started run's output until it exits, times out or is cancelled.

    ``on_start`` is called first with the listener's pid (= its process group).
    ``cancel`` cuts the run off (TERM, then KILL after a grace period);
    with ``force`` also set, KILL at once.
    """
    proc, started = run.proc, run.started
    try:
        crash_point("run-spawned")
        on_start(proc.pid)
        deadline = started + timeout if timeout else None
        reader = _LineReader(proc.output_fd, on_line)
        status: str | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.output_fd, selectors.EVENT_READ)
            while True:
                wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
                ready = selector.select(wait)
                if ready and not reader.read():
                    break  # EOF: the listener (and all its children) closed the output
                if cancel.is_set():
                    status = "interrupted"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    status = "timeout"
                    break
                if not ready and proc.poll() is not None:
                    break  # exited; a background child may still hold the pipe
        if status is None:
            status = _wait(proc, deadline, cancel)
        if status in ("timeout", "interrupted"):
            what = f"timed out after {timeout:g} s" if status == "timeout" else "cut off by shutdown"
            say(f"{what}; stopping its process group")
            kill_group(proc.pid, 0.0 if force.is_set() else KILL_GRACE, say, lambda: proc.poll() is None)
            proc.wait()
        reader.flush()
        code = proc.returncode
        if status is None:
            status = "done" if code == 0 else "stop" if code == STOP_EXIT else "failed"
        return RunOutcome(status, code, time.monotonic() - started, reader.last_line, tuple(reader.tail))
    finally:
        os.close(proc.output_fd)
        if proc.returncode is None:
            proc.wait()  # never leave a zombie behind (only reached by an unexpected error)
        forget(proc.pid)


def _wait(proc: ListenerProcess, deadline: float | None, cancel: threading.Event) -> str | None:
    """Wait for the exit after the output closed; a status only when cut off."""
    while proc.wait(timeout=0.1) is None:
        if cancel.is_set():
            return "interrupted"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
    return None


class _LineReader:
    """Splits a non-blocking pipe into lines; remembers the last non-empty ones.

    A line longer than ``MAX_LINE`` is logged once, cut, and the rest of it
    dropped: a listener that floods cannot eat the watcher's memory or log.
    """

    def __init__(self, fd: int, on_line: Callable[[str], None]) -> None:
        self._fd = fd
        self._on_line = on_line
        self._partial = b""
        self._cutting = False
        self.last_line = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        os.set_blocking(fd, False)

    def read(self) -> bool:
        """Read what is there; False at end of file."""
        return self._read_once() is not None

    def _read_once(self) -> int | None:
        """Bytes read (0 when none are waiting), or None at end of file."""
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return 0
        if not chunk:
            return None
        if self._cutting:  # the rest of a line already cut: drop it up to its newline
            end = chunk.find(b"\n")
            if end < 0:
                return len(chunk)
            self._cutting = False
            chunk = chunk[end + 1 :]
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)  # cut by _line
            self._partial = b""
            self._cutting = True
        for line in lines:
            self._line(line)
        return len(chunk)

    def flush(self) -> None:
        """Take what is still in the pipe without waiting for a background child."""
        while self._read_once():
            pass
        if self._partial:
            self._line(self._partial)
            self._partial = b""

    def _line(self, raw: bytes) -> None:
        if len(raw) > MAX_LINE:
            raw = raw[:MAX_LINE] + b" [cut]"
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if text.strip():
            self.last_line = text.strip()
            self.tail.append(text)
        self._on_line(text)
