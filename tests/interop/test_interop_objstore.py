"""The real frameworks saving to an object store: DCP's FsspecWriter and Lightning's ModelCheckpoint to s3://.

Each test starts moto's S3 server on the loopback, then runs the framework
(the interop venv, with s3fs) as the command wrapped by a real ``ckptwatch run
s3://bucket/PREFIX --poll 0.2 -- WRITER``. Both find the server through
``AWS_ENDPOINT_URL``. The listener records each event and, at ``after_save``,
loads the checkpoint from the bucket with the framework's own reader
(``writers/load_s3.py``: ``dcp.load`` with ``FsspecReader``, ``torch.load`` of
the object). Then: every save the framework reported gets one before_save and
one after_save, in order, and loads; end carries the last step.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import read_records

from .conftest import WRITERS

pytestmark = pytest.mark.interop

pytest.importorskip("moto")
from objservers import S3Server  # noqa: E402

LISTENER = r'''#!{python}
import json, os, subprocess, sys
event = sys.argv[1]
payload = json.loads(sys.stdin.read() or "null")
record = {{"event": event, "step": payload["step"], "checkpoint": payload.get("checkpoint"),
          "env_checkpoint": os.environ.get("CKPTWATCH_CHECKPOINT")}}
code = 0
if event == "after_save":
    proc = subprocess.run([os.environ["INTEROP_PYTHON"], os.environ["INTEROP_LOADER"], os.environ["INTEROP_FRAMEWORK"],
                           payload["checkpoint"]], capture_output=True, text=True, timeout=300)
    found = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("STEP ")]
    record["load"] = {{"ok": proc.returncode == 0, "step": int(found[0]) if found else None,
                      "error": (proc.stderr.strip().splitlines() or [""])[-1]}}
    code = 0 if proc.returncode == 0 else 1
with open(os.environ["RECORD_FILE"], "a") as out:
    out.write(json.dumps(record) + "\n")
sys.exit(code)
'''
SAVED = re.compile(r"^SAVED (\d+) (\S+)$")


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server().start()
    server.filesystem().mkdir("interop")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def interop_s3fs(interop_py: Path) -> Path:
    """The interop venv has s3fs (tests/interop/requirements.txt); an older build does not: say how to fix."""
    import subprocess

    if subprocess.run([str(interop_py), "-c", "import s3fs"], capture_output=True).returncode != 0:
        pytest.skip(f"{interop_py} has no s3fs: rebuild the interop venv (make interop-venv) from "
                    "tests/interop/requirements.txt")
    return interop_py


@pytest.mark.parametrize("framework,writer,layout", [("dcp", "torch_dcp_s3", "dcp"),
                                                      ("lightning", "lightning_s3", "lightning")])
def test_framework_saves_to_s3(framework, writer, layout, s3_server, tmp_path, watch, interop_s3fs):
    """Steps: the framework saves 3 times to s3://interop/PREFIX under a live ``ckptwatch run URL``
    (auto layout); the listener loads each checkpoint from the bucket at after_save.
    Result: begin; per reported save one before_save and one after_save (URL paths), in order, each
    loading with the framework's reader and holding its step; end with the last step; exit 0."""
    url = f"s3://interop/{framework}-{tmp_path.name}"
    listener = tmp_path / "load"
    listener.write_text(LISTENER.format(python=sys.executable))
    listener.chmod(0o755)
    interop_py = interop_s3fs
    env = {**s3_server.env(), "INTEROP_PYTHON": str(interop_py), "INTEROP_LOADER": str(WRITERS / "load_s3.py"),
           "INTEROP_FRAMEWORK": framework, "XDG_STATE_HOME": str(tmp_path / "state")}
    w = watch(url, "-l", str(listener), "--poll", "0.2", "--",
              str(interop_py), str(WRITERS / f"{writer}.py"), url, "--saves", "3", "--pace", "1.0", extra_env=env)
    code = w.wait_exit(timeout=300)
    saves = [(int(m.group(1)), m.group(2)) for m in map(SAVED.match, w.stdout.splitlines()) if m]
    records = read_records(tmp_path / "records.jsonl")
    why = "\n".join(w.lines[-40:]) + f"\nrecords: {records}\nsaves: {saves}"
    assert code == 0, why
    assert len(saves) == 3, why
    assert [(r["event"], r["step"]) for r in records] == [("begin", None)] + [
        pair for step, _ in saves for pair in (("before_save", step), ("after_save", step))] + [("end", saves[-1][0])], why
    after = [r for r in records if r["event"] == "after_save"]
    assert [r["checkpoint"] for r in after] == [path for _, path in saves], why
    assert [r["env_checkpoint"] for r in after] == [path for _, path in saves], why
    assert all(r["load"]["ok"] and r["load"]["step"] == step for r, (step, _) in zip(after, saves)), why
    assert any(r.get("layout") == layout and "detected" in r.get("msg", "") for r in w.records), why
