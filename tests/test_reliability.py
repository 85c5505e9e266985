"""Faults from outside, produced for real: polling, a first start on a full
directory, an inotify queue that overflows, stop files across runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import json_log, read_records, run_cli, summary, write_listener
from test_protocol import dcp_save
from tracereplay import Saved, replay


def test_poll_delivers_each_save_once_in_order(ckpt, tmp_path, watch, records_path):
    write_listener(tmp_path / "l", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), "--poll", "0.2")
    w.wait_ready()
    w.wait_for(lambda r: "polling" in r["msg"])

    def saved(save: Saved) -> None:
        w.wait_run("rec", "after_save", save.step)

    saves = replay("torch_dcp", ckpt, saved)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == [("after_save", s.step) for s in saves]


def test_poll_flag_without_a_value_before_the_command(ckpt, tmp_path, env):
    result = run_cli("run", str(ckpt), "--poll", "--log-format", "json", "--", "true", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert any(r["msg"] == f"polling {ckpt} every 1 s" for r in json_log(result.stderr))


def test_start_from_on_a_first_start_only(ckpt, tmp_path, env, records_path):
    for step in (1, 2, 3, 4):
        dcp_save(ckpt, f"step-{step}")
    write_listener(tmp_path / "l", "rec", events="after_save")

    def once(state: str, start: str):
        result = run_cli("run", str(ckpt), "--once", "-l", str(tmp_path / "l"), "--state-dir", str(tmp_path / state),
                         "--start-from", start, "--log-format", "json", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result

    def delivered() -> list[int]:
        steps = [s for _, s in summary(read_records(records_path))]
        records_path.unlink(missing_ok=True)
        return steps

    once("s-now", "now")
    assert delivered() == []
    once("s-latest", "latest")
    assert delivered() == [4]
    once("s-step", "3")
    assert delivered() == [3, 4]
    once("s-all", "all")
    assert delivered() == [1, 2, 3, 4]
    # A restart is not a first start: what was skipped stays skipped, what is new comes.
    dcp_save(ckpt, "step-5")
    result = once("s-now", "now")
    assert delivered() == [5]
    assert any("first start only" in r["msg"] for r in json_log(result.stderr))


def test_bad_start_from_is_a_usage_error(ckpt, tmp_path, env):
    result = run_cli("run", str(ckpt), "--once", "--start-from", "yesterday", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "start-from" in result.stderr


def test_inotify_queue_overflow_is_caught_and_dir_relisted(ckpt, tmp_path, watch, records_path):
    """Steps: stop the watcher (SIGSTOP); make more events than the kernel queue holds
    (fs.inotify.max_queued_events), then commit a checkpoint last, so its events are lost;
    continue the watcher (SIGCONT).
    Result: the overflow is logged, DIR is listed again, the checkpoint is delivered."""
    limit = int(open("/proc/sys/fs/inotify/max_queued_events").read())
    write_listener(tmp_path / "l", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), "--layout", "dcp")
    w.wait_ready()
    w.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(limit // 2 + 100):  # create + close-after-write: two events each
            (ckpt / f"noise-{i}").write_bytes(b"")
        dcp_save(ckpt, "step-1")
    finally:
        w.proc.send_signal(signal.SIGCONT)
    w.wait_for(lambda r: "overflowed" in r["msg"])
    w.wait_run("rec", "after_save", 1)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == [("after_save", 1)]


def test_restart_never_erases_a_stop_request(ckpt, tmp_path, env):
    stop = ckpt / "ckptwatch.stop"
    stop.write_text(json.dumps({"step": 7, "run_id": "earlier", "listeners": ["x"], "reason": "r"}))
    before = stop.read_text()
    result = run_cli("run", str(ckpt), "--once", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stop.read_text() == before


def test_leftover_stop_file_does_not_stop_the_next_run(ckpt, tmp_path):
    """stop_requested() ignores a stop file written before training started, and sees one written after."""
    stop = ckpt / "ckptwatch.stop"
    stop.write_text("{}")
    old = time.time() - 60
    os.utime(stop, (old, old))
    code = (
        "import os, sys, time, json\n"
        "from ckptwatch import stop_requested\n"
        "first = stop_requested()\n"
        "time.sleep(0.05)\n"
        "open(os.environ['CKPTWATCH_STOP_FILE'], 'w').write('{}')\n"
        "print(json.dumps([first, stop_requested()]))\n"
    )
    env = {**os.environ, "CKPTWATCH_STOP_FILE": str(stop)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [False, True]


def _pin_scenario(ckpt, tmp_path, env, *extra):
    """A save whose directory a listener deletes (rotation) while a slower listener reads it."""
    (ckpt / "checkpoint-5").mkdir()
    (ckpt / "checkpoint-5" / "model.bin").write_bytes(b"weights-5")
    (ckpt / "checkpoint-5" / "trainer_state.json").write_text('{"global_step": 5}')
    listeners = tmp_path / "l"
    write_listener(listeners, "10-rotate", events="after_save",
                   before=f"import shutil; shutil.rmtree({str(ckpt / 'checkpoint-5')!r})")
    write_listener(listeners, "20-read", events="after_save", before=(
        "time.sleep(0.3)\n"
        "record['content'] = open(os.path.join(record['stdin']['checkpoint'], 'model.bin')).read()"))
    return run_cli("run", str(ckpt), "--once", "-l", str(listeners), "--layout", "hf", "--log-format", "json",
                   *extra, env=env, cwd=tmp_path)


def test_pin_keeps_a_rotated_checkpoint_readable(ckpt, tmp_path, env, records_path):
    """Steps: one listener deletes the checkpoint as rotation would; another reads it 0.3 s later.
    Result: with --pin the reader gets the files (from the state dir), and the pin is gone after."""
    state = tmp_path / "state"
    result = _pin_scenario(ckpt, tmp_path, env, "--pin", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    [reader] = [r for r in read_records(records_path) if r["name"] == "20-read"]
    assert reader["content"] == "weights-5"
    assert reader["stdin"]["pinned_from"] == str(ckpt / "checkpoint-5")
    assert reader["stdin"]["checkpoint"].startswith(str(state / "pins"))
    assert reader["env"]["CKPTWATCH_CHECKPOINT"] == reader["stdin"]["checkpoint"]
    assert list((state / "pins").iterdir()) == []


def test_without_pin_a_rotated_checkpoint_is_vanished_or_failed(ckpt, tmp_path, env, records_path):
    result = _pin_scenario(ckpt, tmp_path, env)
    assert [r for r in read_records(records_path) if r["name"] == "20-read"] == []
    outcomes = {r["outcome"] for r in json_log(result.stderr) if r.get("listener") == "20-read" and "outcome" in r}
    assert outcomes == {"vanished"}
    assert result.returncode == 0  # a vanished checkpoint is not a listener failure


def test_pin_copies_where_hard_links_are_refused(ckpt, tmp_path, env, records_path):
    """A state dir on another file system (tmpfs): links fail with EXDEV, the pin is a copy."""
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system for the state dir")
    state = tempfile.mkdtemp(dir=shm)
    try:
        result = _pin_scenario(ckpt, tmp_path, env, "--pin", "--state-dir", state)
        assert result.returncode == 0, result.stderr
        [reader] = [r for r in read_records(records_path) if r["name"] == "20-read"]
        assert reader["content"] == "weights-5"
        assert any("hard links refused" in r["msg"] for r in json_log(result.stderr))
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_a_settled_checkpoint_saved_again_in_place_is_a_new_save(ckpt, tmp_path, watch, records_path):
    """Steps: checkpoint-5 committed and delivered; later its trainer_state.json is written
    again in place (a resumed run saving the same step), with no notification for it.
    Result: a second before_save/after_save 5, found by a full pass (3 poll ticks here)."""
    write_listener(tmp_path / "l", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), "--layout", "hf", "--poll", "0.2")
    w.wait_ready()
    (ckpt / "checkpoint-5").mkdir()
    (ckpt / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    w.wait_run("rec", "after_save", 5)
    (ckpt / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"global_step": 5, "resumed": True}))
    w.wait_for(lambda r: r.get("kind") == "run" and r.get("event") == "after_save"
               and len([x for x in w.records if x.get("kind") == "run" and x.get("event") == "after_save"]) == 2)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == [("after_save", 5), ("after_save", 5)]


def test_tf_burst_beyond_max_to_keep_delivers_every_save(ckpt, tmp_path, watch, records_path):
    """Steps: 600 TensorFlow saves as fast as the disk takes them, the state file listing only
    the newest 2 (max_to_keep=2, files kept), under a live watcher.
    Result: every save delivered once, in step order: saves the state file dropped between two
    looks are found by their .index, even when its notification is still on the way."""
    recorder = tmp_path / "l" / "rec"
    recorder.parent.mkdir()
    recorder.write_text('#!/bin/sh\n# ckptwatch: events=after_save\necho "$CKPTWATCH_STEP" >> "$RECORD_FILE"\n')
    recorder.chmod(0o755)
    w = watch(str(ckpt), "--layout", "tf", "-l", str(recorder.parent))
    w.wait_ready()
    for step in range(1, 601):
        prefix = ckpt / f"model.ckpt-{step}"
        (ckpt / f"{prefix.name}.data-00000-of-00001").write_bytes(b"d")
        (ckpt / f"{prefix.name}.index").write_bytes(b"i")
        kept = "".join(f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in (step - 1, step) if s > 0)
        (ckpt / "checkpoint.tmp").write_text(f'model_checkpoint_path: "model.ckpt-{step}"\n{kept}')
        os.replace(ckpt / "checkpoint.tmp", ckpt / "checkpoint")
    w.wait_run("rec", "after_save", 600, timeout=120)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    steps = [int(line) for line in records_path.read_text().split()]
    assert sorted(steps) == list(range(1, 601)), sorted(set(range(1, 601)) - set(steps))
    assert steps == list(range(1, 601))
