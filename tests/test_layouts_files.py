"""The single-file layouts (keras, torch, lightning, glob), end to end.

Real directories, a real ``ckptwatch run``, real listener scripts. The files
are shaped like the frameworks' own (``samplefiles``: torch.save zips, .keras
zips, HDF5 superblocks) and written the way the frameworks write them: in
place and held open, renamed in from outside DIR, rewritten under one name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import samplefiles
from conftest import expected_stream, json_log, read_records, run_cli, run_once, summary, write_listener
from tracereplay import Replayer, Saved, operations, replay


def once(ckpt: Path, tmp_path: Path, env: dict[str, str], *args: str):
    write_listener(tmp_path / "listeners", "rec")
    result = run_once(ckpt, tmp_path, env, "-l", str(tmp_path / "listeners"), *args)
    assert result.returncode == 0, result.stderr
    return result


def after_saves(records_path: Path) -> list[tuple[int, str]]:
    return [(r["stdin"]["step"], os.path.basename(r["stdin"]["checkpoint"]))
            for r in read_records(records_path) if r["argv"][0] == "after_save"]


def wait_records(records_path: Path, predicate, timeout: float = 30.0) -> None:
    """Wait until the listener records satisfy ``predicate``."""
    deadline = time.monotonic() + timeout
    while not predicate(read_records(records_path)):
        assert time.monotonic() < deadline, read_records(records_path)
        time.sleep(0.05)


def write_in_place(path: Path, data: bytes, *, hold: float = 0.0) -> None:
    """Write ``data`` under its final name as h5py/torch.save do: truncate, write, close."""
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        if hold:
            (path.parent / f"{path.name}.poke").touch()  # a notification: the watcher looks at the partial file
            time.sleep(hold)
            (path.parent / f"{path.name}.poke").unlink()
        handle.write(data[len(data) // 2 :])


def rename_in(path: Path, data: bytes) -> None:
    """Write ``data`` beside DIR and rename it in (Lightning from $TMPDIR, torch with os.replace)."""
    outside = path.parent.parent / f".tmp-{path.name}"
    outside.write_bytes(data)
    os.replace(outside, path)


# Real traces --------------------------------------------------------------------


@pytest.mark.parametrize("trace,layout", [("keras_ckpt", "keras"), ("lightning_ckpt", "lightning")])
def test_trace_live_every_save_once_in_order(trace, layout, ckpt, tmp_path, watch, records_path):
    """Steps: watch an empty DIR (auto); replay the framework's saves; before the trace
    touches another file, wait for the after_save of each save the writer reported (it
    reports a save a few ms before its last write; the trace's own pace is 0.5 s a save).
    Result: one before_save/after_save per save, in order; Lightning's last.ckpt never
    delivered as a save of its own; the layout detected."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()
    replayer, saves, reported = Replayer(ckpt), [], []
    for op in operations(trace):
        if isinstance(op, Saved):
            saves.append(op)
            reported.append(op)
            continue
        for save in [s for s in reported if s.path != op[1]]:
            w.wait_run("rec", "after_save", save.step)
            reported.remove(save)
        replayer.apply(*op)
    replayer.close()
    w.wait_run("rec", "after_save", saves[-1].step)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == expected_stream([s.step for s in saves])
    assert [path for _, path in after_saves(records_path)] == [os.path.basename(s.path) for s in saves]
    assert w.wait_for(lambda r: r.get("layout") == layout and "detected:" in r["msg"])


@pytest.mark.parametrize("trace,present", [("keras_ckpt", [1, 2, 3, 4, 5]), ("lightning_ckpt", [12, 15])])
def test_trace_once_delivers_what_is_there(trace, present, ckpt, tmp_path, env, records_path):
    """Steps: replay all saves (Lightning's top-k deletes three), then ``run --once``.
    Result: the files still there, in step order, each once (last.ckpt is step 15's copy)."""
    replay(trace, ckpt)
    once(ckpt, tmp_path, env)
    assert summary(read_records(records_path)) == expected_stream(present)


# In place: a half-written file never commits -------------------------------------


@pytest.mark.parametrize(
    "layout,partial,complete,make",
    [
        ("torch", "model_5.pt", "model_6.pt", lambda step: samplefiles.torch_zip({"step": step})),
        ("keras", "epoch-005.weights.h5", "epoch-006.weights.h5", lambda step: samplefiles.hdf5()),
        ("keras", "epoch-005.keras", "epoch-006.keras", lambda step: samplefiles.keras_zip()),
        ("glob:model_{step}.bin", "model_5.bin", "model_6.bin", lambda step: samplefiles.torch_zip({})),
    ],
)
def test_half_written_file_never_commits(layout, partial, complete, make, ckpt, tmp_path, watch, records_path):
    """Steps: a file half written in place and held open; then a complete later save;
    then the first file finished.
    Result: before_save 5 (observed) at once; after_save 6 while 5 is still open and
    no after_save 5; after_save 5 exactly once after it is closed."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--layout", layout)
    w.wait_ready()
    data = make(5)
    handle = open(ckpt / partial, "wb")  # noqa: SIM115
    handle.write(data[: len(data) - 40])
    handle.flush()
    w.wait_run("rec", "before_save", 5)
    (ckpt / complete).write_bytes(make(6))
    w.wait_run("rec", "after_save", 6)
    (ckpt / "poke").touch()  # the watcher looks again ...
    time.sleep(0.3)  # ... and the partial file stays unchanged longer than the settle time
    assert ("after_save", 5) not in summary(read_records(records_path))
    handle.write(data[len(data) - 40 :])
    handle.close()
    w.wait_run("rec", "after_save", 5)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records).count(("after_save", 5)) == 1
    observed = [r["stdin"]["observed"] for r in records if r["argv"] == ["before_save"] and r["stdin"]["step"] == 5]
    assert observed == [True]


# torch --------------------------------------------------------------------------


def test_torch_last_pt_rewritten_in_place_is_a_save_each_time(ckpt, tmp_path, watch, records_path):
    """Steps: last.pt written in place three times ({"step": 10}, 20, 30), each rewrite
    held half-written for a while.
    Result: exactly one after_save per complete rewrite, with the step read from the
    file's content, all on last.pt."""
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--layout", "torch")
    w.wait_ready()
    for step in (10, 20, 30):
        write_in_place(ckpt / "last.pt", samplefiles.torch_zip({"step": step, "model": {}}), hold=0.3)
        w.wait_run("rec", "after_save", step)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert after_saves(records_path) == [(10, "last.pt"), (20, "last.pt"), (30, "last.pt")]


def test_torch_atomic_save_and_stepless_file(ckpt, tmp_path, watch, records_path):
    """Steps: model_10.pt.tmp written (os.replace style), then renamed onto model_10.pt;
    then best.pt, whose content has no step.
    Result: before_save 10 observed while the temp name is there, after_save 10 after
    the rename; best.pt is a save with the newest step a name showed (10)."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()
    (ckpt / "model_10.pt.tmp").write_bytes(samplefiles.torch_zip({"step": 10}))
    before = w.wait_run("rec", "before_save", 10)
    assert ("after_save", 10) not in summary(read_records(records_path))
    os.replace(ckpt / "model_10.pt.tmp", ckpt / "model_10.pt")
    w.wait_run("rec", "after_save", 10)
    rename_in(ckpt / "best.pt", samplefiles.torch_zip({"model": {}}))
    wait_records(records_path, lambda records: len(after_saves(records_path)) == 2)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert before["outcome"] == "done"
    assert after_saves(records_path) == [(10, "model_10.pt"), (10, "best.pt")]
    first = read_records(records_path)[1]
    assert first["argv"] == ["before_save"] and first["stdin"]["observed"] is True


# lightning ------------------------------------------------------------------------


def test_lightning_copy_in_place_and_last_ckpt_not_doubled(ckpt, tmp_path, watch, records_path):
    """Steps ($TMPDIR on another file system): epoch=0-step=3.ckpt copied in place,
    held half-copied, finished; last.ckpt copied in place (same step); then step 6
    renamed in with last.ckpt as a symlink to it (save_last="link"); then step 9 with
    last.ckpt replaced by a rename, and top-k deleting step 3.
    Result: before_save 3 observed during the copy; after_save 3, 6, 9 once each;
    last.ckpt never an after_save."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--layout", "lightning")
    w.wait_ready()
    data = samplefiles.lightning_ckpt(3)
    with open(ckpt / "epoch=0-step=3.ckpt", "wb") as handle:
        handle.write(data[:1000])
        handle.flush()
        w.wait_run("rec", "before_save", 3)
        handle.write(data[1000:])
    w.wait_run("rec", "after_save", 3)
    write_in_place(ckpt / "last.ckpt", samplefiles.lightning_ckpt(3))
    rename_in(ckpt / "epoch=0-step=6.ckpt", samplefiles.lightning_ckpt(6))
    os.remove(ckpt / "last.ckpt")
    os.symlink("epoch=0-step=6.ckpt", ckpt / "last.ckpt")
    w.wait_run("rec", "after_save", 6)
    rename_in(ckpt / "epoch=0-step=9.ckpt", samplefiles.lightning_ckpt(9))
    os.remove(ckpt / "epoch=0-step=3.ckpt")
    rename_in(ckpt / "last.ckpt", samplefiles.lightning_ckpt(9))
    w.wait_run("rec", "after_save", 9)
    time.sleep(0.5)  # last.ckpt has settled: it would have been delivered by now
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == expected_stream([3, 6, 9])
    assert [path for _, path in after_saves(records_path)] == [f"epoch=0-step={s}.ckpt" for s in (3, 6, 9)]
    assert records[1]["stdin"]["observed"] is True


def test_lightning_last_ckpt_alone_is_a_save(ckpt, tmp_path, env, records_path):
    """Steps: only last.ckpt (save_top_k=0), its global_step 7; ``run --once``.
    Result: after_save 7 on last.ckpt."""
    (ckpt / "last.ckpt").write_bytes(samplefiles.lightning_ckpt(7))
    once(ckpt, tmp_path, env)
    assert after_saves(records_path) == [(7, "last.ckpt")]


# keras BackupAndRestore -------------------------------------------------------------


def test_keras_backup_and_restore(ckpt, tmp_path, watch, records_path):
    """Steps: BackupAndRestore(backup_dir=DIR): latest.weights.h5 then
    training_metadata.json, twice (epochs 1, 2); then Keras deletes DIR at the end.
    Result: after_save 1 and 2 on latest.weights.h5 (the metadata is the commit);
    end with step 2 once DIR is gone."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--state-dir", str(tmp_path / "state"))
    w.wait_ready()
    for epoch in (1, 2):
        write_in_place(ckpt / "latest.weights.h5", samplefiles.hdf5())
        write_in_place(ckpt / "training_metadata.json", json.dumps({"epoch": epoch, "batch": 0}).encode())
        w.wait_run("rec", "after_save", epoch)
    shutil.rmtree(ckpt)
    w.wait_run("rec", "end", 2)
    w.send(signal.SIGTERM)
    w.wait_exit()
    assert after_saves(records_path) == [(1, "latest.weights.h5"), (2, "latest.weights.h5")]


# detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "files,layout,step",
    [
        ({"epoch-003.weights.h5": samplefiles.hdf5()}, "keras", 3),
        ({"model.02-0.41.keras": samplefiles.keras_zip()}, "keras", 2),
        ({"latest.weights.h5": samplefiles.hdf5(), "training_metadata.json": b'{"epoch": 4, "batch": 0}'},
         "keras", 4),
        ({"model_100.pt": samplefiles.torch_zip({})}, "torch", 100),
        ({"ckpt_step300_loss2.pth": samplefiles.torch_zip({})}, "torch", 300),
        ({"epoch=1-step=40-v1.ckpt": samplefiles.lightning_ckpt(40)}, "lightning", 40),
        ({"last.ckpt": samplefiles.lightning_ckpt(50)}, "lightning", 50),
    ],
)
def test_detected_from_the_directory(files, layout, step, ckpt, tmp_path, env, records_path):
    """Steps: DIR holds one framework's files; ``run --once`` with auto detection.
    Result: the layout is detected and the save delivered with the step its name (or
    content) gives."""
    for name, data in files.items():
        (ckpt / name).write_bytes(data)
    result = once(ckpt, tmp_path, env)
    assert any(r.get("layout") == layout and "detected:" in r["msg"] for r in json_log(result.stderr))
    assert summary(read_records(records_path)) == expected_stream([step])


@pytest.mark.parametrize("name", ["last.pt", "model.pt.tmp", "weights_5.bin", "notes_5.txt"])
def test_not_detected(name, ckpt, tmp_path, env, records_path):
    """Steps: DIR holds only a file that names no layout (no number, a stepless temp name, .bin).
    Result: no layout chosen, no save."""
    (ckpt / name).write_bytes(samplefiles.torch_zip({"step": 1}))
    result = once(ckpt, tmp_path, env)
    assert not any("detected:" in r["msg"] for r in json_log(result.stderr))
    assert summary(read_records(records_path)) == [("begin", None), ("end", None)]


# glob -----------------------------------------------------------------------------------


def test_glob_with_format_spec_in_a_subdirectory(ckpt, tmp_path, env, records_path):
    """Steps: ``glob:ckpt/epoch{epoch:03d}.h5`` over ckpt/epoch001.h5, epoch012.h5 (whole),
    epoch3.h5 (not 3 digits), epoch007_h5 (not .h5), epoch004.h5 (half written), epoch005.h5.tmp; ``run --once``.
    Result: before_save 4 and 5 at the first look (saves under way); epochs 1 and 12
    delivered at the second look (whole files wait for it)."""
    sub = ckpt / "ckpt"
    sub.mkdir()
    for name in ("epoch001.h5", "epoch012.h5", "epoch3.h5", "epoch007_h5"):
        (sub / name).write_bytes(samplefiles.hdf5())
    (sub / "epoch004.h5").write_bytes(samplefiles.hdf5()[:3000])
    (sub / "epoch005.h5.tmp").write_bytes(samplefiles.hdf5())
    once(ckpt, tmp_path, env, "--layout", "glob:ckpt/epoch{epoch:03d}.h5")
    assert summary(read_records(records_path)) == [
        ("begin", None), ("before_save", 4), ("before_save", 5),
        ("before_save", 1), ("after_save", 1), ("before_save", 12), ("after_save", 12), ("end", 12)]
    assert [c for _, c in after_saves(records_path)] == ["epoch001.h5", "epoch012.h5"]


def test_glob_live_placeholders_in_a_directory_and_plain_files(ckpt, tmp_path, watch, records_path):
    """Steps: ``glob:run-*/step_{step:06d}/weights.{step}.bin`` (a non-zip format: only
    stability speaks for it); a directory matching nothing but the last part; a dir
    run-a/ created later, step_000010/ in it, the file written in place.
    Result: after_save 10 with that file's path; a directory is no checkpoint (one warning)."""
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), "--layout", "glob:run-*/step_{step:06d}/weights.{step}.bin")
    w.wait_ready()
    (ckpt / "run-a" / "step_000010").mkdir(parents=True)
    (ckpt / "run-a" / "step_000011" / "weights.11.bin").mkdir(parents=True)
    (ckpt / "run-a" / "step_000012").mkdir()
    (ckpt / "run-a" / "step_000012" / "weights.13.bin").write_bytes(b"step 12 != 13")
    write_in_place(ckpt / "run-a" / "step_000010" / "weights.10.bin", os.urandom(5000), hold=0.1)
    w.wait_run("rec", "after_save", 10)
    w.wait_for(lambda r: r.get("level") == "warning" and "is a directory" in r["msg"])
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert [r["stdin"]["checkpoint"] for r in read_records(records_path)] == [
        str(ckpt / "run-a" / "step_000010" / "weights.10.bin")]


@pytest.mark.parametrize(
    "spec,says",
    [
        ("glob:model.pt", "has no {step} or {epoch}"),
        ("glob:model_{step:x}.pt", "not an integer format"),
        ("glob:../model_{step}.pt", "relative path inside DIR"),
        ("glob:model_{step.pt", "expected '}'"),
        ("glob", "needs an argument"),
    ],
)
def test_bad_glob_pattern_is_a_usage_error(spec, says, ckpt, tmp_path, env):
    """Steps: ``run --layout`` with a glob pattern that cannot work.
    Result: exit 2 and one line saying what to fix, no traceback."""
    result = run_cli("run", str(ckpt), "--once", "--layout", spec, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr


# the content checks, on every prefix ------------------------------------------------------


@pytest.mark.parametrize("make", [samplefiles.hdf5, samplefiles.keras_zip,
                                  lambda: samplefiles.torch_zip({"step": 1}), lambda: samplefiles.lightning_ckpt(2)])
def test_content_check_rejects_every_prefix(make, tmp_path):
    """Steps: every prefix of a whole zip / HDF5 file, as a writer in place leaves it.
    Result: only the whole file passes; a zip whose end record counts one entry more
    than its central directory holds fails."""
    from ckptwatch.layouts.singlefile import whole

    data = make()
    path = tmp_path / "f"
    passed = []
    for size in range(len(data) + 1):
        path.write_bytes(data[:size])
        if whole(str(path), size)[0]:
            passed.append(size)
    assert passed == [len(data)]
    if data[:2] == b"PK":
        end = data.rindex(b"PK\x05\x06")
        entries = int.from_bytes(data[end + 10 : end + 12], "little")
        more = (entries + 1).to_bytes(2, "little")
        path.write_bytes(data[: end + 8] + more + more + data[end + 12 :])
        assert not whole(str(path), len(data))[0]
