"""CI smoke checks: expectations held and broken, the exit status's precedence, the summary
line (always last), and the reports CI reads (summary JSON against its schema, JUnit XML
against the XSD and case by case, GitHub's step summary). Real runs of ``ckptwatch run``
wrapping a real training script, or ``--once`` on a real directory."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import xmlschema
from junitparser import Failure, JUnitXml, Skipped

from conftest import json_log, run_cli, write_listener

ROOT = Path(__file__).parent.parent
TRAIN = ROOT / "examples" / "train.py"
SCHEMA = json.loads((ROOT / "ckptwatch" / "report" / "summary.schema.json").read_text())
JUNIT_XSD = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd"))

#: Saves checkpoint-20 and -40 as the Trainer does, then starts checkpoint-60 and never commits it.
HALF_SAVE = """
import json, os, sys
root = sys.argv[1]
for step in (20, 40):
    os.makedirs(f"{root}/checkpoint-{step}")
    open(f"{root}/checkpoint-{step}/model.json", "w").write("{}")
    json.dump({"global_step": step}, open(f"{root}/checkpoint-{step}/trainer_state.json", "w"))
os.makedirs(f"{root}/checkpoint-60")
open(f"{root}/checkpoint-60/model.json", "w").write("{}")
print("train: crashed while saving step 60", flush=True)
"""


def train(ckpt: Path, *args: str) -> list[str]:
    """The wrapped command: examples/train.py, fast (200 steps, a save every 20, none rotated away)."""
    ckpt.mkdir(exist_ok=True)
    return ["--", sys.executable, str(TRAIN), str(ckpt), "--step-time", "0.001", "--keep", "1000", *args]


def ckw(tmp_path: Path, env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None):
    result = run_cli("run", *args, env={**env, **(extra_env or {})}, cwd=tmp_path, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_every_expectation_held(ckpt, tmp_path, env):
    """Steps: train.py (200 steps, saves every 20) under ckptwatch with all five expectations,
    text log.
    Result: exit 0; each expectation says it held; the last line is the summary: exit 0,
    10 checkpoints, listener runs done and failed, no stop, the command's status."""
    steps = ",".join(str(s) for s in range(20, 201, 20))
    result = ckw(tmp_path, env, str(ckpt), "--expect-checkpoints", "10", "--expect-steps", steps,
                 "--expect-last-step", "200", "--expect-no-stop", "--expect-within", "60", *train(ckpt))
    assert result.returncode == 0, result.stderr
    held = [line for line in result.stderr.splitlines() if "expectation held:" in line]
    assert len(held) == 5
    assert last_line(result).endswith(
        "summary: exit 0 (no listener failed); 10 checkpoint(s) committed; listener runs: 0 done, 0 failed; "
        "no stop requested; command exited 0; expectations: 5 of 5 held")


def test_a_save_that_never_commits_fails_steps_and_the_last_line_says_what_was_seen(ckpt, tmp_path, env):
    """Steps: the command commits steps 20 and 40, starts 60 and exits 0 without committing it;
    --expect-steps 20,40,60 --expect-checkpoints 3 --expect-last-step 60; --log-format json.
    Result: exit 4; three 'expectation failed' records; the last record is the summary, and its
    message says which expectation failed and what was seen instead, with the save that
    started and never committed."""
    script = tmp_path / "half.py"
    script.write_text(HALF_SAVE)
    result = ckw(tmp_path, env, str(ckpt), "--log-format", "json", "--layout", "hf", "--expect-steps", "20,40,60",
                 "--expect-checkpoints", "3", "--expect-last-step", "60", "--", sys.executable, str(script),
                 str(ckpt))
    assert result.returncode == 4, result.stderr
    records = json_log(result.stderr)
    failed = [r for r in records if r.get("kind") == "expectation" and r["held"] is False]
    assert [r["expectation"] for r in failed] == ["checkpoints", "steps", "last-step"]
    last = records[-1]
    assert last["kind"] == "summary" and last["exit"] == 4 and last["checkpoints"] == 2
    assert re.fullmatch(r"expected at least 3 checkpoint\(s\); 2 committed \(steps 20,40\) \(60 started at "
                        r"\d\d:\d\d:\d\d, never committed\) \(and 2 more expectation\(s\) that did not hold, above\)",
                        last["reason"]), last["reason"]
    steps_line = failed[1]["msg"]
    assert re.fullmatch(r"expectation failed: expected checkpoints at steps 20,40,60; committed: 20,40 "
                        r"\(60 started at \d\d:\d\d:\d\d, never committed\)", steps_line), steps_line
    assert last["command_status"] == 0 and last["stop_requested"] is False


def test_precedence_command_then_expectation_then_listener(ckpt, tmp_path, env):
    """Steps: (a) a listener fails, expectations hold; (b) a listener fails and an expectation
    does not hold; (c) as (b), and the command exits 3; (d) --once on an empty DIR with
    --expect-within.
    Result: (a) exit 1, (b) 4, (c) 3 (the command's), each with the summary line last,
    naming its reason; (d) 4, 'none came'."""
    write_listener(tmp_path / "l", "flaky", events="after_save",
                   after="if record['stdin']['step'] == 40:\n    print('bad tensor')\n    sys.exit(1)")
    base = [str(ckpt), "-l", str(tmp_path / "l")]
    a = ckw(tmp_path, env, *base, "--expect-checkpoints", "2", *train(ckpt, "--steps", "40"))
    assert a.returncode == 1, a.stderr
    assert "summary: exit 1 (1 listener run(s) failed)" in last_line(a)
    assert "listener runs: 1 done, 1 failed" in last_line(a)
    for path in ckpt.iterdir():
        if path.name.startswith("checkpoint-"):
            for f in path.iterdir():
                f.unlink()
            path.rmdir()
    b = ckw(tmp_path, env, *base, "--state-dir", str(tmp_path / "s2"), "--expect-checkpoints", "3",
            *train(ckpt, "--steps", "40"))
    assert b.returncode == 4, b.stderr
    assert "summary: exit 4 (expected at least 3 checkpoint(s); 2 committed (steps 20,40))" in last_line(b)
    c = ckw(tmp_path, env, *base, "--state-dir", str(tmp_path / "s3"), "--expect-checkpoints", "3", "--",
            sys.executable, "-c", "raise SystemExit(3)")
    assert c.returncode == 3, c.stderr
    assert "summary: exit 3 (the training command exited 3)" in last_line(c)
    assert "command exited 3" in last_line(c)
    empty = tmp_path / "empty"
    empty.mkdir()
    d = ckw(tmp_path, env, str(empty), "--once", "--expect-within", "600")
    assert d.returncode == 4
    assert re.search(r"summary: exit 4 \(expected the first commit within 600 s of the start; none came in "
                     r"[\d.]+ s\)", last_line(d)), last_line(d)


def test_stop_expected_and_not(ckpt, tmp_path, env):
    """Steps: train.py with 30-stop-at-step (STOP_AT_STEP=40) from listeners.d; --expect-stop,
    then (a fresh DIR) --expect-no-stop.
    Result: the first holds (exit 0, summary names the stop and who asked); the second fails
    with exit 4 and says who asked, at which step and why."""
    listeners = ROOT / "listeners.d" / "30-stop-at-step"
    stop_env = {"STOP_AT_STEP": "40"}
    ok = ckw(tmp_path, env, str(ckpt), "-l", str(listeners), "--expect-stop", *train(ckpt), extra_env=stop_env)
    assert ok.returncode == 0, ok.stderr
    assert "stop requested at step 40 by 30-stop-at-step" in last_line(ok)
    other = tmp_path / "other"
    bad = ckw(tmp_path, env, str(other), "-l", str(listeners), "--expect-no-stop", *train(other),
              extra_env=stop_env)
    assert bad.returncode == 4, bad.stderr
    assert ("summary: exit 4 (expected no stop request; 30-stop-at-step asked at step 40 (30-stop-at-step: step 40 "
            "reached STOP_AT_STEP=40: asking training to stop))") in last_line(bad)


def test_expect_table_in_the_config_and_flag_beats_environment_beats_file(ckpt, tmp_path, env):
    """[expect] in ckptwatch.toml sets expectations; CKPTWATCH_EXPECT_* beats it; a flag beats both.
    Bad values are usage errors (exit 2, one line)."""
    (tmp_path / "ckptwatch.toml").write_text("[expect]\ncheckpoints = 3\nsteps = [20, 40, 60]\nlast-step = 60\n"
                                             "stop = false\nwithin = 600\n")
    from_file = ckw(tmp_path, env, str(ckpt), *train(ckpt, "--steps", "60"))
    assert from_file.returncode == 0, from_file.stderr
    assert "expectations: 5 of 5 held" in last_line(from_file)
    other = tmp_path / "o"
    by_env = ckw(tmp_path, env, str(other), *train(other, "--steps", "60"),
                 extra_env={"CKPTWATCH_EXPECT_STEPS": "20,40", "CKPTWATCH_EXPECT_STOP": "true"})
    assert by_env.returncode == 4
    assert "expected checkpoints at steps 20,40; committed: 20,40,60" in by_env.stderr
    assert "expected a stop request; none was made" in by_env.stderr
    third = tmp_path / "t"
    by_flag = ckw(tmp_path, env, str(third), "--expect-steps", "20,40,60", "--expect-no-stop",
                  *train(third, "--steps", "60"), extra_env={"CKPTWATCH_EXPECT_STEPS": "20,40",
                                                             "CKPTWATCH_EXPECT_STOP": "true"})
    assert by_flag.returncode == 0, by_flag.stderr
    for args, needle in (
        (["--expect-steps", "20,x"], "not a comma-separated list of steps"),
        (["--expect-checkpoints", "-1"], "expect-checkpoints"),
        (["--expect-within", "0"], "expect-within"),
    ):
        (tmp_path / "ckptwatch.toml").unlink(missing_ok=True)
        bad = ckw(tmp_path, env, str(ckpt), "--once", *args)
        assert bad.returncode == 2 and needle in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    (tmp_path / "ckptwatch.toml").write_text("[expect]\nsteps = [20, 'forty']\n")
    bad = ckw(tmp_path, env, str(ckpt), "--once")
    assert bad.returncode == 2 and "[expect] steps must be a list of step numbers" in bad.stderr
    (tmp_path / "ckptwatch.toml").write_text("[expect]\ncheckpionts = 3\n")
    bad = ckw(tmp_path, env, str(ckpt), "--once")
    assert bad.returncode == 2 and "unknown [expect] key(s) checkpionts" in bad.stderr


def test_reports_summary_json_junit_xml_and_github_step_summary(ckpt, tmp_path, env):
    """Steps: train.py to step 60 with listeners 'ok', 'flaky' (fails at step 40 with output)
    and 30-stop-at-step (STOP_AT_STEP=60); --expect-steps 20,40,60,80 (fails) --expect-stop
    (holds); --summary-json and --junit-xml into a directory that does not exist yet;
    GITHUB_STEP_SUMMARY names a file that already has a line.
    Result: exit 4; the summary JSON validates against its schema and lists the checkpoints,
    every run (the failure's output), the stop request, both expectations; the JUnit XML
    validates against the XSD, and junitparser reads one case per checkpoint, per run (the
    failed one a <failure> with its output), per expectation and the command; the step summary
    is appended after the line that was there."""
    listeners = tmp_path / "l"
    write_listener(listeners, "ok", events="after_save")
    write_listener(listeners, "flaky", events="after_save,end",
                   after="if record['argv'][0] == 'after_save' and record['stdin']['step'] == 40:\n"
                         "    print('loading model.json')\n    print('KeyError: w')\n    sys.exit(1)")
    (listeners / "stopper").symlink_to(ROOT / "listeners.d" / "30-stop-at-step")
    step_summary = tmp_path / "step-summary.md"
    step_summary.write_text("earlier step\n")
    out = tmp_path / "reports"
    result = ckw(tmp_path, env, str(ckpt), "-l", str(listeners), "--expect-steps", "20,40,60,80", "--expect-stop",
                 "--summary-json", str(out / "summary.json"), "--junit-xml", str(out / "junit.xml"),
                 *train(ckpt, "--steps", "60"),
                 extra_env={"STOP_AT_STEP": "60", "GITHUB_STEP_SUMMARY": str(step_summary)})
    assert result.returncode == 4, result.stderr

    summary = json.loads((out / "summary.json").read_text())
    jsonschema.validate(summary, SCHEMA)
    assert summary["version"] == 1 and summary["layout"] == "hf" and summary["exit"]["status"] == 4
    assert [c["step"] for c in summary["checkpoints"]] == [20, 40, 60]
    assert all(c["path"] == str(ckpt / f"checkpoint-{c['step']}") for c in summary["checkpoints"])
    runs = {(r["listener"], r["event"], r["step"]): r for r in summary["runs"]}
    assert len(summary["runs"]) == 10  # ok, flaky, stopper at 3 saves; flaky at end
    failed = runs[("flaky", "after_save", 40)]
    assert failed["outcome"] == "failed" and failed["exit_status"] == 1
    assert failed["output"] == ["loading model.json", "KeyError: w"]
    assert runs[("stopper", "after_save", 60)]["outcome"] == "stop"
    assert summary["stop_requests"][0]["step"] == 60 and summary["stop_requests"][0]["listeners"] == ["stopper"]
    assert [(e["name"], e["held"]) for e in summary["expectations"]] == [("steps", False), ("stop", True)]
    assert summary["command"]["exit_status"] == 0 and summary["counts"]["runs_failed"] == 1
    assert summary["run_id"] and summary["sessions"][0]["run_id"] == summary["run_id"]

    JUNIT_XSD.validate(str(out / "junit.xml"))
    suites = JUnitXml.fromfile(str(out / "junit.xml"))
    cases = {case.name: case for suite in suites for case in suite}
    assert set(cases) == {
        "commit[step=20]", "commit[step=40]", "commit[step=60]",
        *(f"after_save[step={s}] {n}" for s in (20, 40, 60) for n in ("ok", "flaky", "stopper")),
        "end[step=60] flaky", "expect steps", "expect stop",
        "command " + " ".join(train(ckpt, "--steps", "60")[1:]),
    }
    bad = cases["after_save[step=40] flaky"]
    assert len(bad.result) == 1 and isinstance(bad.result[0], Failure)
    assert bad.result[0].message == "failed (exit 1): KeyError: w"
    assert bad.result[0].text == "loading model.json\nKeyError: w"
    assert cases["after_save[step=20] flaky"].is_passed
    expect_steps = cases["expect steps"].result[0]
    assert isinstance(expect_steps, Failure)
    assert expect_steps.message == "expected checkpoints at steps 20,40,60,80; committed: 20,40,60"
    assert cases["expect stop"].is_passed and cases["after_save[step=60] stopper"].is_passed
    suite = next(iter(suites))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (len(cases), 2, 0, 0)

    text = step_summary.read_text()
    assert text.startswith("earlier step\n### ❌ ckptwatch: `")
    assert "**exit 4**: expected checkpoints at steps 20,40,60,80; committed: 20,40,60" in text
    assert "| checkpoints committed | 3 (steps 20, 40, 60) |" in text
    assert "| `steps` | ❌ failed |" in text and "| `stop` | ✅ held |" in text
    assert "| 40 |" in text and "1 failed" in text
    assert "<summary>flaky after_save step 40: failed (exit 1)</summary>" in text and "KeyError: w" in text


def test_a_vanished_run_is_skipped_in_junit(ckpt, tmp_path, env):
    """A checkpoint deleted before its listener's turn is a <skipped> case, and a vanished run in the JSON."""
    from test_protocol import dcp_save

    dcp_save(ckpt, "step-1")
    listeners = tmp_path / "l"
    # the first run deletes the second checkpoint before the listener gets to it
    write_listener(listeners, "rec", events="after_save", after=(
        "import shutil\nif record['stdin']['step'] == 1:\n"
        f"    shutil.rmtree({str(ckpt / 'step-2')!r})"))
    dcp_save(ckpt, "step-2")
    result = ckw(tmp_path, env, str(ckpt), "--once", "-l", str(listeners), "--junit-xml", str(tmp_path / "j.xml"),
                 "--summary-json", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    JUNIT_XSD.validate(str(tmp_path / "j.xml"))
    cases = {case.name: case for suite in JUnitXml.fromfile(str(tmp_path / "j.xml")) for case in suite}
    assert isinstance(cases["after_save[step=2] rec"].result[0], Skipped)
    summary = json.loads((tmp_path / "s.json").read_text())
    jsonschema.validate(summary, SCHEMA)
    assert summary["vanished"] == [{"step": 2, "checkpoint": str(ckpt / "step-2"), "listener": "rec"}]
    assert "1 vanished" in last_line(result)


@pytest.mark.parametrize("how", ["signal", "once"])
def test_the_summary_line_ends_every_session(how, ckpt, tmp_path, env, watch):
    """Whatever ends it (a signal, --once), the summary line is the last line, and the last JSON record."""
    if how == "once":
        result = ckw(tmp_path, env, str(ckpt), "--once", "--log-format", "json")
        records = json_log(result.stderr)
    else:
        import signal

        w = watch(str(ckpt))
        w.wait_ready()
        w.send(signal.SIGTERM)
        assert w.wait_exit() == 0
        records = w.records
    assert records[-1]["kind"] == "summary" and records[-1]["exit"] == 0
    assert records[-1]["msg"].startswith("summary: exit 0 (no listener failed); 0 checkpoint(s) committed")
