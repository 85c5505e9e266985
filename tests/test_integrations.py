"""The training side without a framework: where the stop file is, which requests count, what it loads.

Real files in ``tmp_path``, real processes where process start matters; the
sync waits are driven by a real ``ckptwatch run`` in tests/test_training_loop.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckptwatch.integrations import StopWatcher, stop_requested
from ckptwatch.integrations.roles import resolve_role
from ckptwatch.integrations.stopfile import StopRequest, locate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_ckptwatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CKPTWATCH_"):
            monkeypatch.delenv(name)


def write_stop(path: Path, run_id: str = "r1", step: int = 7, when: float | None = None) -> Path:
    request = StopRequest(step, str(path.parent / f"checkpoint-{step}"), ["30-stop"], "30-stop: enough", run_id)
    path.write_text(json.dumps(request.to_json()))
    if when is not None:
        os.utime(path, (when, when))
    return path


def test_import_loads_no_framework_and_nothing_of_the_watcher(tmp_path: Path) -> None:
    """`import ckptwatch.integrations`, a StopWatcher at work and stop_requested load no framework, no click,
    rich or watchdog, and no watcher module: a training image pays only for what it uses."""
    (tmp_path / "ckptwatch.stop").write_text("{}")
    code = (
        "import json, sys\n"
        "import ckptwatch.integrations as integrations\n"
        f"w = integrations.StopWatcher({str(tmp_path / 'other')!r}, sync=True, timeout=0)\n"
        "w.should_stop(1); w.should_stop(2, saved=True)\n"
        f"integrations.stop_requested({str(tmp_path)!r})\n"
        "from ckptwatch import stop_requested\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "ckptwatch: sync: step 2: no verdict within 0 s" in out.stderr  # no logging set up: stderr
    loaded = set(json.loads(out.stdout))
    heavy = {"click", "rich", "watchdog", "torch", "tensorflow", "keras", "transformers", "lightning",
             "pytorch_lightning", "numpy", "jax", "subprocess", "tempfile"}
    assert not {m for m in loaded if m.split(".")[0] in heavy}
    watcher_side = {m for m in loaded if m.startswith("ckptwatch.") and not m.startswith("ckptwatch.integrations")}
    assert watcher_side == set(), watcher_side


def test_sidecar_pattern_finds_the_stop_file_from_ckptwatch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The bug a new user hit: with only CKPTWATCH_DIR (no CKPTWATCH_STOP_FILE), DIR/ckptwatch.stop counts."""
    assert not stop_requested()
    monkeypatch.setenv("CKPTWATCH_DIR", str(tmp_path))
    assert not stop_requested()
    write_stop(tmp_path / "ckptwatch.stop")
    assert stop_requested()
    assert StopWatcher().should_stop(1) is not None


def test_a_checkpoint_dir_or_the_stop_file_may_be_given(tmp_path: Path) -> None:
    stop = write_stop(tmp_path / "ckptwatch.stop")
    assert stop_requested(tmp_path) and stop_requested(str(stop))
    by_dir, by_file = StopWatcher(tmp_path), StopWatcher(stop)
    assert by_dir.stop_file == by_file.stop_file == str(stop)
    assert by_dir.directory == by_file.directory == str(tmp_path)
    assert by_dir.should_stop(3).step == 7
    custom = tmp_path / "please-stop"  # a --stop-file of another name, not there yet
    watcher = StopWatcher(custom)
    assert watcher.should_stop(1) is None
    write_stop(custom)
    assert watcher.should_stop(2).listeners == ["30-stop"]


def test_a_dir_that_appears_later_is_taken_as_the_checkpoint_dir(tmp_path: Path) -> None:
    later = tmp_path / "ckpt"
    watcher = StopWatcher(later)
    assert watcher.should_stop(1) is None
    later.mkdir()
    assert watcher.should_stop(2) is None  # decided: a directory; its stop file is looked at from now on
    write_stop(later / "ckptwatch.stop")
    assert watcher.should_stop(3) is not None
    assert watcher.stop_file == str(later / "ckptwatch.stop")


def test_environment_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPTWATCH_DIR", str(tmp_path / "dir"))
    assert locate().path == str(tmp_path / "dir") and locate().is_dir
    monkeypatch.setenv("CKPTWATCH_STOP_FILE", str(tmp_path / "elsewhere.stop"))
    assert StopWatcher().stop_file == str(tmp_path / "elsewhere.stop")
    assert StopWatcher(tmp_path / "given").stop_file == str(tmp_path / "given")


def test_a_leftover_older_than_the_process_is_ignored_and_a_new_one_counts(tmp_path: Path) -> None:
    stop = write_stop(tmp_path / "ckptwatch.stop", when=time.time() - 3600)
    watcher = StopWatcher(tmp_path)
    assert watcher.should_stop(1) is None
    assert not stop_requested(tmp_path)
    write_stop(stop, step=9)
    assert watcher.should_stop(2).step == 9


def test_only_this_runs_requests_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of another watcher session is ignored when training knows its own run id; later
    sessions of the same watcher (DIR deleted and created again: RUN.2) count; a file by hand counts."""
    monkeypatch.setenv("CKPTWATCH_RUN_ID", "run-a")
    stop = write_stop(tmp_path / "ckptwatch.stop", run_id="run-b")
    watcher = StopWatcher(tmp_path)
    assert watcher.should_stop(1) is None and not stop_requested(tmp_path)
    write_stop(stop, run_id="run-a.2", step=11)
    assert stop_requested(tmp_path)
    assert watcher.should_stop(2).step == 11
    assert StopWatcher(tmp_path, run_id="run-c").should_stop(1) is None
    stop.write_text("")  # `touch DIR/ckptwatch.stop` by a person
    assert StopWatcher(tmp_path, run_id="run-c").should_stop(1).reason.startswith("stop file written by hand")


def test_every_n_steps_and_one_stat_per_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_stop(tmp_path / "ckptwatch.stop")
    watcher = StopWatcher(tmp_path, every_n_steps=4)
    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        stats.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    assert [watcher.should_stop(s) is not None for s in (1, 2, 3)] == [False, False, False]
    assert stats == []
    assert watcher.should_stop(4) is not None
    assert stats == [str(tmp_path / "ckptwatch.stop")]
    assert watcher.should_stop(5) is not None  # once seen, it stays (and costs nothing)
    assert len(stats) == 1
    quiet = StopWatcher(tmp_path / "nothing-here")
    stats.clear()
    for step in range(10):
        quiet.should_stop(step)
    assert len(stats) == 10


def test_no_path_anywhere_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher = StopWatcher()
    assert watcher.should_stop(1) is None and watcher.should_stop(2) is None
    assert caplog.text.count("no stop file known") == 1


def test_sync_without_a_watcher_times_out_with_a_warning_then_stops_waiting(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """sync=True with no watcher: the first save waits `timeout`, warns, training goes on; later saves
    do not wait again until the progress file moves."""
    watcher = StopWatcher(tmp_path, sync=True, timeout=0.3)
    started = time.monotonic()
    assert watcher.should_stop(10, saved=True) is None
    first = time.monotonic() - started
    assert first >= 0.3
    assert "no verdict within 0.3 s" in caplog.text and "no progress file" in caplog.text
    assert "training goes on" in caplog.text
    caplog.clear()
    assert watcher.should_stop(20, saved=True) is None
    assert "no verdict" not in caplog.text  # returned at once, silently


def test_describe_says_who_asked_at_which_step_and_why() -> None:
    request = StopRequest(100, "/c/checkpoint-100", ["30-stop"], "30-stop: loss diverged", "r")
    assert request.describe() == "listener 30-stop asked for a stop at step 100: loss diverged"
    assert StopRequest.from_json({"listener": "x", "step": True}).listeners == ["x"]


@pytest.mark.parametrize("environ, role", [
    ({}, "chief"),
    ({"RANK": "0"}, "chief"),
    ({"RANK": "3"}, "worker"),
    ({"JOB_COMPLETION_INDEX": "1"}, "worker"),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                               "task": {"type": "chief", "index": 0}})}, "chief"),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                               "task": {"type": "worker", "index": 0}})}, "worker"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}),
      "RANK": "1"}, "chief"),
    ({"TF_CONFIG": "not json", "RANK": "1"}, "worker"),
])
def test_role_auto(environ: dict[str, str], role: str) -> None:
    assert resolve_role("auto", environ)[0] == role
    assert resolve_role("worker", environ)[0] == "worker"


def test_a_stop_file_at_a_url_is_read_through_fsspec(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint prefix in an object store (fsspec's in-memory store here): the stop file under it is
    read with one request a check; the environment's URL (CKPTWATCH_STOP_FILE) is kept as a URL."""
    fsspec = pytest.importorskip("fsspec")
    store = fsspec.filesystem("memory")
    watcher = StopWatcher("memory://bucket/run", since=0)
    assert watcher.stop_file == "memory://bucket/run/ckptwatch.stop"
    assert watcher.should_stop(1) is None
    body = StopRequest(20, "memory://bucket/run/checkpoint-20", ["30-stop"], "30-stop: enough", "r").to_json()
    store.pipe_file("/bucket/run/ckptwatch.stop", json.dumps(body).encode())
    assert watcher.should_stop(2).step == 20
    monkeypatch.setenv("CKPTWATCH_STOP_FILE", "memory://bucket/run/ckptwatch.stop")
    assert StopWatcher().stop_file == "memory://bucket/run/ckptwatch.stop"
    assert stop_requested(since=0)
    assert not stop_requested("memory://bucket/other", since=0)
