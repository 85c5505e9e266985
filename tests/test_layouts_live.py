"""Each layout, end to end: the real frameworks' file operations (replayed from
their traces) into a directory that a real ``ckptwatch run`` watches."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import expected_stream, json_log, read_records, run_cli, summary, write_listener
from tracereplay import Saved, replay

# trace name, layout it must be detected as, state paths written by TF1 (absolute, elsewhere)
TRACES = [
    ("tf1_saver", "tf", "/mnt/elsewhere/train"),
    ("tf2_manager", "tf", None),
    ("hf_trainer", "hf", None),
    ("torch_dcp", "dcp", None),
]


@pytest.mark.parametrize("trace,layout,absolute", TRACES)
def test_live_every_save_once_in_order(trace, layout, absolute, ckpt, tmp_path, watch, records_path):
    """Steps: watch an empty DIR with auto detection; replay a framework's saves,
    waiting after each save until its after_save ran.
    Result: begin, then before_save/after_save for each save in order, end on SIGTERM."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()

    def saved(save: Saved) -> None:
        w.wait_run("rec", "after_save", save.step)

    saves = replay(trace, ckpt, saved, absolute_state_paths=absolute)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == expected_stream([s.step for s in saves])
    assert w.wait_for(lambda r: r.get("layout") == layout and "detected" in r["msg"])
    after = [r for r in records if r["argv"][0] == "after_save"]
    for record, save in zip(after, saves):
        assert record["stdin"]["checkpoint"] == str(ckpt / save.path)
        assert record["stdin"]["layout"] == layout


@pytest.mark.parametrize("trace,layout,absolute", TRACES)
def test_once_delivers_what_is_there(trace, layout, absolute, ckpt, tmp_path, env, records_path):
    """Steps: replay all saves (rotation included), then ``run --once``.
    Result: the checkpoints still there, in step order, each once; exit 0."""
    saves = replay(trace, ckpt, absolute_state_paths=absolute)
    write_listener(tmp_path / "listeners", "rec")
    result = run_cli("run", str(ckpt), "--once", "-l", str(tmp_path / "listeners"), "--log-format", "json",
                     env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    present = [s.step for s in saves if (ckpt / s.path).exists() or (ckpt / f"{s.path}.index").exists()]
    assert present, "the trace leaves checkpoints behind"
    records = read_records(records_path)
    assert summary(records) == expected_stream(present)
    assert all(r["stdin"]["observed"] is False for r in records if r["argv"][0] == "before_save")


@pytest.mark.parametrize("trace", ["torch_dcp", "hf_trainer"])
def test_burst_no_double_no_disorder(trace, ckpt, tmp_path, watch, records_path):
    """Steps: replay a whole trace as fast as the disk takes it, with nobody waiting.
    Result: no checkpoint delivered twice, deliveries in step order, the last save delivered."""
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()
    saves = replay(trace, ckpt)
    w.wait_run("rec", "after_save", saves[-1].step)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    steps = [step for _, step in summary(read_records(records_path))]
    assert len(steps) == len(set(steps))
    assert steps == sorted(steps)
    assert set(steps) <= {s.step for s in saves}
    if trace == "torch_dcp":  # nothing is rotated: every save must arrive
        assert steps == [s.step for s in saves]


def test_half_written_trainer_state_never_commits(ckpt, tmp_path, watch, records_path):
    """Steps: checkpoint-5/ with trainer_state.json half written (in place, as the
    Trainer writes it); then a complete checkpoint-6; then finish checkpoint-5.
    Result: before_save 5 at once (observed), no after_save 5 until the file is whole."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--layout", "hf")
    w.wait_ready()
    (ckpt / "checkpoint-5").mkdir()
    state = json.dumps({"global_step": 5, "log_history": [{"loss": 1.0}]})
    handle = open(ckpt / "checkpoint-5" / "trainer_state.json", "w")  # noqa: SIM115
    handle.write(state[:17])
    handle.flush()
    before = w.wait_run("rec", "before_save", 5)
    assert before["outcome"] == "done"
    (ckpt / "checkpoint-6").mkdir()
    (ckpt / "checkpoint-6" / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    w.wait_run("rec", "after_save", 6)
    assert ("after_save", 5) not in summary(read_records(records_path))
    handle.write(state[17:])
    handle.close()
    w.wait_run("rec", "after_save", 5)
    records = read_records(records_path)
    observed = [r["stdin"]["observed"] for r in records if r["argv"] == ["before_save"] and r["stdin"]["step"] == 5]
    assert observed == [True]
    assert summary(records).count(("after_save", 5)) == 1


@pytest.mark.parametrize(
    "layout,build",
    [
        ("tf", lambda d: ((d / "model.ckpt-7_temp").mkdir(), (d / "model.ckpt-7.index").write_bytes(b"x" * 10))),
        ("dcp", lambda d: ((d / "step-7").mkdir(), (d / "step-7" / "__0_0.distcp").write_bytes(b"x"),
                           (d / "step-7" / ".metadata.tmp").write_bytes(b"meta"))),
        ("hf", lambda d: ((d / "checkpoint-7").mkdir(), (d / "checkpoint-7" / "model.safetensors").write_bytes(b"x"))),
    ],
)
def test_save_in_progress_gets_before_save_only(layout, build, ckpt, tmp_path, env, records_path):
    """Steps: a save started and not committed, by each layout's rule; ``run --once``.
    Result: before_save (observed) and no after_save; end has no step."""
    build(ckpt)
    write_listener(tmp_path / "listeners", "rec")
    result = run_cli("run", str(ckpt), "--once", "--layout", layout, "-l", str(tmp_path / "listeners"),
                     "--log-format", "json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(read_records(records_path)) == [("begin", None), ("before_save", 7), ("end", None)]


def test_tf_state_file_naming_paths_outside_dir_is_refused(ckpt, tmp_path, env, records_path):
    """Steps: a 'checkpoint' file naming ../outside and an absolute path that exists outside DIR.
    Result: neither is handed to a listener; one warning line each; the valid one is delivered."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.ckpt-9.index").write_bytes(b"x")
    (ckpt / "model.ckpt-3.index").write_bytes(b"x")
    (ckpt / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt-3"\n'
        'all_model_checkpoint_paths: "../outside/model.ckpt-9"\n'
        f'all_model_checkpoint_paths: "{outside}/model.ckpt-9"\n'
        'all_model_checkpoint_paths: "model.ckpt-3"\n'
    )
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    result = run_cli("run", str(ckpt), "--once", "-l", str(tmp_path / "listeners"), "--log-format", "json",
                     env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(read_records(records_path)) == [("after_save", 3)]
    warnings = [r["msg"] for r in json_log(result.stderr) if r["level"] == "warning"]
    assert sum("outside DIR" in m for m in warnings) == 2
