"""The report hub: what the engine and the dispatcher tell reporters, in which order.

The engine runs for real in a child process (``--once`` on a real directory,
real listener scripts); a recording reporter added to its hub prints each
fact as a JSON line on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import json_log, write_listener
from test_protocol import dcp_save

DRIVER = r"""
import json, sys
from ckptwatch.config import Config
from ckptwatch.engine import Engine
from ckptwatch.report.console import setup_logging
from ckptwatch.report.hub import Reporter

def say(*fields):
    print(json.dumps(fields, default=str), flush=True)

class Record(Reporter):
    def session_started(self, facts): say("session_started", facts.run_id, list(facts.listeners))
    def layout_chosen(self, name, why): say("layout_chosen", name)
    def save_started(self, step, path, when): say("save_started", step, path)
    def committed(self, event, when, started): say("committed", event.step, event.checkpoint, started is not None)
    def run_finished(self, run): say("run_finished", run.listener, run.event.name, run.event.step, run.status,
                                     run.exit_code, list(run.output))
    def event_finished(self, event, stop): say("event_finished", event.name, event.step, stop)
    def stop_written(self, request): say("stop_written", request.step, request.listeners)
    def session_ended(self, reason): say("session_ended", reason)
    def waiting_for_dir(self, dir): say("waiting_for_dir", dir)
    def rescanned(self, reason): say("rescanned", reason)
    def notifications_overflowed(self): say("notifications_overflowed")
    def finished(self, ending): say("finished", ending.status, ending.reason, list(ending.command),
                                    ending.command_status)
    def close(self): say("close")

class Broken(Reporter):
    def committed(self, event, when, started): raise RuntimeError("boom")

thread = setup_logging("json")
settings = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {"once": True}
settings["command"] = tuple(settings.get("command", ()))
engine = Engine(Config(dir=sys.argv[1], listeners=(sys.argv[2],), stop_file=sys.argv[3], **settings))
engine.hub.add(Broken())
engine.hub.add(Record())
status = engine.run()
thread.stop()
sys.exit(status)
"""


def test_reporters_hear_each_fact_in_order_and_a_broken_one_is_left_out(ckpt, tmp_path, env):
    """Steps: two committed DCP saves; 'asker' prints a line and exits 3 at step 2; a reporter
    that raises sits before the recording one.
    Result: the recorder hears session_started, begin finished (no listener wants it),
    layout_chosen, then per save: event_finished
    for its before_save (no listener wants it), committed, the run, (the stop file,)
    event_finished; then session_ended and close. The broken reporter is
    logged once and dropped; the watcher exits 0."""
    dcp_save(ckpt, "step-1")
    dcp_save(ckpt, "step-2")
    write_listener(tmp_path / "l", "asker", events="after_save", after=(
        "if record['stdin']['step'] == 2:\n    print('enough')\n    sys.exit(3)"))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    result = subprocess.run([sys.executable, str(driver), str(ckpt), str(tmp_path / "l"), str(tmp_path / "stop")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    facts = [json.loads(line) for line in result.stdout.splitlines()]
    names = [f[0] for f in facts]
    assert names[:2] == ["session_started", "event_finished"] and facts[1][1:] == ["begin", None, False]
    assert names.count("layout_chosen") == 1 and facts[names.index("layout_chosen")][1] == "dcp"
    assert names.index("layout_chosen") < names.index("committed")
    assert names[-3:] == ["session_ended", "finished", "close"] and facts[-3][1] == "once"
    assert facts[-2][1:] == [0, "no listener failed", [], None]
    assert "rescanned" not in names  # --once: one look, hinted by nothing
    at = {str(f[:3] if f[0] != "run_finished" else ["run_finished", f[3], f[2]]): i for i, f in enumerate(facts)}
    for step in (1, 2):
        # the order within one save; the watcher may look at save 2 before save 1's run ends
        assert at[str(["committed", step, f"step-{step}"])] < at[str(["run_finished", step, "after_save"])] \
            < at[str(["event_finished", "after_save", step])]
        assert at[str(["event_finished", "before_save", step])] < at[str(["committed", step, f"step-{step}"])]
    assert at[str(["run_finished", 2, "after_save"])] < at[str(["stop_written", 2, ["asker"]])] \
        < at[str(["event_finished", "after_save", 2])]
    assert [f[4:] for f in facts if f[0] == "run_finished"] == [["done", 0, []], ["stop", 3, ["enough"]]]
    assert [f[3] for f in facts if f[0] == "event_finished" and f[1] == "after_save"] == [False, True]
    assert [f[3] for f in facts if f[0] == "committed"] == [False, False]  # no start seen: saves were there
    errors = [r for r in json_log(result.stderr) if r.get("level") == "error"]
    assert len(errors) == 1 and "reporter Broken failed at committed" in errors[0]["msg"]
    assert Path(tmp_path / "stop").exists()


def test_waiting_rescans_and_how_the_watcher_ended(ckpt, tmp_path, env):
    """Steps: DIR does not exist at the start; --poll 0.1; the test creates DIR once the
    watcher says it waits, and saves there; the wrapped command exits 5 after the save.
    Result: waiting_for_dir comes first; poll ticks are rescans with reason "poll"; the
    watcher ends with finished(5, "the training command exited 5", argv, 5), before close."""
    ckpt.rmdir()
    write_listener(tmp_path / "l", "rec", events="after_save")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    gate = tmp_path / "saved"
    command = [sys.executable, "-c", f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
               "raise SystemExit(5)"]
    settings = {"poll": 0.1, "command": command}
    proc = subprocess.Popen([sys.executable, str(driver), str(ckpt), str(tmp_path / "l"), str(tmp_path / "stop"),
                             json.dumps(settings)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    assert proc.stdout is not None
    facts = []
    for line in proc.stdout:
        facts.append(json.loads(line))
        if facts[-1][0] == "waiting_for_dir":
            ckpt.mkdir()
        if facts[-1][0] == "rescanned" and not (ckpt / "step-1").exists():
            dcp_save(ckpt, "step-1")
        if facts[-1][0] == "event_finished" and facts[-1][1:3] == ["after_save", 1]:
            gate.write_text("")
    assert proc.wait(timeout=60) == 5, proc.stderr.read() if proc.stderr else ""
    names = [f[0] for f in facts]
    assert names[0] == "waiting_for_dir" and facts[0][1] == str(ckpt)
    assert {f[1] for f in facts if f[0] == "rescanned"} == {"poll"}
    assert names[-2:] == ["finished", "close"]
    assert facts[-2][1:] == [5, "the training command exited 5", command, 5]
