"""``ckptwatch status``: a real watcher, read from its state directory alone, while it runs,
after a clean exit, after ``kill -9``, and while it waits for DIR."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Callable

from conftest import WAIT, run_cli, write_listener
from test_protocol import dcp_save


def status(state_dir: Path, env: dict[str, str], cwd: Path, *extra: str):
    return run_cli("status", "--state-dir", str(state_dir), *extra, env=env, cwd=cwd)


def status_json(state_dir: Path, env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any]]:
    result = status(state_dir, env, cwd, "--json")
    return result.returncode, json.loads(result.stdout)


def wait_status(state_dir: Path, env: dict[str, str], cwd: Path,
                predicate: Callable[[dict[str, Any]], bool]) -> tuple[int, dict[str, Any]]:
    """The first status report that satisfies ``predicate`` (the file is written a moment after a fact)."""
    deadline = time.monotonic() + WAIT
    while True:
        code, report = status_json(state_dir, env, cwd)
        if predicate(report):
            return code, report
        assert time.monotonic() < deadline, json.dumps(report, indent=1)
        time.sleep(0.05)


def test_while_running_after_a_clean_exit_and_after_kill_9(ckpt, tmp_path, watch, env):
    """Steps: a watcher with two listeners ('ok', and 'flaky' that fails at step 2 with a
    last line), two DCP saves; status while it runs; SIGTERM and status again; a second
    watcher on the same state dir, killed with SIGKILL, and status again.
    Result: running: exit 0, pid, layout, last commit step 2, per-listener progress with the
    failure's line; after SIGTERM: exit 1, "ended" with the session's reason and exit status;
    after kill -9: exit 1, the dead pid recognised (its lock is free: a new watcher starts)."""
    listeners = tmp_path / "l"
    write_listener(listeners, "ok", events="after_save")
    write_listener(listeners, "flaky", events="after_save",
                   after="if record['stdin']['step'] == 2:\n    print('checksum mismatch')\n    sys.exit(1)")
    state = ckpt / ".ckptwatch"
    w = watch(str(ckpt), "-l", str(listeners))
    w.wait_ready()
    dcp_save(ckpt, "step-1")
    w.wait_run("flaky", "after_save", 1)
    dcp_save(ckpt, "step-2")
    w.wait_run("flaky", "after_save", 2)
    w.wait_run("ok", "after_save", 2)
    other = tmp_path / "elsewhere"
    other.mkdir()
    code, report = wait_status(state, env, other, lambda r: sum(x.get("runs", 0) for x in r.get("listeners", [])) == 4)
    assert code == 0 and report["running"] and report["healthy"]
    assert report["watcher"]["pid"] == w.proc.pid and report["watcher"]["state"] == "running"
    assert report["layout"] == "dcp" and report["dir"] == str(ckpt)
    assert report["last_commit"]["step"] == 2 and report["last_commit"]["checkpoint"] == "step-2"
    progress = {x["name"]: x for x in report["listeners"]}
    assert progress["ok"]["last_step_handled"] == 2 and progress["ok"]["failures"] == 0
    assert progress["flaky"]["last_step_handled"] == 1 and progress["flaky"]["failures"] == 1
    assert progress["flaky"]["last_failure"]["line"] == "checksum mismatch"
    assert progress["flaky"]["last_failure"]["exit_code"] == 1
    text = status(state, env, other)  # plain text when not on a terminal
    assert text.returncode == 0
    assert f"running, pid {w.proc.pid}" in text.stdout and "last step 2" in text.stdout
    assert "after_save step 2: failed exit 1: checksum mismatch" in text.stdout

    w.send(signal.SIGTERM)
    assert w.wait_exit() == 1  # flaky failed
    code, report = status_json(state, env, other)
    assert code == 1 and not report["running"] and report["watcher"]["state"] == "ended"
    assert report["watcher"]["ended"]["reason"] == "signal" and report["watcher"]["ended"]["exit_status"] == 1
    assert report["last_commit"]["step"] == 2  # still known after the watcher ended
    assert "not running: ended" in status(state, env, other).stdout

    second = watch(str(ckpt), "-l", str(listeners))
    second.wait_ready()
    wait_status(state, env, other, lambda r: r["watcher"].get("pid") == second.proc.pid and r["running"])
    second.send(signal.SIGKILL)
    second.wait_exit()
    code, report = status_json(state, env, other)
    assert code == 1 and report["watcher"]["state"] == "dead" and report["watcher"]["pid"] == second.proc.pid
    assert f"pid {second.proc.pid} died without ending its session" in status(state, env, other).stdout
    assert report["last_commit"]["step"] == 2  # carried over from the earlier session
    third = watch(str(ckpt), "-l", str(listeners))  # the dead one's lock is no obstacle
    third.wait_ready()


def test_a_stop_request_progress_file_and_a_watcher_waiting_for_dir(tmp_path, watch, env):
    """Steps: --state-dir outside DIR, and DIR does not exist yet; status; DIR appears with a
    save that a listener answers with exit 3.
    Result: while waiting: running (exit 0), "waiting for DIR"; then the stop request with
    who asked and why, and progress.json (issue 11's) whole in JSON, its main fields in text."""
    ckpt = tmp_path / "later"
    state = tmp_path / "state"
    listeners = tmp_path / "l"
    write_listener(listeners, "asker", events="after_save", after="print('loss is nan')\nsys.exit(3)")
    w = watch(str(ckpt), "-l", str(listeners), "--state-dir", str(state))
    w.wait_for(lambda r: "waiting for it" in r["msg"])
    code, report = wait_status(state, env, tmp_path, lambda r: r["running"])
    assert code == 0 and report["watcher"]["state"] == "waiting"
    assert f"waiting for {ckpt} to exist" in status(state, env, tmp_path).stdout
    ckpt.mkdir()
    dcp_save(ckpt, "step-7")
    w.wait_for(lambda r: r.get("kind") == "stop")
    code, report = wait_status(state, env, tmp_path, lambda r: r.get("stop") is not None
                               and (r.get("progress") or {}).get("stop_step") == 7)
    assert code == 0
    assert report["stop"]["step"] == 7 and report["stop"]["listeners"] == ["asker"]
    assert report["stop"]["reason"] == "asker: loss is nan" and report["stop"]["this_run"]
    assert report["progress"]["step"] == 7 and report["progress"]["stop"] is True  # progress.json, whole
    text = status(state, env, tmp_path).stdout
    assert "requested at step 7 by asker: asker: loss is nan" in text
    assert "progress:    step 7, committed_step 7, pending 0, stop True, stop_step 7" in text


def test_no_state_and_usage(tmp_path, env):
    """A state dir never used: exit 1 and one line that says so; no DIR and no --state-dir: exit 2;
    CKPTWATCH_STATE_DIR is read; a URL DIR's state dir is the local one `run` uses."""
    result = run_cli("status", str(tmp_path / "nowhere"), env=env, cwd=tmp_path)
    assert result.returncode == 1 and "no watcher has used" in result.stdout
    result = run_cli("status", env=env, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "pass DIR or --state-dir" in result.stderr
    with_env = run_cli("status", env={**env, "CKPTWATCH_STATE_DIR": str(tmp_path / "s")}, cwd=tmp_path)
    assert with_env.returncode == 1 and str(tmp_path / "s") in with_env.stdout
    # a URL DIR: the local state dir that `run URL` uses
    url = run_cli("status", "s3://bucket/runs/7", env={**env, "XDG_STATE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    assert url.returncode == 1 and str(tmp_path / "xdg" / "ckptwatch" / "s3" / "bucket" / "runs" / "7") in url.stdout


def test_on_a_terminal_it_is_a_table(ckpt, tmp_path, env):
    """Steps: a --once run with a listener; status with its stdout on a pseudo-terminal.
    Result: a rich table (box drawing), the listener's row, exit 1 (not running), no traceback."""
    import os
    import pty
    import subprocess
    import sys

    write_listener(tmp_path / "l", "rec", events="after_save")
    dcp_save(ckpt, "step-3")
    assert run_cli("run", str(ckpt), "--once", "-l", str(tmp_path / "l"), env=env, cwd=tmp_path).returncode == 0
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ckptwatch", "status", str(ckpt)], stdout=follower,
                            stderr=subprocess.PIPE, env={**env, "COLUMNS": "120"}, cwd=tmp_path)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=30) == 1
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    screen = b"".join(chunks).decode()
    assert "┃" in screen or "│" in screen  # a table
    assert "rec" in screen and "last step handled" in screen and "not running: ended" in screen


def test_status_file_is_written_a_moment_after_a_change_then_at_most_once_an_interval(tmp_path):
    """Steps: a status writer (real thread, real file) whose interval between writes is 30 s;
    the layout is chosen ("tf"), then chosen again ("hf") once the file says "tf"; close().
    Result: "tf" is written a moment after its change; "hf" waits for the interval (not in the
    file half a second later); close() ends the waiting thread at once."""
    from ckptwatch.report.hub import SessionFacts
    from ckptwatch.report.statuswriter import StatusWriter

    writer = StatusWriter(str(tmp_path))
    writer.min_interval = 30.0
    writer.session_started(SessionFacts("run1", str(tmp_path / "ckpt"), str(tmp_path / "stop"), str(tmp_path),
                                        ("rec",), 4242))
    path = tmp_path / "status.json"
    writer.layout_chosen("tf", "chosen with --layout")
    deadline = time.monotonic() + WAIT
    while json.loads(path.read_text()).get("layout") != "tf":
        assert time.monotonic() < deadline, "the first change was not written a moment after it"
        time.sleep(0.02)
    writer.layout_chosen("hf", "chosen with --layout")
    time.sleep(0.5)
    assert json.loads(path.read_text())["layout"] == "tf", "written again before the interval"
    writer.close()
    assert writer._thread is not None and not writer._thread.is_alive(), "close() waited out the interval"
