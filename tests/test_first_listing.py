"""The first full listing runs on a thread while notifications are served.

Beside a million files, listing DIR takes a second or more. The watch is set
first, then the listing starts on its own thread; a layout that records every
commit at fixed names (TensorFlow's state file) serves commits meanwhile, the
others wait for it. ``CKPTWATCH_TEST_HOLD=first-listing:PATH`` holds the
listing (after it has read DIR) for as long as PATH exists, so each test
decides what happens while it runs, whatever the size of DIR.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from conftest import WAIT, read_records, summary, write_listener
from test_hostile import hf_save, replace, tf_files, tf_state


def _hold(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    hold = tmp_path / "hold-first-listing"
    hold.touch()
    return hold, {"CKPTWATCH_TEST_HOLD": f"first-listing:{hold}"}


def _wait_reached(hold: Path) -> None:
    reached = hold.with_name(hold.name + ".reached")
    deadline = time.monotonic() + WAIT
    while not reached.exists():
        assert time.monotonic() < deadline, "the first listing never reached its hold point"
        time.sleep(0.01)


def _tf_commit(ckpt: Path, *steps: int) -> None:
    tf_files(ckpt, steps[-1])
    replace(ckpt / "checkpoint", tf_state(*(f"model.ckpt-{s}" for s in steps)))


def test_tf_commits_are_served_while_the_first_listing_runs(ckpt, tmp_path, watch, records_path):
    """Steps: a TF directory with steps 1-2 committed; the watcher (auto-detection) starts
    with its first listing held; step 3 commits; then the listing is let go; step 4 commits.
    Result: steps 1, 2 and 3 are delivered while the listing is held, in step order, and the
    log says ready; after it, step 4; every save once."""
    write_listener(tmp_path / "l", "rec")
    _tf_commit(ckpt, 1)
    _tf_commit(ckpt, 1, 2)
    hold, hold_env = _hold(tmp_path)
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), extra_env=hold_env)
    w.wait_ready()
    w.wait_run("rec", "after_save", 2)
    _tf_commit(ckpt, 1, 2, 3)
    w.wait_run("rec", "after_save", 3)
    assert hold.exists()
    hold.unlink()
    _tf_commit(ckpt, 1, 2, 3, 4)
    w.wait_run("rec", "after_save", 4)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    events = summary(read_records(records_path))
    assert [e for e in events if e[0] == "after_save"] == [("after_save", s) for s in (1, 2, 3, 4)]
    assert events[0] == ("begin", None) and events[-1] == ("end", 4)


def test_start_from_latest_holds_while_commits_are_served_before_the_listing(ckpt, tmp_path, watch, records_path):
    """Steps: steps 1-3 committed; --start-from latest with the first listing held; step 4
    commits while it is held.
    Result: only steps 3 and 4 get events (what was there at the start is skipped as a full
    listing would have it skipped)."""
    write_listener(tmp_path / "l", "rec", events="after_save")
    _tf_commit(ckpt, 1, 2, 3)
    hold, hold_env = _hold(tmp_path)
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), "--start-from", "latest", extra_env=hold_env)
    w.wait_run("rec", "after_save", 3)
    _tf_commit(ckpt, 1, 2, 3, 4)
    w.wait_run("rec", "after_save", 4)
    hold.unlink()
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert [r["stdin"]["step"] for r in read_records(records_path)] == [3, 4]


def test_a_layout_found_by_listing_waits_for_the_listing(ckpt, tmp_path, watch, records_path):
    """Steps: Trainer checkpoints 1-2 there; the watcher starts with its first listing held;
    checkpoint 3 commits while it is held; then the listing is let go.
    Result: nothing is delivered while it is held (checkpoint 3 must not come before 1 and 2,
    which only the listing finds); after it, 1, 2 and 3 in step order, each once."""
    write_listener(tmp_path / "l", "rec", events="after_save")
    hf_save(ckpt, 1)
    hf_save(ckpt, 2)
    hold, hold_env = _hold(tmp_path)
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), extra_env=hold_env)
    _wait_reached(hold)
    hf_save(ckpt, 3)
    time.sleep(1.0)  # the watcher has had the notifications of checkpoint-3 for a while
    assert read_records(records_path) == []
    assert not any(r.get("kind") == "ready" for r in w.records)
    hold.unlink()
    w.wait_run("rec", "after_save", 3)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert [r["stdin"]["step"] for r in read_records(records_path)] == [1, 2, 3]


def test_a_name_that_changes_while_the_listing_runs_is_looked_at_again(ckpt, tmp_path, watch, records_path):
    """Steps: an unfinished Trainer checkpoint-5/ is there when the listing reads DIR; while
    the listing is held, that save is abandoned (its directory deleted) and checkpoint-6 is
    saved; then the listing is let go.
    Result: the listing's stale view of checkpoint-5 is corrected by the notification: no
    before_save for step 5 (a save that is gone), and step 6 delivered."""
    write_listener(tmp_path / "l", "rec")
    hf_save(ckpt, 1)
    (ckpt / "checkpoint-5").mkdir()
    (ckpt / "checkpoint-5" / "model.safetensors").write_bytes(b"w" * 64)
    hold, hold_env = _hold(tmp_path)
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), extra_env=hold_env)
    _wait_reached(hold)  # the listing has read DIR, checkpoint-5 with it
    shutil.rmtree(ckpt / "checkpoint-5")
    hf_save(ckpt, 6)
    hold.unlink()
    w.wait_run("rec", "after_save", 6)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    events = summary(read_records(records_path))
    assert events == [("begin", None), ("before_save", 1), ("after_save", 1), ("before_save", 6),
                      ("after_save", 6), ("end", 6)]


def test_dir_deleted_while_the_first_listing_runs_ends_the_session(ckpt, tmp_path, watch, records_path):
    """Steps: the first listing is held; DIR is deleted; the listing is let go.
    Result: the session ends as for any deleted DIR (begin, end) and the watcher waits for DIR."""
    write_listener(tmp_path / "l", "rec")
    hold, hold_env = _hold(tmp_path)
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), "--state-dir", str(tmp_path / "state"), extra_env=hold_env)
    _wait_reached(hold)
    shutil.rmtree(ckpt)
    hold.unlink()
    w.wait_for(lambda r: "was deleted" in r.get("msg", ""))
    os.mkdir(ckpt)
    w.wait_ready()
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0


def test_what_else_dir_looks_like_is_said_once_the_listing_is_in(ckpt, tmp_path, watch, records_path):
    """Steps: a TF state file and a Trainer checkpoint-1/ side by side; auto-detection with the
    first listing held; the listing is let go.
    Result: TF (first in precedence) serves step 1 while it is held; once the listing is in,
    the log says DIR also looks like hf, once."""
    write_listener(tmp_path / "l", "rec", events="after_save")
    _tf_commit(ckpt, 1)
    hf_save(ckpt, 1)
    hold, hold_env = _hold(tmp_path)
    w = watch(str(ckpt), "-l", str(tmp_path / "l"), extra_env=hold_env)
    w.wait_run("rec", "after_save", 1)
    assert not any("also looks like" in r.get("msg", "") for r in w.records)
    hold.unlink()
    w.wait_for(lambda r: "DIR also looks like: hf" in r.get("msg", ""))
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    assert sum("also looks like" in r.get("msg", "") for r in w.records) == 1
    assert [Path(r["stdin"]["checkpoint"]).name for r in read_records(records_path)] == ["model.ckpt-1"]


def test_a_restart_resumes_from_the_journal_before_the_listing_is_in(ckpt, tmp_path, watch, records_path):
    """Steps: a session delivers steps 1-2 and ends; steps 3-4 commit while no watcher runs; a
    new session starts with its first listing held.
    Result: the journal holds: steps 3 and 4 are delivered, in order, while the listing is
    held, and nothing of steps 1-2 again."""
    write_listener(tmp_path / "l", "rec", events="after_save")
    args = (str(ckpt), "-l", str(tmp_path / "l"), "--state-dir", str(tmp_path / "state"))
    _tf_commit(ckpt, 1)
    _tf_commit(ckpt, 1, 2)
    first = watch(*args)
    first.wait_run("rec", "after_save", 2)
    first.send(signal.SIGTERM)
    assert first.wait_exit() == 0
    _tf_commit(ckpt, 1, 2, 3)
    _tf_commit(ckpt, 1, 2, 3, 4)
    hold, hold_env = _hold(tmp_path)
    second = watch(*args, extra_env=hold_env)
    second.wait_run("rec", "after_save", 4)
    assert hold.exists()
    hold.unlink()
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    assert [r["stdin"]["step"] for r in read_records(records_path)] == [1, 2, 3, 4]
