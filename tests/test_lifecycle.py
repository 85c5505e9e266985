"""A session's life through the real process: signals, the wrapped command,
idle timeouts, the directory coming and going, and restarts with the journal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import alive, expected_stream, json_log, read_records, run_cli, summary, write_listener
from tracereplay import Saved, operations, replay
from test_protocol import dcp_save


def test_sigterm_fires_end_once_and_exits_0(ckpt, tmp_path, watch, records_path):
    write_listener(tmp_path / "l", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"))
    w.wait_ready()
    dcp_save(ckpt, "step-3")
    w.wait_run("rec", "after_save", 3)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    events = summary(read_records(records_path))
    assert events == [("begin", None), ("before_save", 3), ("after_save", 3), ("end", 3)]


def test_second_signal_forces_exit_with_128_plus_n(ckpt, tmp_path, watch):
    write_listener(tmp_path / "l", "slow-end", events="end", before="time.sleep(300)")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"))
    w.wait_ready()
    w.send(signal.SIGTERM)
    w.wait_for(lambda r: r.get("kind") == "event" and r.get("event") == "end")
    w.send(signal.SIGINT)
    assert w.wait_exit() == 128 + signal.SIGINT


def test_wrapped_command_status_environment_and_end(ckpt, tmp_path, env, records_path):
    """Steps: run a command that saves a checkpoint, prints its environment and exits 7.
    Result: after_save for its save, then end; ckptwatch exits 7; the command saw the stop file path."""
    write_listener(tmp_path / "l", "rec")
    code = (
        "import os, sys\n"
        "sys.path.insert(0, os.environ['TESTS'])\n"
        "from test_protocol import dcp_save\nfrom pathlib import Path\n"
        "dcp_save(Path(os.environ['CKPTWATCH_DIR']), 'step-5')\n"
        "print('STOP_FILE=' + os.environ['CKPTWATCH_STOP_FILE'])\n"
        "sys.exit(7)\n"
    )
    env = {**env, "TESTS": str(Path(__file__).parent)}
    result = run_cli("run", str(ckpt), "-l", str(tmp_path / "l"), "--log-format", "json", "--",
                     sys.executable, "-c", code, env=env, cwd=tmp_path)
    assert result.returncode == 7, result.stderr
    assert f"STOP_FILE={ckpt / 'ckptwatch.stop'}" in result.stdout
    events = summary(read_records(records_path))
    assert events[-1] == ("end", 5)
    assert ("after_save", 5) in events


def test_signal_is_forwarded_to_the_command_once(ckpt, tmp_path, watch, records_path):
    write_listener(tmp_path / "l", "rec", events="end")
    marker = tmp_path / "got-term"
    code = (
        "import signal, sys, time, pathlib\n"
        f"def term(*_):\n    pathlib.Path({str(marker)!r}).write_text('yes')\n    sys.exit(5)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        f"pathlib.Path({str(tmp_path / 'child-ready')!r}).write_text('1')\ntime.sleep(300)\n"
    )
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), "--", sys.executable, "-c", code)
    w.wait_ready()
    _wait_file(tmp_path / "child-ready")
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 5
    assert marker.read_text() == "yes"
    assert summary(read_records(records_path)) == [("end", None)]


def test_idle_timeout_ends_the_session(ckpt, tmp_path, env, records_path):
    write_listener(tmp_path / "l", "rec", events="end")
    result = run_cli("run", str(ckpt), "-l", str(tmp_path / "l"), "--idle-timeout", "0.5", "--log-format", "json",
                     env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(read_records(records_path)) == [("end", None)]
    assert any("idle timeout" in r["msg"] for r in json_log(result.stderr))


def test_missing_dir_is_waited_for(tmp_path, watch, records_path):
    later = tmp_path / "not-yet"
    write_listener(tmp_path / "l", "rec", events="after_save")
    w = watch(str(later), "-l", str(tmp_path / "l"))
    w.wait_for(lambda r: "does not exist yet" in r["msg"])
    later.mkdir()
    w.wait_ready()
    dcp_save(later, "step-1")
    w.wait_run("rec", "after_save", 1)


def test_dir_deleted_and_created_again_is_a_new_session(ckpt, tmp_path, watch, records_path):
    write_listener(tmp_path / "l", "rec", events="begin,after_save,end")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), "--state-dir", str(tmp_path / "state"))
    w.wait_ready()
    dcp_save(ckpt, "step-1")
    w.wait_run("rec", "after_save", 1)
    shutil.rmtree(ckpt)
    w.wait_run("rec", "end")
    ckpt.mkdir()
    dcp_save(ckpt, "step-1")  # a new run: same name, new content
    w.wait_for(lambda r: r.get("kind") == "run" and r.get("event") == "after_save" and len(
        [x for x in w.records if x.get("kind") == "run" and x.get("event") == "after_save"]) == 2)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == [("begin", None), ("after_save", 1), ("end", 1),
                                ("begin", None), ("after_save", 1), ("end", 1)]
    assert records[0]["stdin"]["run_id"] != records[3]["stdin"]["run_id"]


def test_restart_repeats_nothing_and_skips_nothing(ckpt, tmp_path, env, records_path):
    """Steps: --once over two checkpoints; two more saved while no watcher runs; --once again.
    Result: the second session delivers only the two new ones; end reports the last as handled."""
    state = tmp_path / "state"
    dcp_save(ckpt, "step-1")
    dcp_save(ckpt, "step-2")
    write_listener(tmp_path / "l", "rec")
    args = ("run", str(ckpt), "--once", "-l", str(tmp_path / "l"), "--state-dir", str(state), "--log-format", "json")
    assert run_cli(*args, env=env, cwd=tmp_path).returncode == 0
    dcp_save(ckpt, "step-3")
    dcp_save(ckpt, "step-4")
    assert run_cli(*args, env=env, cwd=tmp_path).returncode == 0
    sessions = summary(read_records(records_path))
    assert sessions == [
        ("begin", None), ("before_save", 1), ("after_save", 1), ("before_save", 2), ("after_save", 2), ("end", 2),
        ("begin", None), ("before_save", 3), ("after_save", 3), ("before_save", 4), ("after_save", 4), ("end", 4),
    ]
    # A re-save under an old name (new content) is a new save, not a repeat.
    os.replace(ckpt / "step-2" / ".metadata", ckpt / "old-meta")
    (ckpt / "step-2" / ".metadata").write_bytes(b"new content, new save")
    assert run_cli(*args, env=env, cwd=tmp_path).returncode == 0
    assert summary(read_records(records_path))[-3:] == [("before_save", 2), ("after_save", 2), ("end", 2)]


def test_kill_9_mid_listener_retries_the_cut_off_run_only(ckpt, tmp_path, watch, records_path):
    """Steps: a listener hangs at step 2 on its first attempt; kill -9 the watcher while it
    runs; save step 3; restart with the same state dir.
    Result: the hung run's process group is killed; step 2 runs again marked retry (attempt 2);
    step 1 is not repeated; step 3 is delivered once."""
    dcp_save(ckpt, "step-1")
    dcp_save(ckpt, "step-2")
    hung_pid = tmp_path / "hung.pid"
    write_listener(tmp_path / "l", "rec", events="after_save", after=(
        "if record['stdin']['step'] == 2 and record['stdin']['attempt'] == 1:\n"
        f"    open({str(hung_pid)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(300)"))
    args = (str(ckpt), "-l", str(tmp_path / "l"), "--state-dir", str(tmp_path / "state"))
    first = watch(*args)
    _wait_file(hung_pid)
    first.send(signal.SIGKILL)
    first.wait_exit()
    hung = int(hung_pid.read_text())
    assert alive(hung), "the listener outlives a kill -9 of the watcher (it leads its own group)"
    dcp_save(ckpt, "step-3")
    second = watch(*args)
    second.wait_run("rec", "after_save", 3)
    second.wait_run("rec", "after_save", 2)
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    assert not alive(hung), "the cut-off run's group was killed before the retry"
    after = [(r["stdin"]["step"], r["stdin"]["retry"], r["stdin"]["attempt"])
             for r in read_records(records_path) if r["argv"] == ["after_save"]]
    assert sorted(after) == [(1, False, 1), (2, False, 1), (2, True, 2), (3, False, 1)]


def _wait_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)



def test_shutdown_timeout_keeps_queued_runs_for_the_next_session(ckpt, tmp_path, watch, records_path):
    """Steps: a slow listener with three saves queued; SIGTERM with --shutdown-timeout 0.5.
    Result: end still fires; the runs not done are delivered by the next session, none twice."""
    for step in (1, 2, 3):
        dcp_save(ckpt, f"step-{step}")
    write_listener(tmp_path / "l", "slow", events="after_save,end",
                   before="time.sleep(1.0 if record['argv'][0] == 'after_save' else 0)")
    args = (str(ckpt), "-l", str(tmp_path / "l"), "--state-dir", str(tmp_path / "state"))
    first = watch(*args, "--shutdown-timeout", "0.5")
    first.wait_ready()
    first.send(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert any("kept in the journal" in r["msg"] for r in first.records)
    done_first = [s for e, s in summary(read_records(records_path)) if e == "after_save"]
    assert len(done_first) < 3
    second = watch(*args)
    second.wait_run("slow", "after_save", 3)
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    records = [r for r in read_records(records_path) if r["argv"] == ["after_save"]]
    assert sorted(r["stdin"]["step"] for r in records) == [1, 2, 3]  # the listener records as it finishes
    interrupted = {r["step"] for r in first.records if r.get("outcome") == "interrupted"}
    assert interrupted, "the shutdown timeout cut the running run off"
    retried = {r["stdin"]["step"] for r in records if r["stdin"]["retry"]}
    assert retried == interrupted


def test_as_pid_1_orphans_are_reaped_and_exit_statuses_kept(ckpt, tmp_path, env, records_path):
    """Steps: run ckptwatch as PID 1 of a new PID namespace (as in a container); a listener
    leaves orphans that exit soon after; another asks for a stop (exit 3) at step 2; at end,
    a listener counts the zombies in the namespace.
    Result: the stop file names step 2 (exit 3 was not lost to the reaper); no zombie is left."""
    if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode:
        pytest.skip("unshare --pid is not permitted here")
    for step in (1, 2, 3):
        dcp_save(ckpt, f"step-{step}")
    listeners = tmp_path / "l"
    write_listener(listeners, "10-orphans", events="after_save", after=(
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 0.2'], start_new_session=True)"))
    write_listener(listeners, "20-stop", events="after_save", after="sys.exit(3 if record['stdin']['step'] == 2 else 0)")
    write_listener(listeners, "30-zombies", events="end", before=(
        "time.sleep(1.5)\n"  # the reaper looks every second
        "record['zombies'] = [p for p in os.listdir('/proc') if p.isdigit() and "
        "open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z']"))
    launch = (
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, '-m', 'ckptwatch', 'run', {str(ckpt)!r}, '-l', {str(listeners)!r},"
        " '--idle-timeout', '1', '--log-format', 'json'])"
    )
    result = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", launch],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads((ckpt / "ckptwatch.stop").read_text())["step"] == 2
    records = read_records(records_path)
    assert summary(records, "20-stop") == [("after_save", 1), ("after_save", 2), ("after_save", 3)]
    [end] = [r for r in records if r["name"] == "30-zombies"]
    assert end["pid"] != 1 and end["zombies"] == []


def test_a_cut_off_run_with_no_group_journaled_is_found_and_killed_before_its_retry(ckpt, tmp_path, watch,
                                                                                  records_path):
    """Steps: the watcher dies (crash point run-spawned) right after starting after_save 1's
    listener, before journaling its process group; that listener hangs on attempt 1.
    Result: the restart finds it by its CKPTWATCH_RUN_KEY, kills it, and retries (attempt 2)."""
    dcp_save(ckpt, "step-1")
    hung_pid = tmp_path / "hung.pid"
    # The watcher dies before writing the listener's stdin: it reads EOF, so go by the environment.
    write_listener(tmp_path / "l", "rec", events="after_save", before=(
        "if os.environ['CKPTWATCH_RETRY'] == '0':\n"
        f"    open({str(hung_pid)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(300)"))
    args = (str(ckpt), "-l", str(tmp_path / "l"), "--state-dir", str(tmp_path / "state"))
    first = watch(*args, "--once", extra_env={"CKPTWATCH_TEST_CRASH_AT": "run-spawned"})
    assert first.wait_exit() == -signal.SIGKILL
    _wait_file(hung_pid)
    hung = int(hung_pid.read_text())
    assert alive(hung)
    second = watch(*args, "--once")
    assert second.wait_exit() == 0
    assert not alive(hung), "the cut-off run survived its retry"
    assert any("killed what was left" in r["msg"] for r in second.records)
    [record] = read_records(records_path)
    assert (record["stdin"]["attempt"], record["stdin"]["retry"]) == (2, True)


@pytest.mark.parametrize("trace", ["torch_dcp", "tf2_manager", "hf_trainer"])
def test_a_commit_costs_a_few_scans_and_no_waits(trace, ckpt, tmp_path, watch, records_path):
    """Steps: replay a framework's saves under a live watcher with native notifications.
    Result: the session's own counters: DIR listed whole once (at the start), at most one
    scan per notification batch (so never more than the file operations, plus the first and
    last looks), and no scan that waited for a timer (no sleep, no debounce, no settle on
    the commit path of these layouts)."""
    write_listener(tmp_path / "l", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"))
    w.wait_ready()
    saves = replay(trace, ckpt, lambda s: w.wait_run("rec", "after_save", s.step))
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    stats = w.wait_for(lambda r: r["msg"].startswith("session") and "ended" in r["msg"])
    assert stats["commits"] == len(saves)
    assert stats["full_listings"] == 2  # the start, and the last look at SIGTERM
    assert stats["recheck_waits"] == 0
    file_operations = sum(1 for op in operations(trace) if not isinstance(op, Saved))
    assert stats["scans"] <= file_operations + 2, stats


def test_tf_state_file_ahead_of_the_disk_commits_when_the_index_lands(ckpt, tmp_path, watch, records_path):
    """Steps: `checkpoint` names model.ckpt-1 and model.ckpt-2 while only step 1's files are
    there; then step 2's data and .index are written (a copy tool, or a file system that shows
    the state file first).
    Result: step 2 is delivered on the .index's notification, well before the 10 s safety
    rescan (the scan skips notifications of files that cannot change what it sees, but
    not this one)."""
    from test_hostile import replace, tf_files, tf_state

    write_listener(tmp_path / "l", "rec", events="after_save")
    tf_files(ckpt, 1)
    replace(ckpt / "checkpoint", tf_state("model.ckpt-1"))
    w = watch(str(ckpt), "-l", str(tmp_path / "l"))
    w.wait_run("rec", "after_save", 1)
    (ckpt / "model.ckpt-2.data-00000-of-00001").write_bytes(b"data")
    replace(ckpt / "checkpoint", tf_state("model.ckpt-1", "model.ckpt-2"))
    time.sleep(0.3)  # the watcher has read the state file: step 2's .index is awaited
    landed = time.time()
    (ckpt / "model.ckpt-2.index").write_bytes(b"index")
    run = w.wait_run("rec", "after_save", 2)
    assert run["time"] - landed < 5.0, "found by the safety rescan, not by the notification"
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0


def test_tf_resave_under_the_same_prefix_is_a_new_save(ckpt, tmp_path, watch, records_path):
    """Steps: model.ckpt-1 saved and delivered; a new run saves model.ckpt-1 again (its .index
    rewritten with new content, a pause so the watcher looks in between), then renames in a
    state file naming it.
    Result: two after_save for step 1 (the second save has a new identity), the second at
    the commit's notification (well before the 10 s safety rescan); exit 0."""
    from test_hostile import replace, tf_files, tf_state

    write_listener(tmp_path / "l", "rec", events="after_save")
    tf_files(ckpt, 1)
    replace(ckpt / "checkpoint", tf_state("model.ckpt-1"))
    w = watch(str(ckpt), "-l", str(tmp_path / "l"))
    w.wait_run("rec", "after_save", 1)
    (ckpt / "model.ckpt-1.data-00000-of-00001").write_bytes(b"new data")
    (ckpt / "model.ckpt-1.index").write_bytes(b"new index, longer")
    time.sleep(0.3)  # the watcher looks at the .index notification before the commit
    committed = time.time()
    replace(ckpt / "checkpoint", tf_state("model.ckpt-1"))
    runs = lambda: [r for r in w.records if r.get("kind") == "run" and r.get("event") == "after_save"]  # noqa: E731
    w.wait_for(lambda r: len(runs()) == 2)
    assert runs()[1]["time"] - committed < 5.0, "found by the safety rescan, not at the commit"
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert [r["stdin"]["step"] for r in read_records(records_path)] == [1, 1]


def test_watchdog_observer_delivers_the_same_stream(ckpt, tmp_path, watch, records_path):
    """Steps: CKPTWATCH_NOTIFY=watchdog (watchdog's observer thread instead of the engine's
    own inotify reader, as on platforms without inotify); replay TF2 CheckpointManager saves.
    Result: the log says which; every listener sees the full stream, in order; exit 0."""
    write_listener(tmp_path / "l", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), extra_env={"CKPTWATCH_NOTIFY": "watchdog"})
    w.wait_for(lambda r: "watchdog's observer" in r["msg"])
    w.wait_ready()
    saves = replay("tf2_manager", ckpt, lambda s: w.wait_run("rec", "after_save", s.step))
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == expected_stream([s.step for s in saves])


@pytest.mark.parametrize("layout, name", [("torch", "model_5.pt"), ("lightning", "epoch=0-step=5.ckpt")])
def test_a_file_saved_in_place_just_before_the_command_exits_is_delivered(ckpt, tmp_path, env, records_path,
                                                                          layout, name):
    """Steps: the wrapped command writes one checkpoint whole (a zip written in place, as torch.save
    and Lightning do) and exits at once.
    Result: the session does not end before the layout's second look: after_save comes, then end
    with that step (it used to end at once, and the checkpoint was never delivered)."""
    write_listener(tmp_path / "l", "rec", events="after_save,end")
    writer = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from samplefiles import torch_zip; "
              f"open({str(ckpt / name)!r}, 'wb').write(torch_zip({{'global_step': 5, 'epoch': 0}}))")
    result = run_cli("run", str(ckpt), "--layout", layout, "-l", str(tmp_path / "l"), "--log-format", "json",
                     "--", sys.executable, "-c", writer, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(read_records(records_path)) == [("after_save", 5), ("end", 5)]
