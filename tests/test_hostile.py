"""Hostile input through the real CLI: corrupt and oversized markers, paths and
symlinks that lead out of DIR, odd names, unsafe listener permissions, bad
settings. Each case must give one clear log line (never a traceback), and the
valid saves beside it must still be delivered.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import json_log, read_records, run_cli, run_once, summary, write_listener
from test_protocol import dcp_save

# --- helpers ------------------------------------------------------------------------------------


def assert_clean(stderr: str) -> list[dict]:
    """No traceback; in JSON mode every line on stderr is a JSON log record."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    records = json_log(stderr)
    assert len(records) == len(lines), "non-JSON lines on stderr:\n" + "\n".join(
        line for line in lines if not line.startswith("{"))
    return records


def warnings_about(records: list[dict], text: str) -> list[dict]:
    return [r for r in records if r["level"] in ("warning", "error") and text in r["msg"]]


def usage_error(result: subprocess.CompletedProcess[str], *mentions: str) -> str:
    """Exit 2 and exactly one line on stderr that names what to fix; the line."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, lines
    for mention in mentions:
        assert mention in lines[0], f"{lines[0]!r} does not mention {mention!r}"
    return lines[0]


def tf_files(ckpt: Path, step: int) -> None:
    (ckpt / f"model.ckpt-{step}.data-00000-of-00001").write_bytes(b"data")
    (ckpt / f"model.ckpt-{step}.index").write_bytes(b"index")


def tf_state(*prefixes: str) -> bytes:
    lines = [f'model_checkpoint_path: "{prefixes[-1]}"'] + [f'all_model_checkpoint_paths: "{p}"' for p in prefixes]
    return ("\n".join(lines) + "\n").encode()


def replace(path: Path, data: bytes) -> None:
    """Write ``path`` as savers do: a temp file renamed over it."""
    tmp = path.with_name(path.name + ".tmp-write")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def hf_save(root: Path, step: int, state: bytes | None = None) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "trainer_state.json").write_bytes(state if state is not None else json.dumps({"global_step": step}).encode())
    return path


def after_saves(records_path: Path) -> list[tuple[int, str]]:
    return [(r["stdin"]["step"], r["stdin"]["checkpoint"]) for r in read_records(records_path)
            if r["argv"] == ["after_save"]]


# --- TensorFlow's `checkpoint` state file ------------------------------------------------------

BAD_STATE_FILES = {
    "garbage-text": (b"this is not a state file\nmodel_checkpoint_path = model.ckpt-1\n{}\n", "no model_checkpoint_path"),
    "binary": (bytes(range(256)) * 16, "no model_checkpoint_path"),
    "2MiB": (b'model_checkpoint_path: "model.ckpt-1"\n' + b"#" * (2 << 20), "larger than"),
    "unterminated-quote": (b'model_checkpoint_path: "model.ckpt-1\nall_model_checkpoint_paths: "model.ckpt-1\n',
                           "no model_checkpoint_path"),
}


@pytest.mark.parametrize("kind", sorted(BAD_STATE_FILES))
def test_tf_state_file_that_cannot_be_read_is_one_warning_and_the_next_valid_one_delivers(
        kind, ckpt, tmp_path, watch, records_path):
    """Steps: model.ckpt-1 on disk with a hostile `checkpoint`; a live watcher; the hostile
    file is rewritten twice (more scans); then a valid state file is renamed in.
    Result: one warning for the hostile file over all scans; step 1 delivered once; exit 0."""
    bad, expected = BAD_STATE_FILES[kind]
    tf_files(ckpt, 1)
    replace(ckpt / "checkpoint", bad)
    write_listener(tmp_path / "l", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "l"))
    w.wait_for(lambda r: expected in r["msg"])
    replace(ckpt / "checkpoint", bad)
    replace(ckpt / "checkpoint", bad)
    replace(ckpt / "checkpoint", tf_state("model.ckpt-1"))
    w.wait_run("rec", "after_save", 1)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = assert_clean("\n".join(w.lines))
    assert len(warnings_about(records, expected)) == 1
    assert after_saves(records_path) == [(1, str(ckpt / "model.ckpt-1"))]


def test_tf_state_file_naming_paths_outside_dir_delivers_only_what_is_inside(ckpt, tmp_path, env, records_path):
    """Steps: `checkpoint` lists ../../etc/passwd, ../outside/model.ckpt-5 and an absolute
    /.../outside/model.ckpt-7 (both real checkpoints outside DIR), /etc/passwd, and model.ckpt-2.
    Result: only model.ckpt-2 is delivered; one warning per outside path; exit 0."""
    outside = tmp_path / "outside"
    outside.mkdir()
    tf_files(outside, 5)
    tf_files(outside, 7)
    tf_files(ckpt, 2)
    escapes = ["../../etc/passwd", "../outside/model.ckpt-5", str(outside / "model.ckpt-7"), "/etc/passwd"]
    (ckpt / "checkpoint").write_bytes(tf_state(*escapes, "model.ckpt-2"))
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    records = assert_clean(result.stderr)
    assert after_saves(records_path) == [(2, str(ckpt / "model.ckpt-2"))]
    for path in escapes[:3]:
        assert len(warnings_about(records, f"names {path!r}, outside DIR")) == 1, path
    assert not [r for r in records if r.get("kind") == "event" and "outside" in str(r.get("checkpoint"))]


# --- Hugging Face trainer_state.json ----------------------------------------------------------

BAD_TRAINER_STATES = {
    "json-array": (b'[{"global_step": 2}]', "is JSON but not an object"),
    "2MiB-binary": (os.urandom(1024) * 2048, "is not JSON"),
    "binary": (bytes(range(256)) * 4, "trainer_state.json"),
}


@pytest.mark.parametrize("kind", [
    "json-array",
    "2MiB-binary",
    "binary",
])
def test_hf_trainer_state_that_is_no_commit_is_one_warning_and_others_delivered(kind, ckpt, tmp_path, env,
                                                                               records_path):
    bad, expected = BAD_TRAINER_STATES[kind]
    hf_save(ckpt, 1)
    hf_save(ckpt, 2, bad)
    hf_save(ckpt, 3)
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    records = assert_clean(result.stderr)
    assert after_saves(records_path) == [(1, str(ckpt / "checkpoint-1")), (3, str(ckpt / "checkpoint-3"))]
    about = [r for r in warnings_about(records, expected) if "checkpoint-2/trainer_state.json" in r["msg"]]
    assert len(about) == 1, [r["msg"] for r in records]


def test_hf_trainer_state_with_a_long_log_history_is_still_a_commit(ckpt, tmp_path, env, records_path):
    history = [{"epoch": i / 100, "learning_rate": 5e-05, "loss": 1.0, "step": i} for i in range(1, 30001)]
    hf_save(ckpt, 30000, json.dumps({"global_step": 30000, "log_history": history}).encode())
    assert (ckpt / "checkpoint-30000" / "trainer_state.json").stat().st_size > (1 << 20)
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert_clean(result.stderr)
    assert after_saves(records_path) == [(30000, str(ckpt / "checkpoint-30000"))]


# --- symlinks ---------------------------------------------------------------------------------


def test_checkpoint_dir_symlinked_from_outside_is_not_delivered(ckpt, tmp_path, env, records_path):
    """checkpoint-9 -> a real, committed HF checkpoint outside DIR: never followed, never delivered."""
    outside = tmp_path / "outside"
    outside.mkdir()
    hf_save(outside, 9)
    hf_save(ckpt, 1)
    (ckpt / "checkpoint-9").symlink_to(outside / "checkpoint-9", target_is_directory=True)
    write_listener(tmp_path / "l", "rec", events="before_save,after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    records = assert_clean(result.stderr)
    assert summary(read_records(records_path)) == [("before_save", 1), ("after_save", 1)]
    assert not [r for r in records if r.get("kind") == "event" and r.get("step") == 9]


def test_symlink_loops_inside_dir_neither_hang_nor_break_the_scan(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-1")
    (ckpt / "loop-a").symlink_to("loop-b")
    (ckpt / "loop-b").symlink_to("loop-a")
    (ckpt / "step-5").symlink_to("step-5")  # a numbered name that loops on itself
    (ckpt / "here").symlink_to(".")
    (ckpt / "step-1" / "up").symlink_to("..")
    dcp_save(ckpt, "step-2")
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    assert_clean(result.stderr)
    assert after_saves(records_path) == [(1, str(ckpt / "step-1")), (2, str(ckpt / "step-2"))]


@pytest.mark.parametrize("target", ["dangling", "outside"])
def test_dcp_metadata_symlink_is_not_a_commit(target, ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-1")
    bad = ckpt / "step-2"
    bad.mkdir()
    (bad / "__0_0.distcp").write_bytes(b"shard")
    if target == "outside":
        (tmp_path / "outside-metadata").write_bytes(b"metadata from elsewhere")
        (bad / ".metadata").symlink_to(tmp_path / "outside-metadata")
    else:
        (bad / ".metadata").symlink_to(tmp_path / "no-such-file")
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    records = assert_clean(result.stderr)
    assert after_saves(records_path) == [(1, str(ckpt / "step-1"))]
    assert len(warnings_about(records, "step-2/.metadata")) == 1


# --- odd names -------------------------------------------------------------------------------


def test_names_with_spaces_newlines_and_non_utf8_bytes_are_delivered_with_exact_paths(ckpt, tmp_path, env,
                                                                                     records_path):
    names = ["my ckpt 1", "line\nbreak-2", os.fsdecode(b"bytes-\xff\xfe-3"), "tab\tand 'quote\"-4"]
    for name in names:
        dcp_save(ckpt, name)
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    records = assert_clean(result.stderr)
    got = [r for r in read_records(records_path) if r["argv"] == ["after_save"]]
    assert [r["stdin"]["step"] for r in got] == [1, 2, 3, 4]
    for record, name in zip(got, names):
        expected = os.path.join(str(ckpt), name)
        assert record["stdin"]["checkpoint"] == expected  # surrogateescape in the JSON
        assert os.fsencode(record["env"]["CKPTWATCH_CHECKPOINT"]) == os.fsencode(expected)  # raw bytes
        assert os.path.isdir(record["env"]["CKPTWATCH_CHECKPOINT"])
    runs = [r for r in records if r.get("kind") == "run" and r.get("event") == "after_save"]
    assert [r["step"] for r in runs] == [1, 2, 3, 4]


# --- listener permissions ----------------------------------------------------------------------


def test_listener_directory_writable_by_everyone_is_refused(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-1")
    listeners = tmp_path / "l"
    write_listener(listeners, "rec")
    listeners.chmod(0o777)
    result = run_once(ckpt, tmp_path, env, "-l", str(listeners))
    usage_error(result, "writable by every user", str(listeners))
    assert not records_path.exists(), "nothing may run from a directory anyone can write"


def test_listener_script_writable_by_everyone_is_skipped_with_a_warning(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-1")
    listeners = tmp_path / "l"
    write_listener(listeners, "10-unsafe", events="after_save").chmod(0o757)
    write_listener(listeners, "20-safe", events="after_save")
    result = run_once(ckpt, tmp_path, env, "-l", str(listeners))
    assert result.returncode == 0, result.stderr
    records = assert_clean(result.stderr)
    assert len(warnings_about(records, "10-unsafe is writable by every user; skipped")) == 1
    assert summary(read_records(records_path), "10-unsafe") == []
    assert summary(read_records(records_path), "20-safe") == [("after_save", 1)]


# --- settings --------------------------------------------------------------------------------

BAD_FLAGS = {
    "listener-timeout-0": (["--listener-timeout", "0"], "listener-timeout"),
    "shutdown-timeout-negative": (["--shutdown-timeout", "-1"], "shutdown-timeout"),
    "idle-timeout-0": (["--idle-timeout", "0"], "idle-timeout"),
    "poll-negative": (["--poll=-1"], "poll"),
    "poll-not-a-number": (["--poll", "soon"], "poll"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FLAGS))
def test_out_of_range_flag_is_exit_2_with_one_line(kind, ckpt, tmp_path, env):
    flags, mention = BAD_FLAGS[kind]
    usage_error(run_once(ckpt, tmp_path, env, *flags), mention)


def test_out_of_range_environment_setting_is_exit_2_with_one_line(ckpt, tmp_path, env):
    usage_error(run_once(ckpt, tmp_path, {**env, "CKPTWATCH_POLL": "-1"}), "poll")


BAD_TOML = {
    "unknown-key": ('[run]\nbogus = 1\n', "bogus"),
    "layout-is-a-number": ('[run]\nlayout = 3\n', "layout"),
    "poll-is-a-string": ('[run]\npoll = "fast"\n', "poll"),
    "listeners-is-a-number": ('[run]\nlisteners = 5\n', "listeners"),
    "once-is-not-a-bool": ('[run]\nonce = "maybe"\n', "once"),
    "idle-timeout-is-a-list": ('[run]\nidle_timeout = [1, 2]\n', "idle"),
    "stop-file-is-a-number": ('[run]\nstop_file = 7\n', "stop"),
    "state-dir-is-a-bool": ('[run]\nstate_dir = false\n', "state"),
    "run-is-not-a-table": ('run = 3\n', "run"),
    "listener-timeout-is-a-string": ('[listener.rec]\ntimeout = "soon"\n', "timeout"),
    "listener-timeout-negative": ('[listener.rec]\ntimeout = -1\n', "timeout"),
    "listener-events-is-a-string": ('[listener.rec]\nevents = "after_save"\n', "events"),
}


@pytest.mark.parametrize("kind", sorted(BAD_TOML))
def test_bad_config_file_is_exit_2_with_one_line(kind, ckpt, tmp_path, env, records_path):
    text, mention = BAD_TOML[kind]
    dcp_save(ckpt, "step-1")
    write_listener(tmp_path / "l", "rec", events="after_save")
    config = tmp_path / "ckptwatch.toml"
    config.write_text(text)
    args = ["run", str(ckpt), "--config", str(config)]
    args += [] if kind.startswith("once") else ["--once"]  # a flag would hide the file's value
    args += [] if kind.startswith("listeners") else ["-l", str(tmp_path / "l")]
    result = run_cli(*args, env=env, cwd=tmp_path)
    usage_error(result, mention)
    assert not records_path.exists(), "nothing may run with a configuration that is refused"


# --- an unreadable marker ----------------------------------------------------------------------


def test_unreadable_marker_is_one_warning_and_others_delivered(env):
    """checkpoint-2/trainer_state.json with mode 000. Root reads it anyway (CAP_DAC_OVERRIDE), so
    as root the watcher runs as nobody through setpriv; without that, the test is skipped."""
    base = Path(tempfile.mkdtemp(prefix="ckptwatch-unreadable-"))
    try:
        base.chmod(0o755)
        ckpt = base / "ckpt"
        ckpt.mkdir()
        hf_save(ckpt, 1)
        hf_save(ckpt, 2)
        hf_save(ckpt, 3)
        marker = ckpt / "checkpoint-2" / "trainer_state.json"
        marker.chmod(0o000)
        listener = base / "l" / "rec"  # sh, not Python: the venv's interpreter may be out of nobody's reach
        listener.parent.mkdir()
        listener.write_text('#!/bin/sh\n# ckptwatch: events=after_save\n'
                            'printf "%s %s\\n" "$CKPTWATCH_STEP" "$CKPTWATCH_CHECKPOINT" >> "$RECORD_FILE"\n')
        listener.chmod(0o755)
        prefix: list[str] = []
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root, where mode 000 does not stop reading, and no setpriv to drop to nobody")
            prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
            for path in [base, *base.rglob("*")]:
                os.lchown(path, 65534, 65534)
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(marker)!r}).read()"],
                               capture_output=True, env=env)
        if probe.returncode == 0:
            pytest.skip("a file with mode 000 is still readable here (root without setpriv?)")
        env = {**env, "RECORD_FILE": str(base / "records.jsonl")}
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "ckptwatch", "run", str(ckpt), "--once", "--log-format", "json",
             "-l", str(base / "l")], capture_output=True, text=True, env=env, cwd=base, timeout=60)
        assert result.returncode == 0, result.stderr
        records = assert_clean(result.stderr)
        assert len(warnings_about(records, "cannot read checkpoint-2/trainer_state.json")) == 1
        assert (base / "records.jsonl").read_text().splitlines() == [f"1 {ckpt}/checkpoint-1", f"3 {ckpt}/checkpoint-3"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
