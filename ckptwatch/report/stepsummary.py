"""``GITHUB_STEP_SUMMARY``: when GitHub Actions sets it, a Markdown table of the run is appended.

GitHub shows that file on the workflow run's page; nothing is written when
the variable is not set.
"""

from __future__ import annotations

import time
from collections import Counter

from .hub import Ending, Reporter
from .record import SessionRecord
from .summaryjson import write_report

__all__ = ["StepSummary", "markdown"]


class StepSummary(Reporter):
    def __init__(self, path: str, record: SessionRecord) -> None:
        self.path = path
        self.record = record

    def finished(self, ending: Ending) -> None:
        write_report(self.path, markdown(self.record, ending), "GITHUB_STEP_SUMMARY", append=True)


def markdown(record: SessionRecord, ending: Ending) -> str:
    mark = "✅" if ending.status == 0 else "❌"
    out = [f"### {mark} ckptwatch: `{_code(record.dir)}`", "", f"**exit {ending.status}**: {_cell(ending.reason)}", ""]
    steps = ", ".join(str(c.step) for c in record.commits)
    if record.stops:
        stop = f"at step {record.stops[0].step} by {record.stops[0].listener}: {record.stops[0].reason}"
    else:
        stop = "asked, stop file not written" if record.stop_asked else "none"
    rows = [
        ("checkpoints committed", f"{len(record.commits)}" + (f" (steps {steps})" if steps else "")),
        ("layout", record.layout or "not decided"),
        ("listener runs", f"{record.done} done, {record.failed} failed"
         + "".join(f", {record.outcomes[o]} {o}" for o in ("vanished", "interrupted") if record.outcomes[o])),
        ("stop requested", stop),
    ]
    if ending.command:
        status = "did not exit" if ending.command_status is None else f"exited {ending.command_status}"
        rows.append(("command", f"`{_code(' '.join(ending.command))}` {status}"))
    never = record.never_committed()
    if never:
        rows.append(("never committed", ", ".join(f"step {s.step} (started {_clock(s.started)})" for s in never)))
    out += ["| | |", "| --- | --- |"] + [f"| {label} | {_cell(text)} |" for label, text in rows] + [""]
    if ending.verdicts:
        out += ["| expectation | result | |", "| --- | --- | --- |"]
        out += [f"| `{v.name}` | {'✅ held' if v.held else '❌ failed'} | {_cell(v.line)} |" for v in ending.verdicts]
        out.append("")
    if record.commits:
        by_step: dict[int | None, Counter[str]] = {}
        for run in record.runs:
            if run.event.name == "after_save":
                by_step.setdefault(run.event.step, Counter())[run.status] += 1
        out += ["| step | committed | save s | after_save runs |", "| --- | --- | --- | --- |"]
        for commit in record.commits:
            runs = ", ".join(f"{n} {status}" for status, n in sorted(by_step.get(commit.step, Counter()).items()))
            save = "" if commit.save_duration is None else f"{commit.save_duration:.2f}"
            out.append(f"| {commit.step} | {_clock(commit.committed)} | {save} | {runs or '-'} |")
        out.append("")
    failed = [run for run in record.runs if run.status in ("failed", "timeout")]
    for run in failed[:20]:
        step = "" if run.event.step is None else f" step {run.event.step}"
        code = "" if run.exit_code is None else f" (exit {run.exit_code})"
        out += [f"<details><summary>{_html(run.listener)} {run.event.name}{step}: {run.status}{code}</summary>", "",
                "```", *(line.replace("```", "'''") for line in run.output), "```", "", "</details>", ""]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return text.replace("`", "'").replace("|", "\\|")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))
