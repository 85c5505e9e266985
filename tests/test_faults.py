"""Fault injection: the watcher dies (SIGKILL, for real) at each named crash point
and at random instants, and a restart with the same state directory must
neither repeat a run journaled as done nor skip a committed checkpoint
(DESIGN.md guarantees 1-7); the journal survives a crash at any byte.

Crash points come from ``CKPTWATCH_TEST_CRASH_AT=NAME[:N]`` (ckptwatch/faults.py);
random kills are ``kill -9`` from outside while a writer process saves.
``CKPTWATCH_FAULT_TRIALS`` sets the number of random kills (default 30);
``pytest -s`` shows what the trials hit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path

import pytest
from conftest import run_cli
from faultkit import (
    CRASH_ENV,
    check_journal_never_repeats_a_finished_run,
    check_order,
    per_checkpoint_violations,
    check_per_checkpoint,
    check_sessions,
    dcp_committed,
    read_lines,
    start_writer,
    wait_until,
    write_phased_listener,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_protocol import dcp_save

from ckptwatch.events import Event
from ckptwatch.delivery.journal import FINISHED, Journal
from ckptwatch.layouts.base import Checkpoint, Observation

# --- (a) each named crash point -------------------------------------------------------------


def _crash_then_recover(tmp_path, ckpt, watch, records_path, crash: str, *, work: str = ""):
    """Steps: steps 1 and 2 committed; a --once watcher crashes at ``crash``; step 3 is
    saved while no watcher runs; a live watcher with the same state dir runs until
    step 3's after_save is done, then gets SIGTERM.
    Returns (records, first watcher, second watcher)."""
    dcp_save(ckpt, "step-1")
    dcp_save(ckpt, "step-2")
    listeners = tmp_path / "l"
    write_phased_listener(listeners, "rec", work=work)
    state = tmp_path / "state"
    args = (str(ckpt), "-l", str(listeners), "--state-dir", str(state))
    first = watch(*args, "--once", extra_env={CRASH_ENV: crash})
    code = first.wait_exit()
    assert code == -signal.SIGKILL, f"the watcher did not die at crash point {crash} (exit {code})"
    dcp_save(ckpt, "step-3")
    second = watch(*args)
    second.wait_run("rec", "after_save", 3)
    second.send(signal.SIGTERM)
    assert second.wait_exit() in (0, 1)
    records = read_lines(records_path)
    committed = dcp_committed(ckpt)
    assert sorted(committed) == [1, 2, 3]
    stats = check_per_checkpoint(records, committed, "rec")
    check_order(records, "rec")
    final_run = next(r["run_id"] for r in reversed(records) if r["event"] == "end")
    check_sessions(records, "rec", final_run)
    [end] = [r for r in records if r["event"] == "end" and r["phase"] == "done"]
    assert (end["step"], end["last_step_handled"]) == (3, "1")
    check_journal_never_repeats_a_finished_run(state)
    return records, stats, first, second


def _completions(records, event, step):
    return [(r["attempt"], r["retry"]) for r in records
            if r["phase"] == "done" and r["event"] == event and r["step"] == step]


@pytest.mark.parametrize("n", [1, 2, 4])
def test_crash_after_event_queued_delivers_it_once_after_restart(tmp_path, ckpt, watch, records_path, n):
    """event-queued:N -- the Nth before/after_save is journaled, no listener started for it.
    Result: the restart runs it (attempt 1, not a retry: it never started); nothing repeats."""
    records, stats, _, second = _crash_then_recover(tmp_path, ckpt, watch, records_path, f"event-queued:{n}")
    assert stats["repeats"] == 0, "nothing had started: nothing may run twice"
    assert any("resuming" in r["msg"] for r in second.records), "the journaled event was not resumed"
    # Journaled events in order: before_save 1, after_save 1, before_save 2, after_save 2.
    event, step = [("before_save", 1), ("after_save", 1), ("before_save", 2), ("after_save", 2)][n - 1]
    assert _completions(records, event, step) == [(1, False)]


@pytest.mark.parametrize("n, cut", [(2, ("before_save", 1)), (3, ("after_save", 1)), (5, ("after_save", 2))])
def test_crash_after_run_exited_retries_the_cut_off_run(tmp_path, ckpt, watch, records_path, n, cut):
    """run-exited:N -- the Nth listener run (begin is the 1st) exited, its outcome not journaled.
    Result: that run is run again, marked retry, attempt 2; every other run exactly once."""
    records, stats, _, second = _crash_then_recover(tmp_path, ckpt, watch, records_path, f"run-exited:{n}")
    assert _completions(records, *cut) == [(1, False), (2, True)]
    assert stats["repeats"] == 1
    assert any(r.get("retry") is True and r.get("event") == cut[0] and r.get("step") == cut[1]
               for r in second.records if r.get("kind") == "run")


@pytest.mark.parametrize("n", [2, 7, 10])
def test_crash_mid_journal_record_drops_the_torn_line_only(tmp_path, ckpt, watch, records_path, n):
    """journal-record:N -- half of the Nth journal line written, then SIGKILL. With --once
    over two checkpoints the engine journals the 4 events first (lines 1-4), then each run
    takes three lines: 'started' before the spawn, 'started' with its process group, its
    outcome (5-7: before_save 1, 8-10: after_save 1...).
    Result: the restart logs the dropped torn line; runs journaled done are not repeated;
    a run whose outcome was torn is re-run as a retry."""
    _, stats, _, second = _crash_then_recover(tmp_path, ckpt, watch, records_path, f"journal-record:{n}")
    assert any("dropped 1 torn" in r["msg"] for r in second.records)
    assert stats["repeats"] == (1 if n in (7, 10) else 0)


@pytest.mark.parametrize("n", [5, 6, 8, 9])
def test_crash_while_journaling_started_keeps_the_guarantees(tmp_path, ckpt, watch, records_path, n):
    """journal-record:5/8 tear the 'started' line written before a listener is spawned (it never
    ran: the restart runs it once); 6/9 the line with its process group (it ran: the restart
    re-runs it marked retry). Either way no run journaled done repeats."""
    _crash_then_recover(tmp_path, ckpt, watch, records_path, f"journal-record:{n}")


def test_crash_before_stop_file_rename_keeps_delivery_guarantees(tmp_path, ckpt, watch, records_path):
    """stop-file-rename -- a listener exits 3 at step 2; the watcher dies with the stop file
    written to its temp name, not renamed. Result: no run repeats, step 3 is delivered once."""
    stop_at_2 = "if rec['event'] == 'after_save' and rec['step'] == 2:\n    note('done'); sys.exit(3)"
    records, stats, first, _ = _crash_then_recover(tmp_path, ckpt, watch, records_path, "stop-file-rename",
                                                   work=stop_at_2)
    assert stats["repeats"] == 0, "the stop run was journaled before the crash: it must not repeat"
    assert _completions(records, "after_save", 2) == [(1, False)]


def test_crash_before_stop_file_rename_the_restart_still_writes_the_stop_file(tmp_path, ckpt, watch, records_path):
    stop_at_2 = "if rec['event'] == 'after_save' and rec['step'] == 2:\n    note('done'); sys.exit(3)"
    _crash_then_recover(tmp_path, ckpt, watch, records_path, "stop-file-rename", work=stop_at_2)
    stop = ckpt / "ckptwatch.stop"
    assert stop.exists(), f"no stop file after the restart; DIR holds {sorted(os.listdir(ckpt))}"
    assert json.loads(stop.read_text())["step"] == 2


def test_stop_request_from_a_retried_run_writes_the_stop_file(tmp_path, ckpt, watch, records_path):
    """Steps: listeners a (fast) and b; b hangs on its first attempt at step 1; kill -9 the
    watcher; restart: b's retry exits 3. Result: the stop file names step 1 and b."""
    dcp_save(ckpt, "step-1")
    listeners = tmp_path / "l"
    write_phased_listener(listeners, "10-a", events="after_save")
    hung = tmp_path / "hung"
    write_phased_listener(listeners, "20-b", events="after_save", work=(
        "if rec['attempt'] == 1:\n"
        f"    open({str(hung)!r}, 'w').write('1')\n"
        "    time.sleep(300)\n"
        "note('done'); sys.exit(3)"))
    args = (str(ckpt), "-l", str(listeners), "--state-dir", str(tmp_path / "state"))
    first = watch(*args)
    first.wait_run("10-a", "after_save", 1)
    wait_until(hung.exists, what="b's first attempt to hang")
    first.proc.kill()
    first.wait_exit()
    second = watch(*args)
    second.wait_run("20-b", "after_save", 1)
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    done = [(r["name"], r["attempt"]) for r in read_lines(records_path) if r["phase"] == "done"]
    assert sorted(done) == [("10-a", 1), ("20-b", 2)]
    stop = ckpt / "ckptwatch.stop"
    assert stop.exists(), "b's retry exited 3 but no stop file was written"
    assert json.loads(stop.read_text())["listeners"] == ["20-b"]


# --- (b) native notifications fail -------------------------------------------------------


@pytest.fixture(scope="module")
def observer_death(tmp_path_factory):
    """observer-dies -- reading notifications raises at the first one (an unrelated
    file); step 1 is saved then, steps 2 and 3 after the death is logged. One run, checked by three tests."""
    from conftest import Watch

    tmp_path = tmp_path_factory.mktemp("observer")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    records_path = tmp_path / "records.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
    env.update(RECORD_FILE=str(records_path), PYTHONPATH=str(Path(__file__).parent.parent), **{CRASH_ENV: "observer-dies"})
    write_phased_listener(tmp_path / "l", "rec", events="after_save")
    w = Watch([str(ckpt), "-l", str(tmp_path / "l")], env, tmp_path)
    try:
        w.wait_for(lambda r: "no checkpoint seen yet" in r["msg"])  # the first scan is over
        died_at = time.time()
        (ckpt / "unrelated.txt").write_text("x")  # its notification makes reading fail
        dcp_save(ckpt, "step-1")  # no notification now: only a scan finds it
        detected = w.wait_for(lambda r: "native notifications stopped" in r["msg"])
        w.wait_run("rec", "after_save", 1)
        for step in (2, 3):
            dcp_save(ckpt, f"step-{step}")
            w.wait_run("rec", "after_save", step, timeout=15)
        w.send(signal.SIGTERM)
        code = w.wait_exit()
    finally:
        w.stop()
    return {"watch": w, "code": code, "latency": detected["time"] - died_at, "records": read_lines(records_path)}


def test_observer_death_is_logged_once_and_saves_still_delivered(observer_death):
    """Result: one error line says so; every save, before and after, is delivered; exit 0."""
    w = observer_death["watch"]
    assert observer_death["code"] == 0
    died = [r for r in w.records if "native notifications stopped" in r["msg"]]
    assert len(died) == 1, died
    assert died[0]["level"] == "error"
    assert [r["step"] for r in observer_death["records"] if r["phase"] == "done"] == [1, 2, 3]


def test_observer_death_leaves_no_raw_traceback_on_stderr(observer_death):
    w = observer_death["watch"]
    assert [line for line in w.lines if not line.startswith("{")] == []


def test_observer_death_is_noticed_within_seconds(observer_death):
    assert observer_death["latency"] < 5.0, f"noticed after {observer_death['latency']:.1f} s"


# --- (c) kill -9 at random instants while a writer saves ------------------------------------


def test_random_kill_9_loses_and_doubles_nothing(tmp_path, ckpt, watch, env, records_path):
    """Steps: a writer process saves a DCP checkpoint every 80 ms; a watcher with a listener
    that takes a few ms is killed with SIGKILL at a random instant and restarted, TRIALS times;
    the writer stops; a last watcher runs with --once.
    Result: every committed checkpoint got before_save and after_save; nothing completed twice
    except a cut-off run re-run as a retry (attempts 1, 2, ... each once); no run journaled as
    finished started again; every session began once; the last one ended."""
    trials = int(os.environ.get("CKPTWATCH_FAULT_TRIALS", "30"))
    seed = int(os.environ.get("CKPTWATCH_FAULT_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    listeners = tmp_path / "l"
    write_phased_listener(listeners, "rec", delay=0.004)
    state = tmp_path / "state"
    args = (str(ckpt), "-l", str(listeners), "--state-dir", str(state))
    stop_writer = tmp_path / "writer.stop"
    writer = start_writer(ckpt, 0.08, stop_writer)
    hits = {"killed before ready": 0, "killed with runs in flight (from its log)": 0, "resumed runs": 0,
            "torn lines dropped": 0, "leftover groups killed": 0}
    try:
        wait_until(lambda: dcp_committed(ckpt), what="the writer's first save")
        for _ in range(trials):
            w = watch(*args)
            time.sleep(rng.uniform(0.05, 0.9))  # the random instant (pacing, not correctness)
            w.proc.kill()
            w.wait_exit()
            assert not [line for line in w.lines if "Traceback" in line], "\n".join(w.lines[-30:])
            if not any(r.get("kind") == "ready" for r in w.records):
                hits["killed before ready"] += 1
            started = sum(1 for r in w.records if r.get("kind") == "event" and r.get("listeners"))
            finished = sum(1 for r in w.records if r.get("kind") == "run")
            if started > finished:
                hits["killed with runs in flight (from its log)"] += 1
            for r in w.records:
                if r["msg"].startswith("resuming "):
                    hits["resumed runs"] += int(r["msg"].split()[1])
                if "torn or unreadable" in r["msg"]:
                    hits["torn lines dropped"] += 1
                if "killed what was left" in r["msg"]:
                    hits["leftover groups killed"] += 1
    finally:
        stop_writer.write_text("stop")
        writer.wait(timeout=30)
    result = run_cli("run", *args, "--once", "--log-format", "json", env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    records = read_lines(records_path)
    committed = dcp_committed(ckpt)
    stats, violations = per_checkpoint_violations(records, committed, "rec")
    retries = sum(1 for r in records if r["phase"] == "done" and r["retry"])
    no_stdin = sum(1 for r in records if r["phase"] == "start" and r["stdin"] is None)
    report = {
        "seed": seed, "trials": trials, "kills": trials, "checkpoints": len(committed),
        "listener completions": stats["completions"], "repeated (cut-off, retried)": stats["repeats"],
        "retries completed": retries, "runs started with no stdin (watcher died mid-start)": no_stdin,
        **hits, "violations": [kind for kind, _ in violations],
    }
    print("\nrandom kill -9:", json.dumps(report, indent=1))
    check_order(records, "rec")
    final = json.loads([line for line in result.stderr.splitlines() if '"kind": "ready"' in line][0])["run_id"]
    check_sessions(records, "rec", final)
    check_journal_never_repeats_a_finished_run(state)
    assert not violations, f"seed {seed}:\n" + "\n".join(text for _, text in violations)
    assert len(committed) > trials  # the writer kept saving through the trials


# --- (d) the journal survives a crash at any byte -------------------------------------------

LISTENERS = ("a", "b")


def _checkpoint(step: int) -> Checkpoint:
    return Checkpoint("dcp", step, f"step-{step}", f"step-{step}/.metadata", 1000 + step, step)


_op = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(["before_save", "after_save"]), st.integers(1, 6)),
    st.tuples(st.just("started"), st.integers(0, 20), st.sampled_from(LISTENERS)),
    st.tuples(st.just("finished"), st.integers(0, 20), st.sampled_from(LISTENERS),
              st.sampled_from(sorted(FINISHED | {"interrupted"}))),
)


def _model(lines: list[bytes]):
    """What the complete records say, computed without the Journal class."""
    events: dict[int, dict] = {}
    runs: dict[tuple[int, str], tuple[str, int]] = {}
    for line in lines:
        record = json.loads(line)
        if record["r"] == "event":
            events[record["id"]] = record
        else:
            previous = runs.get((record["id"], record["listener"]))
            attempt = record.get("attempt", previous[1] if previous else 1)
            runs[(record["id"], record["listener"])] = (record["status"], attempt)
    pending = []
    for event_id in sorted(events):
        for listener in events[event_id]["listeners"]:
            state = runs.get((event_id, listener))
            if state is None:
                pending.append((event_id, listener, 1))
            elif state[0] not in FINISHED:
                pending.append((event_id, listener, state[1] + 1))
    delivered = {e["identity"] for e in events.values() if e["event"] == "after_save"}
    announced = {(e["checkpoint"], e["step"]) for e in events.values() if e["event"] == "before_save"}
    announced -= {(e["checkpoint"], e["step"]) for e in events.values() if e["event"] == "after_save"}
    afters = [e for _, e in sorted(events.items()) if e["event"] == "after_save"]
    last = afters[-1]["step"] if afters else None
    return pending, delivered, announced, last


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=25), cut_fraction=st.floats(0, 1))
def test_journal_torn_at_any_byte_reopens_consistently(ops, cut_fraction):
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(tmp)
        ids: list[int] = []
        for op in ops:
            if op[0] == "event":
                event = Event(op[1], op[2], f"step-{op[2]}", _checkpoint(op[2]).identity,
                              observed=op[1] == "before_save", marker=f"step-{op[2]}/.metadata")
                ids.append(journal.record_event(event, LISTENERS, "run").id)
            elif ids and op[0] == "started":
                journal.run_started(ids[op[1] % len(ids)], op[2], 1 + op[1] % 3, 4242, None)
            elif ids:
                journal.run_finished(ids[op[1] % len(ids)], op[2], 1 + op[1] % 3, op[3], 0)
        journal.close()
        data = Path(journal.path).read_bytes()
        cut = int(len(data) * cut_fraction)
        Path(journal.path).write_bytes(data[:cut])
        good = data[: data.rfind(b"\n", 0, cut) + 1] if b"\n" in data[:cut] else b""
        torn = cut > len(good)

        again = Journal(tmp)  # must never raise
        assert again.dropped_lines == (1 if torn else 0)
        pending, delivered, announced, last = _model(good.splitlines())
        assert [(p.queued.id, p.listener, p.attempt) for p in again.pending()] == pending
        tracker = again.tracker()
        assert (tracker.last.step if tracker.last else None) == last
        tracker.begin()
        steps = range(1, 7)
        emitted = tracker.observe(Observation(committed=[_checkpoint(s) for s in steps]))
        new_after = {e.identity for e in emitted if e.name == "after_save"}
        assert new_after == {_checkpoint(s).identity for s in steps} - delivered
        unseen_before = {(e.checkpoint, e.step) for e in emitted if e.name == "before_save"}
        assert unseen_before == {(f"step-{s}", s) for s in steps if _checkpoint(s).identity not in delivered} - announced
        again.close()
        assert Path(journal.path).read_bytes() == good, "the torn tail must be cut off the file"
        third = Journal(tmp)
        assert third.dropped_lines == 0
        third.close()
