"""A look after a notification reads only what it was told of, and nothing is lost by it.

In process, on real directories with the engine's own index, layouts and
tracker (``saveops.Looker``, hints as inotify gives them: the top of DIR and
the subdirectories a layout asked to watch), for every layout:

- a hinted look after a commit among many checkpoints is a delta that holds
  only the new checkpoint (what makes a commit cost the same beside 10 or
  10,000 checkpoints);
- a checkpoint saved again in place is a new save: at once when a
  notification tells of it, else by a look at everything (the safety timer, a
  poll tick) within ``settled_every`` of them;
- a deleted checkpoint leaves the observation, and a new save under its name
  is delivered again.

Then the same with a live ``ckptwatch run``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import samplefiles
from conftest import WAIT, read_records, summary, write_listener
from saveops import Looker

from ckptwatch.layouts.entries import EntryLayout


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # in place, as the frameworks write these
        handle.write(data.encode() if isinstance(data, str) else data)


def _replace(path: Path, data: bytes) -> None:
    _write(path.with_name(path.name + ".tmp"), data)
    os.replace(path.with_name(path.name + ".tmp"), path)


class Saves:
    """One layout's saves, written as its framework writes them (whole, commit last)."""

    spec: str
    one_file = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[int] = []

    def save(self, i: int, again: bool = False) -> None:
        """Save step ``i``; ``again``: over the committed one, in place (different content)."""
        raise NotImplementedError

    def path(self, i: int) -> str:
        raise NotImplementedError

    def delete(self, i: int) -> None:
        target = self.root / self.path(i)
        shutil.rmtree(target) if target.is_dir() else target.unlink()


class TF(Saves):
    spec = "tf"

    def path(self, i: int) -> str:
        return f"model.ckpt-{i}"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / f"model.ckpt-{i}.data-00000-of-00001", os.urandom(64 if again else 32))
        _write(self.root / f"model.ckpt-{i}.index", os.urandom(48 if again else 16))
        if i not in self.made:
            self.made.append(i)
        self._state()

    def delete(self, i: int) -> None:
        for suffix in (".index", ".data-00000-of-00001"):
            (self.root / f"model.ckpt-{i}{suffix}").unlink()
        self.made.remove(i)
        self._state()

    def _state(self) -> None:
        body = f'model_checkpoint_path: "model.ckpt-{self.made[-1]}"\n'
        body += "".join(f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in self.made)
        _replace(self.root / "checkpoint", body.encode())


class HF(Saves):
    spec = "hf"

    def path(self, i: int) -> str:
        return f"checkpoint-{i}"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i) / "model.safetensors", os.urandom(32))
        _write(self.root / self.path(i) / "trainer_state.json", json.dumps({"global_step": i, "again": again}))


class DCP(Saves):
    spec = "dcp"

    def path(self, i: int) -> str:
        return f"step-{i}"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i) / "__0_0.distcp", os.urandom(32))
        _replace(self.root / self.path(i) / ".metadata", os.urandom(64 if again else 32))


class Orbax(Saves):
    spec = "orbax"

    def path(self, i: int) -> str:
        return str(i)

    def save(self, i: int, again: bool = False) -> None:
        tmp = self.root / f"{i}.orbax-checkpoint-tmp"
        _write(tmp / "_CHECKPOINT_METADATA", json.dumps({"again": again}))
        _write(tmp / "commit_success.txt", b"done")
        if again:
            shutil.rmtree(self.root / str(i))
        os.replace(tmp, self.root / str(i))


class DeepSpeed(Saves):
    spec = "deepspeed"

    def path(self, i: int) -> str:
        return f"global_step{i}"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i) / "mp_rank_00_model_states.pt", os.urandom(64 if again else 32))
        _write(self.root / "latest", self.path(i))


class Megatron(Saves):
    spec = "megatron"

    def path(self, i: int) -> str:
        return f"iter_{i:07d}"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i) / "metadata.json", json.dumps({"again": again}))
        _write(self.root / "latest_checkpointed_iteration.txt", str(i))


class NeMo(Saves):
    spec = "nemo"

    def path(self, i: int) -> str:
        return f"gpt--step={i}"

    def save(self, i: int, again: bool = False) -> None:
        marker = self.root / f"{self.path(i)}-unfinished"
        marker.touch()
        if again:
            shutil.rmtree(self.root / self.path(i))
        _write(self.root / self.path(i) / "weights" / ".metadata", os.urandom(32))
        _write(self.root / self.path(i) / "context" / "io.json", b"{}")
        marker.unlink()


class Ray(Saves):
    spec = "ray"

    def path(self, i: int) -> str:
        return f"checkpoint_2026-05-01_12-00-{i:02d}.000000"

    def save(self, i: int, again: bool = False) -> None:
        if again:  # persist_current_checkpoint: create_dir, then the files copied in (a checkpoint's identity is its dir)
            shutil.rmtree(self.root / self.path(i))
        _write(self.root / self.path(i) / "model.pt", os.urandom(32))
        if i not in self.made:
            self.made.append(i)
        self._snapshot()

    def delete(self, i: int) -> None:
        self.made.remove(i)
        self._snapshot()
        shutil.rmtree(self.root / self.path(i))

    def _snapshot(self) -> None:
        results = [{"version": 0, "checkpoint_dir_name": self.path(s), "metrics": {"step": s}} for s in self.made]
        snapshot = {"version": 0, "checkpoint_results": results, "latest_checkpoint_result": results[-1] if results else None}
        _write(self.root / "checkpoint_manager_snapshot.json", json.dumps(snapshot))


class Marker(Saves):
    spec = "marker:DONE"

    def path(self, i: int) -> str:
        return f"step-{i}"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i) / "model.pt", os.urandom(32))
        _write(self.root / self.path(i) / "DONE", "again" if again else "done")


class Keras(Saves):
    spec = "keras"
    one_file = True

    def path(self, i: int) -> str:
        return f"epoch-{i:03d}.weights.h5"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i), samplefiles.hdf5(8192 if again else 4096))


class Torch(Saves):
    spec = "torch"
    one_file = True

    def path(self, i: int) -> str:
        return f"model_{i}.pt"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i), samplefiles.torch_zip({"step": i, "again": again}))


class Lightning(Saves):
    spec = "lightning"
    one_file = True

    def path(self, i: int) -> str:
        return f"epoch=0-step={i}.ckpt"

    def save(self, i: int, again: bool = False) -> None:
        data = samplefiles.torch_zip({"global_step": i, "again": again}) if again else samplefiles.lightning_ckpt(i)
        _write(self.root / self.path(i), data)


class Glob(Saves):
    spec = "glob:run_{step}/weights.h5"
    one_file = True

    def path(self, i: int) -> str:
        return f"run_{i}"

    def save(self, i: int, again: bool = False) -> None:
        _write(self.root / self.path(i) / "weights.h5", samplefiles.hdf5(8192 if again else 4096))


LAYOUTS: dict[str, type[Saves]] = {
    cls.spec.partition(":")[0]: cls
    for cls in (TF, HF, DCP, Orbax, DeepSpeed, Megatron, NeMo, Ray, Marker, Keras, Torch, Lightning, Glob)
}


def committed(events, step: int) -> bool:
    return any(e.name == "after_save" and e.step == step for e in events)


def settle(looker: Looker, events: list, step: int) -> list:
    """Look again while a look asks for its second look (a file settling), until ``step`` commits."""
    deadline = time.monotonic() + WAIT
    while not committed(events, step) and looker.last_observation.recheck is not None:
        assert time.monotonic() < deadline
        time.sleep(looker.last_observation.recheck)
        events += looker.look()  # as the engine's recheck: a hinted look with no hints
    return events


def save_and_look(saves: Saves, looker: Looker, step: int, again: bool = False) -> list:
    """Save, and look with the hints the kernel gives for it (and its second look)."""
    before = looker.snapshot()
    saves.save(step, again)
    looker.hint_changes(before)
    return settle(looker, looker.look(), step)


@pytest.fixture(params=sorted(LAYOUTS))
def setup(request, tmp_path):
    saves = LAYOUTS[request.param](tmp_path / "dir")
    looker = Looker(saves.root, saves.spec)
    looker.look()
    yield saves, looker
    looker.close()


def test_a_hinted_look_after_a_commit_reads_only_it(setup):
    """Steps: 40 saves, each looked at after its notifications; then a 41st.
    Result: the look after it commits it, and its observation is a delta holding it alone
    (TensorFlow's holds what its state file names)."""
    saves, looker = setup
    for step in range(1, 41):
        save_and_look(saves, looker, step)
    events = save_and_look(saves, looker, 41)
    assert committed(events, 41)
    observation = looker.last_observation
    if isinstance(looker.layout, EntryLayout):
        assert observation.delta
        assert [c.step for c in observation.committed] == [41]
    looker.index.everything_changed()
    looker.look()
    assert sorted(c.step for c in looker.last_observation.committed)[-3:] == [39, 40, 41]
    assert not looker.last_observation.delta


def test_a_checkpoint_saved_again_in_place_is_a_new_save(setup):
    """Steps: three saves delivered; the second saved again in place, the notifications it
    gives looked at; then looks at everything (the safety timer, poll ticks).
    Result: after_save 2 a second time (a new identity), within settled_every looks at
    everything when no notification told of it; nothing else delivered again."""
    saves, looker = setup
    for step in (1, 2, 3):
        assert committed(save_and_look(saves, looker, step), step)
    events = save_and_look(saves, looker, 2, again=True)
    looks = 0  # at everything
    while not committed(events, 2) and looks < EntryLayout.settled_every:
        looks += 1
        looker.index.everything_changed()
        events = settle(looker, events + looker.look(), 2)
    assert [(e.name, e.step) for e in events if e.name == "after_save"] == [("after_save", 2)]


def test_a_deleted_checkpoint_leaves_and_a_new_save_under_its_name_is_delivered(setup):
    """Steps: three saves delivered; the first deleted (rotation), looked at; a look at
    everything; then a new save under the first one's name.
    Result: no observation after the delete holds it; the new save is delivered."""
    saves, looker = setup
    for step in (1, 2, 3):
        assert committed(save_and_look(saves, looker, step), step)
    before = looker.snapshot()
    saves.delete(1)
    looker.hint_changes(before)
    assert not looker.look()
    assert 1 not in [c.step for c in looker.last_observation.committed]
    looker.index.everything_changed()
    looker.look()
    assert sorted(c.step for c in looker.last_observation.committed) == [2, 3]
    time.sleep(0.01)  # a new mtime for the new save
    assert committed(save_and_look(saves, looker, 1), 1)


# Live ---------------------------------------------------------------------------------------


def test_live_deleted_and_saved_again_under_one_name(ckpt, tmp_path, watch, records_path):
    """Steps: a live watcher (native notifications); step-1 and step-2 saved (DCP); step-1
    deleted, then saved again under its name; step-3 saved.
    Result: after_save 1, 2, 1, 3: the deletion left nothing behind, the new save is delivered."""
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    w = watch(str(ckpt), "--layout", "dcp", "-l", str(tmp_path / "listeners"))
    w.wait_ready()
    saves = DCP(ckpt)
    for step in (1, 2):
        saves.save(step)
        w.wait_run("rec", "after_save", step)
    saves.delete(1)
    saves.save(1)
    saves.save(3)
    w.wait_run("rec", "after_save", 3)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == [("after_save", 1), ("after_save", 2), ("after_save", 1),
                                                   ("after_save", 3)]


def test_live_file_saved_again_in_place_is_delivered_again(ckpt, tmp_path, watch, records_path):
    """Steps: a live watcher; a Keras weights file saved, then written again in place (a
    resumed run saving the same epoch), then another epoch.
    Result: after_save 1, 1, 2."""
    write_listener(tmp_path / "listeners", "rec", events="after_save")
    w = watch(str(ckpt), "-l", str(tmp_path / "listeners"))
    w.wait_ready()
    saves = Keras(ckpt)
    saves.save(1)
    w.wait_run("rec", "after_save", 1)
    saves.save(1, again=True)
    w.wait_for(lambda r: sum(1 for x in w.records if x.get("kind") == "run" and x.get("step") == 1) == 2)
    saves.save(2)
    w.wait_run("rec", "after_save", 2)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert summary(read_records(records_path)) == [("after_save", 1), ("after_save", 1), ("after_save", 2)]
