"""The README's stopping commands, run as a new user would copy them.

The training-loop snippet of "Using it" must work in the sidecar pattern as
written (no CKPTWATCH_* variable set: only the checkpoint directory); the
`--sync` command of "Stopping training" must stop at the step asked, run from
the repository with the venv's `ckptwatch` and `python` first on PATH (as
after `pip install` in an activated venv), not through this test's python.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def code_block_after(marker: str, language: str) -> str:
    start = README.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, start)
    assert match, f"no ```{language} block after {marker!r}"
    return match.group(1)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def test_the_training_loop_snippet_stops_in_the_sidecar_pattern(tmp_path: Path) -> None:
    """Steps: the README's loop, its /ckpt the test's directory, where a sidecar's stop file waits (written
    after this process starts: its mtime is in the future). No CKPTWATCH_* variable.
    Result: the loop stops at its first check, step 1."""
    snippet = code_block_after("In the training loop, stop when asked", "python")
    assert 'stop_requested("/ckpt")' in snippet
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    stop = ckpt / "ckptwatch.stop"
    stop.write_text('{"step": 40, "listeners": ["30-stop"], "reason": "30-stop: enough", "run_id": "r"}')
    later = time.time() + 60
    os.utime(stop, (later, later))
    code = snippet.replace('"/ckpt"', repr(str(ckpt))) + "print('stopped at', step)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stopped at 1"
    os.utime(stop, (later - 3600, later - 3600))  # a leftover, older than the process: ignored
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
                         timeout=60)
    assert out.stdout.strip() == "stopped at 1000"


def test_the_sync_command_stops_at_the_step_asked(tmp_path: Path) -> None:
    line = next(line for line in code_block_after("`examples/train.py --sync` shows it", "sh").splitlines()
                if "--sync" in line)
    assert "runs/sync" in line
    command = line.replace("runs/sync", str(tmp_path / "sync"))  # not into the checkout's runs/
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=clean_env(), cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"train: stop requested at step 100 .*; stopping at step 100$", out.stdout, re.M), out.stdout
