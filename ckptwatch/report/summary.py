"""The last words of a watcher: each expectation's line, then one summary line.

Whatever the exit status, the watcher ends with one line on stderr (and the
same as the last JSON record with ``--log-format json``): checkpoints
committed, listener runs done and failed, the stop request, the wrapped
command's status, and the exit status with its reason. A CI job reads why it
failed there, without a log parser.
"""

from __future__ import annotations

import logging

from .console import emit
from .hub import Ending, Reporter
from .record import SessionRecord

__all__ = ["SummaryLine", "summary_fields"]


class SummaryLine(Reporter):
    """Added last to the hub, so that its line is the last one."""

    def __init__(self, record: SessionRecord) -> None:
        self.record = record

    def finished(self, ending: Ending) -> None:
        for verdict in ending.verdicts:
            if verdict.held:
                emit("expectation", f"expectation held: {verdict.line}", expectation=verdict.name, held=True)
            else:
                emit("expectation", f"expectation failed: {verdict.line}", logging.ERROR, expectation=verdict.name,
                     held=False)
        fields = summary_fields(self.record, ending)
        emit("summary", summary_line(self.record, ending), logging.INFO if ending.status == 0 else logging.ERROR,
             **fields)


def summary_fields(record: SessionRecord, ending: Ending) -> dict[str, object]:
    stop = record.stops[0] if record.stops else None
    return {
        "exit": ending.status,
        "reason": ending.reason,
        "checkpoints": len(record.commits),
        "runs_done": record.done,
        "runs_failed": record.failed,
        "runs_vanished": record.outcomes["vanished"],
        "stop_requested": bool(record.stop_asked),
        "stop_step": stop.step if stop else (record.stop_asked[0].step if record.stop_asked else None),
        "stop_listeners": stop.listeners if stop else [],
        "command_status": ending.command_status,
        "expectations": [{"name": v.name, "held": v.held, "line": v.line} for v in ending.verdicts],
    }


def summary_line(record: SessionRecord, ending: Ending) -> str:
    runs = f"listener runs: {record.done} done, {record.failed} failed"
    for outcome in ("vanished", "interrupted"):
        if record.outcomes[outcome]:
            runs += f", {record.outcomes[outcome]} {outcome}"
    if record.stops:
        stop = f"stop requested at step {record.stops[0].step} by {record.stops[0].listener}"
    elif record.stop_asked:
        stop = f"stop asked at step {record.stop_asked[0].step} (stop file not written)"
    else:
        stop = "no stop requested"
    if not ending.command:
        command = "no command"
    elif ending.command_status is None:
        command = "command did not exit"
    else:
        command = f"command exited {ending.command_status}"
    held = ""
    if ending.verdicts:
        good = sum(v.held for v in ending.verdicts)
        held = f"; expectations: {good} of {len(ending.verdicts)} held"
    return (f"summary: exit {ending.status} ({ending.reason}); {len(record.commits)} checkpoint(s) committed; "
            f"{runs}; {stop}; {command}{held}")
