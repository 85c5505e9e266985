"""The example listeners users copy (examples/listeners/), each run end to end by a real ckptwatch.

Each is enabled as the README shows (a ``[listener.NAME]`` table naming
``examples/listeners/FILE.py:CLASS``), on Transformers-style checkpoints as
``examples/train.py`` writes them, or under ``examples/train.py`` itself.
The webhook posts to a real HTTP server on the loopback; the upload goes to a
local "remote" directory.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
from conftest import json_log, run_cli, run_once
from pylisteners import write_toml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "listeners"


def hf_save(root: Path, step: int, loss: float, w: float = 3.0, b: float = 1.0) -> Path:
    """A checkpoint as examples/train.py writes it (the Transformers Trainer's layout)."""
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"w": w, "b": b}))
    (folder / "optimizer.json").write_text(json.dumps({"lr": 0.05, "step": step}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step,
                                                          "log_history": [{"step": step, "loss": loss}]}))
    return folder


def example(name: str, cls: str, **table) -> dict:
    return {"class": f"{EXAMPLES / name}:{cls}", **table}


def test_evaluate_writes_metrics_per_checkpoint_and_not_twice(ckpt, tmp_path, env):
    """Steps: three checkpoints with known weights; the Evaluate example, then a second session
    (a new state dir: every after_save again).
    Result: metrics/step-N.json holds each checkpoint's held-out MSE (0 for the true weights);
    the second session finds them and evaluates nothing again."""
    for step, w in ((10, 0.0), (20, 2.0), (30, 3.0)):
        hf_save(ckpt, step, loss=1.0, w=w)
    write_toml(tmp_path / "ckptwatch.toml", {"evaluate": example("evaluate.py", "Evaluate", events=["after_save"])})
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 0, result.stderr
    metrics = {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in (ckpt / "metrics").glob("step-*.json")}
    assert sorted(metrics) == [10, 20, 30]
    assert metrics[30]["heldout_mse"] == pytest.approx(0.0, abs=1e-12)
    assert metrics[10]["heldout_mse"] > metrics[20]["heldout_mse"] > 0
    assert metrics[20]["checkpoint"] == str(ckpt / "checkpoint-20")
    again = run_once(ckpt, tmp_path, env, "--state-dir", str(tmp_path / "other-state"))
    assert again.returncode == 0
    assert sum("already evaluated" in r["msg"] for r in json_log(again.stderr) if r.get("kind") == "output") == 3


def test_keep_best_links_the_best_k_and_never_touches_dir(ckpt, tmp_path, env):
    """Steps: losses 1.0, 0.5, 0.7, 0.3, 0.9 at steps 10..50; KeepBest k=2 (min loss); then training
    rotates step 40 away.
    Result: best/ holds checkpoint-40 and checkpoint-20 (hard links to the same files), best.json
    ranks them; the others were never kept or were removed from best/ only; DIR's checkpoints
    all still there; checkpoint-40 survives in best/ after DIR loses it."""
    for step, loss in ((10, 1.0), (20, 0.5), (30, 0.7), (40, 0.3), (50, 0.9)):
        hf_save(ckpt, step, loss)
    best = tmp_path / "best"
    write_toml(tmp_path / "ckptwatch.toml", {"keep-best": example("keep_best.py", "KeepBest",
                                                                 args={"k": 2, "dest": str(best)})})
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in best.iterdir()) == ["best.json", "checkpoint-20", "checkpoint-40"]
    ranking = json.loads((best / "best.json").read_text())
    assert [(e["name"], e["loss"]) for e in ranking] == [("checkpoint-40", 0.3), ("checkpoint-20", 0.5)]
    kept = best / "checkpoint-40" / "model.json"
    assert kept.stat().st_ino == (ckpt / "checkpoint-40" / "model.json").stat().st_ino
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("checkpoint-")) == [
        f"checkpoint-{s}" for s in (10, 20, 30, 40, 50)]
    shutil.rmtree(ckpt / "checkpoint-40")  # training rotates it away
    assert json.loads(kept.read_text()) == {"w": 3.0, "b": 1.0}


@pytest.mark.parametrize("losses, stop_step", [
    ([1.0, 0.5, 0.7, 0.6, 0.4], 40),          # no improvement in 2 saves (patience 2)
    ([1.0, 0.5, float("nan"), 0.4, 0.3], 30),  # NaN: at once
])
def test_stop_on_divergence_asks_for_a_stop(ckpt, tmp_path, env, losses, stop_step):
    for index, loss in enumerate(losses, 1):
        hf_save(ckpt, 10 * index, loss)
    write_toml(tmp_path / "ckptwatch.toml", {"divergence": example(
        "stop_on_divergence.py", "StopOnDivergence", args={"patience": 2}, events=["after_save"])})
    stop = tmp_path / "stop.json"
    result = run_once(ckpt, tmp_path, env, "--stop-file", str(stop))
    assert result.returncode == 0, result.stderr
    body = json.loads(stop.read_text())
    assert body["step"] == stop_step and body["listeners"] == ["divergence"]
    expected = "has not improved in 2 saves" if all(math.isfinite(x) for x in losses) else "diverged"
    assert expected in body["reason"]


def test_upload_copies_each_checkpoint_with_a_manifest_of_digests_once(ckpt, tmp_path, env):
    """Steps: two checkpoints; Upload to a local "remote" directory; then a second session.
    Result: remote/checkpoint-N/ holds every file and MANIFEST.json whose digests and sizes are
    the files'; the second session uploads nothing again (the manifest is unchanged)."""
    hf_save(ckpt, 100, 0.5)
    hf_save(ckpt, 200, 0.4)
    remote = tmp_path / "remote"
    write_toml(tmp_path / "ckptwatch.toml", {"upload": example("upload.py", "Upload", args={"dest": str(remote)},
                                                               events=["after_save"])})
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 0, result.stderr
    for step in (100, 200):
        manifest = json.loads((remote / f"checkpoint-{step}" / "MANIFEST.json").read_text())
        assert manifest["step"] == step
        assert sorted(manifest["files"]) == ["model.json", "optimizer.json", "trainer_state.json"]
        for rel, entry in manifest["files"].items():
            data = (remote / f"checkpoint-{step}" / rel).read_bytes()
            assert data == (ckpt / f"checkpoint-{step}" / rel).read_bytes()
            assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    stamp = (remote / "checkpoint-100" / "MANIFEST.json").stat().st_mtime_ns
    again = run_once(ckpt, tmp_path, env, "--state-dir", str(tmp_path / "other-state"))
    assert again.returncode == 0
    assert (remote / "checkpoint-100" / "MANIFEST.json").stat().st_mtime_ns == stamp
    assert sum("already in" in r["msg"] for r in json_log(again.stderr) if r.get("kind") == "output") == 2


def test_upload_of_a_tensorflow_prefix(tmp_path, env):
    """A TF checkpoint is a prefix: its .index and .data files go up, and nothing else."""
    ckpt = tmp_path / "tf"
    ckpt.mkdir()
    (ckpt / "model.ckpt-5.index").write_bytes(b"index")
    (ckpt / "model.ckpt-5.data-00000-of-00001").write_bytes(os.urandom(1000))
    (ckpt / "model.ckpt-50.index").write_bytes(b"another prefix")
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-5"\n')
    remote = tmp_path / "remote"
    write_toml(tmp_path / "ckptwatch.toml", {"upload": example("upload.py", "Upload", args={"dest": str(remote)},
                                                               events=["after_save"])})
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (remote / "model.ckpt-5").iterdir()) == [
        "MANIFEST.json", "model.ckpt-5.data-00000-of-00001", "model.ckpt-5.index"]


class _Hook(http.server.BaseHTTPRequestHandler):
    bodies: list[dict] = []
    fail_first = 0

    def do_POST(self):  # noqa: N802 - the http.server name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        cls.bodies.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    handler = type("Hook", (_Hook,), {"bodies": [], "fail_first": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_webhook_posts_each_event_as_json_to_a_local_server(ckpt, tmp_path, env, hook_server):
    """Steps: two checkpoints; the Webhook example (events after_save and end, on_failure retry:2)
    pointed at an HTTP server on the loopback that answers 503 to the first request.
    Result: the server got after_save 1 (after a retry), after_save 2 and end, as JSON with the
    step, checkpoint and run id; exit 0."""
    server, handler = hook_server
    handler.fail_first = 1
    hf_save(ckpt, 1, 0.5)
    hf_save(ckpt, 2, 0.4)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    write_toml(tmp_path / "ckptwatch.toml", {"notify": example(
        "webhook.py", "Webhook", args={"url": url}, events=["after_save", "end"], on_failure="retry:2")})
    result = run_once(ckpt, tmp_path, env)
    assert result.returncode == 0, result.stderr
    got = [(b["event"], b["step"]) for b in handler.bodies]
    assert got == [("after_save", 1), ("after_save", 2), ("end", 2)]
    assert handler.bodies[0]["checkpoint"] == str(ckpt / "checkpoint-1")
    assert handler.bodies[-1]["last_step_handled"] is True
    run_id = next(r for r in json_log(result.stderr) if r.get("kind") == "ready")["run_id"]
    assert {b["run_id"] for b in handler.bodies} == {run_id}
    assert any(r.get("outcome") == "retried" for r in json_log(result.stderr))


def test_the_examples_together_under_the_example_trainer(tmp_path, env, hook_server):
    """examples/train.py wrapped by ckptwatch with all five examples enabled: every save is
    evaluated, ranked, uploaded and posted; training runs to its end (the loss keeps falling)."""
    server, handler = hook_server
    ckpt = tmp_path / "run"
    remote = tmp_path / "remote"
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    write_toml(tmp_path / "ckptwatch.toml", {
        "evaluate": example("evaluate.py", "Evaluate", events=["after_save", "end"]),
        "keep-best": example("keep_best.py", "KeepBest", args={"k": 2}, events=["after_save"]),
        "divergence": example("stop_on_divergence.py", "StopOnDivergence", args={"patience": 3},
                              events=["after_save"]),
        "upload": example("upload.py", "Upload", args={"dest": str(remote)}, events=["after_save"]),
        "notify": example("webhook.py", "Webhook", args={"url": url}, events=["after_save", "end"]),
    })
    result = run_cli("run", str(ckpt), "--log-format", "json", "--", sys.executable, str(REPO / "examples" / "train.py"),
                     str(ckpt), "--steps", "100", "--step-time", "0.01", "--keep", "10", env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [20, 40, 60, 80, 100]
    assert sorted(int(p.stem.split("-")[1]) for p in (ckpt / "metrics").glob("step-*.json")) == steps
    assert sorted(p.name for p in remote.iterdir()) == sorted(f"checkpoint-{s}" for s in steps)
    assert [(b["event"], b["step"]) for b in handler.bodies] == [("after_save", s) for s in steps] + [("end", 100)]
    assert sorted(p.name for p in (ckpt / "best").iterdir()) == ["best.json", "checkpoint-100", "checkpoint-80"]
    assert not (ckpt / "ckptwatch.stop").exists()
