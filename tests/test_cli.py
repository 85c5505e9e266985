"""The command line: user errors are one line and exit 2; --help stays light;
settings layer as flags > environment > ckptwatch.toml > defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import json_log, run_cli


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "{tmp}/missing", "--once"], "does not exist"),
        (["run", "{ckpt}", "--layout", "nope"], "unknown layout 'nope'"),
        (["run", "{ckpt}", "-l", "{tmp}/no-listeners"], "does not exist"),
        (["run", "{ckpt}", "--idle-timeout", "-1"], "idle-timeout"),
        (["run", "{ckpt}", "--config", "{tmp}/bad.toml"], "not valid TOML"),
        (["run", "{ckpt}", "--config", "{tmp}/unknown.toml"], "unknown [run] key(s) colour"),
        (["run", "{tmp}/a-file"], "is a file"),
        (["run"], "Missing argument 'DIR'"),
        (["frobnicate"], "No such command"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, needle, tmp_path, ckpt, env):
    (tmp_path / "bad.toml").write_text("[run\nlayout=")
    (tmp_path / "unknown.toml").write_text("[run]\ncolour = 'blue'\n")
    (tmp_path / "a-file").write_text("")
    args = [a.format(tmp=tmp_path, ckpt=ckpt) for a in args]
    result = run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_environment_value_is_a_usage_error(tmp_path, ckpt, env):
    result = run_cli("run", str(ckpt), "--once", env={**env, "CKPTWATCH_LOG_FORMAT": "xml"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "xml" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_help_imports_neither_watchdog_nor_rich():
    code = (
        "import sys\nfrom ckptwatch.cli import main\nmain(['--help'])\nmain(['run', '--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('watchdog', 'rich', 'prometheus_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_help_wraps_to_columns_and_survives_a_closed_pipe(env, tmp_path):
    """``--help`` leaves without the interpreter's teardown: its output must still be whole,
    wrapped as click would wrap it, and a reader that stops early is no error."""
    narrow = run_cli("--help", env={**env, "COLUMNS": "60"}, cwd=tmp_path)
    assert narrow.returncode == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 58
    from ckptwatch.cli import cli

    last = max(cli.commands)  # click lists them in name order
    assert narrow.stdout.rstrip().splitlines()[-1].lstrip().startswith(last + " ")  # the last command: whole
    gone = subprocess.Popen([sys.executable, "-m", "ckptwatch", "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    assert gone.stdout is not None and gone.stderr is not None
    gone.stdout.close()  # the reader is gone before a byte is written (`| head -0`)
    assert gone.wait(timeout=30) == 1  # click's status for a closed pipe
    assert gone.stderr.read() == b""  # and no traceback


def _ready_layout(result) -> str:
    return next(r for r in json_log(result.stderr) if r["kind"] == "ready")["layout"]


def test_flag_beats_environment_beats_toml_beats_default(tmp_path, ckpt, env):
    base = ("run", str(ckpt), "--once", "--log-format", "json")
    assert _ready_layout(run_cli(*base, env=env, cwd=tmp_path)) == "auto"
    (tmp_path / "ckptwatch.toml").write_text('[run]\nlayout = "dcp"\n')
    assert _ready_layout(run_cli(*base, env=env, cwd=tmp_path)) == "dcp"
    with_env = {**env, "CKPTWATCH_LAYOUT": "hf"}
    assert _ready_layout(run_cli(*base, env=with_env, cwd=tmp_path)) == "hf"
    assert _ready_layout(run_cli(*base, "--layout", "tf", env=with_env, cwd=tmp_path)) == "tf"


def test_listeners_from_environment_are_colon_separated(tmp_path, ckpt, env):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        script = tmp_path / name / f"{name}-listener"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
    listeners = f"{tmp_path / 'one'}:{tmp_path / 'two'}"
    result = run_cli("run", str(ckpt), "--once", "--log-format", "json",
                     env={**env, "CKPTWATCH_LISTENERS": listeners}, cwd=tmp_path)
    ready = next(r for r in json_log(result.stderr) if r["kind"] == "ready")
    assert ready["listeners"] == ["one-listener", "two-listener"]


def test_per_listener_settings_from_toml(tmp_path, ckpt, env, records_path):
    from conftest import read_records, summary, write_listener
    from test_protocol import dcp_save

    dcp_save(ckpt, "step-1")
    write_listener(tmp_path / "listeners.d", "rec")  # subscribes to everything by its own head
    (tmp_path / "ckptwatch.toml").write_text('[listener.rec]\nevents = ["end"]\n')
    result = run_cli("run", str(ckpt), "--once", "--log-format", "json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(read_records(records_path)) == [("end", 1)]  # ./listeners.d found by default


def test_layouts_command_lists_each_layout():
    out = subprocess.run([sys.executable, "-m", "ckptwatch", "layouts"], capture_output=True, text=True).stdout
    for name in ("tf", "hf", "dcp"):
        assert any(line.startswith(name + " ") for line in out.splitlines())
    from ckptwatch.layouts import REGISTRY

    assert out.count("commits:") == len(REGISTRY)


def test_a_lone_last_pt_is_named_with_the_flag_to_pass(tmp_path, ckpt, env):
    import samplefiles

    (ckpt / "last.pt").write_bytes(samplefiles.torch_zip({"step": 5}))
    result = run_cli("run", str(ckpt), "--once", "--log-format", "json", env=env, cwd=tmp_path)
    assert result.returncode == 0
    [hint] = [r["msg"] for r in json_log(result.stderr) if "looks like a checkpoint" in r["msg"]]
    assert "last.pt" in hint and "--layout torch" in hint
