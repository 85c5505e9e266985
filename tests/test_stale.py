"""``--stale-after``: the ``stale`` event, its clearing by a commit, and what the log, the
metrics and ``status`` say meanwhile, through the real CLI."""

from __future__ import annotations

import json
import signal
import sys

from conftest import expected_stream, read_records, run_cli, summary, write_listener
from test_metrics import metrics_url, scrape, value
from test_status import wait_status
from test_protocol import dcp_save

from ckptwatch.staleness import Staleness

PAGER = """#!{python}
# ckptwatch: events=stale
import json, os
from ckptwatch import CheckpointSaverListener
from ckptwatch.listener import serve

class Pager(CheckpointSaverListener):
    def stale(self, event):
        with open(os.environ["RECORD_FILE"], "a") as out:
            out.write(json.dumps({{"name": "pager", "argv": ["stale"], "stdin": {{"step": event.step,
                "seconds": event.seconds_since_commit, "checkpoint": event.checkpoint}},
                "env": os.environ.get("CKPTWATCH_SECONDS_SINCE_COMMIT")}}) + "\\n")
        print(f"paging: stale at step {{event.step}}")

serve(Pager())
"""


def stale_after(records, name="pager"):
    return [r for r in records if r["name"] == name]


def test_stale_fires_once_per_spell_to_subscribers_only_and_a_commit_clears_it(ckpt, tmp_path, watch, env,
                                                                                 records_path):
    """Steps: --stale-after 3; 'pager' (a Python listener subscribed to stale only) and 'plain'
    (no subscription line: the default four); save step 1; wait out the spell; save step 2;
    wait out the next spell; SIGTERM.
    Result: one 'stale' per spell, with the last step and seconds_since_commit >= 3 (JSON and
    environment); the log says it once per spell, and 'no longer stale' at step 2; meanwhile
    ckptwatch_stale is 1 and status exits 1 saying STALE, after step 2 they are 0 and healthy;
    'plain' gets exactly the four events it always got."""
    listeners = tmp_path / "l"
    listeners.mkdir()
    pager = listeners / "pager"
    pager.write_text(PAGER.format(python=sys.executable))
    pager.chmod(0o755)
    write_listener(listeners, "plain")
    w = watch(str(ckpt), "-l", str(listeners), "--stale-after", "3", "--metrics-port", "0", "--layout", "dcp")
    url = metrics_url(w)
    w.wait_ready()
    dcp_save(ckpt, "step-1")
    w.wait_run("plain", "after_save", 1)
    w.wait_run("pager", "stale", 1)
    said = [r for r in w.records if r.get("stale") is True]
    assert len(said) == 1 and said[0]["level"] == "warning" and said[0]["step"] == 1
    assert value(scrape(url), "ckptwatch_stale") == 1
    state = run_cli("status", str(ckpt), "--json", env=env, cwd=tmp_path)
    assert state.returncode == 1 and json.loads(state.stdout)["stale"] is True
    assert "STALE" in run_cli("status", str(ckpt), env=env, cwd=tmp_path).stdout
    assert len(stale_after(read_records(records_path))) == 1  # still one: once per spell

    dcp_save(ckpt, "step-2")
    w.wait_for(lambda r: r.get("stale") is False and r.get("step") == 2)
    assert value(scrape(url), "ckptwatch_stale") == 0  # the hub hears it before the log line is written
    # status.json is rewritten a moment after the commit; within the next 3 s it must say healthy
    code, report = wait_status(ckpt / ".ckptwatch", env, tmp_path, lambda r: r["last_commit"]["step"] == 2)
    assert report["stale"] is False and code == 0, report
    w.wait_run("pager", "stale", 2)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    records = read_records(records_path)
    pages = stale_after(records)
    assert [p["stdin"]["step"] for p in pages] == [1, 2]
    for page in pages:
        assert page["stdin"]["seconds"] >= 3 and float(page["env"]) >= 3
    assert pages[0]["stdin"]["checkpoint"] == str(ckpt / "step-1")
    assert summary(records, "plain") == expected_stream([1, 2])
    assert len([r for r in w.records if r.get("stale") is True]) == 2


def test_subscribing_to_stale_in_the_config_and_a_bad_event_name(ckpt, tmp_path, env, records_path):
    """A [listener.NAME] events list may name stale; an unknown name is a usage error that lists stale."""
    write_listener(tmp_path / "l", "rec")
    (tmp_path / "ok.toml").write_text('[listener.rec]\nevents = ["stale", "end"]\n')
    result = run_cli("run", str(ckpt), "--once", "-l", str(tmp_path / "l"), "--config", str(tmp_path / "ok.toml"),
                     env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(read_records(records_path)) == [("end", None)]  # --once ends before any spell
    (tmp_path / "bad.toml").write_text('[listener.rec]\nevents = ["stail"]\n')
    result = run_cli("run", str(ckpt), "--once", "-l", str(tmp_path / "l"), "--config", str(tmp_path / "bad.toml"),
                     env=env, cwd=tmp_path)
    assert result.returncode == 2 and "stale" in result.stderr


def test_staleness_counts_from_the_start_then_from_each_commit():
    clock = Staleness(10.0, now=100.0)
    assert clock.left(105.0) == 5.0 and clock.check(105.0) is None
    assert clock.check(110.0) == 10.0 and clock.stale  # the spell starts: told once
    assert clock.check(500.0) is None and clock.left(500.0) is None
    assert clock.committed(512.0) == 412.0 and not clock.stale  # the commit ends it
    assert clock.committed(513.0) is None  # a commit outside a spell ends nothing
    assert clock.left(520.0) == 3.0
    assert Staleness(None, now=0.0).check(1e9) is None
