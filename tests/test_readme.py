"""The README's "Writing listeners" examples, run as a new user would copy them.

The files come out of README.md (the blocks marked ``readme-file``), go into
a fresh directory, and the README's command runs there: once as
``.venv/bin/ckptwatch`` with a PATH that does not hold the venv (as ``make
demo`` starts it) and once as ``python -m ckptwatch``, without PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def readme_files() -> dict[str, str]:
    found = re.findall(r"<!-- readme-file: (\S+) -->\n```\w*\n(.*?)```", README, re.S)
    assert len(found) >= 2, "the README lost its listener examples"
    return dict(found)


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CKPTWATCH_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = SYSTEM_PATH
    return env


def copy_examples(where: Path) -> None:
    for rel, text in readme_files().items():
        path = where / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not rel.endswith(".py"):
            path.chmod(0o755)  # "made executable (chmod +x)"


def readme_command(prefix: str) -> list[str]:
    line = next(line for line in README.splitlines() if line.startswith(prefix))
    return line.split("#")[0].split()


@pytest.mark.parametrize("how", ["venv-bin", "python-m"])
def test_the_writing_listeners_examples_run_as_written(tmp_path, how):
    """Steps: the two files from the README in listeners.d/; the README's simulate command.
    Result: the class listener's object saw each save (state on self) and end; the script asked
    for a stop at step 200 and the fake training stopped there; exit 0."""
    copy_examples(tmp_path)
    command = readme_command("ckptwatch simulate --saves")
    ckptwatch = VENV_BIN / "ckptwatch"
    assert ckptwatch.exists(), f"{ckptwatch} missing: make .venv/.installed"
    argv = [str(ckptwatch)] if how == "venv-bin" else [sys.executable, "-m", "ckptwatch"]
    result = subprocess.run([*argv, *command[1:], "--log-format", "json"], cwd=tmp_path, env=user_env(),
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    best = [r["msg"] for r in log if r.get("kind") == "output" and r["listener"] == "40-best.py"]
    assert best[:2] == ["step 100: 1 checkpoint(s) so far", "step 200: 2 checkpoint(s) so far"]
    assert best[-1].startswith("saw steps [100, 200") and best[-1].endswith("handled: True")
    stops = [r for r in log if r.get("kind") == "stop"]
    assert stops and stops[0]["step"] == 200 and stops[0]["listeners"] == ["30-stop-at-200"]
    assert "the stop file is there" in result.stdout
    assert [r["msg"] for r in log if r["level"] in ("warning", "error")] == []


def test_a_serve_script_with_env_python3_finds_ckptwatch_when_started_from_the_venv_bin(tmp_path):
    """The trial of the issue: a serve() listener with #!/usr/bin/env python3, the watcher started
    as .venv/bin/ckptwatch with a PATH that does not hold the venv: the script's python is the
    venv's (it imports ckptwatch), so every event runs."""
    d = tmp_path / "listeners.d"
    d.mkdir()
    script = d / "50-eval"
    script.write_text("#!/usr/bin/env python3\n# ckptwatch: events=after_save\n"
                      "from ckptwatch import CheckpointSaverListener\nfrom ckptwatch.listener import serve\n"
                      "class Eval(CheckpointSaverListener):\n    def after_save(self, event):\n"
                      "        print(f'evaluating step {event.step}')\nserve(Eval())\n")
    script.chmod(0o755)
    result = subprocess.run([str(VENV_BIN / "ckptwatch"), "simulate", "--saves", "2", "--every", "0.1",
                             "--log-format", "json"], cwd=tmp_path, env=user_env(), capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ModuleNotFoundError" not in result.stderr
    assert result.stderr.count("evaluating step") == 2


def test_every_tool_command_in_the_readme_section_exists():
    section = README[README.index("## Writing listeners"):README.index("### Policy")]
    for command in ("init", "check", "simulate", "fire after_save"):
        assert f"ckptwatch {command}" in section
