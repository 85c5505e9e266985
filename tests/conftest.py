"""Shared fixtures: real directories, real ckptwatch processes, real listener scripts.

Nothing here mocks the file system or the watcher: ``Watch`` starts
``python -m ckptwatch run ... --log-format json`` and reads its JSON log
lines; listeners are executables written into ``tmp_path`` that append what
they received (argv, the JSON on stdin, the ``CKPTWATCH_*`` environment) to a
record file. Tests wait for log lines or records, never for a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

WAIT = 30.0  # generous: CI machines are shared and slow; tests wait for facts, not time

RECORDER = """#!{python}
{subscription}
import json, os, sys, time
payload = sys.stdin.read()
record = {{
    "name": os.path.basename(sys.argv[0]),
    "argv": sys.argv[1:],
    "stdin": json.loads(payload) if payload.strip() else None,
    "env": {{k: v for k, v in os.environ.items() if k.startswith("CKPTWATCH_")}},
    "pid": os.getpid(),
    "time": time.time(),
}}
{before}
with open(os.environ["RECORD_FILE"], "a") as out:
    out.write(json.dumps(record) + "\\n")
{after}
"""


def write_listener(
    directory: Path,
    name: str,
    *,
    events: str | None = None,
    before: str = "",
    after: str = "",
) -> Path:
    """A Python listener that records each call; ``before``/``after`` add code around the record."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    subscription = f"# ckptwatch: events={events}" if events else "# records every event"
    path.write_text(RECORDER.format(python=sys.executable, subscription=subscription, before=before, after=after))
    path.chmod(0o755)
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_stream(steps: list[int]) -> list[tuple[str, int | None]]:
    """The event stream the guarantees promise for saves at these steps, one after another."""
    stream: list[tuple[str, int | None]] = [("begin", None)]
    for step in steps:
        stream += [("before_save", step), ("after_save", step)]
    return stream + [("end", steps[-1] if steps else None)]


def summary(records: list[dict[str, Any]], name: str | None = None) -> list[tuple[str, int | None]]:
    """``(event, step)`` per record, in order, for one listener (or all)."""
    return [(r["argv"][0], r["stdin"]["step"]) for r in records if name is None or r["name"] == name]


class Watch:
    """A real ``ckptwatch run`` process, with its JSON log lines collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ckptwatch", "run", "--log-format", "json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
        )
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.stdout = ""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    pass
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """The first log record matching ``predicate`` (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no matching log line; got:\n" + "\n".join(self.lines[-40:]) + f"\nexit: {self.proc.poll()}")
                self._changed.wait(min(left, 0.2))

    def wait_ready(self) -> dict[str, Any]:
        return self.wait_for(lambda r: r.get("kind") == "ready")

    def wait_run(self, listener: str, event: str, step: int | None = None, timeout: float = WAIT) -> dict[str, Any]:
        """The log record of a finished listener run."""
        return self.wait_for(
            lambda r: r.get("kind") == "run" and r.get("listener") == listener and r.get("event") == event
            and (step is None or r.get("step") == step),
            timeout,
        )

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = WAIT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("ckptwatch did not exit; log:\n" + "\n".join(self.lines[-40:])) from None
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The watcher's environment: no CKPTWATCH_* (or GITHUB_STEP_SUMMARY) from outside, a record file for listeners."""
    # GITHUB_STEP_SUMMARY: a suite run inside GitHub Actions must not append every test's run to the page
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_") and k != "GITHUB_STEP_SUMMARY"}
    clean["RECORD_FILE"] = str(tmp_path / "records.jsonl")
    clean["PYTHONPATH"] = str(Path(__file__).parent.parent)
    return clean


@pytest.fixture
def records_path(tmp_path: Path) -> Path:
    return tmp_path / "records.jsonl"


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt"
    path.mkdir()
    return path


@pytest.fixture
def watch(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Watch]]:
    """Start ``ckptwatch run`` with these arguments; killed at the end of the test."""
    started: list[Watch] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> Watch:
        process = Watch(list(args), {**env, **(extra_env or {})}, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ckptwatch ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "ckptwatch", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_once(ckpt: Path, tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """``ckptwatch run CKPT --once --log-format json EXTRA``, to completion."""
    return run_cli("run", str(ckpt), "--once", "--log-format", "json", *extra, env=env, cwd=tmp_path)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def json_log(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out
