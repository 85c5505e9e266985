"""The listener protocol of DESIGN.md, through the real CLI: argv, the JSON on
stdin, the environment, subscriptions, exit 3, timeouts, discovery."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import alive, json_log, read_records, run_once, summary, write_listener


def dcp_save(root: Path, name: str, payload: bytes = b"meta") -> Path:
    """A committed DCP checkpoint, written in DCP's order (data, then .metadata by rename)."""
    path = root / name
    path.mkdir()
    (path / "__0_0.distcp").write_bytes(os.urandom(256))
    (path / ".metadata.tmp").write_bytes(payload)
    os.replace(path / ".metadata.tmp", path / ".metadata")
    return path


def test_argv_stdin_and_environment(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-10")
    write_listener(tmp_path / "l", "rec")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"), "--stop-file", str(tmp_path / "stop"))
    assert result.returncode == 0, result.stderr
    records = {r["argv"][0]: r for r in read_records(records_path)}
    assert set(records) == {"begin", "before_save", "after_save", "end"}
    after = records["after_save"]
    run_id = after["stdin"]["run_id"]
    assert after["stdin"] == {
        "event": "after_save", "step": 10, "checkpoint": str(ckpt / "step-10"), "dir": str(ckpt),
        "layout": "dcp", "stop_file": str(tmp_path / "stop"), "run_id": run_id, "retry": False, "attempt": 1,
    }
    assert after["env"]["CKPTWATCH_EVENT"] == "after_save"
    assert after["env"]["CKPTWATCH_STEP"] == "10"
    assert after["env"]["CKPTWATCH_CHECKPOINT"] == str(ckpt / "step-10")
    assert after["env"]["CKPTWATCH_DIR"] == str(ckpt)
    assert after["env"]["CKPTWATCH_LAYOUT"] == "dcp"
    assert after["env"]["CKPTWATCH_STOP_FILE"] == str(tmp_path / "stop")
    assert after["env"]["CKPTWATCH_RUN_ID"] == run_id
    assert records["begin"]["stdin"]["step"] is None and records["begin"]["env"]["CKPTWATCH_STEP"] == ""
    assert records["before_save"]["stdin"]["observed"] is False
    assert records["end"]["stdin"]["last_step_handled"] is True
    assert records["end"]["env"]["CKPTWATCH_LAST_STEP_HANDLED"] == "1"
    assert records["end"]["stdin"]["step"] == 10


def test_non_utf8_path_is_surrogateescaped_in_json_and_raw_in_env(ckpt, tmp_path, env, records_path):
    name = os.fsdecode(b"step-\xff-3")
    dcp_save(ckpt, name)
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    [record] = read_records(records_path)
    expected = os.path.join(str(ckpt), name)
    assert record["stdin"]["checkpoint"] == expected  # \udcff in the JSON
    assert os.fsencode(record["env"]["CKPTWATCH_CHECKPOINT"]) == os.fsencode(expected)  # raw 0xff byte


def test_subscribed_events_only_start_processes(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-1")
    write_listener(tmp_path / "l", "only-after", events="after_save,end")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0
    assert summary(read_records(records_path)) == [("after_save", 1), ("end", 1)]
    runs = [r for r in json_log(result.stderr) if r.get("kind") == "run"]
    assert {r["event"] for r in runs} == {"after_save", "end"}


def test_exit_3_writes_stop_file_after_every_listener_ran(ckpt, tmp_path, env, records_path):
    """Steps: listener 'asker' exits 3 at step 2 with a reason; 'slow' takes a while each time.
    Result: both run for every step; the stop file names asker, step 2 and the reason, and is
    written after slow's step-2 run; a stop request is not a failure (exit 0)."""
    for name in ("step-1", "step-2", "step-3"):
        dcp_save(ckpt, name)
    listeners = tmp_path / "l"
    write_listener(listeners, "10-asker", events="after_save", after=(
        "if record['stdin']['step'] == 2:\n    print('loss diverged: 1e9')\n    sys.exit(3)"))
    write_listener(listeners, "20-slow", events="after_save", before="time.sleep(0.4); record['time'] = time.time()")
    stop = tmp_path / "stop.json"
    result = run_once(ckpt, tmp_path, env, "-l", str(listeners), "--stop-file", str(stop))
    assert result.returncode == 0, result.stderr
    records = read_records(records_path)
    assert summary(records, "10-asker") == [("after_save", 1), ("after_save", 2), ("after_save", 3)]
    assert summary(records, "20-slow") == [("after_save", 1), ("after_save", 2), ("after_save", 3)]
    body = json.loads(stop.read_text())
    assert body["step"] == 2
    assert body["listeners"] == ["10-asker"]
    assert "loss diverged" in body["reason"]
    assert body["checkpoint"] == str(ckpt / "step-2")
    slow_step2 = next(r for r in records if r["name"] == "20-slow" and r["stdin"]["step"] == 2)
    assert body["time"] >= slow_step2["time"]


def test_failing_listener_is_logged_and_others_go_on(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-1")
    dcp_save(ckpt, "step-2")
    listeners = tmp_path / "l"
    write_listener(listeners, "10-broken", events="after_save", after="sys.exit(1)")
    write_listener(listeners, "20-rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(listeners))
    assert result.returncode == 1  # a listener failed; all events were still delivered
    assert summary(read_records(records_path), "20-rec") == [("after_save", 1), ("after_save", 2)]
    failed = [r for r in json_log(result.stderr) if r.get("outcome") == "failed"]
    assert [(r["listener"], r["step"], r["exit"]) for r in failed] == [("10-broken", 1, 1), ("10-broken", 2, 1)]


def test_a_listener_that_cannot_be_executed_is_one_line_per_run_and_others_go_on(ckpt, tmp_path, env, records_path):
    """Steps: an executable file that is no program (binary garbage, no #! line) beside a
    recording listener; two saves; --once.
    Result: one error line per run naming the file and the reason, no traceback; the other
    listener gets every event; exit 1."""
    dcp_save(ckpt, "step-1")
    dcp_save(ckpt, "step-2")
    listeners = tmp_path / "l"
    write_listener(listeners, "20-rec", events="after_save")
    garbage = listeners / "10-garbage"
    garbage.write_bytes(b"\x00\x01 not a program")
    garbage.chmod(0o755)
    result = run_once(ckpt, tmp_path, env, "-l", str(listeners))
    assert result.returncode == 1
    assert summary(read_records(records_path), "20-rec") == [("after_save", 1), ("after_save", 2)]
    log = json_log(result.stderr)
    assert [line for line in result.stderr.splitlines() if not line.startswith("{")] == []
    errors = [r for r in log if r.get("listener") == "10-garbage" and r["level"] == "error"]
    # begin, before_save x2, after_save x2, end: each one line, naming the file and why.
    assert len(errors) == 6, errors
    assert all("could not run" in r["msg"] and "Exec format error" in r["msg"] and "10-garbage" in r["msg"]
               for r in errors)


def test_hanging_listener_and_its_children_are_killed_at_the_timeout(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-1")
    pid_file = tmp_path / "child.pid"
    write_listener(tmp_path / "l", "hang", events="after_save", after=(
        "import subprocess\n"
        f"child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)"))
    started = time.monotonic()
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"), "--listener-timeout", "1")
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 60
    [timeout] = [r for r in json_log(result.stderr) if r.get("outcome") == "timeout"]
    assert timeout["listener"] == "hang"
    child = int(pid_file.read_text())
    assert not alive(child), "the listener's child survived the timeout"


def test_output_streamed_with_the_listener_name(ckpt, tmp_path, env):
    dcp_save(ckpt, "step-1")
    script = tmp_path / "l" / "talker"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n# ckptwatch: events=after_save\necho first line\necho to stderr >&2\nprintf 'no newline'\n")
    script.chmod(0o755)
    result = run_once(ckpt, tmp_path, env, "-l", str(script.parent))
    lines = [(r["listener"], r["msg"]) for r in json_log(result.stderr) if r.get("kind") == "output"]
    assert lines == [("talker", "first line"), ("talker", "to stderr"), ("talker", "no newline")]


def test_discovery_order_skips_and_warnings(ckpt, tmp_path, env):
    listeners = tmp_path / "l"
    for name in ("b-last", "10-first", "9-second", "a-third"):
        write_listener(listeners, name)
    for name in (".hidden", "old~", "x.bak", "y.swp", "z.dpkg-old"):
        write_listener(listeners, name)
    (listeners / "notes.txt").write_text("not a listener")
    (listeners / "subdir").mkdir()
    result = run_once(ckpt, tmp_path, env, "-l", str(listeners))
    assert result.returncode == 0, result.stderr
    log = json_log(result.stderr)
    ready = next(r for r in log if r["kind"] == "ready")
    assert ready["listeners"] == ["10-first", "9-second", "a-third", "b-last"]  # byte order
    warnings = [r["msg"] for r in log if r["level"] == "warning"]
    assert any("notes.txt is not executable" in w and "chmod +x" in w for w in warnings)
    assert any("subdir is a directory" in w for w in warnings)
    assert not any(hidden in w for w in warnings for hidden in (".hidden", "old~", "x.bak", "y.swp", "dpkg"))


def test_world_writable_listener_is_refused(ckpt, tmp_path, env, records_path):
    path = write_listener(tmp_path / "l", "open-to-all")
    path.chmod(0o777)
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0
    assert read_records(records_path) == []
    assert any("writable by every user" in r["msg"] for r in json_log(result.stderr))


def test_python_listener_class(ckpt, tmp_path, env):
    """A CheckpointSaverListener subclass served as a script: after_save returning True is exit 3."""
    dcp_save(ckpt, "step-4")
    script = tmp_path / "l" / "py-listener"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\n# ckptwatch: events=after_save,end\n"
        "from ckptwatch import CheckpointSaverListener\nfrom ckptwatch.listener import serve\n"
        "class Stopper(CheckpointSaverListener):\n"
        "    def after_save(self, event):\n"
        "        print(f'saw {event.step} at {event.checkpoint}')\n"
        "        return event.step >= 4\n"
        "    def end(self, event):\n"
        "        print(f'end {event.step} handled={event.last_step_handled}')\n"
        "serve(Stopper())\n"
    )
    script.chmod(0o755)
    stop = tmp_path / "stop"
    result = run_once(ckpt, tmp_path, env, "-l", str(script.parent), "--stop-file", str(stop))
    assert result.returncode == 0, result.stderr
    assert json.loads(stop.read_text())["step"] == 4
    output = [r["msg"] for r in json_log(result.stderr) if r.get("kind") == "output"]
    assert output == [f"saw 4 at {ckpt / 'step-4'}", "end 4 handled=True"]


def test_timeout_kills_a_child_that_left_the_group_with_setsid(ckpt, tmp_path, env):
    """Steps: a listener starts a child in a new session (setsid), then hangs; --listener-timeout 1.
    Result: the escaped child dies with the listener (the watcher is a child subreaper)."""
    dcp_save(ckpt, "step-1")
    pid_file = tmp_path / "escaped.pid"
    write_listener(tmp_path / "l", "hang", events="after_save", after=(
        "import subprocess\n"
        "child = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)"))
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"), "--listener-timeout", "1")
    assert result.returncode == 1, result.stderr
    escaped = int(pid_file.read_text())
    assert os.getsid(escaped) == escaped if alive(escaped) else True  # it did leave the group
    assert not alive(escaped), "a setsid'ed child of a timed-out listener survived"
    assert any("process(es) below it" in r["msg"] for r in json_log(result.stderr))


SESSION_PROBE = (
    "record['ids'] = [os.getpid(), os.getpgid(0), os.getsid(0)]\n"
    "try:\n"
    "    os.close(os.open('/dev/tty', os.O_RDONLY | os.O_NOCTTY))\n"
    "    record['tty'] = True\n"
    "except OSError:\n"
    "    record['tty'] = False"
)


def test_without_a_terminal_a_listener_leads_its_own_group_in_the_watchers_session(ckpt, tmp_path, env,
                                                                                   records_path):
    """Steps: a watcher with no controlling terminal (its own session); one save.
    Result: the listener leads its own process group (a timeout kills all it started) and stays
    in the watcher's session: no session per run (Linux makes a scheduling group per session,
    which slowed listener starts under load)."""
    dcp_save(ckpt, "step-1")
    write_listener(tmp_path / "l", "probe", events="after_save", before=SESSION_PROBE)
    proc = subprocess.Popen([sys.executable, "-m", "ckptwatch", "run", str(ckpt), "--once", "-l", str(tmp_path / "l")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=tmp_path, start_new_session=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    [record] = read_records(records_path)
    pid, pgid, sid = record["ids"]
    assert pgid == pid, "the listener does not lead its own process group"
    assert sid == proc.pid, "the listener is not in the watcher's session"
    assert record["tty"] is False


def test_beside_a_terminal_a_listener_gets_a_session_of_its_own(ckpt, tmp_path, env, records_path):
    """Steps: a watcher whose controlling terminal is a pseudo-terminal; one save.
    Result: the listener leads its own session, without that terminal (a listener that tries
    to read it fails at once instead of being stopped as a background job)."""
    import pty
    import termios

    dcp_save(ckpt, "step-1")
    write_listener(tmp_path / "l", "probe", events="after_save", before=SESSION_PROBE)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ckptwatch", "run", str(ckpt), "--once", "-l", str(tmp_path / "l")],
                            stdin=follower, stdout=follower, stderr=follower, env=env, cwd=tmp_path,
                            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(follower)
    while True:  # drain the terminal until the watcher closes it
        try:
            if not os.read(leader, 65536):
                break
        except OSError:  # EIO: the other side is closed
            break
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    [record] = read_records(records_path)
    pid, pgid, sid = record["ids"]
    assert pgid == pid and sid == pid, "the listener does not lead a session of its own"
    assert record["tty"] is False


def test_a_listener_that_floods_output_or_closes_stdin_early(ckpt, tmp_path, env, records_path):
    """Steps: one listener writes 4 MiB with no newline and 50,000 short lines; another closes
    its stdin at once without reading it; a third records.
    Result: all three finish; the flood is logged in lines cut at a bound; nothing fails."""
    dcp_save(ckpt, "step-1")
    listeners = tmp_path / "l"
    listeners.mkdir()
    flood = listeners / "10-flood"
    flood.write_text("#!/bin/sh\n# ckptwatch: events=after_save\n"
                     "head -c 4194304 /dev/zero | tr '\\0' x\necho\nseq 1 50000\n")
    flood.chmod(0o755)
    closer = listeners / "20-close-stdin"
    closer.write_text("#!/bin/sh\n# ckptwatch: events=after_save\nexec 0<&-\necho closed\n")
    closer.chmod(0o755)
    write_listener(listeners, "30-rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(listeners))
    assert result.returncode == 0, result.stderr[-2000:]
    log = json_log(result.stderr)
    outcomes = {(r["listener"], r["outcome"]) for r in log if r.get("kind") == "run"}
    assert outcomes == {("10-flood", "done"), ("20-close-stdin", "done"), ("30-rec", "done")}
    flood_lines = [r["msg"] for r in log if r.get("kind") == "output" and r["listener"] == "10-flood"]
    assert len(flood_lines) == 1 + 50000
    assert flood_lines[0].endswith("[cut]") and len(flood_lines[0]) < 20000
    assert summary(read_records(records_path)) == [("after_save", 1)]


def test_a_slow_listener_holds_back_only_itself(ckpt, tmp_path, watch, records_path):
    """Steps: a listener that takes 1.5 s per save and a fast one; five saves, one by one.
    Result: the fast listener has run for every save while the slow one is still on its
    first ones (saves keep being observed); the slow one then gets all five, in order."""
    listeners = tmp_path / "l"
    write_listener(listeners, "10-slow", events="after_save", before="time.sleep(1.5)")
    write_listener(listeners, "20-fast", events="after_save")
    w = watch(str(ckpt), "-l", str(listeners))
    w.wait_ready()
    for step in range(1, 6):
        dcp_save(ckpt, f"step-{step}")
        w.wait_run("20-fast", "after_save", step)
    slow_done = [s for _, s in summary(read_records(records_path), "10-slow")]
    assert len(slow_done) < 5, "the fast listener waited for the slow one"
    w.wait_run("10-slow", "after_save", 5, timeout=60)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path), "10-slow") == [("after_save", s) for s in range(1, 6)]


def test_a_listener_gets_its_three_descriptors_only_even_when_ckptwatch_inherited_more(ckpt, tmp_path, env, records_path):
    """Steps: ckptwatch started with stdin closed and an inheritable descriptor (50 or above) open (as a
    shell's `7>file` or a supervisor's socket would leave it); one save; --once.
    Result: the listener reads its payload on stdin, and has 0, 1 and 2 open, nothing else
    (listeners start with posix_spawn, which closes no descriptor itself)."""
    dcp_save(ckpt, "step-1")
    write_listener(tmp_path / "l", "rec", events="after_save",
                   before="record['fds'] = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))")
    opened = os.open(tmp_path / "inherited", os.O_CREAT | os.O_WRONLY, 0o644)
    leak = fcntl.fcntl(opened, fcntl.F_DUPFD, 50)  # a number the recorder's own files never get
    os.close(opened)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ckptwatch", "run", str(ckpt), "--once", "-l", str(tmp_path / "l"),
             "--log-format", "json"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
            pass_fds=(leak,), preexec_fn=lambda: os.close(0),
        )
    finally:
        os.close(leak)
    assert result.returncode == 0, result.stderr
    [record] = read_records(records_path)
    assert record["stdin"]["step"] == 1
    assert leak not in record["fds"], record["fds"]
