"""Every major framework, proven live.

Each test: the real framework (its own venv: ``$CKPTWATCH_INTEROP_PYTHON``)
trains a tiny model and saves several times, as the command wrapped by a real
``ckptwatch run DIR -l LISTENER --log-format json -- WRITER`` (the package under
test, auto-detected layout, no ``--layout``). The listener records every event
and, at ``after_save``, loads the checkpoint with the framework's own loader
(writers/loaders.py) right then: through the warm loader (writers/loadserver.py,
the frameworks already imported, so the read starts milliseconds after the
event), or, in one test, by running ``loaders.py`` cold.

Then the event stream is checked against the saves the writer reported
(``SAVED <step> <path>`` on its stdout): begin first, end last with the last
step; one before_save then one after_save per reported save, in order, never
doubled, no after_save for anything the writer did not report (``last.ckpt``,
temp names); every after_save loaded; a save rotated away before its turn is
reported as vanished by ckptwatch (never failed, never silently missing).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import read_records

from .conftest import KERAS_UNITS, WRITERS

pytestmark = pytest.mark.interop

LISTENER = r'''#!{python}
"""Interop listener: record each event; at after_save, load the checkpoint now with the framework's loader."""
import json, os, socket, subprocess, sys, time

event = sys.argv[1]
payload = json.loads(sys.stdin.read() or "null")
record = {{
    "event": event, "step": payload["step"], "checkpoint": payload.get("checkpoint"),
    "observed": payload.get("observed"), "layout": payload.get("layout"),
    "last_step_handled": payload.get("last_step_handled"), "retry": payload.get("retry"), "time": time.time(),
}}
code = 0
if event == "after_save":
    path, framework = payload["checkpoint"], os.environ["INTEROP_FRAMEWORK"]
    time.sleep(float(os.environ.get("INTEROP_LOAD_DELAY") or 0))
    sock = os.environ.get("INTEROP_LOADER_SOCKET")
    try:
        if sock:  # warm: the frameworks are imported already, the read starts now
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(120)
                conn.connect(sock)
                conn.sendall((json.dumps({{"framework": framework, "path": path}}) + "\n").encode())
                result = json.loads(conn.makefile("rb").readline())
        else:  # cold: python loaders.py FRAMEWORK PATH with the interop venv's python
            proc = subprocess.run([os.environ["INTEROP_PYTHON"], os.environ["INTEROP_LOADERS"], framework, path],
                                  capture_output=True, text=True, timeout=300)
            lines = proc.stderr.strip().splitlines()
            result = {{"ok": proc.returncode == 0, "step": None,
                      "error": None if proc.returncode == 0 else (lines[-1] if lines else f"exit {{proc.returncode}}")}}
    except Exception as exc:
        result = {{"ok": False, "step": None, "error": f"loader unreachable: {{type(exc).__name__}}: {{exc}}"}}
    result["exists_after"] = os.path.lexists(path) or os.path.lexists(path + ".index")
    record["load"] = result
    if not result["ok"]:
        print(result["error"])
        code = 1
with open(os.environ["RECORD_FILE"], "a") as out:
    out.write(json.dumps(record) + "\n")
sys.exit(code)
'''

LISTENER_NAME = "load"
SAVED = re.compile(r"^SAVED (-?\d+) (.+)$")


@dataclass
class Case:
    writer: str  # writers/<writer>.py
    framework: str  # loaders.py name
    layout: str  # what auto-detection must choose
    saves: int
    pace: float = 0.3
    args: tuple[str, ...] = ()
    rotates: bool = False  # the framework deletes old checkpoints (they may vanish before their turn)
    warm: bool = True  # the warm loader; False: python loaders.py per load
    tmpdir_elsewhere: bool = False  # TMPDIR for the writer on another file system (a tmpfs)
    env: dict[str, str] = field(default_factory=dict)  # for the writer
    load_delay: float = 0.0  # the listener waits this long before loading (to make rotation win)
    forced: bool = False  # pass --layout (auto-detection cannot know this DIR: see the case)


CASES = {
    # TF1 Saver(sharded=True, max_to_keep=3) under MonitoredTrainingSession: first save at step 0
    "tf1_saver_sharded": Case("tf1_saver", "tf1", "tf", saves=4, rotates=True),
    # TF2 CheckpointManager(max_to_keep=3), 5 saves: two rotated out
    "tf2_manager_rotation": Case("tf2_manager", "tf2", "tf", saves=5, rotates=True),
    # Keras 3 ModelCheckpoint, .weights.h5 written in place (HDF5, no temp name); ~4 MiB each
    "keras_model_checkpoint": Case("keras_ckpt", "keras", "keras", saves=4,
                                   env={"INTEROP_KERAS_UNITS": KERAS_UNITS}),
    # torch.save to model_<step>.pt, in place; 16 MiB each, so that a save takes a while
    "torch_save_numbered": Case("torch_save", "torch", "torch", saves=4, args=("--mb", "16")),
    # torch.save rewriting last.pt in place: each rewrite is a save, its step read from the content.
    # --layout torch: a DIR holding only last.pt names no layout (no number in the name; by design,
    # tests/test_layouts_files.py::test_not_detected), so auto-detection would wait forever
    # pace 1 s: the listener loads last.pt while it stands still; a rewrite in place under a slow load (a busy
    # 2-core CI machine took over 0.3 s) breaks the read, which no watcher can prevent (a hard-link pin shares
    # the data)
    "torch_save_last_inplace": Case("torch_save", "torch", "torch", saves=4, pace=1.0,
                                    args=("--last", "--mb", "16"), forced=True),
    # torch.distributed.checkpoint, step-N/.metadata renamed in
    "torch_dcp": Case("torch_dcp", "dcp", "dcp", saves=4),
    # the same, with a listener 2 s slow: rotation deletes checkpoints before (or while) it loads them;
    # they must be reported vanished, never failed
    "tf2_manager_rotation_slow_listener": Case("tf2_manager", "tf2", "tf", saves=6, pace=0.1, rotates=True,
                                               load_delay=2.0),
    # Transformers Trainer, save_total_limit=2
    "hf_trainer_total_limit": Case("hf_trainer", "hf", "hf", saves=4, rotates=True),
    # Lightning ModelCheckpoint(save_top_k=2, save_last=True), TMPDIR on DIR's file system: rename
    "lightning_save_last": Case("lightning_ckpt", "lightning", "lightning", saves=4, rotates=True,
                                args=("--mb", "16")),
    # the same with TMPDIR on a tmpfs: fsspec's shutil.move copies each .ckpt in place
    "lightning_save_last_tmpfs_copy": Case("lightning_ckpt", "lightning", "lightning", saves=4, rotates=True,
                                           args=("--mb", "16"), tmpdir_elsewhere=True),
    # Orbax CheckpointManager(max_to_keep=2): <step>.orbax-checkpoint-tmp renamed to <step>
    "orbax_manager": Case("orbax_manager", "orbax", "orbax", saves=4, rotates=True),
    # DeepSpeed engine.save_checkpoint (CPU, gloo, one process, ZeRO 0, SGD): global_stepN/ filled, then
    # `latest` rewritten in place to name it; 8 MiB model states per save
    "deepspeed_save_checkpoint": Case("deepspeed_ckpt", "deepspeed", "deepspeed", saves=4, args=("--mb", "8")),
    # the listener runs `python loaders.py dcp PATH` itself (the cold path, 2-5 s a load)
    "torch_dcp_cold_loader_cli": Case("torch_dcp", "dcp", "dcp", saves=3, warm=False),
}


@dataclass
class Outcome:
    case: Case
    ckpt: Path
    code: int
    saves: list[tuple[int, str]]
    records: list[dict[str, Any]]
    log: list[dict[str, Any]]
    lines: list[str]
    notes: list[str] = field(default_factory=list)

    def runs(self, event: str, outcome: str) -> list[dict[str, Any]]:
        return [r for r in self.log if r.get("kind") == "run" and r.get("listener") == LISTENER_NAME
                and r.get("event") == event and r.get("outcome") == outcome]

    def explain(self) -> str:
        stream = "\n".join(
            f"  {r['event']:<11} step={r['step']} {r['checkpoint'] or ''}"
            + (f" observed={r['observed']}" if r["event"] == "before_save" else "")
            + (f" load={'ok' if r['load']['ok'] else r['load']['error']}" if "load" in r else "")
            for r in self.records
        )
        saves = "\n".join(f"  SAVED {s} {p}" for s, p in self.saves)
        log = "\n".join(self.lines[-60:])
        return f"ckptwatch exit {self.code}\nlistener records:\n{stream}\nwriter:\n{saves}\nlog (tail):\n{log}"


def run_case(case: Case, tmp_path: Path, watch, interop_py: Path, request: pytest.FixtureRequest) -> Outcome:  # noqa: ANN001
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    listeners = tmp_path / "listeners"
    listeners.mkdir()
    listener = listeners / LISTENER_NAME
    listener.write_text(LISTENER.format(python=sys.executable))
    listener.chmod(0o755)
    extra_env = {
        "INTEROP_FRAMEWORK": case.framework,
        "INTEROP_PYTHON": str(interop_py),
        "INTEROP_LOADERS": str(WRITERS / "loaders.py"),
        "INTEROP_LOAD_DELAY": str(case.load_delay),
    }
    if case.warm:
        extra_env["INTEROP_LOADER_SOCKET"] = str(request.getfixturevalue("loader").socket)
    command = [str(interop_py), str(WRITERS / f"{case.writer}.py"), str(ckpt),
               "--saves", str(case.saves), "--pace", str(case.pace), *case.args]
    writer_env = [f"{k}={v}" for k, v in case.env.items()]
    if case.tmpdir_elsewhere:
        tmpdir = elsewhere_tmpdir(ckpt)
        request.addfinalizer(lambda: shutil.rmtree(tmpdir, ignore_errors=True))
        writer_env.append(f"TMPDIR={tmpdir}")
    if writer_env:
        command = ["/usr/bin/env", *writer_env, *command]
    layout = ["--layout", case.layout] if case.forced else []
    w = watch(str(ckpt), "-l", str(listener), *layout, "--", *command, extra_env=extra_env)
    request.addfinalizer(lambda: kill_command(w))
    code = w.wait_exit(timeout=300)
    saves = []
    for line in w.stdout.splitlines():
        match = SAVED.match(line.strip())
        if match:
            saves.append((int(match.group(1)), os.path.realpath(match.group(2))))
    records = read_records(tmp_path / "records.jsonl")
    for r in records:
        if r.get("checkpoint"):
            r["checkpoint"] = os.path.realpath(r["checkpoint"])
    return Outcome(case, ckpt, code, saves, records, list(w.records), list(w.lines))


def elsewhere_tmpdir(ckpt: Path) -> Path:
    """A TMPDIR on another file system than DIR (a tmpfs): Lightning's move becomes a copy in place."""
    base = Path("/dev/shm")
    if not base.is_dir() or not os.access(base, os.W_OK):
        pytest.skip("no writable /dev/shm: cannot put TMPDIR on another file system")
    tmpdir = Path(tempfile.mkdtemp(prefix="ckw-interop-tmp-", dir=base))
    if os.stat(tmpdir).st_dev == os.stat(ckpt).st_dev:
        shutil.rmtree(tmpdir)
        pytest.skip("/dev/shm is on DIR's file system here: a move would be a rename, not a copy")
    return tmpdir


def kill_command(w) -> None:  # noqa: ANN001
    """The wrapped writer runs in its own session: kill it if the test left it behind."""
    for record in w.records:
        match = re.search(r"\(pid (\d+)\)", record.get("msg", "")) if record.get("msg", "").startswith("started") else None
        if match:
            try:
                os.killpg(int(match.group(1)), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def verify(out: Outcome) -> None:
    """The event guarantees, against what the framework reported."""
    case, why = out.case, out.explain()
    assert len(out.saves) == case.saves, f"the writer reported {len(out.saves)} of {case.saves} saves\n{why}"
    assert out.code == 0, f"ckptwatch (or the writer) failed\n{why}"
    events = [r["event"] for r in out.records]
    assert events.count("begin") == 1 and events[0] == "begin", f"begin not first and once\n{why}"
    assert events.count("end") == 1 and events[-1] == "end", f"end not last and once\n{why}"
    if not case.forced:
        detected = [r for r in out.log if r.get("layout") and str(r.get("msg", "")).startswith("layout ")]
        assert [r["layout"] for r in detected] == [case.layout], f"auto-detection chose {detected}\n{why}"

    saved = {(step, path) for step, path in out.saves}
    assert len(saved) == len(out.saves), f"the writer reported a save twice: {out.saves}"
    middle = out.records[1:-1]
    for r in middle:
        assert r["layout"] == case.layout, f"event with layout {r['layout']}\n{why}"
    after = [r for r in middle if r["event"] == "after_save"]
    keys = [(r["step"], r["checkpoint"]) for r in after]
    assert len(keys) == len(set(keys)), f"an after_save came twice\n{why}"
    unknown = [k for k in keys if k not in saved]
    assert not unknown, f"after_save for checkpoints the framework did not save (or not at that step): {unknown}\n{why}"
    order = [step for step, _ in out.saves]
    assert [s for s, _ in keys] == [s for s in order if s in {k[0] for k in keys}], f"after_save out of order\n{why}"
    before_steps = [r["step"] for r in middle if r["event"] == "before_save"]
    assert set(before_steps) <= set(order), f"before_save for a step never saved\n{why}"
    assert len(before_steps) == len(set(before_steps)), f"a before_save came twice\n{why}"

    # the stream, save by save: delivered -> before, after; vanished -> nothing or before only
    stream = [(r["event"], r["step"]) for r in middle]
    position = 0
    vanished_runs = {r["step"] for r in out.runs("after_save", "vanished")}
    failed_runs = out.runs("after_save", "failed") + out.runs("after_save", "timeout")
    delivered = {k[0]: r for k, r in zip(keys, after)}
    vanished: list[int] = []
    for step, path in out.saves:
        if step in delivered:
            expect = [("before_save", step), ("after_save", step)]
            assert stream[position:position + 2] == expect, f"at step {step}: expected {expect}, got " \
                f"{stream[position:position + 2]}\n{why}"
            position += 2
            load = delivered[step]["load"]
            if not load["ok"]:
                # a rotation that deleted it while the loader read it: fine, if ckptwatch calls it vanished
                assert not load["exists_after"] and step in vanished_runs, \
                    f"after_save for step {step} that the framework's loader could not load: {load['error']}\n{why}"
                vanished.append(step)
            elif load.get("step") is not None:
                assert load["step"] == step, f"after_save step {step} but the content holds step {load['step']}\n{why}"
        else:
            if stream[position:position + 1] == [("before_save", step)]:
                position += 1
            assert step in vanished_runs, f"save {step} ({path}) neither delivered nor reported vanished\n{why}"
            vanished.append(step)
    assert position == len(stream), f"events left over: {stream[position:]}\n{why}"
    assert not [r for r in failed_runs if r.get("step") not in vanished_runs], f"a listener run failed\n{why}"
    if vanished:
        assert case.rotates, f"checkpoints vanished though {case.writer} deletes none: {vanished}\n{why}"
    last_step = out.saves[-1][0]
    assert last_step in delivered and delivered[last_step]["load"]["ok"], f"the last save was not delivered\n{why}"
    end = out.records[-1]
    assert end["step"] == last_step and end["last_step_handled"] is True, f"end: {end}\n{why}"
    observed = sum(1 for r in middle if r["event"] == "before_save" and r["observed"])
    loads = [delivered[s]["load"].get("ms") for s in delivered if delivered[s]["load"].get("ms") is not None]
    slowest = f"slowest load {max(loads):.0f} ms" if loads else "cold loads"
    out.notes.append(f"{case.writer} {' '.join(case.args)}: {len(out.saves)} saves, {len(delivered)} delivered, "
                     f"vanished {vanished}, before_save observed {observed}, {slowest}")


@pytest.mark.parametrize("name", list(CASES))
def test_framework_live(name, tmp_path, watch, interop_py, request):  # noqa: ANN001
    """Steps: the framework saves N times (paced) as the command wrapped by `ckptwatch run` (auto layout);
    the listener loads each checkpoint at after_save with the framework's own loader.
    Result: the event guarantees hold against the saves the framework reported; every delivered
    checkpoint loads; rotated ones are reported vanished; end carries the last step."""
    case = CASES[name]
    out = run_case(case, tmp_path, watch, interop_py, request)
    verify(out)
    if name == "tf1_saver_sharded":  # the first save is at step 0: it must not be taken for "no step"
        assert out.saves[0][0] == 0
        assert ("after_save", 0) in [(r["event"], r["step"]) for r in out.records], out.explain()
    if case.load_delay:  # the point of the slow listener: rotation won some races, and said so
        assert out.runs("after_save", "vanished"), out.explain()
    if name == "torch_save_last_inplace":  # one path, a new save at each complete rewrite
        assert {p for _, p in out.saves} == {str(out.ckpt / "last.pt")}
        assert [r["step"] for r in out.records if r["event"] == "after_save"] == [s for s, _ in out.saves], \
            out.explain()
    print("\n".join(out.notes))
