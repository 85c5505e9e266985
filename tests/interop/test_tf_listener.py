"""TensorFlow's own listener classes, unchanged, stop a real TensorFlow training run out of process.

The watcher itself runs under the interop venv's python (a Python class
listener runs under the watcher's interpreter, and this one imports
TensorFlow), as ``PYTHONPATH=REPO python -m ckptwatch run DIR -l FILE:CLASS
-- python writers/tf1_stoppable.py DIR``. tests/interop/requirements.txt
holds ckptwatch's own dependencies for that.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from .conftest import REPO, WRITERS

pytestmark = pytest.mark.interop

# In the style of the example in TensorFlow's CheckpointSaverListener docstring
# (tensorflow/python/training/basic_session_run_hooks.py), unchanged in its
# signatures; it decides to stop training at its third save.
TF_LISTENER = '''
import json, os, sys

import tensorflow as tf


class ExampleCheckpointSaverListener(tf.compat.v1.train.CheckpointSaverListener):

  def begin(self):
    # You can add ops to the graph here.
    print('Starting the session.')
    self.your_tensor = tf.constant(1.0)
    self.saves = 0
    self._record('begin', None, None)

  def before_save(self, session, global_step_value):
    print('About to write a checkpoint')
    self._record('before_save', session, global_step_value)

  def after_save(self, session, global_step_value):
    print('Done writing checkpoint.')
    self.saves += 1
    self._record('after_save', session, global_step_value)
    if self.saves >= 3:  # decided_to_stop_training()
      return True

  def end(self, session, global_step_value):
    print('Done with the session.')
    self._record('end', session, global_step_value)

  def _record(self, event, session, step):
    with open(os.environ['RECORD_FILE'], 'a') as out:
      out.write(json.dumps({'event': event, 'step': step, 'session': repr(session), 'pid': os.getpid(),
                            'saves': self.saves, 'has_tensor': hasattr(self, 'your_tensor')}) + '\\n')


class SessionToucher(tf.compat.v1.train.CheckpointSaverListener):
  """Uses the session, as in-process listeners may: out of process there is none."""

  def after_save(self, session, global_step_value):
    session.run(tf.compat.v1.train.get_global_step())
'''


def _maps_hold(pid: int, needle: str) -> bool:
    with open(f"/proc/{pid}/maps") as handle:
        return needle in handle.read()


def test_tensorflow_listener_class_unchanged_stops_real_tf_training(interop_py: Path, tmp_path: Path) -> None:
    """Steps: a TF1 MonitoredTrainingSession that saves every 5 steps (up to 40 saves) and stops when
    ckptwatch's stop file appears, wrapped by ckptwatch run running under the interop python with
    two TensorFlow listener classes: TensorFlow's docstring example (stops at its third save) and
    one that touches the session.
    Result: the example's begin ran once and its state (self.saves, self.your_tensor) lived across
    saves in one process, with session None and the step as global_step_value; it asked for a stop
    at step 10 (and at each save after, as its code says, until training saw the file); training
    stopped well before its 40 saves; end came last with the last step; the
    watcher never imported TensorFlow; the session toucher's runs failed with a line saying the
    session does not exist out of process."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    listener = tmp_path / "tf_listeners.py"
    listener.write_text(TF_LISTENER)
    (tmp_path / "ckptwatch.toml").write_text(
        '[listener.toucher]\nclass = "tf_listeners.py:SessionToucher"\nevents = ["after_save"]\n')
    records = tmp_path / "records.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
    env.update(PYTHONPATH=str(REPO), RECORD_FILE=str(records), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_ENABLE_ONEDNN_OPTS="0")
    proc = subprocess.Popen(
        [str(interop_py), "-m", "ckptwatch", "run", str(ckpt), "-l", f"{listener}:ExampleCheckpointSaverListener",
         "--log-format", "json", "--", str(interop_py), str(WRITERS / "tf1_stoppable.py"), str(ckpt),
         "--saves", "40", "--pace", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path, text=True,
    )
    log: list[dict] = []
    tf_in_watcher: list[bool] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            log.append(record)
            if record.get("kind") == "run" and record.get("event") == "after_save" and not tf_in_watcher:
                tf_in_watcher.append(_maps_hold(proc.pid, "tensorflow"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timer = threading.Timer(600, proc.kill)
    timer.start()
    assert proc.stdout is not None
    out = proc.stdout.read()  # stderr is the reader's alone
    proc.wait()
    timer.cancel()
    reader.join(10)
    lines = "\n".join(r.get("msg", "") for r in log[-60:])
    assert proc.returncode == 1, f"exit {proc.returncode} (1: the toucher failed)\n{lines}"
    saved = [int(m.group(1)) for m in re.finditer(r"^SAVED (\d+) ", out, re.M)]
    stopped = re.search(r"^STOPPED (\d+)", out, re.M)
    assert stopped, f"training was not stopped by the stop file:\n{out}\n{lines}"
    assert saved[:3] == [0, 5, 10] and len(saved) < 40, saved

    got = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["event"] for r in got][0] == "begin" and [r["event"] for r in got].count("begin") == 1
    assert got[-1]["event"] == "end" and got[-1]["step"] == saved[-1]
    assert len({r["pid"] for r in got}) == 1
    after = [r for r in got if r["event"] == "after_save"]
    assert [r["step"] for r in after] == saved
    assert [r["saves"] for r in after] == list(range(1, len(saved) + 1))
    assert all(r["session"] == "None" and r["has_tensor"] for r in got if r["event"] != "begin")
    stops = [r for r in log if r.get("kind") == "stop"]
    assert stops[0]["step"] == 10, [(r["step"], r["msg"]) for r in stops]
    assert stops[0]["listeners"] == [f"tf_listeners.py:ExampleCheckpointSaverListener"]
    assert int(stopped.group(1)) >= 10
    assert json.loads((ckpt / "ckptwatch.stop").read_text())["listeners"] == stops[-1]["listeners"]
    assert tf_in_watcher == [False], "the watcher imported TensorFlow"
    toucher = [r for r in log if r.get("kind") == "run" and r.get("listener") == "toucher"]
    # Rotation (max_to_keep=3) may take a checkpoint away before the toucher's turn: vanished, not failed.
    assert {r["outcome"] for r in toucher} <= {"failed", "vanished"} and any(r["outcome"] == "failed" for r in toucher)
    hint = [r["msg"] for r in log if r.get("kind") == "output" and r.get("listener") == "toucher"]
    assert any("the session does not exist out of process" in m for m in hint), hint[-5:]
