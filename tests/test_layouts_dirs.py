"""The directory layouts (orbax, deepspeed, megatron, nemo, ray, marker:NAME), end to end.

Orbax is replayed from its real trace; the others are driven by synthetic
writers that do what their framework's source does, in its order
(``dirwriters.py``). Every test runs the real ``ckptwatch run`` with real
listener scripts.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import expected_stream, json_log, read_records, run_cli, run_once, summary, write_listener
from dirwriters import DeepSpeed, MarkerConvention, Megatron, NeMo, Ray
from tracereplay import Saved, replay

WRITERS = {
    # layout: (writer factory with rotation, --layout value, steps)
    "deepspeed": (lambda d: DeepSpeed(d, keep=2), "deepspeed"),
    "megatron": (lambda d: Megatron(d, retain_interval=1000), "megatron"),
    "nemo": (lambda d: NeMo(d, keep=2), "nemo"),
    "ray": (lambda d: Ray(d, keep=2), "ray"),
    "marker": (lambda d: MarkerConvention(d, keep=2), "marker:DONE"),
}
STEPS = [10, 20, 30, 40, 50]


def once(ckpt: Path, tmp_path: Path, env: dict[str, str], *args: str):
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "listeners"), *args)
    assert result.returncode == 0, result.stderr
    return result


def warnings(stderr: str) -> list[str]:
    return [r["msg"] for r in json_log(stderr) if r.get("level") == "warning"]


def detected(stderr: str) -> list[str]:
    """The layouts the log says auto-detection chose, in order."""
    return [r["layout"] for r in json_log(stderr) if r.get("msg", "").startswith("layout ") and "detected" in r["msg"]]


def age(path: Path, seconds: float = 60) -> None:
    """Make ``path`` look written ``seconds`` ago (content that stays bad is a problem, not "not yet")."""
    then = time.time() - seconds
    os.utime(path, (then, then))


# Every save once, in order -----------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_live_every_save_once_in_order(layout, ckpt, tmp_path, watch, records_path):
    """Steps: watch DIR (auto, except marker:DONE); five saves with rotation, each
    paused before its commit until the watcher announced it, then waited for.
    Result: begin, before_save (observed) / after_save per save in order, end; the
    checkpoint path is the step directory; the layout was detected."""
    make, spec = WRITERS[layout]
    writer = make(ckpt)
    write_listener(tmp_path / "listeners", "rec")
    args = ["--layout", spec] if layout == "marker" else []
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), *args)
    w.wait_ready()
    paths = []
    for step in STEPS:
        def pause(phase: str, step: int = step) -> None:
            if phase == "commit" and layout != "ray":  # Ray: see test_ray_save_in_progress_announced_without_step_metric
                w.wait_run("rec", "before_save", step)
        paths.append(writer.save(step, pause))
        w.wait_run("rec", "after_save", step)
        assert ("after_save", step) in summary(read_records(records_path))
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == expected_stream(STEPS)
    after = [r for r in records if r["argv"] == ["after_save"]]
    assert [r["stdin"]["checkpoint"] for r in after] == [str(ckpt / p) for p in paths]
    observed = [r["stdin"]["observed"] for r in records if r["argv"] == ["before_save"]]
    assert observed == ([False] * 5 if layout == "ray" else [True] * 5)
    if layout != "marker":
        assert w.wait_for(lambda r: r.get("layout") == layout and r.get("msg", "").startswith("layout "))


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_once_delivers_what_is_there(layout, ckpt, tmp_path, env, records_path):
    """Steps: five saves with rotation (two kept), then ``run --once``.
    Result: the two kept checkpoints, in step order, each once (start not seen); exit 0."""
    make, spec = WRITERS[layout]
    writer = make(ckpt)
    for step in STEPS:
        writer.save(step)
    write_listener(tmp_path / "listeners", "rec")
    args = ["--layout", spec] if layout == "marker" else []
    result = once(ckpt, tmp_path, env, *args)
    kept = STEPS[-1:] if layout == "megatron" else STEPS[-2:]  # megatron: retain interval 1000 deletes the previous
    records = read_records(records_path)
    assert summary(records) == expected_stream(kept)
    assert all(r["stdin"]["observed"] is False for r in records if r["argv"] == ["before_save"])
    assert not warnings(result.stderr)


class _StoppedBeforeCommit(Exception):
    pass


def save_up_to_the_commit(writer, step: int) -> None:
    """Run ``writer.save(step)`` and stop it just before its commit write."""

    def stop(phase: str) -> None:
        if phase == "commit":
            raise _StoppedBeforeCommit

    with pytest.raises(_StoppedBeforeCommit):
        writer.save(step, stop)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_save_in_progress_never_commits(layout, ckpt, tmp_path, env, records_path):
    """Steps: two saves; a third stopped just before its commit write; ``run --once``.
    Result: after_save for the two, and the third only announced (before_save), never after_save."""
    make, spec = WRITERS[layout]
    writer = make(ckpt)
    writer.save(10)
    writer.save(20)
    save_up_to_the_commit(writer, 30)
    write_listener(tmp_path / "listeners", "rec")
    args = ["--layout", spec] if layout == "marker" else []
    once(ckpt, tmp_path, env, *args)
    events = summary(read_records(records_path))
    assert ("after_save", 30) not in events
    committed = [20] if layout == "megatron" else [10, 20]
    assert [s for e, s in events if e == "after_save"] == committed
    if layout != "ray":  # Ray announces a save early only when its step is known before the commit
        assert ("before_save", 30) in events


# Tag files written in place: half-written is "not yet" ------------------------------------


@pytest.mark.parametrize(
    "layout,tag,make,partials",
    [
        ("deepspeed", "latest", lambda d: DeepSpeed(d), [b"", b"global_st", b"global_step2"]),
        ("megatron", "latest_checkpointed_iteration.txt", lambda d: Megatron(d), [b"", b"2"]),
        ("ray", "checkpoint_manager_snapshot.json", lambda d: Ray(d), [b"", b'{"version": 0, "checkpoint_res']),
    ],
)
def test_half_written_tag_is_not_a_commit(layout, tag, make, partials, ckpt, tmp_path, watch, records_path):
    """Steps: save 10; save 20 up to its commit, then its tag file truncated and written
    in pieces (empty, a prefix), as an in-place write is seen mid-way; then whole.
    Result: no after_save 20 (and no other new commit) while the tag is partial; after_save 20
    once it is whole; no problem line for the momentary states."""
    writer = make(ckpt)
    writer.save(10)
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_run("rec", "after_save", 10)

    def pause(phase: str) -> None:
        if phase != "commit":
            return
        for partial in partials:
            with open(ckpt / tag, "wb") as handle:  # in place: truncate, then part of the content
                handle.write(partial)
            time.sleep(0.4)  # several rescans (recheck is 0.1 s) on this state
            assert [s for e, s in summary(read_records(records_path)) if e == "after_save"] == [10]

    writer.save(20, pause)
    w.wait_run("rec", "after_save", 20)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    events = summary(read_records(records_path))
    assert [s for e, s in events if e == "after_save"] == [10, 20]
    assert not [m for m in w.lines if '"warning"' in m and tag in m]


@pytest.mark.parametrize(
    "layout,tag,content,expect",
    [
        ("deepspeed", "latest", "../outside", "outside DIR"),
        ("deepspeed", "latest", "/etc", "outside DIR"),
        ("deepspeed", "latest", "global_step99", "not a directory"),
        ("megatron", "latest_checkpointed_iteration.txt", "garbage", "neither an iteration"),
        ("ray", "checkpoint_manager_snapshot.json", '{"checkpoint_results": [{"checkpoint_dir_name": "../x", '
         '"metrics": {}}], "latest_checkpoint_result": null}', "not a directory directly in DIR"),
        ("ray", "checkpoint_manager_snapshot.json", "{not json", "not whole JSON"),
    ],
)
def test_bad_tag_is_one_problem_line(layout, tag, content, expect, ckpt, tmp_path, env, records_path):
    """Steps: a step directory and a settled tag file that names something outside DIR,
    nothing, or garbage; ``run --once`` (and the layout chosen explicitly).
    Result: exit 0, no after_save, exactly one warning line saying why."""
    (ckpt / "global_step10").mkdir()
    (ckpt / tag).write_text(content)
    age(ckpt / tag)
    write_listener(tmp_path / "listeners", "rec")
    result = once(ckpt, tmp_path, env, "--layout", layout)
    assert "Traceback" not in result.stderr
    assert not [e for e, _ in summary(read_records(records_path)) if e == "after_save"]
    found = [m for m in warnings(result.stderr) if tag in m]
    assert len(found) == 1 and expect in found[0], warnings(result.stderr)


def test_deepspeed_custom_tag_and_older_steps(ckpt, tmp_path, env, records_path):
    """Steps: global_step5/ and global_step7/ saved; then a save with a custom tag 'best-8'
    (save_checkpoint(tag=...)); global_step9/ started (newer than the tag); ``run --once``.
    Result: 5, 7 and 8 committed (the tag's trailing number is its step), 9 in progress."""
    writer = DeepSpeed(ckpt)
    writer.save(5)
    writer.save(7)
    (ckpt / "best-8").mkdir()
    (ckpt / "best-8" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    (ckpt / "latest").write_text("best-8")
    (ckpt / "global_step9").mkdir()
    write_listener(tmp_path / "listeners", "rec")
    once(ckpt, tmp_path, env)
    assert summary(read_records(records_path)) == [
        ("begin", None), ("before_save", 5), ("after_save", 5), ("before_save", 7), ("after_save", 7),
        ("before_save", 8), ("after_save", 8), ("before_save", 9), ("end", 8),
    ]


def test_megatron_release_and_detection_over_dcp(ckpt, tmp_path, env, records_path):
    """Steps: a torch_dist iteration (its top holds DCP files, as a DCP step dir does) and a
    'release' checkpoint named by the tracker; ``run --once`` with auto detection.
    Result: detected as megatron (not dcp); release delivered at step 0 (iter_0000100 is above the
    tracker's step, so not committed)."""
    Megatron(ckpt).save(100)
    (ckpt / "release").mkdir()
    (ckpt / "release" / "metadata.json").write_text("{}")
    (ckpt / "latest_checkpointed_iteration.txt").write_text("release")
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    result = once(ckpt, tmp_path, env)
    assert detected(result.stderr)[:1] == ["megatron"], result.stderr
    records = read_records(records_path)
    assert [(r["stdin"]["step"], r["stdin"]["checkpoint"]) for r in records] == [(0, str(ckpt / "release"))]


def test_ray_step_from_metrics_or_timestamp(ckpt, tmp_path, env, records_path):
    """Steps: Ray saves whose reports carry no step (default timestamped names); ``run --once``.
    Result: the step is the name's timestamp (YYYYMMDDHHMMSS), in save order."""
    writer = Ray(ckpt, step_metric=False)
    names = [writer.save(s) for s in (1, 2)]
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    once(ckpt, tmp_path, env)
    records = read_records(records_path)
    stamps = [int(n.removeprefix("checkpoint_").split(".")[0].replace("-", "").replace("_", "")) for n in names]
    assert [r["stdin"]["step"] for r in records] == stamps
    assert [r["stdin"]["checkpoint"] for r in records] == [str(ckpt / n) for n in names]


def test_ray_save_in_progress_announced_without_step_metric(ckpt, tmp_path, env, records_path):
    """Steps: Ray saves whose reports carry no step; a third copied but not yet in the
    snapshot; ``run --once``. Result: the third is announced (before_save, its timestamp
    step) and not committed."""
    writer = Ray(ckpt, step_metric=False)
    writer.save(1)
    writer.save(2)
    save_up_to_the_commit(writer, 3)
    write_listener(tmp_path / "listeners", "rec")
    once(ckpt, tmp_path, env)
    events = summary(read_records(records_path))
    assert [e for e, _ in events] == ["begin", "before_save", "after_save", "before_save", "after_save",
                                      "before_save", "end"]
    assert events[-2][1] > events[-3][1]


def test_nemo_last_copy_and_symlink_are_not_new_saves(ckpt, tmp_path, env, records_path):
    """Steps: a NeMo save of step 10, its '-last' copy (save_last=True: a second real save of
    the same step) and a '-last' symlink; a NeMo 1 '.ckpt' file save of step 20 with its
    -EMA twin; ``run --once``.
    Result: step 10 once (the top-k one), step 20 once (the .ckpt, not the EMA file)."""
    writer = NeMo(ckpt)
    name = writer.save(10)
    (ckpt / f"{name}-last").mkdir()
    (ckpt / f"{name}-last" / "weights").mkdir()
    os.symlink(ckpt / name, ckpt / "link-step=10-last")
    (ckpt / "nemo1--val_loss=1.00-step=20.ckpt").write_bytes(b"PK")
    (ckpt / "nemo1--val_loss=1.00-step=20-EMA.ckpt").write_bytes(b"PK")
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    once(ckpt, tmp_path, env, "--layout", "nemo")
    records = read_records(records_path)
    assert [(r["stdin"]["step"], os.path.basename(r["stdin"]["checkpoint"])) for r in records] == [
        (10, name), (20, "nemo1--val_loss=1.00-step=20.ckpt")]


# Orbax: the real trace, and its two commit protocols ---------------------------------------


def test_orbax_trace_live(ckpt, tmp_path, watch, records_path):
    """Steps: watch an empty DIR (auto); replay Orbax's CheckpointManager trace (async save,
    tmp dir renamed to <step>, rotation keeping 2), waiting after each save.
    Result: detected as orbax; each save once, in order, announced from its tmp dir."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()

    def saved(save: Saved) -> None:
        w.wait_run("rec", "after_save", save.step)

    saves = replay("orbax_manager", ckpt, saved)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == expected_stream([s.step for s in saves])
    assert w.wait_for(lambda r: r.get("layout") == "orbax" and r.get("msg", "").startswith("layout "))
    after = [r["stdin"]["checkpoint"] for r in records if r["argv"] == ["after_save"]]
    assert after == [str(ckpt / s.path) for s in saves]


def test_orbax_trace_once(ckpt, tmp_path, env, records_path):
    """Steps: replay the whole trace, then ``run --once``. Result: the two kept steps, 20 and 25."""
    replay("orbax_manager", ckpt)
    write_listener(tmp_path / "listeners", "rec")
    once(ckpt, tmp_path, env)
    assert summary(read_records(records_path)) == expected_stream([20, 25])


def test_orbax_commit_success_in_tmp_dir_is_no_commit(ckpt, tmp_path, env, records_path):
    """Steps: a tmp dir holding commit_success.txt (Orbax writes it before the rename)
    and an older-version tmp name (-tmp-<timestamp>); ``run --once``.
    Result: before_save for both steps, no after_save."""
    for name in ("5.orbax-checkpoint-tmp", "7.orbax-checkpoint-tmp-1718000000"):
        (ckpt / name).mkdir()
        (ckpt / name / "_CHECKPOINT_METADATA").write_text("{}")
        (ckpt / name / "commit_success.txt").write_text("Checkpoint commit was successful")
    write_listener(tmp_path / "listeners", "rec")
    once(ckpt, tmp_path, env)
    assert summary(read_records(records_path)) == [("begin", None), ("before_save", 5), ("before_save", 7), ("end", None)]


def test_orbax_commit_file_protocol(ckpt, tmp_path, watch, records_path):
    """Steps (CommitFileTemporaryPath, as on an object store: no rename): 10/ committed with
    commit_success.txt; 15/ written under its final name, files first; then its commit_success.txt.
    Result: after_save 10; 15 announced at once (observed) and committed only by commit_success.txt."""
    for step in (10, 15):
        (ckpt / str(step)).mkdir()
        (ckpt / str(step) / "_CHECKPOINT_METADATA").write_text("{}")
        (ckpt / str(step) / "default").mkdir()
    (ckpt / "10" / "commit_success.txt").write_text("ok")
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_run("rec", "after_save", 10)
    w.wait_run("rec", "before_save", 15)
    (ckpt / "15" / "default" / "_METADATA").write_text("{}")
    time.sleep(0.3)
    assert ("after_save", 15) not in summary(read_records(records_path))
    with open(ckpt / "15" / "commit_success.txt", "w") as handle:  # finalize: write_text, in place
        time.sleep(0.1)  # seen empty for a while: mid-write, not a commit (nor a second one later)
        handle.write("Checkpoint commit was successful to 15")
    w.wait_run("rec", "after_save", 15)
    time.sleep(0.3)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == expected_stream([10, 15])


def test_orbax_legacy_rename_without_commit_files(ckpt, tmp_path, env, records_path):
    """Steps: step dirs as older Orbax leaves them on a local disk: renamed, with
    _CHECKPOINT_METADATA, no commit_success.txt; ``run --once`` (auto).
    Result: detected as orbax; both committed (the rename was the commit)."""
    for step in (100, 200):
        (ckpt / str(step)).mkdir()
        (ckpt / str(step) / "_CHECKPOINT_METADATA").write_text("{}")
    write_listener(tmp_path / "listeners", "rec")
    result = once(ckpt, tmp_path, env)
    assert summary(read_records(records_path)) == expected_stream([100, 200])
    assert detected(result.stderr) == ["orbax"]


def test_filesystem_type_reads_mountinfo(tmp_path):
    """A DIR on a gcsfuse mount is an object store (commit_success.txt needed); the longest mount wins."""
    from ckptwatch.sources.fstype import filesystem_type as mount_fstype

    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /mnt/gcs\\040bucket rw,nosuid - fuse.gcsfuse bucket rw,user_id=0\n"
    )
    assert mount_fstype("/mnt/gcs bucket/run/ckpt", str(info)) == "fuse.gcsfuse"
    assert mount_fstype("/home/x", str(info)) == "ext4"
    assert mount_fstype("/x", str(tmp_path / "missing")) is None


# Detection, and marker's usage ---------------------------------------------------------------


@pytest.mark.parametrize(
    "build,layout",
    [
        (lambda d: (d / "3.orbax-checkpoint-tmp").mkdir(), "orbax"),
        (lambda d: ((d / "global_step3").mkdir(), (d / "latest").write_text("global_step3")), "deepspeed"),
        (lambda d: (d / "global_step3").mkdir(), "deepspeed"),  # the first save, before 'latest'
        (lambda d: (d / "latest_checkpointed_iteration.txt").write_text("3"), "megatron"),
        (lambda d: (d / "iter_0000003").mkdir(), "megatron"),
        (lambda d: (d / "model--step=3-unfinished").touch(), "nemo"),
        (lambda d: (d / "checkpoint_manager_snapshot.json").write_text("{}"), "ray"),
        (lambda d: (d / "checkpoint_2026-05-01_12-00-00.000123").mkdir(), "ray"),
        # no clash with the earlier layouts: HF's checkpoint-N, DCP's step dirs
        (lambda d: ((d / "checkpoint-3").mkdir(), (d / "checkpoint-3" / "trainer_state.json").write_text("{}")), "hf"),
        (lambda d: ((d / "3").mkdir(), (d / "3" / ".metadata").write_bytes(b"m")), "dcp"),
    ],
)
def test_detection(build, layout, ckpt, tmp_path, env):
    """Steps: DIR holding only one layout's sign; ``run --once`` (auto).
    Result: the log says that layout was detected."""
    build(ckpt)
    write_listener(tmp_path / "listeners", "rec")
    result = once(ckpt, tmp_path, env)
    assert detected(result.stderr)[:1] == [layout], result.stderr


def test_marker_is_never_detected(ckpt, tmp_path, env):
    """Steps: step dirs with a DONE file only; ``run --once`` (auto). Result: no layout chosen."""
    (ckpt / "step-1").mkdir()
    (ckpt / "step-1" / "DONE").touch()
    write_listener(tmp_path / "listeners", "rec")
    result = once(ckpt, tmp_path, env)
    assert not detected(result.stderr), result.stderr


@pytest.mark.parametrize("spec", ["marker:", "marker", "marker:../up", "marker:/abs"])
def test_marker_needs_a_name(spec, ckpt, tmp_path, env):
    """``--layout marker:`` without NAME (or with one that leaves the step dir): exit 2, one line."""
    result = run_cli("run", str(ckpt), "--once", "--layout", spec, env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "marker" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_marker_written_in_place_commits_once(ckpt, tmp_path, watch, records_path):
    """Steps: ``--layout marker:DONE``; step-3/ filled, then DONE created and, 20 ms later,
    written ("ok"), as ``open(..., 'w').write()`` can be seen mid-way; then step-4/ with an
    empty DONE (``touch``).
    Result: after_save 3 exactly once (the empty moment is not a first commit), and 4."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--layout", "marker:DONE")
    w.wait_ready()
    (ckpt / "step-3").mkdir()
    w.wait_run("rec", "before_save", 3)
    with open(ckpt / "step-3" / "DONE", "w") as handle:
        handle.flush()
        time.sleep(0.02)
        handle.write("ok")
    w.wait_run("rec", "after_save", 3)
    (ckpt / "step-4").mkdir()
    (ckpt / "step-4" / "DONE").touch()
    w.wait_run("rec", "after_save", 4)
    time.sleep(0.3)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == expected_stream([3, 4])


def test_marker_top_level_holds_the_step(ckpt, tmp_path, watch, records_path):
    """Steps: ``--layout marker:DONE``; DIR/DONE written in place with 5, then empty for a
    moment and rewritten with 6 (a new save), then garbage that stays.
    Result: after_save 5 and 6 (checkpoint: DIR itself); the empty moment is not a save;
    the garbage is one warning."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--layout", "marker:DONE")
    w.wait_ready()
    (ckpt / "DONE").write_text("5\n")
    w.wait_run("rec", "after_save", 5)
    with open(ckpt / "DONE", "w") as handle:
        handle.flush()
        time.sleep(0.4)
        handle.write("6\n")
    w.wait_run("rec", "after_save", 6)
    (ckpt / "DONE").write_text("soon")
    age(ckpt / "DONE")
    w.wait_for(lambda r: r.get("level") == "warning" and "DONE" in r.get("msg", ""))
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert [s for e, s in summary(records) if e == "after_save"] == [5, 6]
    assert os.path.normpath(records[-1]["stdin"]["checkpoint"]) == str(ckpt)


def test_replayer_follows_renamed_dirs(tmp_path):
    """The trace names files under a renamed dir's old name (inotifywait's stale watch path):
    the replayer acts on them under the new name, so rotation deletes what Orbax deleted."""
    from tracereplay import Replayer, operations

    replayer = Replayer(tmp_path)
    for op in operations("orbax_manager"):
        if isinstance(op, Saved):
            if op.step == 10:
                break
            continue
        replayer.apply(*op)
    replayer.close()
    assert (tmp_path / "5" / "default" / "d").is_dir()
    assert replayer._current("5.orbax-checkpoint-tmp/default/d/x") == "5/default/d/x"
    assert replayer._current("5/default.orbax-checkpoint-tmp/ocdbt.process_0/d") == "5/default/ocdbt.process_0/d"
    assert replayer._current("15.orbax-checkpoint-tmp/a") == "15.orbax-checkpoint-tmp/a"  # never renamed: as is


def test_tag_stands_in_for_an_unknown_format(ckpt, tmp_path, watch, records_path):
    """Steps: DeepSpeed's latest names global_step10/ that holds none of the known rank-0
    files (another checkpoint engine); then global_step20/ likewise, its tag half-written
    for a moment, then whole.
    Result: after_save 10 once (the half-written tag is not a new save of 10), then 20."""
    (ckpt / "global_step10").mkdir()
    (ckpt / "latest").write_text("global_step10")
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_run("rec", "after_save", 10)
    (ckpt / "global_step20").mkdir()
    w.wait_run("rec", "before_save", 20)
    (ckpt / "latest").write_text("global_st")  # the in-place write seen mid-way (closed: the watcher wakes)
    time.sleep(0.5)
    (ckpt / "latest").write_text("global_step20")
    w.wait_run("rec", "after_save", 20)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == expected_stream([10, 20])
