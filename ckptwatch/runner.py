"""Running one listener once: its own process group, streamed output, a deadline.

The listener leads a new session (``start_new_session``), so a timeout can
kill everything it started (``sh -c``, uploaders) with ``os.killpg``: TERM,
then KILL after a grace period, each step logged. Output (stdout and stderr)
is read line by line and handed to ``on_line`` as it comes.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .faults import crash_point
from .reaper import descendants, forget, kill_all, spawning

__all__ = ["KILL_GRACE", "RunOutcome", "kill_group", "process_start_ticks", "run_listener"]

#: Seconds between TERM and KILL when a listener's group is stopped.
KILL_GRACE = 3.0
#: A longer line than this is cut (a listener that floods must not eat memory).
MAX_LINE = 16384
STOP_EXIT = 3


@dataclass(frozen=True)
class RunOutcome:
    status: str  # done | stop | failed | timeout | interrupted
    exit_code: int | None
    duration: float
    last_line: str


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


def run_listener(
    argv: list[str],
    payload: Mapping[str, Any],
    env: Mapping[str, str],
    timeout: float | None,
    on_start: Callable[[int], None],
    on_line: Callable[[str], None],
    say: Callable[[str], None],
    cancel: threading.Event,
    force: threading.Event,
) -> RunOutcome:
    """Run ``argv`` with ``payload`` as JSON on stdin until it exits, times out or is cancelled.

    ``on_start`` is called with the listener's pid (= its process group) once it runs.

    ``cancel`` cuts the run off (TERM, then KILL after a grace period);
    with ``force`` also set, KILL at once.
    """
    started = time.monotonic()
    with spawning() as ours:  # registered before the reaper can see it exit
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
        ours.add(proc.pid)
    try:
        crash_point("run-spawned")
        on_start(proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(payload, ensure_ascii=True).encode() + b"\n")
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the listener does not read stdin: fine
        deadline = started + timeout if timeout else None
        reader = _LineReader(proc.stdout.fileno(), on_line)
        status: str | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
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
        proc.stdout.close()
        code = proc.returncode
        if status is None:
            status = "done" if code == 0 else "stop" if code == STOP_EXIT else "failed"
        return RunOutcome(status, code, time.monotonic() - started, reader.last_line)
    finally:
        forget(proc.pid)


def _wait(proc: subprocess.Popen[bytes], deadline: float | None, cancel: threading.Event) -> str | None:
    """Wait for the exit after the output closed; a status only when cut off."""
    while True:
        try:
            proc.wait(timeout=0.1)
            return None
        except subprocess.TimeoutExpired:
            if cancel.is_set():
                return "interrupted"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"


class _LineReader:
    """Splits a non-blocking pipe into lines; remembers the last non-empty one.

    A line longer than ``MAX_LINE`` is logged once, cut, and the rest of it
    dropped: a listener that floods cannot eat the watcher's memory or log.
    """

    def __init__(self, fd: int, on_line: Callable[[str], None]) -> None:
        self._fd = fd
        self._on_line = on_line
        self._partial = b""
        self._cutting = False
        self.last_line = ""
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
        self._on_line(text)
