"""A save under way is seen by any look that happens during it, in every layout.

In process (``saveops.Looker``: the engine's index, layout and tracker on a real
directory), each framework's save is stopped after every operation between its
first file and its commit, and one look is taken there, with the hints the kernel
would have given since the look before: the look must announce the save
(``before_save``, observed). Then, with real ``ckptwatch run`` processes, every
layout's saves replayed slowly must be announced before their commits; TF2
``CheckpointManager`` saves at full speed, to a listener that takes all four
events, keep each ``before_save``/``after_save`` pair together and in order.

Not announced early, by design (their files do not say the step before the
commit): a Lightning checkpoint renamed in from ``$TMPDIR``, Keras
``BackupAndRestore``, a ``last.pt`` with no step in its name, Ray Train saves
whose reports carry a step metric.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import WAIT, expected_stream, read_records, summary, write_listener
from dirwriters import DeepSpeed, MarkerConvention, Megatron, NeMo, Ray
from saveops import Looker, Step, copied_in_place, in_place, own, saves, tf1_unsharded, tf2_manager, trace
from tracereplay import Replayer, Saved

from ckptwatch import layouts
from ckptwatch.dirindex import DirIndex
from ckptwatch.layouts.ray import step_of

_TF1_ELSEWHERE = "/mnt/elsewhere/train"

#: name: (the saves as operations, --layout, what auto-detection must choose (None: never detected),
#: whether a save is one file (it commits by settling: whole files are not announced), TF1's absolute paths)
REPLAYED: dict[str, tuple[Callable[[], list[Step]], str, str | None, bool, str | None]] = {
    "tf2_manager": (lambda: trace("tf2_manager"), "tf", "tf", False, None),
    "tf2_manager_rotating": (lambda: tf2_manager(range(5, 45, 5)), "tf", "tf", False, None),
    "tf1_saver_sharded": (lambda: trace("tf1_saver"), "tf", "tf", False, _TF1_ELSEWHERE),
    "tf1_unsharded_into_empty_dir": (lambda: tf1_unsharded([0, 5, 10, 15]), "tf", "tf", False, None),
    "hf_trainer": (lambda: trace("hf_trainer"), "hf", "hf", False, None),
    "torch_dcp": (lambda: trace("torch_dcp"), "dcp", "dcp", False, None),
    "orbax_manager": (lambda: trace("orbax_manager"), "orbax", "orbax", False, None),
    "keras_ckpt": (lambda: trace("keras_ckpt"), "keras", "keras", True, None),
    "lightning_copied_in_place": (lambda: copied_in_place(trace("lightning_ckpt"), r"epoch=\d+-step=\d+\.ckpt$"),
                                  "lightning", "lightning", True, None),
    "torch_save_in_place": (lambda: in_place([(s, f"model_{s}.pt") for s in (100, 200, 300, 400)]),
                            "torch", "torch", True, None),
    "glob_in_place": (lambda: in_place([(s, f"weights_{s}.h5") for s in (1, 2, 3, 4)]),
                      "glob:weights_{step}.h5", None, True, None),
}

#: name: (a synthetic writer, --layout, what auto-detection must choose)
WRITTEN: dict[str, tuple[Callable[[Path], object], str, str | None]] = {
    "deepspeed": (lambda d: DeepSpeed(d, keep=2), "deepspeed", "deepspeed"),
    "megatron": (lambda d: Megatron(d, retain_interval=1000), "megatron", "megatron"),
    "nemo": (lambda d: NeMo(d, keep=2), "nemo", "nemo"),
    "ray_without_step_metric": (lambda d: Ray(d, keep=2, step_metric=False), "ray", "ray"),
    "marker": (lambda d: MarkerConvention(d, keep=2), "marker:DONE", None),
}
WRITER_STEPS = [10, 20, 30]


def between_two_tf_files(ops: list[tuple[str, str, int]], k: int) -> bool:
    """After op k, a TF1 unsharded save shows only its data file: BundleWriter::Finish renamed
    it from its .tempstate and creates the .index's next, microseconds later. The index keeps
    no data file (one name per checkpoint: the .index), so detection cannot tell TF by it; a
    watcher that looked at the .tempstate (a second or more before) chose TF already."""
    events, path, _ = ops[k]
    return events == "MOVED_TO" and ".data-" in path and k + 1 < len(ops) and ".index.tempstate" in ops[k + 1][1]


def ops_of(steps: list[Step]) -> list[tuple[str, str, int]]:
    return [s for s in steps if not isinstance(s, Saved)]


def name_of(save: Saved) -> str:
    return save.path.removeprefix("./")


def first_op(ops: list[tuple[str, str, int]], save: Saved) -> int:
    """The index of the save's first operation (the first on a path of its own)."""
    return next(i for i, (_, path, _) in enumerate(ops) if own(name_of(save), path))


def whole_op(ops: list[tuple[str, str, int]], save: Saved, start: int) -> int:
    """A single-file save: the operation after which its file is whole (closed, or renamed in)."""
    for i in range(start, len(ops)):
        events, path, _ = ops[i]
        if path.removeprefix("./") == name_of(save) and {"CLOSE_WRITE", "MOVED_TO"} & set(events.split(",")):
            return i
    raise AssertionError(f"{save.path} is never closed")


def commit_ops(steps: list[Step], spec: str, one_file: bool, root: Path, absolute: str | None) -> dict[int, int]:
    """Per save, the operation that commits it (a single file: that makes it whole), found by
    replaying with a look after every operation."""
    ops = ops_of(steps)
    if one_file:
        return {s.step: whole_op(ops, s, first_op(ops, s)) for s in saves(steps)}
    looker = Looker(root, spec, absolute)
    found: dict[int, int] = {}
    try:
        looker.look()
        for i, op in enumerate(ops):
            looker.apply(op)
            for event in looker.look():
                if event.name == "after_save" and event.step is not None:
                    found.setdefault(event.step, i)
    finally:
        looker.close()
    return found


def announced(events, step: int) -> bool:
    return any(e.name == "before_save" and e.step == step and e.observed for e in events)


# Any look during a save announces it (in process) --------------------------------------------


@pytest.mark.parametrize("name", sorted(REPLAYED))
def test_any_look_during_a_replayed_save_announces_it(name, tmp_path):
    """Steps: a framework's saves replayed with a look after each operation, up to the 4th save;
    then the 4th replayed up to operation k with no look, and one look there; for every k
    from its first file to its commit (a single file: until it is whole).
    Result: every such look gives before_save for it, observed, and no after_save."""
    make, spec, _, one_file, absolute = REPLAYED[name]
    steps = make()
    target = saves(steps)[3]
    ops = ops_of(steps)
    start = first_op(ops, target)
    end = commit_ops(steps, spec, one_file, tmp_path / "commits", absolute)[target.step]
    assert end > start
    for k in range(start, end):
        looker = Looker(tmp_path / f"k{k}", spec, absolute)
        looker.root.mkdir(exist_ok=True)
        try:
            looker.look()
            for op in ops[:start]:
                looker.apply(op)
                looker.look()
            for op in ops[start:k + 1]:
                looker.apply(op)
            events = looker.look()
        finally:
            looker.close()
        said = [(e.name, e.step, e.observed) for e in events]
        assert announced(events, target.step), f"{name}: a look after {ops[k]} (hints so far) missed the save: {said}"
        assert ("after_save", target.step) not in [(e.name, e.step) for e in events]


@pytest.mark.parametrize("name", sorted(n for n, v in REPLAYED.items() if v[2]))
def test_any_look_during_a_first_save_under_auto_detection_announces_it(name, tmp_path):
    """Steps: an empty DIR, auto-detection (the watcher looked once at it empty); the first
    save replayed up to operation k with no look, and one look there; for every k from the
    save's first file to its commit (a single file: until it is whole).
    Result: the layout is chosen and the look gives before_save for the save, observed."""
    make, spec, layout, one_file, absolute = REPLAYED[name]
    steps = make()
    target = saves(steps)[0]
    ops = ops_of(steps)
    start = next(i for i, (events, path, _) in enumerate(ops) if own(name_of(target), path) and "ISDIR" not in events)
    end = commit_ops(steps, spec, one_file, tmp_path / "commits", absolute)[target.step]
    assert end > start
    for k in range(start, end):
        if between_two_tf_files(ops, k):
            continue
        looker = Looker(tmp_path / f"k{k}", "auto", absolute)
        try:
            assert looker.look() == []
            for op in ops[:k + 1]:
                looker.apply(op)
            events = looker.look()
        finally:
            looker.close()
        assert looker.layout is not None and looker.layout.name == layout, f"{name}: undecided after {ops[k]}"
        said = [(e.name, e.step, e.observed) for e in events]
        assert announced(events, target.step), f"{name}: a look after {ops[k]} missed the first save: {said}"


class _Stop(Exception):
    pass


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_any_look_during_a_written_save_announces_it(name, tmp_path):
    """Steps: two saves by a synthetic writer, looked at after each of its operations; the third
    stopped after its j-th operation (for every j up to its commit write) and one look there.
    Result: every such look gives before_save for the third, observed (Ray without a step
    metric: its step is the name's timestamp)."""
    make, spec, _ = WRITTEN[name]
    points = 0
    while True:
        root = tmp_path / f"j{points}"
        root.mkdir()
        writer = make(root)
        looker = Looker(root, spec)
        looker.look()
        before = looker.snapshot()

        def keep_up(phase: str) -> None:
            nonlocal before
            looker.hint_changes(before)
            looker.look()
            before = looker.snapshot()

        earlier = set()
        for step in WRITER_STEPS[:-1]:
            earlier.add(writer.save(step, keep_up))  # type: ignore[attr-defined]
            keep_up("saved")
        seen: list[object] = []
        calls = 0

        def stop_at(phase: str) -> None:
            nonlocal calls
            if calls == points:
                looker.hint_changes(before)
                seen.append((phase, looker.look()))
                raise _Stop
            calls += 1

        with pytest.raises(_Stop):
            writer.save(WRITER_STEPS[-1], stop_at)  # type: ignore[attr-defined]
        phase, events = seen[0]  # type: ignore[misc]
        new = [e for e in events if e.name == "before_save" and e.observed and e.checkpoint not in earlier]
        assert new, f"{name}: a look at {phase} #{points} missed the save: {events}"
        points += 1
        if phase == "commit":
            break
    assert points >= 2


# Auto-detection knows a directory from the first file of its first save --------------------


def _detected(index: DirIndex) -> str | None:
    found = layouts.detect_all(index.peek)
    return found[0][0] if found else None


@pytest.mark.parametrize("name", sorted(n for n, v in REPLAYED.items() if v[2]))
def test_detection_from_the_first_file_of_a_first_save(name, tmp_path):
    """Steps: an empty DIR; the first save's operations one by one, the index refreshed with
    each one's name as the engine does while undecided.
    Result: from the save's first file on, detection chooses the layout, at every step up to
    its commit."""
    make, spec, layout, one_file, absolute = REPLAYED[name]
    steps = make()
    first = saves(steps)[0]
    ops = ops_of(steps)
    end = commit_ops(steps, spec, one_file, tmp_path / "commits", absolute)[first.step]
    root = tmp_path / "dir"
    root.mkdir()
    index = DirIndex(str(root), [layouts.layout_class(n) for n in layouts.names()])
    index.relist()
    replayer = Replayer(root, absolute_state_paths=absolute)
    filed = False
    moving: set[str] = set()  # a rename's source: refreshed with its target, once it is done
    try:
        for k, op in enumerate(ops[:end + 1]):
            replayer.apply(*op)
            top = op[1].removeprefix("./").split("/", 1)[0]
            if op[0] == "MOVED_FROM":
                moving.add(top)
                continue
            index.refresh({top, *moving})
            moving.clear()
            filed = filed or (own(name_of(first), op[1]) and "ISDIR" not in op[0])
            if filed and not between_two_tf_files(ops, k):
                assert _detected(index) == layout, f"{name}: not detected after {op}"
    finally:
        replayer.close()
    assert filed


@pytest.mark.parametrize("name", sorted(n for n, v in WRITTEN.items() if v[2]))
def test_detection_of_a_written_first_save(name, tmp_path):
    """Steps: an empty DIR; the writer's first save, stopped at each of its pause points.
    Result: detection chooses the layout at every point."""
    make, _, layout = WRITTEN[name]
    index = DirIndex(str(tmp_path), [layouts.layout_class(n) for n in layouts.names()])
    index.relist()
    checked = []

    def check(phase: str) -> None:
        index.relist()
        checked.append((phase, _detected(index)))

    make(tmp_path).save(WRITER_STEPS[0], check)  # type: ignore[attr-defined]
    assert checked and all(found == layout for _, found in checked), checked


# Live: real watchers, saves replayed slowly ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(REPLAYED))
def test_live_slow_replay_announces_every_save_before_its_commit(name, ckpt, tmp_path, watch, records_path):
    """Steps: watch an empty DIR (auto-detection where the layout has it; TF1 unsharded's
    first save lands in the empty DIR); replay each save, at least 100 ms from its first file
    to its commit, and hold the commit until the watcher has run before_save.
    Result: begin, then per save before_save (observed) and after_save, in order; end."""
    make, spec, layout, one_file, absolute = REPLAYED[name]
    steps = make()
    commits = commit_ops(steps, spec, one_file, tmp_path / "commits", absolute)
    ops = ops_of(steps)
    starts = {first_op(ops, s): s for s in saves(steps)}
    by_op = {i: step for step, i in commits.items()}
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), *([] if layout else ["--layout", spec]))
    w.wait_ready()
    replayer = Replayer(ckpt, absolute_state_paths=absolute)
    delivered: list[int] = []
    try:
        for i, op in enumerate(ops):
            if i in starts:
                delivered and w.wait_run("rec", "after_save", delivered[-1])  # the one before is done
            if i in by_op:
                w.wait_run("rec", "before_save", by_op[i])  # the commit waits for the announcement
                delivered.append(by_op[i])
            replayer.apply(*op)
            if i in starts:
                time.sleep(0.12)  # a slow save: the first file, then at least 100 ms before the commit
        w.wait_run("rec", "after_save", delivered[-1])
    finally:
        replayer.close()
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == expected_stream([s.step for s in saves(steps)])
    assert all(r["stdin"]["observed"] for r in records if r["argv"] == ["before_save"])
    if layout:
        assert w.wait_for(lambda r: r.get("layout") == layout and "detected" in r.get("msg", ""))


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_live_slow_writer_announces_every_save_before_its_commit(name, ckpt, tmp_path, watch, records_path):
    """Steps: as above, with a synthetic writer (DeepSpeed, Megatron-LM, NeMo, Ray Train without
    a step metric, marker:DONE): 100 ms after each save's first operation, and its commit
    held until the watcher ran before_save.
    Result: per save before_save (observed) then after_save, in order. Ray's first save has no
    snapshot yet to say that its reports carry no step: it alone comes unobserved."""
    make, spec, layout = WRITTEN[name]
    writer = make(ckpt)
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"), *([] if layout else ["--layout", spec]))
    w.wait_ready()
    ray = name.startswith("ray")
    delivered = []
    for n, step in enumerate(WRITER_STEPS):
        def pause(phase: str, step: int = step, n: int = n) -> None:
            if phase == "started":
                time.sleep(0.12)
            if phase == "commit" and not (ray and n == 0):
                w.wait_run("rec", "before_save", step_of(newest(ckpt), {}) if ray else step)
        made = writer.save(step, pause)  # type: ignore[attr-defined]
        delivered.append(step_of(made, {}) if ray else step)
        w.wait_run("rec", "after_save", delivered[-1])
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == expected_stream(delivered)
    observed = [r["stdin"]["observed"] for r in records if r["argv"] == ["before_save"]]
    assert observed == ([False, True, True] if ray else [True, True, True])


def newest(root: Path) -> str:
    """The newest Ray Train checkpoint directory (its default name sorts by time)."""
    return max(p.name for p in root.iterdir() if p.name.startswith("checkpoint_"))


# Live: TF2 CheckpointManager at full speed, a listener taking every event ----------------------


def test_live_tf2_manager_full_speed_pairs_stay_in_order(ckpt, tmp_path, watch, records_path):
    """Steps: a listener that takes all four events (as listeners.d/10-log-event); 12 TF2
    CheckpointManager saves (sharded via ckpt-N_temp/, the state file renamed in twice, the
    oldest of 3 deleted after each commit) replayed as fast as the disk takes them.
    Result: begin first, end last; every after_save comes right after its own before_save,
    the steps rise, the last save is delivered."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()
    steps = tf2_manager(range(5, 65, 5))
    replayer = Replayer(ckpt)
    try:
        for op in ops_of(steps):
            replayer.apply(*op)
    finally:
        replayer.close()
    w.wait_run("rec", "after_save", 60, timeout=WAIT * 2)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    events = summary(read_records(records_path))
    assert events[0] == ("begin", None) and events[-1] == ("end", 60)
    pairs = events[1:-1]
    afters = [i for i, (name, _) in enumerate(pairs) if name == "after_save"]
    assert afters and pairs[afters[-1]] == ("after_save", 60)
    for i in afters:
        assert i > 0 and pairs[i - 1] == ("before_save", pairs[i][1]), pairs
    steps_delivered = [pairs[i][1] for i in afters]
    assert steps_delivered == sorted(set(steps_delivered)), pairs


def test_live_tf2_look_only_after_the_temp_dir_is_gone(ckpt, tmp_path, watch, records_path):
    """Steps: save 5 delivered; the watcher stopped (SIGSTOP); save 10 written up to its state
    file (ckpt-10_temp/ made and removed, .data renamed out, .index in place); the watcher
    resumed, so its first look comes when only the prefix's files show the save.
    Result: before_save 10, observed, before the state file is renamed in; then after_save 10."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()
    steps = tf2_manager([5, 10])
    ops = ops_of(steps)
    second = first_op(ops, saves(steps)[1])
    commit = next(i for i in range(second, len(ops)) if ops[i][1] == "checkpoint")
    replayer = Replayer(ckpt)
    try:
        for op in ops[:second]:
            replayer.apply(*op)
        w.wait_run("rec", "after_save", 5)
        w.proc.send_signal(signal.SIGSTOP)
        try:
            for op in ops[second:commit]:
                replayer.apply(*op)
            assert not (ckpt / "ckpt-10_temp").exists() and (ckpt / "ckpt-10.index").exists()
        finally:
            w.proc.send_signal(signal.SIGCONT)
        w.wait_run("rec", "before_save", 10)
        for op in ops[commit:]:
            replayer.apply(*op)
    finally:
        replayer.close()
    w.wait_run("rec", "after_save", 10)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    assert summary(records) == expected_stream([5, 10])
    # save 5 went at full speed (seen starting or not); save 10 was seen only by its prefix files
    assert [r["stdin"]["observed"] for r in records if r["argv"] == ["before_save"]][1:] == [True]
