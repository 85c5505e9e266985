"""Memory of warm Python class listeners: the RSS of each listener's own process.

    python bench/warmrss.py [--tf-python PYTHON] [--saves 3]

Starts a real ``ckptwatch run`` on a fresh directory with every example
listener of ``examples/listeners/`` and the class ``ckptwatch init`` writes
(each hosted in a process of its own), commits a few Transformers-style
saves, waits until every listener has handled each, and reads ``VmRSS`` and
``Pss`` of each listener's process from /proc. With ``--tf-python`` (a Python
that has TensorFlow and ckptwatch's dependencies, e.g. the interop venv's),
a second run measures TensorFlow's docstring example listener, hosted
unchanged (the watcher then runs under that Python, as it must).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLES = REPO / "examples" / "listeners"

TF_LISTENER = '''
import tensorflow as tf


class ExampleCheckpointSaverListener(tf.compat.v1.train.CheckpointSaverListener):
  def begin(self):
    print('Starting the session.')
  def before_save(self, session, global_step_value):
    print('About to write a checkpoint')
  def after_save(self, session, global_step_value):
    print('Done writing checkpoint.')
  def end(self, session, global_step_value):
    print('Done with the session.')
'''


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def hf_save(root: Path, step: int, loss: float) -> None:
    folder = root / f"checkpoint-{step}"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"w": 3.0, "b": 1.0}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step,
                                                          "log_history": [{"step": step, "loss": loss}]}))


def memory(pid: int) -> tuple[float, float]:
    rss = pss = 0.0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, pss


def measure(python: str, tables: dict[str, dict], saves: int, work: Path) -> list[tuple[str, int, float, float]]:
    ckpt = work / "ckpt"
    ckpt.mkdir(parents=True)
    lines = []
    for name, table in tables.items():
        lines.append(f'[listener."{name}"]')
        for key, value in table.items():
            if isinstance(value, dict):
                value = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
            else:
                value = json.dumps(value)
            lines.append(f"{key} = {value}")
    (work / "ckptwatch.toml").write_text("\n".join(lines) + "\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([python, "-m", "ckptwatch", "run", str(ckpt), "--log-format", "json"], cwd=work,
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    pids: dict[str, int] = {}
    log: list[str] = []
    done: dict[str, int] = {}
    try:
        assert proc.stderr is not None
        committed = 0
        for line in proc.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                log.append(line)
                continue
            log.append(record.get("msg", ""))
            if record.get("kind") == "ready" and committed == 0:
                for step in range(1, saves + 1):
                    hf_save(ckpt, step * 100, 1.0 / step)
                    time.sleep(0.2)
                committed = saves
            found = re.match(r"started its process \(pid (\d+)", record.get("msg", "").split(": ", 1)[-1])
            if found:
                pids[record["listener"]] = int(found.group(1))
            if record.get("kind") == "run" and record.get("event") == "after_save":
                done[record["listener"]] = done.get(record["listener"], 0) + 1
                if record.get("outcome") not in ("done", "stop"):
                    print(f"  {record['msg']}", file=sys.stderr)
            if len(done) == len(tables) and all(n >= saves for n in done.values()):
                break
        if len(pids) < len(tables):
            raise SystemExit("not every listener started:\n" + "".join(f"  {line}\n" for line in log[-20:]))
        return [(name, pid, *memory(pid)) for name, pid in sorted(pids.items())]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", help="a Python with TensorFlow (and click, rich): measure a TF listener too")
    parser.add_argument("--saves", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from ckptwatch.tools.init import CLASS

    work = Path(tempfile.mkdtemp(prefix="ckptwatch-warmrss-"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (work / "init_example.py").write_text(CLASS)
        tables = {
            "init-example": {"class": f"{work}/init_example.py:Example", "events": ["after_save"]},
            "evaluate": {"class": f"{EXAMPLES}/evaluate.py:Evaluate", "events": ["after_save"]},
            "keep-best": {"class": f"{EXAMPLES}/keep_best.py:KeepBest", "events": ["after_save"]},
            "divergence": {"class": f"{EXAMPLES}/stop_on_divergence.py:StopOnDivergence", "events": ["after_save"],
                           "args": {"patience": 100}},
            "upload": {"class": f"{EXAMPLES}/upload.py:Upload", "args": {"dest": str(work / "remote")},
                       "events": ["after_save"]},
            "webhook": {"class": f"{EXAMPLES}/webhook.py:Webhook", "events": ["after_save"],
                        "args": {"url": f"http://127.0.0.1:{server.server_address[1]}/"}},
        }
        rows = measure(sys.executable, tables, args.saves, work / "a")
        if args.tf_python:
            (work / "tf_listener.py").write_text(TF_LISTENER)
            rows += measure(args.tf_python, {"tf-example": {
                "class": f"{work}/tf_listener.py:ExampleCheckpointSaverListener"}}, args.saves, work / "b")
        print(f"{'listener':<14} {'pid':>7} {'RSS MiB':>8} {'PSS MiB':>8}")
        for name, pid, rss, pss in rows:
            print(f"{name:<14} {pid:>7} {rss:>8.1f} {pss:>8.1f}")
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
