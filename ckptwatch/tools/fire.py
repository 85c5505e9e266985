"""``ckptwatch fire EVENT``: run the listeners for one event now, exactly as ``run`` would.

For a listener's author: the same discovery, payload, environment,
subscriptions and policy as the daemon, through the same dispatcher (a
Python class gets its warm process, built and ``begin``-ed first), with a
journal of its own in a temporary directory, so the real journal is never
touched. A stop request is reported (exit 3), and no stop file is written.

Without ``--checkpoint``, ``before_save``, ``after_save`` and ``end`` get the
checkpoint at ``--step`` (or the newest) that DIR holds, read as ``ckptwatch
doctor`` reads it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from ..delivery.environment import listener_environment
from ..events import EVENT_NAMES, Event
from ..report.console import emit

__all__ = ["EXIT_FAILED", "EXIT_STOP", "FireError", "fire"]

EXIT_FAILED = 1
EXIT_STOP = 3


class FireError(ValueError):
    """A usage error: one line that says what to fix."""


def _checkpoint(event: str, step: int | None, checkpoint: str | None, root: str,
                layout: str) -> tuple[int | None, str | None, str]:
    """``(step, checkpoint relative to DIR or absolute, layout name)`` for the event."""
    if event == "begin":
        return None, None, "" if layout == "auto" else layout
    if checkpoint is not None:
        path = os.path.abspath(checkpoint)
        inside = os.path.commonpath([path, root]) == root
        return step, os.path.relpath(path, root) if inside else path, "" if layout == "auto" else layout
    from .doctor import examine

    if not os.path.isdir(root):
        raise FireError(f"{root} is not a directory; pass --dir DIR or --checkpoint PATH")
    report = examine(root, layout)
    committed = report.committed
    if step is not None:
        committed = [c for c in committed if c["step"] == step]
    if not committed:
        where = f"at step {step} " if step is not None else ""
        found = f"layout {report.layout}" if report.layout else "no layout recognised"
        raise FireError(f"no committed checkpoint {where}in {root} ({found}); pass --checkpoint PATH "
                        "(and --step N), or --dir DIR")
    chosen = max(committed, key=lambda c: c["step"])
    return chosen["step"], chosen["path"], report.layout or ""


def fire(
    event: str,
    *,
    step: int | None,
    checkpoint: str | None,
    directory: str,
    locations: tuple[str, ...],
    settings: Mapping[str, Mapping[str, Any]],
    layout: str = "auto",
    stop_file: str | None = None,
    listener_timeout: float | None = None,
) -> int:
    """Run ``event``'s listeners once; 0, 1 when one failed, 3 when one asked for a stop."""
    from ..delivery.dispatch import Dispatcher, RunContext
    from ..delivery.journal import Journal
    from ..delivery.listeners import ListenerError, discover

    if event not in EVENT_NAMES:
        raise FireError(f"EVENT must be one of {', '.join(EVENT_NAMES)}, not {event!r}")
    root = os.path.abspath(directory)
    env = listener_environment()
    try:
        specs = discover(locations, lambda text: emit("info", text, logging.WARNING), settings, listener_timeout,
                         env=env)
    except ListenerError as exc:
        raise FireError(str(exc)) from None
    if not specs:
        raise FireError("no listeners: pass -l PATH (a directory, an executable, MODULE:CLASS, PATH.py:CLASS), "
                        "or run it where ./listeners.d or ckptwatch.toml names some")
    step, rel, layout_name = _checkpoint(event, step, checkpoint, root, layout)
    if event == "end" and rel is None:
        step = None
    identity = f"fire:{rel}:{step}:{time.time_ns()}"
    fired = Event(event, step, rel, identity if event in ("before_save", "after_save") else "", observed=True)
    state = tempfile.mkdtemp(prefix="ckptwatch-fire-")
    run_id = "fire-" + time.strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()
    stop_path = os.path.abspath(stop_file) if stop_file else os.path.join(root, "ckptwatch.stop")
    journal = Journal(state)
    context = RunContext(root, stop_path, run_id, layout=layout_name, base_env=env, write_stop_file=False)
    dispatcher = Dispatcher(specs, journal, context)
    try:
        dispatcher.start()
        where = f" {rel}" if rel else ""
        at = "" if step is None else f" step {step}"
        emit("event", f"fire {event}{at}{where}", event=event, step=step, checkpoint=rel)
        dispatcher.dispatch(fired)
        for spec in specs:
            if not spec.wants(event):  # type: ignore[arg-type]
                emit("info", f"{spec.name}: not subscribed to {event} (events={','.join(sorted(spec.events))})",
                     listener=spec.name)
        dispatcher.drain(None)
    finally:
        dispatcher.close()
        journal.close()
        shutil.rmtree(state, ignore_errors=True)
    if dispatcher.failures:
        return EXIT_FAILED
    if dispatcher.stop_asked:
        who = ", ".join(name for name, _ in dispatcher.stop_asked)
        emit("stop", f"stop requested by {who} (fire writes no stop file; run would have written {stop_path})",
             listeners=[name for name, _ in dispatcher.stop_asked])
        return EXIT_STOP
    return 0
