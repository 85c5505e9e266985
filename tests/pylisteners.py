"""Test helpers for Python class listeners: a recording class, and ckptwatch.toml tables for it.

``write_class`` writes ``rec.py`` with ``Rec``, a ``CheckpointSaverListener``
that appends one JSON line per call to ``$RECORD_FILE`` (its pid, how many
calls this object has had, what its constructor got) and misbehaves on
request, by constructor argument: ``fail_at`` (raise), ``die_at``
(``os._exit``), ``hang_at`` (start a child, then sleep), ``stop_at``
(return True), ``slow`` (seconds per after_save).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CLASS_RECORDER = '''
import json, os, subprocess, sys, threading, time
from ckptwatch import CheckpointSaverListener


class Rec(CheckpointSaverListener):
    def __init__(self, label="rec", fail_at=None, die_at=None, hang_at=None, stop_at=None, slow=0.0,
                 chatter=False, **extra):
        self.label, self.fail_at, self.die_at, self.hang_at, self.stop_at = label, fail_at, die_at, hang_at, stop_at
        self.slow, self.extra = slow, extra
        self.calls = 0
        self.state = []
        print(f"{label}: built in pid {os.getpid()}")
        if chatter:  # prints between events too
            threading.Thread(target=self._chatter, daemon=True).start()

    def _chatter(self):
        while True:
            print(f"{self.label}: background", flush=True)
            time.sleep(0.05)

    def _record(self, event):
        self.calls += 1
        self.state.append(event.step)
        record = {
            "name": self.label, "event": event.event, "step": event.step, "pid": os.getpid(),
            "calls": self.calls, "state": list(self.state), "retry": event.retry, "attempt": event.attempt,
            "checkpoint": event.checkpoint, "observed": event.observed, "last_step_handled": event.last_step_handled,
            "extra": self.extra, "time": time.time(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("CKPTWATCH_")},
        }
        with open(os.environ["RECORD_FILE"], "a") as out:
            out.write(json.dumps(record) + "\\n")

    def begin(self, event):
        self._record(event)

    def before_save(self, event):
        self._record(event)

    def after_save(self, event):
        self._record(event)
        step = event.step
        print(f"{self.label}: after_save {step}")
        if self.slow:
            time.sleep(self.slow)
        if step == self.fail_at:
            raise ValueError(f"bad checkpoint {step}")
        if step == self.die_at:
            os._exit(7)
        if step == self.hang_at:
            child = subprocess.Popen(["sleep", "300"])
            with open(os.environ["PID_FILE"], "w") as out:
                out.write(f"{os.getpid()} {child.pid}")
            time.sleep(300)
        return step == self.stop_at

    def end(self, event):
        self._record(event)
'''


def write_class(directory: Path, name: str = "rec.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(CLASS_RECORDER)
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_toml(path: Path, tables: dict[str, dict[str, Any]], run: dict[str, Any] | None = None) -> Path:
    """A ckptwatch.toml with ``[listener.NAME]`` tables (and a ``[run]`` table)."""
    lines = []
    if run:
        lines.append("[run]")
        lines += [f"{key} = {toml_value(value)}" for key, value in run.items()]
    for name, table in tables.items():
        lines.append(f'[listener."{name}"]')
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def by(records: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("name") == label]


def calls(records: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(r["event"], r["step"]) for r in records]
