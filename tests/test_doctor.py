"""``ckptwatch doctor``: a directory of each kind explained, through the real CLI."""

from __future__ import annotations

import json
import os
import time

import dirwriters
import pytest
from conftest import run_cli
from tracereplay import replay


def doctor(path, tmp_path, env, *args):
    result = run_cli("doctor", str(path), "--json", *args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "trace,layout,steps",
    [
        ("tf1_saver", "tf", [10, 15, 20]),
        ("tf2_manager", "tf", [15, 20, 25]),
        ("hf_trainer", "hf", [8, 10]),
        ("torch_dcp", "dcp", [5, 10, 15, 20, 25]),
        ("orbax_manager", "orbax", [20, 25]),
    ],
)
def test_doctor_explains_what_a_framework_left(trace, layout, steps, ckpt, tmp_path, env):
    replay(trace, ckpt, absolute_state_paths="/mnt/elsewhere" if trace == "tf1_saver" else None)
    report = doctor(ckpt, tmp_path, env)
    assert report["layout"] == layout and report["why"]
    assert [c["step"] for c in report["committed"]] == steps
    assert report["in_progress"] == []


@pytest.mark.parametrize(
    "writer,layout",
    [(dirwriters.DeepSpeed, "deepspeed"), (dirwriters.Megatron, "megatron"), (dirwriters.NeMo, "nemo"),
     (dirwriters.Ray, "ray")],
)
def test_doctor_explains_synthetic_writers(writer, layout, ckpt, tmp_path, env):
    save = writer(ckpt).save
    for step in (100, 200):
        save(step)
    report = doctor(ckpt, tmp_path, env)
    assert report["layout"] == layout
    assert [c["step"] for c in report["committed"]] == [100, 200]


def test_doctor_flags_stale_saves_missing_files_and_ambiguity(ckpt, tmp_path, env):
    replay("tf2_manager", ckpt)
    (ckpt / "ckpt-30_temp").mkdir()
    old = time.time() - 600
    os.utime(ckpt / "ckpt-30_temp", (old, old))
    (ckpt / "ckpt-20.index").unlink()
    (ckpt / "checkpoint-3").mkdir()  # looks like a Trainer directory too
    result = run_cli("doctor", str(ckpt), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "layout      tf: state file 'checkpoint' at the top" in text
    assert "also looks like hf" in text and "--layout NAME" in text
    assert "save of step 30 (ckpt-30) has not changed for 10 min" in text
    assert "'checkpoint' names ckpt-20, whose .index is missing" in text
    # Files of committed checkpoints are theirs; ckpt-20 lost its .index, so its data file is not.
    assert "ignored     2: checkpoint-3, ckpt-20.data-00000-of-00001" in text


def test_doctor_on_an_empty_dir_and_bad_input(ckpt, tmp_path, env):
    report = doctor(ckpt, tmp_path, env)
    assert report["layout"] is None and report["committed"] == []
    assert "a first start" in report["journal"]
    bad = run_cli("doctor", str(ckpt), "--layout", "nope", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    missing = run_cli("doctor", str(tmp_path / "missing"), env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_doctor_reports_the_journal_and_stop_file(ckpt, tmp_path, env):
    replay("torch_dcp", ckpt)
    assert run_cli("run", str(ckpt), "--once", env=env, cwd=tmp_path).returncode == 0
    (ckpt / "ckptwatch.stop").write_text(json.dumps({"step": 25, "listener": "30-stop"}))
    report = doctor(ckpt, tmp_path, env)
    assert report["journal"].endswith("10 event(s), 0 run record(s), 0 run(s) to resume")
    assert "step 25 by 30-stop" in report["stop_file"]
