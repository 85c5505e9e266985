"""Per-listener policy: every_n_steps / every_n_secs, on_failure, coalesce.

Through the real CLI (header words for scripts, ``[listener.NAME]`` tables for
classes and scripts), plus the timer itself with a scripted clock.
"""

from __future__ import annotations

import json
import signal

import pytest
from conftest import json_log, read_records, run_once, summary, write_listener
from pylisteners import by, calls, write_class, write_toml
from test_protocol import dcp_save

from ckptwatch.delivery.policy import Policy, PolicyError, Schedule, parse_policy


def saves(ckpt, *steps):
    for step in steps:
        dcp_save(ckpt, f"step-{step}")


def run_lines(log, listener):
    return [(r["event"], r["step"], r["outcome"]) for r in log if r.get("kind") == "run" and r["listener"] == listener]


# --- the timer -------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_schedule_every_n_steps_is_tensorflows_timer_over_saves():
    schedule = Schedule(Policy(every_n_steps=200))
    ran = [s for s in (100, 200, 300, 400, 500, 520, 700) if schedule.allows("after_save", s, f"c-{s}")]
    assert ran == [100, 300, 500, 700]
    assert not schedule.allows("after_save", 700, "c-700")  # the same step again
    assert schedule.allows("after_save", 50, "c-50")  # lower: a new run or a resume
    assert schedule.allows("begin", None, None) and schedule.allows("end", 50, "c-50")


def test_schedule_every_n_secs_and_before_save_decides_for_its_after_save():
    clock = Clock()
    schedule = Schedule(Policy(every_n_secs=60), clock)
    assert schedule.allows("before_save", 1, "a") and schedule.allows("after_save", 1, "a")
    clock.now += 30
    assert not schedule.allows("before_save", 2, "b")
    clock.now += 40  # 70 s after step 1 ran: due, but step 2's fate was decided at its before_save
    assert not schedule.allows("after_save", 2, "b")
    assert schedule.allows("after_save", 3, "c")  # first seen committed: decided now
    clock.now += 59
    assert not schedule.allows("after_save", 4, "d")
    clock.now += 1
    assert schedule.allows("after_save", 5, "e")


@pytest.mark.parametrize("settings, needle", [
    ({"every_n_steps": 0}, "every_n_steps must be a whole number above 0"),
    ({"every_n_steps": "ten"}, "every_n_steps"),
    ({"every_n_secs": -1}, "every_n_secs must be a number of seconds above 0"),
    ({"every_n_steps": 10, "every_n_secs": 5}, "cannot both be set"),
    ({"on_failure": "retry"}, "retry:N"),
    ({"on_failure": "retry:0"}, "above 0"),
    ({"on_failure": "explode"}, "continue, retry:N, stop-training, stop-watcher"),
    ({"coalesce": "maybe"}, "true or false"),
])
def test_bad_policy_values_say_what_they_take(settings, needle):
    with pytest.raises(PolicyError, match=needle):
        parse_policy(settings)


def test_policy_words_parse():
    assert parse_policy({"every_n_steps": "1000", "on_failure": "retry:3", "coalesce": "true"}) == Policy(
        every_n_steps=1000, on_failure="retry", retries=3, coalesce=True)


# --- through the CLI -------------------------------------------------------------------------


def test_every_n_steps_in_a_script_header_and_end_says_whether_the_last_was_handled(ckpt, tmp_path, env,
                                                                                     records_path):
    """Steps: saves at 100..400; 'sparse' has `every_n_steps=200` in its header line, 'dense' 100.
    Result: sparse gets before_save/after_save for 100 and 300 only, and end with
    last_step_handled false (400 was not its); dense gets every save and end true."""
    saves(ckpt, 100, 200, 300, 400)
    d = tmp_path / "l"
    write_listener(d, "sparse", events="before_save,after_save,end every_n_steps=200")
    write_listener(d, "dense", events="after_save,end every_n_steps=100")
    result = run_once(ckpt, tmp_path, env, "-l", str(d))
    assert result.returncode == 0, result.stderr
    records = read_records(records_path)
    assert summary(records, "sparse") == [("before_save", 100), ("after_save", 100), ("before_save", 300),
                                          ("after_save", 300), ("end", 400)]
    assert summary(records, "dense") == [("after_save", s) for s in (100, 200, 300, 400)] + [("end", 400)]
    ends = {r["name"]: r["stdin"]["last_step_handled"] for r in records if r["argv"][0] == "end"}
    assert ends == {"sparse": False, "dense": True}


def test_every_n_secs_for_a_class_runs_the_first_save_and_a_new_runs_save(ckpt, tmp_path, env, records_path):
    """every_n_secs = 3600 in [listener.NAME]: the first save runs, the next ones are skipped, a
    lower step (a new training run in the same DIR) runs again."""
    saves(ckpt, 10, 20, 30)
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {"rec": {"class": "rec.py:Rec", "every_n_secs": 3600}})
    state = tmp_path / "state"
    result = run_once(ckpt, tmp_path, env, "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert calls(read_records(records_path)) == [("begin", None), ("before_save", 10), ("after_save", 10),
                                                 ("end", 30)]
    assert read_records(records_path)[-1]["last_step_handled"] is False


def test_retry_runs_a_failed_run_again_with_attempt_counting(ckpt, tmp_path, env, records_path):
    """Steps: 'flaky' fails its first two runs of after_save 1 and then succeeds
    (on_failure = retry:3); 'hopeless' always fails (retry:1).
    Result: flaky: attempts 1, 2, 3, the last done; hopeless: attempts 1 and 2, failed; each
    failed attempt is logged with when the next comes; exit 1 (hopeless failed for good)."""
    saves(ckpt, 1)
    d = tmp_path / "l"
    counter = tmp_path / "count"
    write_listener(d, "flaky", events="after_save", after=(
        f"n = int(open({str(counter)!r}).read()) if os.path.exists({str(counter)!r}) else 0\n"
        f"open({str(counter)!r}, 'w').write(str(n + 1))\n"
        "sys.exit(1 if n < 2 else 0)"))
    write_listener(d, "hopeless", events="after_save", after="sys.exit(5)")
    write_toml(tmp_path / "ckptwatch.toml", {"flaky": {"on_failure": "retry:3"},
                                             "hopeless": {"on_failure": "retry:1"}})
    result = run_once(ckpt, tmp_path, env, "-l", str(d))
    assert result.returncode == 1, result.stderr
    records = read_records(records_path)
    assert [(r["stdin"]["attempt"], r["stdin"]["retry"]) for r in records if r["name"] == "flaky"] == [
        (1, False), (2, True), (3, True)]
    assert [r["stdin"]["attempt"] for r in records if r["name"] == "hopeless"] == [1, 2]
    log = json_log(result.stderr)
    assert run_lines(log, "flaky") == [("after_save", 1, "retried"), ("after_save", 1, "retried"),
                                       ("after_save", 1, "done")]
    assert run_lines(log, "hopeless") == [("after_save", 1, "retried"), ("after_save", 1, "failed")]
    first = next(r for r in log if r.get("listener") == "flaky" and r.get("outcome") == "retried")
    assert "trying again in 1 s (attempt 2 of 4)" in first["msg"]


def test_retry_alone_succeeding_is_not_a_failure(ckpt, tmp_path, env):
    saves(ckpt, 1)
    d = tmp_path / "l"
    counter = tmp_path / "count"
    write_listener(d, "flaky", events="after_save on_failure=retry:1", after=(
        f"first = not os.path.exists({str(counter)!r})\nopen({str(counter)!r}, 'w').write('x')\n"
        "sys.exit(1 if first else 0)"))
    result = run_once(ckpt, tmp_path, env, "-l", str(d))
    assert result.returncode == 0, result.stderr


def test_stop_training_on_failure_writes_the_stop_file_naming_the_failure(ckpt, tmp_path, env, records_path):
    """A class listener that raises at step 2 with on_failure = stop-training: the stop file names it
    and the failure, written after the other listener's step 2; exit 1 (it did fail)."""
    saves(ckpt, 1, 2)
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {
        "checker": {"class": "rec.py:Rec", "args": {"label": "checker", "fail_at": 2}, "on_failure": "stop-training"},
        "other": {"class": "rec.py:Rec", "args": {"label": "other", "slow": 0.3}, "events": ["after_save"]},
    })
    stop = tmp_path / "stop.json"
    result = run_once(ckpt, tmp_path, env, "--stop-file", str(stop))
    assert result.returncode == 1, result.stderr
    body = json.loads(stop.read_text())
    assert (body["step"], body["listeners"]) == (2, ["checker"])
    assert body["reason"] == "checker: after_save step 2 failed: ValueError: bad checkpoint 2"
    other2 = next(r for r in read_records(records_path) if r["name"] == "other" and r["step"] == 2)
    assert body["time"] >= other2["time"]


def test_stop_watcher_on_failure_ends_the_session_with_end_for_the_others(ckpt, tmp_path, watch, records_path):
    """Steps: a live watcher; 'guard' (on_failure = stop-watcher) fails at step 2; 'rec' beside it.
    Result: the session ends by itself; rec gets end (step 2); guard gets no end; exit 1."""
    write_class(tmp_path)
    write_toml(tmp_path / "ckptwatch.toml", {
        "guard": {"class": "rec.py:Rec", "args": {"label": "guard", "fail_at": 2}, "on_failure": "stop-watcher"},
        "rec": {"class": "rec.py:Rec", "args": {"label": "rec"}},
    })
    w = watch(str(ckpt))
    w.wait_ready()
    saves(ckpt, 1)
    w.wait_run("guard", "after_save", 1)
    saves(ckpt, 2)
    assert w.wait_exit() == 1
    records = read_records(records_path)
    assert calls(by(records, "rec"))[-1] == ("end", 2)
    assert "end" not in [r["event"] for r in by(records, "guard")]
    assert any("on_failure = stop-watcher: ending the session" in r["msg"] for r in w.records)
    assert any(r.get("reason") == "listener-failed" for r in w.records)


def test_coalesce_skips_to_the_newest_checkpoint_and_journals_the_skips(ckpt, tmp_path, env, records_path):
    """Steps: five saves there at the start (--once queues them all at once); 'behind' has coalesce,
    'every' has not.
    Result: behind runs for step 1 (it was idle: started at once) and then for step 5 only; each
    skipped save is logged once and journaled as skipped; every gets all five; a second --once
    with the same state runs nothing again."""
    saves(ckpt, 1, 2, 3, 4, 5)
    d = tmp_path / "l"
    write_listener(d, "behind", events="after_save coalesce=true")
    write_listener(d, "every", events="after_save")
    state = tmp_path / "state"
    result = run_once(ckpt, tmp_path, env, "-l", str(d), "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    records = read_records(records_path)
    assert summary(records, "behind") == [("after_save", 1), ("after_save", 5)]
    assert summary(records, "every") == [("after_save", s) for s in range(1, 6)]
    log = json_log(result.stderr)
    skipped = [r["step"] for r in log if r.get("listener") == "behind" and r.get("outcome") == "skipped"]
    assert skipped == [2, 3, 4]
    journal = [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines()]
    assert sum(1 for r in journal if r.get("status") == "skipped" and r["listener"] == "behind") == 3
    again = run_once(ckpt, tmp_path, env, "-l", str(d), "--state-dir", str(state))
    assert again.returncode == 0
    assert len(read_records(records_path)) == len(records)


def test_a_retry_owed_when_the_watcher_crashes_is_run_by_the_next_session(ckpt, tmp_path, watch, records_path):
    """Steps: 'flaky' (retry:3) fails attempt 1; the watcher is killed (SIGKILL) during the pause
    before attempt 2; a new watcher with the same state dir.
    Result: the new session runs attempt 2 (retry), which succeeds; nothing else repeats."""
    saves(ckpt, 1)
    d = tmp_path / "l"
    counter = tmp_path / "count"
    write_listener(d, "flaky", events="after_save on_failure=retry:3", after=(
        f"first = not os.path.exists({str(counter)!r})\nopen({str(counter)!r}, 'w').write('x')\n"
        "sys.exit(1 if first else 0)"))
    state = tmp_path / "state"
    first = watch(str(ckpt), "-l", str(d), "--state-dir", str(state))
    first.wait_for(lambda r: r.get("outcome") == "retried")
    first.send(signal.SIGKILL)
    first.wait_exit()
    second = watch(str(ckpt), "-l", str(d), "--state-dir", str(state), "--once")
    assert second.wait_exit() == 0
    assert [(r["stdin"]["attempt"], r["stdin"]["retry"]) for r in read_records(records_path)] == [
        (1, False), (2, True)]
