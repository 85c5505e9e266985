"""Stopping real training: every framework's integration, under a live ``ckptwatch run``.

Each test wraps a writer (writers/stop_*.py: a tiny model built from a
config in code, the framework's own loop, ckptwatch's callback or hook) in
``ckptwatch run DIR -l ask -- WRITER``; the listener ``ask`` takes 0.3 s and
asks for a stop (exit 3) at the first save at or past ``ASK_AT``. Each rank
of the training records (writers/stop_record.py) the step of the request it
saw and the step it stopped at. Checked: the request's step, the stop step
(with ``sync=True``: exactly the step asked; without: that step or a later
one, and the request read may be a later save's, which asks too), every rank
the same, and a checkpoint of the stop step on disk.

The ``--on-stop signal:NAME`` tests wrap the same frameworks without a line
of ckptwatch (``--plain``) and record what the framework does with the signal.
The closing note of each test (printed) gives the request's and the stop step.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import WRITERS
from .test_interop import kill_command

pytestmark = pytest.mark.interop

ASK = """#!/bin/sh
# ckptwatch: events=after_save
sleep "${ASK_DELAY:-0}"
if [ "$CKPTWATCH_STEP" -ge "$ASK_AT" ]; then echo "step $CKPTWATCH_STEP is enough"; exit 3; fi
exit 0
"""


@dataclass
class Run:
    writer: str
    ask_at: int
    args: tuple[str, ...] = ()
    ranks: int = 1
    #: The checkpoint of a step, relative to DIR (for a stop step S and the record).
    checkpoint: str = ""
    pace: float = 0.05
    delay: float = 0.3
    env: dict[str, str] = field(default_factory=dict)


CASES = {
    # TF1 MonitoredTrainingSession saving every 5 steps (first at step 0), StopHook
    "tf1_session": Run("stop_tf1", 10, checkpoint="model.ckpt-{stopped}.index"),
    # Keras fit, ModelCheckpoint("epoch-{epoch:03d}.weights.h5") every epoch (8 batches), StopOnRequest after it
    "keras_fit": Run("stop_keras", 3, checkpoint="epoch-{stopped:03d}.weights.h5"),
    # Transformers Trainer, save_steps=2, StopOnRequest with no path (the Trainer's output_dir)
    "hf_trainer": Run("stop_hf", 6, checkpoint="checkpoint-{stopped}/trainer_state.json"),
    # Lightning fit, ModelCheckpoint every 3 steps, with each import name of Lightning
    "lightning_fit_pytorch_lightning": Run("stop_lightning", 9, ("--lightning", "pytorch_lightning"),
                                           checkpoint="epoch=0-step={stopped}.ckpt"),
    "lightning_fit_lightning_pytorch": Run("stop_lightning", 9, ("--lightning", "lightning.pytorch"),
                                           checkpoint="epoch=0-step={stopped}.ckpt"),
    # two processes, gloo on the CPU: a hand-written DDP loop (DistributedStopWatcher), rank 0 saves every 5 steps
    "torch_ddp_loop_2_ranks": Run("stop_torch_ddp", 10, ranks=2, checkpoint="model_{stopped}.pt"),
    # two processes, gloo on the CPU: Lightning's DDP strategy (it starts the second process itself)
    "lightning_ddp_2_ranks": Run("stop_lightning", 9, ("--devices", "2"), ranks=2,
                                 checkpoint="epoch=0-step={stopped}.ckpt"),
}

MODES = {
    "tf1_session": ("async", "sync"),
    "keras_fit": ("async", "sync"),
    "hf_trainer": ("async", "sync"),
    "lightning_fit_pytorch_lightning": ("async", "sync"),
    "lightning_fit_lightning_pytorch": ("sync",),
    "torch_ddp_loop_2_ranks": ("async", "sync"),
    "lightning_ddp_2_ranks": ("async", "sync"),
}


def need_module(interop_py: Path, module: str) -> None:
    """Skip, saying how to fix it, when an interop venv built before ``module`` was added lacks it."""
    probe = subprocess.run([str(interop_py), "-c", f"import importlib.util, sys; "
                            f"sys.exit(importlib.util.find_spec({module!r}) is None)"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"{interop_py} has no {module} (tests/interop/requirements.txt has it since issue 11): "
                    "rebuild the venv with `make interop-venv`")


def ask_listener(tmp_path: Path) -> Path:
    path = tmp_path / "listeners" / "ask"
    path.parent.mkdir()
    path.write_text(ASK)
    path.chmod(0o755)
    return path


def wrap(tmp_path: Path, watch, interop_py: Path, request, writer: str, args: list[str], ask_at: int,  # noqa: ANN001
         delay: float, options: tuple[str, ...] = ()) -> tuple[Path, Path, int, list[dict], object]:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    records = tmp_path / "records"
    listener = ask_listener(tmp_path)
    command = [str(interop_py), str(WRITERS / f"{writer}.py"), str(ckpt), *args]
    extra = {"ASK_AT": str(ask_at), "ASK_DELAY": str(delay), "STOP_RECORD_DIR": str(records)}
    w = watch(str(ckpt), "-l", str(listener), *options, "--", *command, extra_env=extra)
    request.addfinalizer(lambda: kill_command(w))
    code = w.wait_exit(timeout=300)
    ranks = [json.loads(p.read_text()) for p in sorted(records.glob("rank*.json"))] if records.exists() else []
    return ckpt, records, code, ranks, w


def explain(w, ranks: list[dict]) -> str:  # noqa: ANN001
    return "records: " + json.dumps(ranks) + "\nlog (tail):\n" + "\n".join(w.lines[-40:]) + "\nstdout:\n" + w.stdout


@pytest.mark.parametrize("name, mode", [(n, m) for n in CASES for m in MODES[n]])
def test_training_stops_when_a_listener_asks(name, mode, tmp_path, watch, interop_py, request):  # noqa: ANN001
    """Steps: the framework trains under `ckptwatch run`; the listener asks at the first save >= ASK_AT.
    Result: every rank stopped at the same step: with sync=True the very step asked, else that step or a later
    one; a checkpoint of the stop step is on disk; the watcher exits 0."""
    case = CASES[name]
    if "lightning.pytorch" in case.args:
        need_module(interop_py, "lightning")
    args = ["--pace", str(case.pace), *case.args, *(["--sync"] if mode == "sync" else [])]
    ckpt, _, code, ranks, w = wrap(tmp_path, watch, interop_py, request, case.writer, args, case.ask_at, case.delay)
    why = explain(w, ranks)
    assert code == 0, why
    assert [r["rank"] for r in ranks] == list(range(case.ranks)), why
    stops = {r["stopped"] for r in ranks}
    assert len(stops) == 1 and None not in stops, f"the ranks stopped at different steps\n{why}"
    stopped = stops.pop()
    asked = {r["asked"] for r in ranks}
    assert len(asked) == 1, f"the ranks saw different requests: {asked}\n{why}"
    seen = asked.pop()
    if mode == "sync":
        assert seen == stopped == case.ask_at, why
    else:  # later saves ask too: by the time training looks, the file may hold a later request
        assert case.ask_at <= seen <= stopped, why
    assert {r["final"] for r in ranks} == {stopped}, why
    assert (ckpt / case.checkpoint.format(stopped=stopped)).exists(), f"no checkpoint of step {stopped}\n{why}"
    stop = json.loads((ckpt / "ckptwatch.stop").read_text())
    assert stop["listeners"] == ["ask"] and stop["step"] >= case.ask_at
    print(f"\n{name} ({mode}): stop asked at step {case.ask_at} (the request training read: step {seen}), "
          f"training stopped at step {stopped} on {case.ranks} rank(s); checkpoint "
          f"{case.checkpoint.format(stopped=stopped)}")


# --on-stop signal:NAME: the frameworks on their own -----------------------------------------


@dataclass
class Signal:
    writer: str
    signal: str
    args: tuple[str, ...]
    ask_at: int
    #: The wrapped command's exit status, as ckptwatch exits with it.
    status: int
    #: What the framework did: "saved" (a checkpoint of the step it stopped at, from its own handler) or "killed".
    outcome: str
    ranks: int = 1


SIGNALS = {
    # Lightning, one process: its SIGTERM handler ends fit within a few steps; ModelCheckpoint(save_on_exception)
    "lightning_sigterm": Signal("stop_lightning", "SIGTERM", ("--plain",), 9, 0, "saved"),
    # (Lightning DDP is not here: with SIGTERM, and with SIGINT at times, to every rank at once it hung; see README)
    # Transformers Trainer: no handler of its own, the default action ends the process (no last save)
    "hf_trainer_sigterm": Signal("stop_hf", "SIGTERM", ("--plain",), 6, 128 + 15, "killed"),
}


@pytest.mark.parametrize("name", list(SIGNALS))
def test_on_stop_signal_stops_training_that_does_not_import_ckptwatch(name, tmp_path, watch, interop_py,
                                                                      request):  # noqa: ANN001
    """Steps: `ckptwatch run DIR --on-stop signal:NAME -- WRITER --plain` (nothing of ckptwatch in the writer);
    the listener asks at the first save >= ASK_AT.
    Result: the signal went to the command after the stop file was written; what the framework did with it."""
    case = SIGNALS[name]
    args = ["--pace", "0.02", *case.args]
    ckpt, _, code, ranks, w = wrap(tmp_path, watch, interop_py, request, case.writer, args, case.ask_at, 0.0,
                                   ("--on-stop", f"signal:{case.signal}"))
    why = explain(w, ranks)
    sent = [r for r in w.records if r.get("signal") == case.signal]
    assert len(sent) == 1 and sent[0]["step"] == case.ask_at, why
    assert code == case.status, why
    if case.outcome == "saved":
        assert len(ranks) == case.ranks, why
        stops = {r["stopped"] for r in ranks}
        assert len(stops) == 1, why
        stopped = stops.pop()
        assert stopped >= case.ask_at and all(r["stop_file_there"] for r in ranks), why
        assert not any(r["ckptwatch_loaded"] for r in ranks), why
        assert (ckpt / f"epoch=0-step={stopped}.ckpt").exists(), why
        print(f"\n{name}: stop asked at step {case.ask_at}, {case.signal} sent, training saved and stopped at "
              f"step {stopped}, exit {code}")
    else:
        assert ranks == [], why  # killed before it could record anything
        print(f"\n{name}: stop asked at step {case.ask_at}, {case.signal} sent, training killed (exit {code})")
    assert (ckpt / "ckptwatch.stop").exists()
