"""``--junit-xml PATH``: the watcher run as a JUnit XML report, which CI systems show as tests.

One test case per committed checkpoint (``commit[step=200]``), per listener
run (``after_save[step=200] 20-verify-checkpoint``; a failed or timed-out run
is a ``<failure>`` with its output), per expectation (``expect steps``) and
for the wrapped command; a vanished checkpoint's run is ``<skipped>``. The
format is the Ant/Jenkins one that Jenkins, GitLab, GitHub test reporters
and junitparser read; ``tests/data/junit.xsd`` is the schema the tests hold
it to.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

from .hub import Ending, Reporter, RunRecord
from .record import SessionRecord
from .summaryjson import iso, write_report

__all__ = ["JunitXml", "case_name", "document"]

_OUTCOME_MESSAGE = {
    "failed": "failed",
    "timeout": "timed out (its process group was killed)",
    "vanished": "the checkpoint vanished before this listener's turn",
    "interrupted": "cut off by the shutdown; run again next session",
}


class JunitXml(Reporter):
    def __init__(self, path: str, record: SessionRecord) -> None:
        self.path = path
        self.record = record

    def finished(self, ending: Ending) -> None:
        root = document(self.record, ending)
        ET.indent(root)
        text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
        write_report(self.path, text, "--junit-xml")


def case_name(run: RunRecord) -> str:
    """``after_save[step=200] 20-verify-checkpoint``; ``begin 10-log-event``; `` (attempt 2)`` for a retry."""
    event = run.event
    step = "" if event.step is None else f"[step={event.step}]"
    again = f" (attempt {run.attempt})" if run.attempt > 1 else ""
    return f"{event.name}{step} {run.listener}{again}"


def document(record: SessionRecord, ending: Ending) -> ET.Element:
    cases: list[ET.Element] = []
    for commit in record.commits:
        case = _case("ckptwatch.checkpoints", f"commit[step={commit.step}]", commit.save_duration or 0.0)
        ET.SubElement(case, "system-out").text = _clean(f"{commit.path} committed at {iso(commit.committed)}")
        cases.append(case)
    for run in sorted(record.runs, key=_run_order):
        case = _case("ckptwatch.listeners", case_name(run), run.duration)
        output = _clean("\n".join(run.output))
        if run.status in ("failed", "timeout"):
            code = "" if run.exit_code is None else f" (exit {run.exit_code})"
            last = f": {run.output[-1]}" if run.output else ""
            failure = ET.SubElement(case, "failure", message=_clean(f"{_OUTCOME_MESSAGE[run.status]}{code}{last}"),
                                    type=run.status)
            failure.text = output
        elif run.status in ("vanished", "interrupted"):
            ET.SubElement(case, "skipped", message=_OUTCOME_MESSAGE[run.status])
        if output:
            ET.SubElement(case, "system-out").text = output
        cases.append(case)
    for verdict in ending.verdicts:
        case = _case("ckptwatch.expectations", f"expect {verdict.name}", 0.0)
        if not verdict.held:
            ET.SubElement(case, "failure", message=_clean(verdict.line), type="expectation").text = _clean(
                f"expected {verdict.expected}\nseen: {verdict.seen}")
        cases.append(case)
    if ending.command:
        case = _case("ckptwatch.command", "command " + _clean(" ".join(ending.command)), ending.finished - record.started)
        if ending.command_status:
            ET.SubElement(case, "failure", message=f"the training command exited {ending.command_status}",
                          type="command")
        cases.append(case)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    duration = f"{max(0.0, ending.finished - record.started):.3f}"
    counts: dict[str, Any] = {"tests": str(len(cases)), "failures": str(failures), "errors": "0",
                              "skipped": str(skipped), "time": duration}
    root = ET.Element("testsuites", name="ckptwatch", **counts)
    suite = ET.SubElement(root, "testsuite", name=_clean(f"ckptwatch {record.dir}"), timestamp=iso(record.started),
                          hostname=_clean(os.uname().nodename), **counts)
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", record.run_id), ("dir", record.dir), ("layout", record.layout or ""),
                        ("exit_status", str(ending.status)), ("exit_reason", ending.reason)):
        ET.SubElement(properties, "property", name=name, value=_clean(value))
    suite.extend(cases)
    return root


_EVENT_ORDER = {"before_save": 0, "after_save": 1, "stale": 2}


def _run_order(run: RunRecord) -> tuple[int, int, int, str, int]:
    """begin first, end last, in between by step then event: the order the listeners saw them."""
    event = run.event
    phase = 0 if event.name == "begin" else 2 if event.name == "end" else 1
    return (phase, event.step if event.step is not None else -1, _EVENT_ORDER.get(event.name, 0), run.listener,
            run.attempt)


def _case(classname: str, name: str, seconds: float) -> ET.Element:
    return ET.Element("testcase", classname=classname, name=_clean(name), time=f"{max(0.0, seconds):.3f}")


def _clean(text: str) -> str:
    """Only characters XML 1.0 allows (a listener may print anything, paths may hold surrogates)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c for c in text if c in "\t\n\r" or " " <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd"
                   or c >= "\U00010000")
