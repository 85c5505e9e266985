"""Python class listeners, warm: one process per listener for the session, through the real CLI.

Each test runs ``python -m ckptwatch run`` on real checkpoint directories with
the recording class of ``pylisteners.py`` (and variants), and reads what the
object recorded (its pid, its call count, the state it keeps on ``self``) and
the JSON log.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from conftest import alive, json_log, read_records, run_cli, run_once, write_listener
from faultkit import CRASH_ENV
from pylisteners import by, calls, write_class, write_toml
from test_protocol import dcp_save


def saves(ckpt: Path, *steps: int) -> None:
    for step in steps:
        dcp_save(ckpt, f"step-{step}")


def runs(log: list[dict], listener: str) -> list[tuple[str, int | None, str]]:
    return [(r["event"], r["step"], r["outcome"]) for r in log if r.get("kind") == "run" and r["listener"] == listener]


def test_one_process_per_listener_state_on_self_and_begin_once(ckpt, tmp_path, env, records_path):
    """Steps: three saves; two class listeners (the same class, two tables with different args); --once.
    Result: each listener's calls all come from one process of its own (not the watcher's), the
    object counts its calls across events (state on self), begin comes once and first, and
    its output is logged line by line with its name."""
    saves(ckpt, 1, 2, 3)
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {
        "a": {"class": "rec.py:Rec", "args": {"label": "a", "colour": "red"}},
        "b": {"class": "rec:Rec", "args": {"label": "b"}, "events": ["after_save", "end"]},
    })
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 0, result.stderr
    records = read_records(records_path)
    a, b = by(records, "a"), by(records, "b")
    assert calls(a) == [("begin", None), ("before_save", 1), ("after_save", 1), ("before_save", 2),
                        ("after_save", 2), ("before_save", 3), ("after_save", 3), ("end", 3)]
    assert [r["calls"] for r in a] == list(range(1, 9))
    assert a[-1]["state"] == [None, 1, 1, 2, 2, 3, 3, 3]
    # b does not subscribe to begin: its object still gets begin first, outside any run.
    assert calls(b) == [("begin", None), ("after_save", 1), ("after_save", 2), ("after_save", 3), ("end", 3)]
    assert len({r["pid"] for r in a}) == 1 and len({r["pid"] for r in b}) == 1
    assert a[0]["pid"] != b[0]["pid"]
    watcher = next(r for r in json_log(result.stderr) if r.get("kind") == "ready")
    assert a[0]["extra"] == {"colour": "red"}
    log = json_log(result.stderr)
    assert runs(log, "b") == [("after_save", 1, "done"), ("after_save", 2, "done"), ("after_save", 3, "done"),
                              ("end", 3, "done")]
    output = [(r["listener"], r["msg"], r.get("event")) for r in log if r.get("kind") == "output"]
    assert ("a", "a: after_save 2", "after_save") in output
    assert sum(1 for _, msg, _ in output if msg.startswith("a: built")) == 1
    assert watcher["listeners"] == ["a", "b"]
    # The per-event environment reaches the object's process, as a script's would.
    after = next(r for r in a if r["event"] == "after_save" and r["step"] == 2)
    assert after["env"]["CKPTWATCH_STEP"] == "2"
    assert after["env"]["CKPTWATCH_CHECKPOINT"] == str(ckpt / "step-2") == after["checkpoint"]
    assert after["env"]["CKPTWATCH_EVENT"] == "after_save"


def test_the_listener_process_is_the_watchers_interpreter_in_its_own_group(ckpt, tmp_path, env, watch,
                                                                           records_path):
    """Result: the listener runs under sys.executable, leads its own process group, and exits at the end."""
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {"rec": {"class": "rec.py:Rec"}})
    w = watch(str(ckpt))
    w.wait_ready()
    saves(ckpt, 1)
    w.wait_run("rec", "after_save", 1)
    pid = read_records(records_path)[-1]["pid"]
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(sys.executable)
    assert pid != w.proc.pid
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert not alive(pid)


def test_an_exception_fails_the_run_and_the_object_stays(ckpt, tmp_path, env, records_path):
    """Steps: the listener raises at step 2; a script listener beside it; three saves.
    Result: after_save 2 failed, its traceback in the log with the listener's name (from the
    listener's own file on, not the host's frames); the same object handles step 3 (its count
    goes on); the script got everything; exit 1; end says step 3 was handled."""
    saves(ckpt, 1, 2, 3)
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {"rec": {"class": "rec.py:Rec", "args": {"fail_at": 2}}})
    write_listener(tmp_path / "l", "script", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 1, result.stderr
    records = read_records(records_path)
    rec = by(records, "rec")
    assert len({r["pid"] for r in rec}) == 1
    assert [r["calls"] for r in rec if r["event"] == "after_save"] == [3, 5, 7]
    assert [r["stdin"]["step"] for r in records if r.get("name") == "script"] == [1, 2, 3]
    log = json_log(result.stderr)
    assert runs(log, "rec")[4] == ("after_save", 2, "failed")
    failed = next(r for r in log if r.get("kind") == "run" and r.get("outcome") == "failed")
    assert "ValueError: bad checkpoint 2" in failed["msg"]
    tb = [r["msg"] for r in log if r.get("kind") == "output" and r["listener"] == "rec" and r.get("step") == 2]
    assert tb[0] == "rec: after_save 2" and tb[1] == "Traceback (most recent call last):"
    assert any("rec.py" in line and "after_save" in line for line in tb)
    assert not any("hostchild" in line for line in tb)
    assert tb[-1] == "ValueError: bad checkpoint 2"
    assert rec[-1]["event"] == "end" and rec[-1]["last_step_handled"] is True


def test_a_dying_process_fails_its_run_and_the_next_event_starts_anew_with_begin(ckpt, tmp_path, watch,
                                                                                 records_path):
    """Steps: live watcher; the listener calls os._exit at step 2; saves 1, 2, 3 one by one.
    Result: after_save 2 fails ("died", exit 7), the log says how it died and that the next
    event starts a new process; step 3 runs in a new process, which built the class and got
    begin first (count 1 again); the other listener goes on untouched."""
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {
        "rec": {"class": "rec.py:Rec", "args": {"die_at": 2}, "events": ["begin", "after_save", "end"]},
        "calm": {"class": "rec.py:Rec", "args": {"label": "calm"}, "events": ["after_save"]},
    })
    w = watch(str(ckpt))
    w.wait_ready()
    for step in (1, 2, 3):
        saves(ckpt, step)
        w.wait_run("rec", "after_save", step)
        w.wait_run("calm", "after_save", step)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 1
    records = read_records(records_path)
    rec = by(records, "rec")
    assert calls(rec) == [("begin", None), ("after_save", 1), ("after_save", 2), ("begin", None),
                          ("after_save", 3), ("end", 3)]
    first, second = rec[0]["pid"], rec[3]["pid"]
    assert first != second and {r["pid"] for r in rec[:3]} == {first} and {r["pid"] for r in rec[3:]} == {second}
    assert [r["calls"] for r in rec] == [1, 2, 3, 1, 2, 3]
    assert len({r["pid"] for r in by(records, "calm")}) == 1
    assert runs(w.records, "rec") == [("begin", None, "done"), ("after_save", 1, "done"),
                                      ("after_save", 2, "failed"), ("after_save", 3, "done"), ("end", 3, "done")]
    died = next(r for r in w.records if r.get("outcome") == "failed")
    assert died["exit"] == 7 and "process died (exit 7)" in died["msg"]
    said = [r["msg"] for r in w.records if r.get("listener") == "rec" and r["kind"] == "info"]
    assert any("died during after_save step 2 (exit 7)" in m and "calls begin again" in m for m in said)
    assert any("a new process" in m and "begin called first" in m for m in said)


def test_a_timeout_kills_the_process_group_and_the_next_event_starts_anew(ckpt, tmp_path, watch, records_path):
    """Steps: the listener hangs at step 1 after starting a child; --listener-timeout 1; then step 2.
    Result: after_save 1 times out; the listener and its child are dead; step 2 runs in a new process."""
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {"rec": {"class": "rec.py:Rec", "args": {"hang_at": 1}}})
    pid_file = tmp_path / "pids"
    w = watch(str(ckpt), "--listener-timeout", "1", extra_env={"PID_FILE": str(pid_file)})
    w.wait_ready()
    saves(ckpt, 1)
    timed_out = w.wait_run("rec", "after_save", 1)
    assert timed_out["outcome"] == "timeout"
    listener, child = (int(x) for x in pid_file.read_text().split())
    assert not alive(listener) and not alive(child)
    saves(ckpt, 2)
    assert w.wait_run("rec", "after_save", 2)["outcome"] == "done"
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 1
    rec = read_records(records_path)
    assert rec[-2]["event"] == "after_save" and rec[-2]["step"] == 2 and rec[-2]["pid"] != listener


def test_after_save_returning_true_is_a_stop_request_written_after_every_listener(ckpt, tmp_path, env,
                                                                                  records_path):
    """Steps: the class returns True at step 2; a slow class listener beside it.
    Result: the stop file names the class listener and step 2, written after the slow one's step 2; exit 0."""
    saves(ckpt, 1, 2, 3)
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {
        "asker": {"class": "rec.py:Rec", "args": {"label": "asker", "stop_at": 2}, "events": ["after_save"]},
        "slow": {"class": "rec.py:Rec", "args": {"label": "slow", "slow": 0.4}, "events": ["after_save"]},
    })
    stop = tmp_path / "stop.json"
    result = run_once(ckpt, tmp_path, env, "--stop-file", str(stop))
    assert result.returncode == 0, result.stderr
    body = json.loads(stop.read_text())
    assert (body["step"], body["listeners"]) == (2, ["asker"])
    assert "asker: after_save 2" in body["reason"]
    slow2 = next(r for r in read_records(records_path) if r["name"] == "slow" and r["step"] == 2)
    assert body["time"] >= slow2["time"] + 0.4


def test_output_between_events_is_logged_with_the_listeners_name(ckpt, tmp_path, watch):
    """A thread of the listener prints while no event runs: its lines still reach the log, named."""
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {"rec": {"class": "rec.py:Rec", "args": {"chatter": True}}})
    w = watch(str(ckpt))
    w.wait_ready()
    w.wait_run("rec", "begin")
    w.wait_for(lambda r: r.get("kind") == "output" and r["msg"] == "rec: background" and "event" not in r)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0


def test_a_crash_of_the_watcher_retries_the_cut_off_run_in_a_new_process(ckpt, tmp_path, watch, records_path):
    """Steps: the watcher is killed (SIGKILL) just after sending after_save 1 to the class listener
    (crash point run-spawned:3: begin, before_save 1, after_save 1); a new watcher, same state dir.
    Result: what was left of the old listener process is gone; after_save 1 runs again, marked
    retry, attempt 2, in a new process that got begin first; every other run exactly once."""
    saves(ckpt, 1)
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {"rec": {"class": "rec.py:Rec", "args": {"slow": 2}}})
    state = tmp_path / "state"
    first = watch(str(ckpt), "--once", "--state-dir", str(state), extra_env={CRASH_ENV: "run-spawned:3"})
    assert first.wait_exit() == -signal.SIGKILL
    old = {r["pid"] for r in read_records(records_path)}
    second = watch(str(ckpt), "--once", "--state-dir", str(state))
    assert second.wait_exit() == 0
    assert not any(alive(pid) for pid in old)
    records = read_records(records_path)
    new = [r for r in records if r["pid"] not in old]
    assert calls(new) == [("begin", None), ("after_save", 1), ("end", 1)]
    retried = new[1]
    assert (retried["retry"], retried["attempt"]) == (True, 2)
    assert calls([r for r in records if r["pid"] in old])[:3] == [("begin", None), ("before_save", 1),
                                                                   ("after_save", 1)]
    assert any("killed what was left of rec" in r["msg"] for r in second.records) or not any(
        alive(pid) for pid in old)


def test_class_listener_forms_on_the_command_line(ckpt, tmp_path, env, records_path):
    """-l MODULE:CLASS (found from the current directory, as python -m would), -l PATH.py:CLASS
    (a file elsewhere, importing its sibling), and a class= file in listeners.d (not executable)."""
    saves(ckpt, 5)
    pkg = tmp_path / "mypkg"
    write_class(pkg, "hooks.py")
    (pkg / "__init__.py").write_text("")
    other = tmp_path / "elsewhere"
    write_class(other, "helper.py")
    (other / "byfile.py").write_text("from helper import Rec\nclass ByFile(Rec):\n    pass\n")
    d = tmp_path / "listeners.d"
    d.mkdir()
    (d / "40-eval.py").write_text("# ckptwatch: class=Eval events=after_save\n"
                                  "import sys\nsys.path.insert(0, %r)\nfrom rec import Rec\n"
                                  "class Eval(Rec):\n    pass\n" % str(tmp_path))
    write_class(tmp_path)
    result = run_once(ckpt, tmp_path, env, "-l", "mypkg.hooks:Rec", "-l", str(other / "byfile.py") + ":ByFile",
                      "-l", str(d))
    assert result.returncode == 0, result.stderr
    ready = next(r for r in json_log(result.stderr) if r.get("kind") == "ready")
    assert ready["listeners"] == ["mypkg.hooks:Rec", "byfile.py:ByFile", "40-eval.py"]
    log = json_log(result.stderr)
    assert {r["listener"] for r in log if r.get("kind") == "run" and r["event"] == "after_save"} == set(
        ready["listeners"])
    assert not [r for r in log if r["level"] == "warning" and "40-eval.py" in r["msg"]]
    assert len({r["pid"] for r in read_records(records_path)}) == 3


def test_an_installed_listener_by_its_entry_point_name(ckpt, tmp_path, env, records_path):
    """A package on the path declares ``ckptwatch.listeners`` entry points (as pip installs it):
    -l NAME and class = "NAME" use it, and ``ckptwatch listeners`` lists it without importing it."""
    site = tmp_path / "site"
    write_class(site / "acme_hooks", "recorder.py")
    marker = tmp_path / "imported"
    (site / "acme_hooks" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    dist = site / "acme_hooks-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hooks\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[ckptwatch.listeners]\nacme-rec = acme_hooks.recorder:Rec\n")
    env = {**env, "PYTHONPATH": env["PYTHONPATH"] + os.pathsep + str(site)}
    listed = run_cli("listeners", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "acme-rec" in listed.stdout and "acme_hooks.recorder:Rec" in listed.stdout
    assert "acme-hooks 1.2" in listed.stdout
    assert not marker.exists(), "listing imported the listener's package"
    saves(ckpt, 1)
    write_toml(tmp_path / "ckptwatch.toml", {"second": {"class": "acme-rec", "args": {"label": "second"}}})
    result = run_once(ckpt, tmp_path, env, "-l", "acme-rec")
    assert result.returncode == 0, result.stderr
    assert {r["name"] for r in read_records(records_path)} == {"rec", "second"}
    ready = next(r for r in json_log(result.stderr) if r.get("kind") == "ready")
    assert ready["listeners"] == ["acme-rec", "second"]


def test_listeners_named_explicitly_that_cannot_run_are_usage_errors(ckpt, tmp_path, env):
    """Each: one line naming what is wrong, exit 2, nothing started."""
    write_class(tmp_path)
    script = tmp_path / "not-exec.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    no_interp = tmp_path / "no-interp"
    no_interp.write_text("#!/usr/bin/python9.99\nprint('hi')\n")
    no_interp.chmod(0o755)
    env_interp = tmp_path / "env-interp"
    env_interp.write_text("#!/usr/bin/env python9.99\nprint('hi')\n")
    env_interp.chmod(0o755)
    cases = [
        (["-l", str(script)], "not executable"),
        (["-l", str(no_interp)], "its #! interpreter /usr/bin/python9.99 does not exist"),
        (["-l", str(env_interp)], "its #! interpreter python9.99 (#!/usr/bin/env python9.99) is not on PATH"),
        (["-l", "rec.py:Missing"], "defines no Missing (classes there: Rec)"),
        (["-l", "missing.py:Rec"], "no file"),
        (["-l", "no_such_module:Rec"], "no module named 'no_such_module'"),
        (["-l", "rec:Missing"], "defines no Missing"),
    ]
    for args, needle in cases:
        result = run_once(ckpt, tmp_path, env, *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, lines)
    write_toml(tmp_path / "ckptwatch.toml", {"x": {"class": "rec.py:Nope"}})
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 2 and "defines no Nope" in result.stderr
    write_toml(tmp_path / "ckptwatch.toml", {"x": {"class": "rec.py:Rec", "on_failure": "retry"}})
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 2 and "retry:N" in result.stderr


def test_a_missing_interpreter_in_a_listener_directory_is_named(ckpt, tmp_path, env, records_path):
    """A script in a directory whose #! interpreter is missing: a warning at the start, and each run's
    error line says which interpreter is missing (not 'No such file or directory' about the script)."""
    saves(ckpt, 1)
    d = tmp_path / "l"
    write_listener(d, "20-rec", events="after_save")
    broken = d / "10-broken"
    broken.write_text("#!/opt/nowhere/python3\n# ckptwatch: events=after_save\nprint('hi')\n")
    broken.chmod(0o755)
    result = run_once(ckpt, tmp_path, env, "-l", str(d))
    assert result.returncode == 1
    log = json_log(result.stderr)
    assert any(r["level"] == "warning" and "its #! interpreter /opt/nowhere/python3 does not exist" in r["msg"]
               for r in log)
    [error] = [r for r in log if r.get("listener") == "10-broken" and r["level"] == "error"]
    assert "its #! interpreter /opt/nowhere/python3 does not exist" in error["msg"]
    assert "No such file" not in error["msg"]
    assert len(read_records(records_path)) == 1


def test_a_non_listener_class_fails_its_runs_with_a_line_that_says_so(ckpt, tmp_path, env):
    """A class that subclasses neither listener base: each run fails, saying what to subclass."""
    saves(ckpt, 1)
    (tmp_path / "plain.py").write_text("class Plain:\n    def after_save(self, event):\n        pass\n")
    result = run_once(ckpt, tmp_path, env, "-l", "plain.py:Plain")
    assert result.returncode == 1
    log = json_log(result.stderr)
    failed = [r for r in log if r.get("kind") == "run"]
    assert failed and all(r["outcome"] == "failed" for r in failed)
    assert "not a listener class: subclass ckptwatch.CheckpointSaverListener" in failed[0]["msg"]


def test_a_class_in_ckptwatch_listeners_survives_its_colon_split(ckpt, tmp_path, env, records_path):
    """CKPTWATCH_LISTENERS is ':'-separated; MODULE:CLASS in it is put back together."""
    saves(ckpt, 1)
    write_class(tmp_path)
    write_listener(tmp_path / "l", "script", events="after_save")
    result = run_once(ckpt, tmp_path, {**env, "CKPTWATCH_LISTENERS": f"rec:Rec:{tmp_path / 'l'}"})
    assert result.returncode == 0, result.stderr
    ready = next(r for r in json_log(result.stderr) if r.get("kind") == "ready")
    assert ready["listeners"] == ["rec:Rec", "script"]
