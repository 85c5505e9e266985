"""The listener author's tools, driven as a user would: init, check, fire, simulate, listeners."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from conftest import json_log, read_records, run_cli, run_once, write_listener
from pylisteners import write_class, write_toml
from test_protocol import dcp_save

from ckptwatch.tools.fakesaves import LAYOUTS


def test_init_writes_a_starting_point_that_checks_and_runs_and_never_overwrites(tmp_path, env):
    """Steps: init DIR; init DIR again after editing a file; check and simulate in DIR.
    Result: the script is executable, the class file is not (it needs not be); the second init
    keeps every file as it is and says so; check passes; simulate runs both listeners on each save."""
    made = run_cli("init", "proj", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    proj = tmp_path / "proj"
    script, cls, toml = proj / "listeners.d" / "10-log-event", proj / "listeners.d" / "20-example.py", proj / "ckptwatch.toml"
    assert all(f"created  proj/{p.relative_to(proj)}" in made.stdout for p in (script, cls, toml))
    assert script.stat().st_mode & stat.S_IXUSR and not cls.stat().st_mode & stat.S_IXUSR
    cls.write_text(cls.read_text() + "# mine\n")
    again = run_cli("init", "proj", env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("not overwritten") == 3
    assert cls.read_text().endswith("# mine\n")
    checked = run_cli("check", env=env, cwd=proj)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 listener(s) ok, 0 problem(s)" in checked.stdout
    simulated = run_cli("simulate", "--saves", "3", "--every", "0", "--log-format", "json", env=env, cwd=proj)
    assert simulated.returncode == 0, simulated.stderr
    log = json_log(simulated.stderr)
    runs = {(r["listener"], r["event"], r["step"]) for r in log if r.get("kind") == "run" and r["outcome"] == "done"}
    for name in ("10-log-event", "20-example.py"):
        assert {(name, "after_save", s) for s in (100, 200, 300)} <= runs
        assert (name, "end", 300) in runs
    assert "simulate: done, 3 save(s)" in simulated.stdout


def test_simulate_ends_when_a_listener_asks_for_a_stop(tmp_path, env):
    """The init'd class with args = { stop_at_step = 200 }: the fake job stops after its second save."""
    run_cli("init", env=env, cwd=tmp_path)
    toml = tmp_path / "ckptwatch.toml"
    toml.write_text(toml.read_text().replace("stop_at_step = 1000", "stop_at_step = 200"))
    result = run_cli("simulate", "--saves", "10", "--every", "0.3", "--log-format", "json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the stop file is there" in result.stdout and "saved step 300" not in result.stdout
    stops = [r for r in json_log(result.stderr) if r.get("kind") == "stop"]
    assert stops[0]["step"] == 200 and stops[0]["listeners"] == ["20-example.py"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_simulate_writes_saves_each_layout_commits(tmp_path, env, records_path, layout):
    write_listener(tmp_path / "l", "rec", events="after_save")
    result = run_cli("simulate", "--layout", layout, "--saves", "2", "--every", "0.1", "-l", str(tmp_path / "l"),
                     "--log-format", "json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = [(r["stdin"]["step"], r["stdin"]["layout"]) for r in read_records(records_path)]
    assert got == [(100, layout), (200, layout)]


def test_check_lists_every_problem_and_exits_2(tmp_path, env):
    d = tmp_path / "listeners.d"
    write_listener(d, "10-good", events="after_save every_n_steps=100")
    (d / "20-not-executable").write_text("#!/bin/sh\necho hi\n")
    missing = d / "30-missing-interpreter"
    missing.write_text("#!/usr/bin/env python9.99\n")
    missing.chmod(0o755)
    typo = d / "40-typo"
    typo.write_text("#!/bin/sh\n# ckptwatch: events=after_save evry_n_steps=100\n")
    typo.chmod(0o755)
    bad = d / "45-bad-value"
    bad.write_text("#!/bin/sh\n# ckptwatch: on_failure=sometimes\n")
    bad.chmod(0o755)
    (d / "50-plain.py").write_text("# ckptwatch: class=Plain\nclass Plain:\n    pass\n")
    (d / "60-raises.py").write_text("# ckptwatch: class=X\nraise RuntimeError('no GPU here')\nclass X: pass\n")
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {"rec": {"class": "rec.py:Rec", "args": {"no_such_arg": 1, "label": 2}},
                                             "ghost": {"timeout": 5}})
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    out = result.stdout
    assert "ok     10-good" in out and "every_n_steps=100" in out
    for needle in (
        "20-not-executable is not executable",
        "its #! interpreter python9.99 (#!/usr/bin/env python9.99) is not on PATH",
        "unknown key(s) evry_n_steps",
        "on_failure must be one of continue, retry:N, stop-training, stop-watcher, not 'sometimes'",
        "50-plain.py: " ,
        "is not a listener class",
        "importing it raised RuntimeError: no GPU here",
        "[listener.ghost] names no listener",
    ):
        assert needle in out, (needle, out)
    assert "ok     rec" in out  # Rec takes **extra: any args do
    assert "error  50-plain.py" in out and "error  60-raises.py" in out
    assert result.stdout.strip().splitlines()[-1].endswith("problem(s)")


def test_check_catches_args_a_constructor_does_not_take(tmp_path, env):
    (tmp_path / "strict.py").write_text(
        "from ckptwatch import CheckpointSaverListener\n"
        "class Strict(CheckpointSaverListener):\n    def __init__(self, threshold):\n        self.threshold = threshold\n")
    write_toml(tmp_path / "ckptwatch.toml", {"s": {"class": "strict.py:Strict", "args": {"treshold": 1}}})
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "s: its constructor does not take args = {'treshold': 1}" in result.stdout
    write_toml(tmp_path / "ckptwatch.toml", {"s": {"class": "strict.py:Strict", "args": {"threshold": 1}}})
    assert run_cli("check", env=env, cwd=tmp_path).returncode == 0


def test_check_a_config_with_a_mistyped_setting_is_one_line(tmp_path, env):
    write_toml(tmp_path / "ckptwatch.toml", {"x": {"every_n_steps": "often"}})
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "every_n_steps must be a whole number" in result.stderr


def test_fire_runs_the_listeners_as_run_would_without_a_stop_file_or_journal(ckpt, tmp_path, env, records_path):
    """Steps: two checkpoints in DIR; fire after_save (the newest by default) and --step 1, then
    the same listeners under run --once.
    Result: the payloads fire gives are the ones run gives (but the run id); an unsubscribed
    listener is named; exit 3 when one asks for a stop, yet no stop file and no journal in DIR."""
    dcp_save(ckpt, "step-1")
    dcp_save(ckpt, "step-2")
    d = tmp_path / "l"
    write_listener(d, "10-rec", events="after_save,end")
    write_listener(d, "20-asker", events="after_save", after="sys.exit(3 if record['stdin']['step'] == 2 else 0)")
    write_listener(d, "30-begin-only", events="begin")
    fired = run_cli("fire", "after_save", "--dir", str(ckpt), "-l", str(d), "--log-format", "json", env=env,
                    cwd=tmp_path)
    assert fired.returncode == 3, fired.stderr
    assert any("30-begin-only: not subscribed to after_save" in r["msg"] for r in json_log(fired.stderr))
    assert not (ckpt / "ckptwatch.stop").exists() and not (ckpt / ".ckptwatch").exists()
    by_fire = [r for r in read_records(records_path) if r["name"] == "10-rec"]
    assert [r["stdin"]["step"] for r in by_fire] == [2]
    step1 = run_cli("fire", "after_save", "--dir", str(ckpt), "--step", "1", "-l", str(d), env=env, cwd=tmp_path)
    assert step1.returncode == 0, step1.stderr
    records_path.unlink()
    ran = run_once(ckpt, tmp_path, env, "-l", str(d), "--stop-file", str(tmp_path / "stop"))
    assert ran.returncode == 0
    by_run = next(r for r in read_records(records_path) if r["name"] == "10-rec" and r["argv"] == ["after_save"]
                  and r["stdin"]["step"] == 2)
    fire_payload = dict(by_fire[0]["stdin"], run_id=None, stop_file=None)
    run_payload = dict(by_run["stdin"], run_id=None, stop_file=None)
    assert fire_payload == run_payload
    assert set(by_fire[0]["env"]) == set(by_run["env"])


def test_fire_exit_1_when_a_listener_fails_and_usage_errors(ckpt, tmp_path, env):
    dcp_save(ckpt, "step-1")
    d = tmp_path / "l"
    write_listener(d, "bad", events="begin", after="sys.exit(4)")
    assert run_cli("fire", "begin", "--dir", str(ckpt), "-l", str(d), env=env, cwd=tmp_path).returncode == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_cli("fire", "after_save", "--dir", str(empty), "-l", str(d), env=env, cwd=tmp_path)
    assert nothing.returncode == 2 and "no committed checkpoint" in nothing.stderr
    assert run_cli("fire", "after_sav", "-l", str(d), env=env, cwd=tmp_path).returncode == 2


def test_fire_a_class_listener_builds_it_and_calls_begin_first(ckpt, tmp_path, env, records_path):
    dcp_save(ckpt, "step-7")
    write_class(tmp_path)
    result = run_cli("fire", "after_save", "--dir", str(ckpt), "-l", "rec.py:Rec", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [(r["event"], r["step"]) for r in read_records(records_path)] == [("begin", None), ("after_save", 7)]


def test_listeners_says_how_to_offer_one_when_none_is_installed(tmp_path, env):
    result = run_cli("listeners", env=env, cwd=tmp_path)
    assert result.returncode == 0
    assert "entry point in the group ckptwatch.listeners" in result.stdout


@pytest.mark.parametrize("command", ["init", "check", "fire", "simulate", "listeners"])
def test_each_tool_has_help(command, tmp_path, env):
    result = run_cli(command, "--help", env=env, cwd=tmp_path)
    assert result.returncode == 0 and "Usage: ckptwatch " + command in result.stdout
