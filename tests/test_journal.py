"""The journal on a real file: torn records, pending runs, one watcher per state dir."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading

import pytest
from conftest import read_records, write_listener
from test_protocol import dcp_save

from ckptwatch.events import Event
from ckptwatch.delivery.journal import Journal, JournalBusy

AFTER = Event("after_save", 5, "step-5", "dcp|step-5|5|1|1", observed=True, marker="step-5/.metadata")


def test_torn_last_record_is_dropped_and_the_rest_kept(tmp_path):
    journal = Journal(str(tmp_path))
    queued = journal.record_event(AFTER, ("a", "b"), "run1")
    journal.run_started(queued.id, "a", 1, 4242, None)
    journal.run_finished(queued.id, "a", 1, "done", 0)
    journal.close()
    with open(journal.path, "ab") as handle:
        handle.write(b'{"r":"run","id":1,"listener":"b","sta')  # a crash mid-write
    again = Journal(str(tmp_path))
    assert again.dropped_lines == 1
    pending = again.pending()
    assert [(p.listener, p.attempt) for p in pending] == [("b", 1)]  # a: done, never repeated
    assert again.after_save_status(AFTER.identity, "a") == "done"
    tracker = again.tracker()
    assert tracker.last is not None and tracker.last.step == 5
    again.close()
    # The torn bytes are gone from the file, so the next append starts on a clean line.
    lines = open(journal.path, "rb").read().splitlines()
    assert all(json.loads(line) for line in lines)


def test_started_without_outcome_is_a_retry(tmp_path):
    journal = Journal(str(tmp_path))
    queued = journal.record_event(AFTER, ("a",), "run1")
    journal.run_started(queued.id, "a", 1, 4242, 99)
    journal.close()
    again = Journal(str(tmp_path))
    [run] = again.pending()
    assert (run.listener, run.attempt, run.pgid, run.pgid_start) == ("a", 2, 4242, 99)
    again.close()


def test_interrupted_is_retried_and_finished_is_not(tmp_path):
    journal = Journal(str(tmp_path))
    first = journal.record_event(AFTER, ("a", "b", "c"), "run1")
    journal.run_finished(first.id, "a", 1, "interrupted", None)
    journal.run_finished(first.id, "b", 1, "failed", 1)
    journal.run_finished(first.id, "c", 1, "vanished", None)
    journal.close()
    again = Journal(str(tmp_path))
    assert [(p.listener, p.attempt) for p in again.pending()] == [("a", 2)]
    again.close()


def test_a_second_watcher_on_the_same_state_dir_is_refused(tmp_path):
    journal = Journal(str(tmp_path))
    with pytest.raises(JournalBusy):
        Journal(str(tmp_path))
    journal.close()
    Journal(str(tmp_path)).close()


def test_a_status_probe_holding_the_lock_for_an_instant_does_not_refuse_a_start(tmp_path):
    """Steps: a reader (as ``ckptwatch status`` does) holds a shared lock on the lock file;
    a journal opens meanwhile; the reader lets go 0.2 s later.
    Result: the journal waits the probe out and opens; a second one is still refused."""
    (tmp_path / "lock").write_bytes(b"")
    probe = os.open(tmp_path / "lock", os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.2, os.close, (probe,)).start()
    journal = Journal(str(tmp_path))
    with pytest.raises(JournalBusy):
        Journal(str(tmp_path))
    journal.close()


def test_garbage_lines_are_skipped_not_fatal(tmp_path):
    (tmp_path / "journal.jsonl").write_bytes(b"not json\n\x00\xff binary\n[1,2]\n")
    journal = Journal(str(tmp_path))
    assert journal.dropped_lines == 3
    assert journal.pending() == []
    journal.close()


def test_a_long_journal_is_compacted_at_open_and_means_the_same(tmp_path):
    """Steps: journal 6,000 after_saves, each run started then done (and one left started).
    Result: reopening (here with a threshold of 1,000 superseded lines) compacts it to one
    record per event and per run; the tracker and pending runs it gives are the same."""
    journal = Journal(str(tmp_path))
    for step in range(6000):
        event = Event("after_save", step, f"step-{step}", f"dcp|step-{step}|{step}|1|1", marker=f"step-{step}/.metadata")
        queued = journal.record_event(event, ("a",), "run1")
        journal.run_started(queued.id, "a", 1, 100 + step, None)
        if step != 5999:
            journal.run_finished(queued.id, "a", 1, "done", 0)
    journal.close()
    before_lines = len(open(journal.path, "rb").read().splitlines())
    assert before_lines == 6000 * 3 - 1
    again = Journal(str(tmp_path), compact_after=1000)
    assert again.compacted_from == before_lines
    after_lines = len(open(journal.path, "rb").read().splitlines())
    assert after_lines == 6000 * 2
    [pending] = again.pending()
    assert (pending.queued.event.step, pending.attempt, pending.pgid) == (5999, 2, 100 + 5999)
    assert again.tracker().last.step == 5999
    assert again.after_save_status("dcp|step-10|10|1|1", "a") == "done"
    new = again.record_event(Event("before_save", 6000, "step-6000"), ("a",), "run2")
    assert new.id == 6001
    again.close()
    third = Journal(str(tmp_path), compact_after=1000)  # nothing superseded: left as it is
    assert third.compacted_from == 0 and len(third.pending()) == 2
    third.close()


def test_each_run_finds_itself_journaled_when_it_starts(ckpt, tmp_path, watch, records_path):
    """Steps: a live watcher; once begin's run is over (the listener idle, so the engine
    starts the next run itself), two DCP saves one after the other; the listener, taking
    every event, reads the journal as it finds it when it starts.
    Result: each before_save/after_save run finds its event's record and, after it, its
    own ``started`` record (written together, before the spawn); and the listener's
    previous run already journaled ``done`` (its fsync may come after this start, its
    record never does)."""
    state = tmp_path / "state"
    write_listener(tmp_path / "l", "rec", before=(
        f"record['journal'] = [json.loads(line) for line in open({str(state / 'journal.jsonl')!r})]"))
    watcher = watch(str(ckpt), "-l", str(tmp_path / "l"), "--state-dir", str(state))
    watcher.wait_ready()
    watcher.wait_run("rec", "begin")
    for step in (1, 2):
        dcp_save(ckpt, f"step-{step}")
        watcher.wait_run("rec", "after_save", step)
    watcher.send(signal.SIGTERM)
    assert watcher.wait_exit() == 0
    runs = [r for r in read_records(records_path) if r["argv"][0] in ("before_save", "after_save")]
    assert [(r["argv"][0], r["stdin"]["step"]) for r in runs] == [
        ("before_save", 1), ("after_save", 1), ("before_save", 2), ("after_save", 2)]
    previous = None
    for run in runs:
        journal = run["journal"]
        [event] = [rec for rec in journal if rec["r"] == "event" and rec["event"] == run["argv"][0]
                   and rec["step"] == run["stdin"]["step"]]
        assert event["listeners"] == ["rec"]
        mine = [rec for rec in journal if rec["r"] == "run" and rec["id"] == event["id"]]
        assert mine and mine[0]["status"] == "started", mine
        assert journal.index(event) < journal.index(mine[0])
        if previous is not None:
            assert any(rec["r"] == "run" and rec["id"] == previous and rec["status"] == "done" for rec in journal), \
                "the previous run's outcome was not journaled before this start"
        previous = event["id"]
