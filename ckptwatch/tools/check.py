"""``ckptwatch check``: read the config and every listener as ``run`` would, and say what is wrong.

One line per listener (its kind, events, timeout and policy), then every
problem: a file that is not executable or is writable by every user, a ``#!``
interpreter that is missing, a ``ckptwatch:`` line with unknown words or
values, a Python class that cannot be imported, is not a listener class or
does not take its ``args`` (imported in a process of its own, with the
interpreter ``run`` would use, as ``run`` would), a ``[listener.NAME]``
table that names no listener. What ``run`` only warns about is a problem
here. Exit 0 when all is well, 2 otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..delivery.environment import listener_environment
from ..delivery.hostchild import BOOT
from ..delivery.listeners import ListenerSpec, discover
from ..events import EVENT_NAMES

__all__ = ["CHECK_TIMEOUT", "Checked", "check"]

#: Seconds an import of a listener class may take (TensorFlow takes several).
CHECK_TIMEOUT = 300.0


@dataclass
class Checked:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _class_problem(spec: ListenerSpec, env: Mapping[str, str]) -> tuple[str, str | None]:
    """``(kind of class, problem)``: the class imported in a process of its own, as its host would."""
    from ..delivery.host import PACKAGE_ROOT

    assert spec.python is not None
    try:
        done = subprocess.run(
            [sys.executable, "-c", BOOT, PACKAGE_ROOT, "--check"],
            input=json.dumps(spec.python.to_json()) + "\n", capture_output=True, text=True, env=dict(env),
            timeout=CHECK_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return "", f"importing it took over {CHECK_TIMEOUT:g} s"
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return "", f"could not be checked: {tail[0]}"
    return answer.get("kind", ""), None if answer.get("ok") else answer.get("error", "?")


def _describe(spec: ListenerSpec, kind: str) -> str:
    events = "all" if spec.events == frozenset(EVENT_NAMES) else ",".join(e for e in EVENT_NAMES if e in spec.events)
    words = [f"events={events}"]
    if spec.timeout is not None:
        words.append(f"timeout={spec.timeout:g}")
    if spec.policy.describe():
        words.append(spec.policy.describe())
    what = f"class {spec.python} ({kind})" if spec.python is not None else f"script {spec.path}"
    return f"{what}  {' '.join(words)}"


def check(locations: tuple[str, ...], settings: Mapping[str, Mapping[str, Any]],
          default_timeout: float | None = None) -> Checked:
    """Every listener ``run`` would use, checked; problems listed, none fatal."""
    result = Checked()
    problems: list[str] = []
    warnings: list[str] = []
    env = listener_environment()
    specs = discover(locations, warnings.append, settings, default_timeout, problems=problems, env=env)
    width = max((len(spec.name) for spec in specs), default=0)
    for spec in specs:
        kind, problem = "", None
        if spec.python is not None:
            kind, problem = _class_problem(spec, env)
        mark = "ok   " if problem is None else "error"
        result.lines.append(f"{mark}  {spec.name:<{width}}  {_describe(spec, kind or '?')}")
        if problem is not None:
            result.problems.append(f"{spec.name}: {problem}")
    names = {spec.name for spec in specs}
    for name in settings:
        if name not in names:
            problems.append(f"[listener.{name}] names no listener (tables apply to listeners by the name in the log)")
    result.problems = warnings + problems + result.problems
    if not specs and not result.problems:
        result.problems.append("no listeners: add executables to ./listeners.d, pass -l PATH, or name a class in "
                               "ckptwatch.toml ([listener.NAME] class = \"MODULE:CLASS\")")
    return result
