"""Helpers for the fault-injection tests: a listener that records the start and
the end of its work, a DCP writer process, and checks of the event guarantees
(DESIGN.md 1-7) over what listeners recorded and what the journal says.

Everything is real: listeners are executables, the writer is a process, the
journal is read from disk as the watcher left it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

CRASH_ENV = "CKPTWATCH_TEST_CRASH_AT"
FINISHED = {"done", "stop", "failed", "timeout", "vanished"}

# The listener appends one JSON line at the start of its work and one when its
# work is done ("phase"), each with a single O_APPEND write, so lines from
# overlapping processes (a cut-off run still going while its retry starts)
# never mix. Everything comes from the environment when stdin is empty (the
# watcher died before writing it).
PHASED_LISTENER = """#!{python} -S
{subscription}
import json, os, sys, time
raw = sys.stdin.read()
try:
    payload = json.loads(raw) if raw.strip() else None
except ValueError:
    payload = None
env = {{k: v for k, v in os.environ.items() if k.startswith("CKPTWATCH_")}}
rec = {{
    "name": os.path.basename(sys.argv[0]),
    "event": sys.argv[1],
    "step": int(env["CKPTWATCH_STEP"]) if env.get("CKPTWATCH_STEP") else None,
    "checkpoint": env.get("CKPTWATCH_CHECKPOINT") or None,
    "run_id": env.get("CKPTWATCH_RUN_ID"),
    "retry": env.get("CKPTWATCH_RETRY") == "1",
    "attempt": payload.get("attempt") if payload else None,
    "last_step_handled": env.get("CKPTWATCH_LAST_STEP_HANDLED"),
    "stdin": payload,
    "pid": os.getpid(),
}}
fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
def note(phase):
    rec["phase"] = phase
    rec["time"] = time.time()
    os.write(fd, (json.dumps(rec) + "\\n").encode())
note("start")
time.sleep({delay})
{work}
note("done")
{after}
"""


def write_phased_listener(
    directory: Path, name: str, *, events: str | None = None, delay: float = 0.005, work: str = "", after: str = ""
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    subscription = f"# ckptwatch: events={events}" if events else "# every event"
    path.write_text(PHASED_LISTENER.format(python=sys.executable, subscription=subscription, delay=delay,
                                           work=work, after=after))
    path.chmod(0o755)
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll a fact (a record written, a file there) until true; never a fixed sleep for correctness."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def dcp_committed(root: Path) -> dict[int, str]:
    """step -> checkpoint path of every committed DCP checkpoint (``.metadata`` there) in ``root``."""
    out = {}
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False) and entry.name.startswith("step-"):
            if os.path.exists(os.path.join(entry.path, ".metadata")):
                out[int(entry.name[5:])] = entry.path
    return out


# A training job's saver, as a process: DCP saves at a steady pace until told to stop.
WRITER = """
import os, sys, time
root, pace, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3]
step = 0
while not os.path.exists(stop):
    step += 1
    path = os.path.join(root, f"step-{step}")
    os.mkdir(path)
    with open(os.path.join(path, "__0_0.distcp"), "wb") as out:
        out.write(os.urandom(512))
    with open(os.path.join(path, ".metadata.tmp"), "wb") as out:
        out.write(b"meta %d" % step)
    os.replace(os.path.join(path, ".metadata.tmp"), os.path.join(path, ".metadata"))
    time.sleep(pace)
"""


def start_writer(root: Path, pace: float, stop: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(pace), str(stop)])


# Checks ------------------------------------------------------------------------


def _attempt(record: dict[str, Any]) -> int:
    """The attempt a record belongs to; a run whose stdin never came counts by its env."""
    if record["attempt"] is not None:
        return int(record["attempt"])
    return 2 if record["retry"] else 1


def per_checkpoint_violations(records: list[dict[str, Any]], committed: dict[int, str], listener: str,
                              events: tuple[str, ...] = ("before_save", "after_save")
                              ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Guarantees 2 and 5 from the listener's side, for one listener: ``(counts, violations)``.

    Every committed checkpoint's events completed at least once; a second
    completion is allowed only as a retry of a cut-off run: the attempts that
    completed are 1, 2, ... each once, and attempt > 1 is marked retry.
    A violation is ``(kind, text)``; kind ``rerun-after-mid-start-death`` is a
    run that completed twice as attempt 1 where the first copy never got its
    stdin (the watcher died between spawning it and journaling ``started``).
    """
    done: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["name"] == listener and record["phase"] == "done" and record["event"] in events:
            done[(record["event"], record["step"])].append(record)
    repeats = 0
    violations: list[tuple[str, str]] = []
    for step, path in sorted(committed.items()):
        for event in events:
            runs = done.get((event, step), [])
            if not runs:
                violations.append(("lost", f"{listener}: {event} of committed step {step} ({path}) never completed"))
                continue
            for run in runs:
                if run["checkpoint"] != path:
                    violations.append(("wrong-path", f"{event} step {step}: {run['checkpoint']!r} != {path!r}"))
                if run["retry"] != (_attempt(run) > 1):
                    violations.append(("retry-flag", f"{event} step {step}: retry/attempt disagree: {run}"))
            attempts = sorted(_attempt(r) for r in runs)
            # Each completion carries its own attempt number. A missing number (only
            # attempt 2) is an attempt cut off before it finished: at-least-once, fine.
            if len(set(attempts)) != len(attempts):
                detail = json.dumps([{k: r[k] for k in ("attempt", "retry", "run_id", "pid", "stdin")} for r in runs])
                ones = [r for r in runs if _attempt(r) == 1]
                kind = "doubled"
                if len(ones) == 2 and sum(r["stdin"] is None for r in ones) == 1 and len(set(attempts)) == len(runs) - 1:
                    kind = "rerun-after-mid-start-death"
                violations.append((kind, f"{listener}: {event} step {step} completed {len(runs)} times with "
                                   f"attempts {attempts} (a run re-run without being marked retry): {detail}"))
            repeats += len(runs) - 1
    unexpected = {key for key in done if key[1] not in committed}
    if unexpected:
        violations.append(("phantom", f"events completed for checkpoints never committed: {sorted(unexpected)}"))
    return {"completions": sum(len(v) for v in done.values()), "repeats": repeats}, violations


def check_per_checkpoint(records: list[dict[str, Any]], committed: dict[int, str], listener: str,
                         events: tuple[str, ...] = ("before_save", "after_save")) -> dict[str, int]:
    """As :func:`per_checkpoint_violations`, asserting there are none."""
    stats, violations = per_checkpoint_violations(records, committed, listener, events)
    assert not violations, "\n".join(text for _, text in violations)
    return stats


def check_order(records: list[dict[str, Any]], listener: str) -> None:
    """Guarantee 2/3 per listener: a checkpoint's after_save starts after its before_save completed."""
    before_done: set[int] = set()
    for record in records:
        if record["name"] != listener:
            continue
        if record["event"] == "before_save" and record["phase"] == "done":
            before_done.add(record["step"])
        if record["event"] == "after_save" and record["phase"] == "start":
            assert record["step"] in before_done, f"after_save step {record['step']} started before its before_save"


def check_sessions(records: list[dict[str, Any]], listener: str, final_run_id: str | None = None) -> dict[str, int]:
    """Guarantees 1 and 4: per watcher session (run id) begin at most once and first, end at most once and last."""
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["name"] == listener and record["phase"] == "start":
            by_run[record["run_id"]].append(record)
    for run_id, runs in by_run.items():
        names = [r["event"] for r in runs]
        assert names.count("begin") <= 1, f"begin twice in session {run_id}: {names}"
        assert names.count("end") <= 1, f"end twice in session {run_id}: {names}"
        if "begin" in names:
            assert names[0] == "begin", f"session {run_id} started with {names[0]}, not begin"
        if "end" in names:
            assert names[-1] == "end", f"session {run_id}: {names[names.index('end') + 1:]} after end"
    if final_run_id is not None:
        names = [r["event"] for r in by_run[final_run_id]]
        assert names[0] == "begin" and names[-1] == "end", names
    return {"sessions": len(by_run), "ends": sum(1 for runs in by_run.values() if runs[-1]["event"] == "end")}


def journal_records(state_dir: Path) -> list[dict[str, Any]]:
    """The journal's good lines (a torn or mixed line is skipped, as the watcher does)."""
    out = []
    path = state_dir / "journal.jsonl"
    if not path.exists():
        return out
    for line in path.read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def check_journal_never_repeats_a_finished_run(state_dir: Path) -> dict[str, int]:
    """Guarantee 5 from the journal's side: once a run has an outcome, no later attempt of it starts."""
    outcome: dict[tuple[int, str], str] = {}
    counts = {"started": 0, "retried": 0, "interrupted": 0}
    for record in journal_records(state_dir):
        if record.get("r") != "run":
            continue
        key = (record["id"], record["listener"])
        status = record["status"]
        if status == "started":
            counts["started"] += 1
            assert outcome.get(key) not in FINISHED, f"run {key} started again after it was journaled {outcome[key]}"
            if record.get("attempt", 1) > 1:
                counts["retried"] += 1
        if status == "interrupted":
            counts["interrupted"] += 1
        outcome[key] = status
    return counts
