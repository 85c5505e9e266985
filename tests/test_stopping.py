"""Closing the loop with training, against a real ``ckptwatch run``: sync stops, run ids, --on-stop, --role.

The training is examples/train.py (the quick start's loop, saving like the
Transformers Trainer) or a small script that does not import ckptwatch;
listeners are real scripts. Tests wait for facts (log lines, files).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import json_log, read_records, run_cli, write_listener

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "examples" / "train.py"

ASK_AT = """#!/bin/sh
# ckptwatch: events=after_save
sleep "${{ASK_DELAY:-0}}"
if [ "$CKPTWATCH_STEP" -ge {step} ]; then echo "step $CKPTWATCH_STEP is enough"; exit 3; fi
exit 0
"""

STOPPED = re.compile(r"train: stop requested at step (\d+) .*; stopping at step (\d+)")


def ask_at(directory: Path, step: int, name: str = "30-ask") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(ASK_AT.format(step=step))
    path.chmod(0o755)
    return path


def train_command(ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN), str(ckpt), "--step-time", "0.01", "--save-every", "10", "--steps", "300",
            "--keep", "1000",
            *extra]


def stopped_at(stdout: str) -> tuple[int, int]:
    match = STOPPED.search(stdout)
    assert match, stdout
    return int(match.group(1)), int(match.group(2))


# sync ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sync", [True, False])
def test_a_stop_asked_at_a_save_stops_training_there_with_sync(ckpt, tmp_path, env, sync):
    """Steps: the loop saves every 10 steps under `ckptwatch run -- train.py [--sync]`; a listener that
    takes 0.5 s asks for a stop at step 40.
    Result: with --sync training stops at step 40 exactly; without, some steps later (it went on while
    the listener ran), with a last checkpoint of that step on disk either way."""
    listener = ask_at(tmp_path / "l", 40)
    result = run_cli("run", str(ckpt), "-l", str(listener), "--log-format", "json", "--",
                     *train_command(ckpt, *(["--sync"] if sync else [])),
                     env={**env, "ASK_DELAY": "0.5"}, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    asked, stopped = stopped_at(result.stdout)
    assert asked == 40
    if sync:
        assert stopped == 40
    else:
        assert stopped > 40
    assert (ckpt / f"checkpoint-{stopped}" / "trainer_state.json").exists()
    progress = json.loads((ckpt / ".ckptwatch" / "progress.json").read_text())
    assert progress["stop"] is True and progress["ended"] == "command"
    assert progress["stop_step"] == (40 if sync else stopped)  # the latest request: every save from 40 asks


def test_sync_goes_on_with_a_warning_when_the_watcher_dies(ckpt, tmp_path, watch, env):
    """Steps: a sidecar `ckptwatch run DIR` with a listener that takes 0.3 s; the loop runs with --sync
    beside it (no wrapper); the sidecar is killed (-9) after the verdict on step 10.
    Result: the next save does not hang: a warning says the watcher is gone, training runs to its end."""
    listener = write_listener(tmp_path / "l", "slow", events="after_save", before="time.sleep(0.3)")
    w = watch(str(ckpt), "-l", str(listener), extra_env={})
    w.wait_ready()
    clean = {k: v for k, v in env.items() if not k.startswith("CKPTWATCH_")}
    train = subprocess.Popen(train_command(ckpt, "--sync", "--steps", "40", "--sync-timeout", "60"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean)
    w.wait_run("slow", "after_save", 10)
    w.stop()  # kill -9: no `ended` in the progress file
    started = time.monotonic()
    out, err = train.communicate(timeout=120)
    assert train.returncode == 0, err
    assert "train: done, 40 steps" in out
    assert "the watcher will not answer: its process" in err and "training goes on" in err
    assert time.monotonic() - started < 55  # it did not wait out the 60 s timeout


def test_sync_waits_for_this_process_save_not_an_earlier_runs_of_the_same_step(ckpt, tmp_path, watch, env):
    """Steps: a sidecar watcher; a first training run saves steps 10 and 20 and ends; a second run
    (a new process, same session, same steps) saves step 10 again, and now the listener (0.5 s) asks.
    Result: the second run waits for its own save's verdict (the progress file's step 10 of the first
    run does not count: its commit is older than the process) and stops at step 10."""
    flag = tmp_path / "ask-now"
    listener = write_listener(tmp_path / "l", "asks", events="after_save", after=textwrap.dedent(f"""
        time.sleep(0.5)
        if os.path.exists({str(flag)!r}) and record["stdin"]["step"] == 10:
            sys.exit(3)
        """))
    w = watch(str(ckpt), "-l", str(listener))
    w.wait_ready()
    clean = {k: v for k, v in env.items() if not k.startswith("CKPTWATCH_")}
    first = subprocess.run(train_command(ckpt, "--sync", "--steps", "20"), capture_output=True, text=True,
                           env=clean, timeout=120)
    assert "train: done, 20 steps" in first.stdout, first.stderr
    flag.touch()
    second = subprocess.run(train_command(ckpt, "--sync"), capture_output=True, text=True, env=clean, timeout=120)
    assert stopped_at(second.stdout) == (10, 10), second.stderr


# run ids -------------------------------------------------------------------------------


def test_the_command_knows_its_run_id_and_state_dir(ckpt, tmp_path, env):
    script = tmp_path / "show_env.py"
    script.write_text("import json, os\nprint(json.dumps({k: v for k, v in os.environ.items() "
                      "if k.startswith('CKPTWATCH_')}))\n")
    state = tmp_path / "state"
    result = run_cli("run", str(ckpt), "--once", "--state-dir", str(state), "--log-format", "json", "--",
                     sys.executable, str(script), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    ready = [r for r in json_log(result.stderr) if r.get("kind") == "ready"][0]
    assert seen["CKPTWATCH_RUN_ID"] == ready["run_id"]
    assert seen["CKPTWATCH_STATE_DIR"] == str(state)
    assert seen["CKPTWATCH_STOP_FILE"] == str(ckpt / "ckptwatch.stop") and seen["CKPTWATCH_DIR"] == str(ckpt)


def test_a_stop_file_of_another_run_does_not_stop_training(ckpt, tmp_path, env):
    """Steps: wrapped training; when it has saved step 20, a stop file from another watcher session lands
    (newer than the training process); the real listener asks at step 60.
    Result: training ignores the foreign request and stops on its own run's, at step 60 (sync)."""
    listener = ask_at(tmp_path / "l", 60)
    foreign = write_listener(tmp_path / "l", "10-foreign", events="after_save", after=textwrap.dedent("""
        if record["stdin"]["step"] == 20:
            body = {"step": 20, "run_id": "another-run", "listeners": ["x"], "reason": "not yours"}
            with open(record["stdin"]["stop_file"], "w") as out:
                json.dump(body, out)
        """))
    assert foreign.exists()
    result = run_cli("run", str(ckpt), "-l", str(tmp_path / "l"), "--log-format", "json", "--",
                     *train_command(ckpt, "--sync"), env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert stopped_at(result.stdout) == (60, 60)


# --on-stop ------------------------------------------------------------------------------

NO_CKPTWATCH = r'''
import json, os, signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda sig, frame: got.append(sig))
ckpt = sys.argv[1]
def save(step):
    os.makedirs(f"{ckpt}/checkpoint-{step}", exist_ok=True)
    with open(f"{ckpt}/checkpoint-{step}/trainer_state.json", "w") as out:
        json.dump({"global_step": step}, out)
for step in range(1, 1000):
    time.sleep(0.01)
    if step % 10 == 0:
        save(step)
    if got:
        stop_file = os.environ["CKPTWATCH_STOP_FILE"]
        save(step)
        record = {"step": step, "stop_file_there": os.path.exists(stop_file),
                  "ckptwatch_loaded": any(m.startswith("ckptwatch") for m in sys.modules)}
        print(json.dumps(record), flush=True)
        sys.exit(0)
sys.exit(5)
'''


def test_on_stop_signal_stops_a_command_that_does_not_import_ckptwatch(ckpt, tmp_path, env):
    """Steps: `ckptwatch run DIR --on-stop signal:SIGTERM -- python loop.py` where the loop only traps
    SIGTERM (no ckptwatch); a listener asks for a stop at step 30.
    Result: the loop got SIGTERM after the stop file was written, saved its last step and exited 0;
    the watcher exits 0 and says it sent the signal."""
    script = tmp_path / "loop.py"
    script.write_text(NO_CKPTWATCH)
    listener = ask_at(tmp_path / "l", 30)
    result = run_cli("run", str(ckpt), "-l", str(listener), "--on-stop", "signal:SIGTERM", "--log-format", "json",
                     "--", sys.executable, str(script), str(ckpt), env={**env, "PYTHONPATH": ""}, cwd=tmp_path,
                     timeout=120)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["stop_file_there"] is True and record["ckptwatch_loaded"] is False
    assert record["step"] >= 30
    assert (ckpt / f"checkpoint-{record['step']}" / "trainer_state.json").exists()
    sent = [r for r in json_log(result.stderr) if r.get("signal") == "SIGTERM"]
    assert len(sent) == 1 and sent[0]["step"] == 30


def test_without_on_stop_no_signal_is_sent(ckpt, tmp_path, env):
    script = tmp_path / "loop.py"
    script.write_text(NO_CKPTWATCH.replace("range(1, 1000)", "range(1, 80)"))
    listener = ask_at(tmp_path / "l", 30)
    result = run_cli("run", str(ckpt), "-l", str(listener), "--log-format", "json", "--", sys.executable,
                     str(script), str(ckpt), env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 5  # ran to its end: it reads no stop file and got no signal
    assert (ckpt / "ckptwatch.stop").exists()


@pytest.mark.parametrize("args, message", [
    (["--on-stop", "signal:SIGNOPE", "--", "true"], "on-stop must be 'file' or 'signal:NAME'"),
    (["--on-stop", "signal:KILL", "--", "true"], "on-stop must be 'file' or 'signal:NAME'"),
    (["--on-stop", "signal:TERM"], "signals the wrapped command: add -- COMMAND"),
    (["--role", "boss"], "Invalid value for '--role'"),
])
def test_on_stop_and_role_usage_errors(ckpt, tmp_path, env, args, message):
    result = run_cli("run", str(ckpt), "--once", *args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --role ----------------------------------------------------------------------------------


def _role_setup(ckpt: Path, tmp_path: Path) -> Path:
    (ckpt / "checkpoint-5").mkdir()
    (ckpt / "checkpoint-5" / "trainer_state.json").write_text('{"global_step": 5}')
    listeners = tmp_path / "l"
    for name in ("10-chief-stops", "20-both-stop"):
        write_listener(listeners, name, events="after_save", after="sys.exit(3)")
    (tmp_path / "ckptwatch.toml").write_text('[listener."20-both-stop"]\nroles = ["chief", "worker"]\n')
    return listeners


@pytest.mark.parametrize("how", [["--role", "worker"], ["--role", "auto"]])
def test_a_worker_runs_only_worker_listeners_and_never_writes_the_stop_file(ckpt, tmp_path, env, records_path,
                                                                            how):
    listeners = _role_setup(ckpt, tmp_path)
    result = run_cli("run", str(ckpt), "--once", "-l", str(listeners), "--log-format", "json", *how,
                     env={**env, "RANK": "1"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in read_records(records_path)] == ["20-both-stop"]
    assert not (ckpt / "ckptwatch.stop").exists()
    log = json_log(result.stderr)
    said = [r for r in log if r.get("role") == "worker"]
    assert said and "never writes the stop file" in said[0]["msg"] and said[0]["skipped"] == ["10-chief-stops"]
    assert any("only the chief writes the stop file" in r["msg"] for r in log)
    progress = json.loads((ckpt / ".ckptwatch" / "progress.json").read_text())
    assert progress["role"] == "worker" and progress["stop"] is False and progress["step"] == 5


def test_the_chief_runs_every_listener_and_stops(ckpt, tmp_path, env, records_path):
    listeners = _role_setup(ckpt, tmp_path)
    result = run_cli("run", str(ckpt), "--once", "-l", str(listeners), "--role", "auto", "--log-format", "json",
                     env={**env, "RANK": "0"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r["name"] for r in read_records(records_path)) == ["10-chief-stops", "20-both-stop"]
    stop = json.loads((ckpt / "ckptwatch.stop").read_text())
    assert sorted(stop["listeners"]) == ["10-chief-stops", "20-both-stop"] and stop["step"] == 5


@pytest.mark.parametrize("roles", ['["boss"]', '[]', '"worker"'])
def test_bad_roles_in_the_config_are_a_usage_error(ckpt, tmp_path, env, roles):
    (tmp_path / "ckptwatch.toml").write_text(f'[listener.x]\nroles = {roles}\n')
    result = run_cli("run", str(ckpt), "--once", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "roles must be a list of chief, worker" in result.stderr


# progress file ------------------------------------------------------------------------------


def test_progress_file_follows_the_listeners(ckpt, tmp_path, watch):
    """Steps: a watched DIR; saves at steps 5 and 10, the listener for step 10 slow (held by a file).
    Result: while 10's listener runs, progress says step 5 finished and 10 committed, one pending; after,
    step 10, nothing pending; at the end, `ended`."""
    gate = tmp_path / "gate"
    listener = write_listener(tmp_path / "l", "gated", events="after_save", before=textwrap.dedent(f"""
        import pathlib
        while record["stdin"]["step"] == 10 and not pathlib.Path({str(gate)!r}).exists():
            time.sleep(0.01)
        """))
    w = watch(str(ckpt), "-l", str(listener))
    w.wait_ready()
    progress_file = ckpt / ".ckptwatch" / "progress.json"
    first = json.loads(progress_file.read_text())
    assert first["step"] is None and first["ended"] is None and first["run_id"] and first["pid"] == w.proc.pid
    for step in (5, 10):
        (ckpt / f"checkpoint-{step}").mkdir()
        (ckpt / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        w.wait_for(lambda r, s=step: r.get("kind") == "event" and r.get("event") == "after_save" and r["step"] == s)
    w.wait_run("gated", "after_save", 5)
    deadline = time.monotonic() + 30
    while True:
        body = json.loads(progress_file.read_text())
        if body["committed_step"] == 10 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert body["step"] == 5 and body["committed_step"] == 10 and body["pending"] == 1 and body["saves"] == 1
    gate.touch()
    w.wait_run("gated", "after_save", 10)
    deadline = time.monotonic() + 30
    while json.loads(progress_file.read_text())["step"] != 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    body = json.loads(progress_file.read_text())
    assert body["step"] == 10 and body["pending"] == 0 and body["saves"] == 2 and body["layout"] == "hf"
    assert [s["step"] for s in body["recent"]] == [5, 10]
    assert body["checkpoint"] == str(ckpt / "checkpoint-10")
    assert body["recent"][1]["saved"] <= body["recent"][1]["committed"] <= body["recent"][1]["finished"]
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert json.loads(progress_file.read_text())["ended"] == "signal"
