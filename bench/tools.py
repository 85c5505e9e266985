"""The tools compared, one small class each.

A tool knows whether it can run here (`unavailable()` returns the reason when
it cannot), how to show its help, and the command that watches a directory and
starts the listener on each commit. The runner does everything else the same
way for every tool.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


class Tool:
    name = "?"
    title = "?"
    slow = False            # polls on a timer: fewer latency saves, wider jitter
    poll_interval = 0.0     # seconds, for slow tools
    ready_timeout = 30.0    # seconds from spawn to the first delivered warm-up commit
    step_from = "file"      # where the listener learns the step: file | tool | ckptwatch
    listener_in_dir = False  # True: the tool takes a listener directory

    def write_listener(self, path: Path, watch_dir: Path, records: Path, all_events: bool = False) -> Path:
        """The listener this tool starts (the same bash script for every tool, unless it says otherwise).

        all_events: ckptwatch runs it for all four events (it records after_save only).
        """
        from bench import scenario

        return scenario.write_listener(path, watch_dir, records, all_events)

    def unavailable(self) -> str | None:
        return None

    def help_argv(self) -> list[str]:
        raise NotImplementedError

    def argv(self, watch_dir: Path, listener: Path, work: Path) -> list[str]:
        raise NotImplementedError

    @property
    def latency_timeout(self) -> float:
        return 3 * self.poll_interval + 5 if self.slow else 3.0


class Floor(Tool):
    name = "floor"
    title = "floor: Python inotify reader -> Popen"

    def help_argv(self):
        return [sys.executable, str(HERE / "floor.py"), "--help"]

    def argv(self, watch_dir, listener, work):
        return [sys.executable, str(HERE / "floor.py"), str(watch_dir), str(listener)]


class Watchmedo(Tool):
    name = "watchmedo"
    title = "watchmedo shell-command (inotify)"

    def __init__(self, exe: str | None, polling: bool = False):
        self.exe = exe
        self.polling = polling
        if polling:
            self.name = "watchmedo-poll"
            self.title = "watchmedo --debug-force-polling (1 s)"
            self.slow = True
            self.poll_interval = 1.0

    def unavailable(self):
        if not self.exe:
            return "watchmedo not found (pip install watchdog; or pass --watchmedo PATH)"
        try:
            r = _run([self.exe, "--version"])
        except OSError as e:
            return f"{self.exe}: {e}"
        if r.returncode != 0:
            return f"{self.exe} --version failed: {_last_line(r.stderr)}"
        return None

    def help_argv(self):
        return [self.exe, "--help"]

    def argv(self, watch_dir, listener, work):
        cmd = [self.exe, "shell-command", "--patterns=**/checkpoint",
               f"--command=bash {shlex.quote(str(listener))}"]
        if self.polling:
            cmd += ["--debug-force-polling", "--interval", "1"]
        return cmd + [str(watch_dir)]


class Inotifywait(Tool):
    name = "inotifywait"
    title = "inotifywait -m + while read loop"
    LOOP = ('inotifywait -m -q -e moved_to --format %f "$0" | '
            'while IFS= read -r f; do if [[ $f == checkpoint ]]; then bash "$1" & fi; done')

    def unavailable(self):
        if not shutil.which("inotifywait"):
            return "inotifywait not installed (apt-get install -y inotify-tools)"
        return None

    def help_argv(self):
        # inotifywait --help exits 1 after printing its usage; the runner records the status.
        return ["inotifywait", "--help"]

    def argv(self, watch_dir, listener, work):
        return ["bash", "-c", self.LOOP, str(watch_dir), str(listener)]


class TfIterator(Tool):
    name = "tf-iterator"
    title = "tf.train.checkpoints_iterator (1 s)"
    slow = True
    poll_interval = 1.0
    ready_timeout = 120.0
    step_from = "tool"

    def __init__(self, python: str):
        self.python = python

    def unavailable(self):
        try:
            r = _run([self.python, "-c", "import tensorflow"], timeout=180)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{self.python}: {e}"
        if r.returncode != 0:
            return f"tensorflow not importable by {self.python}: {_last_line(r.stderr)}"
        return None

    def help_argv(self):
        return [self.python, str(HERE / "tf_iter.py"), "--help"]

    def argv(self, watch_dir, listener, work):
        return [self.python, str(HERE / "tf_iter.py"), str(watch_dir), str(listener), "1"]


def default_ckptwatch_command() -> list[str]:
    exe = shutil.which("ckptwatch")
    if exe:
        return [exe]
    sibling = Path(sys.executable).parent / "ckptwatch"
    if sibling.exists():
        return [str(sibling)]
    return [sys.executable, "-m", "ckptwatch"]


class Ckptwatch(Tool):
    name = "ckptwatch"
    title = "ckptwatch run --layout tf"
    step_from = "ckptwatch"
    listener_in_dir = True

    def __init__(self, command: list[str], poll: bool = False):
        self.command = command
        self.poll = poll
        if poll:
            self.name = "ckptwatch-poll"
            self.title = "ckptwatch run --layout tf --poll 1"
            self.slow = True
            self.poll_interval = 1.0

    def unavailable(self):
        shown = " ".join(self.command)
        try:
            r = _run(self.command + ["run", "--help"])
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{shown}` is not runnable: {e}"
        if r.returncode != 0:
            why = _last_line(r.stderr) or _last_line(r.stdout) or f"exit {r.returncode}"
            return f"`{shown} run --help` failed: {why}"
        if self.poll and "--poll" not in r.stdout + r.stderr:
            return f"`{shown} run --help` shows no --poll option yet"
        return None

    def help_argv(self):
        return self.command + ["--help"]

    def argv(self, watch_dir, listener, work):
        # `listener` is the listener directory for this tool (listener_in_dir).
        cmd = self.command + ["run", str(watch_dir), "--layout", "tf", "-l", str(listener),
                              "--log-format", "json", "--state-dir", str(work / "state")]
        if self.poll:
            cmd += ["--poll", "1"]
        return cmd


class CkptwatchPython(Ckptwatch):
    """ckptwatch with a Python listener instead of the bash one: a warm class, or a serve() script.

    The latency is commit -> the first line of the listener's ``after_save``
    (``time.time_ns()``), as the bash listener's is its first line.
    """

    def __init__(self, command: list[str], kind: str):
        super().__init__(command)
        self.kind = kind
        if kind == "class":
            self.name = "ckptwatch-class"
            self.title = "ckptwatch, a warm Python class listener"
        else:
            self.name = "ckptwatch-serve"
            self.title = "ckptwatch, a serve() Python script listener"

    def unavailable(self):
        reason = super().unavailable()
        if reason is None and self.kind == "class":
            r = _run(self.command + ["fire", "--help"])
            if r.returncode != 0:
                return f"`{' '.join(self.command)}` has no Python class listeners yet (no fire command)"
        return reason

    def write_listener(self, path, watch_dir, records, all_events=False):
        from bench import scenario

        if self.kind == "class":
            return scenario.write_class_listener(path, records, all_events)
        return scenario.write_serve_listener(path, records, sys.executable, all_events)


def find_watchmedo(given: str | None) -> str | None:
    if given:
        return given
    exe = shutil.which("watchmedo")
    if exe:
        return exe
    sibling = Path(sys.executable).parent / "watchmedo"
    return str(sibling) if sibling.exists() else None


def all_tools(args, names: str | None = None) -> list[Tool]:
    """Every tool in table order, filtered by `names` (comma-separated; None: every default tool).

    The floor is always in: the ratios need the floor of the same run.
    """
    wm = find_watchmedo(args.watchmedo)
    ck = shlex.split(args.ckptwatch) if args.ckptwatch else default_ckptwatch_command()
    tools = [
        Floor(),
        Watchmedo(wm),
        Inotifywait(),
        TfIterator(args.tf_python or sys.executable),
        Ckptwatch(ck),
        CkptwatchPython(ck, "class"),
        CkptwatchPython(ck, "serve"),
        Ckptwatch(ck, poll=True),
        Watchmedo(wm, polling=True),
    ]
    default_off = {"watchmedo-poll"}
    if names:
        wanted = [t.strip() for t in names.split(",") if t.strip()]
        unknown = set(wanted) - {t.name for t in tools}
        if unknown:
            raise SystemExit(f"unknown tool(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(t.name for t in tools)}")
        if "floor" not in wanted:
            wanted.insert(0, "floor")
        return [t for t in tools if t.name in wanted]
    return [t for t in tools if t.name not in default_off]


def env_for_tools() -> dict:
    """The environment every tool runs in: the harness's own, unbuffered Python."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env
