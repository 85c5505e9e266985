"""``--summary-json PATH``: the whole watcher run as one JSON document, for CI and scripts.

The schema is ``summary.schema.json`` beside this module and is described in
``docs/summary-json.md``. It is versioned: ``version`` is 1; fields may be
added within a version, none renamed or removed, and a change of meaning
takes a new version.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from typing import Any

from .. import __version__
from ..integrations.jsonfile import replace_text
from .console import emit
from .hub import Ending, Reporter
from .record import SessionRecord

__all__ = ["SUMMARY_VERSION", "SummaryJson", "document"]

SUMMARY_VERSION = 1


class SummaryJson(Reporter):
    def __init__(self, path: str, record: SessionRecord) -> None:
        self.path = path
        self.record = record

    def finished(self, ending: Ending) -> None:
        write_report(self.path, json.dumps(document(self.record, ending), indent=2, ensure_ascii=True) + "\n",
                     "--summary-json")


def document(record: SessionRecord, ending: Ending) -> dict[str, Any]:
    finished = ending.finished
    return {
        "version": SUMMARY_VERSION,
        "ckptwatch": __version__,
        "run_id": record.run_id,
        "sessions": [{"run_id": s.run_id, "started": s.started, "listeners": list(s.listeners)}
                     for s in record.sessions],
        "dir": record.dir,
        "layout": record.layout,
        "started": record.started,
        "finished": finished,
        "duration": round(finished - record.started, 6),
        "checkpoints": [asdict(c) for c in record.commits],
        "saves_never_committed": [asdict(s) for s in record.never_committed()],
        "runs": [
            {
                "listener": run.listener,
                "event": run.event.name,
                "step": run.event.step,
                "checkpoint": run.checkpoint,
                "outcome": run.status,
                "exit_status": run.exit_code,
                "duration": round(run.duration, 6),
                "attempt": run.attempt,
                "finished": run.finished,
                "output": list(run.output),
            }
            for run in record.runs
        ],
        "stop_requests": [
            {"step": s.step, "checkpoint": s.checkpoint, "listeners": list(s.listeners), "reason": s.reason,
             "time": s.time}
            for s in record.stops
        ],
        "vanished": [{"step": r.event.step, "checkpoint": r.checkpoint, "listener": r.listener}
                     for r in record.vanished],
        "stale": [asdict(spell) for spell in record.stale],
        "expectations": [asdict(v) for v in ending.verdicts],
        "command": {"argv": list(ending.command), "exit_status": ending.command_status} if ending.command else None,
        "exit": {"status": ending.status, "reason": ending.reason},
        "counts": {
            "checkpoints": len(record.commits),
            "runs_done": record.done,
            "runs_failed": record.failed,
            "runs_vanished": record.outcomes["vanished"],
            "runs_interrupted": record.outcomes["interrupted"],
        },
    }


def write_report(path: str, text: str, option: str, *, append: bool = False) -> None:
    """Write a report (its directory made if needed); a failure is one error line, the watcher still ends."""
    try:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        if append:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(text)
            return
        replace_text(path, text)
    except OSError as exc:
        emit("info", f"cannot write {option} {path}: {exc.strerror or exc}", logging.ERROR)


def iso(when: float) -> str:
    """Local time as JUnit readers want it (ISO 8601, no zone)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
