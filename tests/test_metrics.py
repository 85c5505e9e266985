"""``--metrics-port``: scrape a real watcher's endpoint during a run, and check each value
against what happened; prometheus-client stays unloaded without the flag."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import run_cli, write_listener
from test_protocol import dcp_save


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from one scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def metrics_url(w) -> str:
    return w.wait_for(lambda r: "metrics_url" in r)["metrics_url"]


def test_a_scrape_during_a_run_matches_what_happened(ckpt, tmp_path, watch):
    """Steps: --metrics-port 0 --poll 0.2; listeners 'ok', 'flaky' (fails at step 2), 'asker'
    (exit 3 at step 3), 'gate' (holds step 4 until released); save 1 is seen starting before
    its commit; saves 2..5; step 5 is deleted while 'gate' still holds step 4, then released.
    Result: one scrape says 5 commits, last step 5 at the commit's time, one save duration
    (save 1), per-listener runs by outcome (flaky 1 failed, asker 1 stop, gate 1 vanished),
    run durations counted, 1 stop request, 1 vanished checkpoint, poll rescans, not stale,
    the session's info; the endpoint listens on 127.0.0.1 only."""
    listeners = tmp_path / "l"
    write_listener(listeners, "ok", events="after_save")
    write_listener(listeners, "flaky", events="after_save",
                   after="if record['stdin']['step'] == 2:\n    sys.exit(1)")
    write_listener(listeners, "asker", events="after_save",
                   after="if record['stdin']['step'] == 3:\n    print('enough')\n    sys.exit(3)")
    release = tmp_path / "release"
    write_listener(listeners, "gate", events="after_save", before=(
        "if record['stdin']['step'] == 4:\n"
        f"    while not os.path.exists({str(release)!r}):\n        time.sleep(0.02)"))
    w = watch(str(ckpt), "-l", str(listeners), "--metrics-port", "0", "--poll", "0.2", "--layout", "dcp")
    url = metrics_url(w)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    w.wait_ready()
    started = time.time()
    first = ckpt / "step-1"
    first.mkdir()
    (first / "__0_0.distcp").write_bytes(b"x" * 64)
    w.wait_for(lambda r: r.get("event") == "before_save" and r.get("observed") is True)
    (first / ".metadata.tmp").write_bytes(b"meta")
    (first / ".metadata.tmp").rename(first / ".metadata")
    for step in (1, 2, 3):
        if step > 1:
            dcp_save(ckpt, f"step-{step}")
        for name in ("ok", "flaky", "asker", "gate"):
            w.wait_run(name, "after_save", step)
    dcp_save(ckpt, "step-4")
    w.wait_run("ok", "after_save", 4)
    dcp_save(ckpt, "step-5")
    w.wait_run("ok", "after_save", 5)  # the idle listeners ran step 5 at once; gate still holds step 4
    for path in sorted((ckpt / "step-5").iterdir()):
        path.unlink()
    (ckpt / "step-5").rmdir()
    release.write_text("")
    w.wait_run("gate", "after_save", 5)
    for name in ("flaky", "asker"):
        w.wait_run(name, "after_save", 5)
    committed_by = time.time()

    # A run's log line comes just before the hub hears of it: scrape until all 20 runs are counted.
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(url)
        if sum(v for (name, _), v in samples.items() if name == "ckptwatch_listener_runs_total") >= 20:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert value(samples, "ckptwatch_checkpoints_committed_total") == 5
    assert value(samples, "ckptwatch_last_committed_step") == 5
    assert started <= value(samples, "ckptwatch_last_commit_timestamp_seconds") <= committed_by
    assert value(samples, "ckptwatch_save_duration_seconds_count") == 1
    assert value(samples, "ckptwatch_save_duration_seconds_sum") > 0
    runs = {labels: v for (name, labels), v in samples.items() if name == "ckptwatch_listener_runs_total"}
    assert runs == {
        (("event", "after_save"), ("listener", "ok"), ("outcome", "done")): 5,
        (("event", "after_save"), ("listener", "flaky"), ("outcome", "done")): 4,
        (("event", "after_save"), ("listener", "flaky"), ("outcome", "failed")): 1,
        (("event", "after_save"), ("listener", "asker"), ("outcome", "done")): 4,
        (("event", "after_save"), ("listener", "asker"), ("outcome", "stop")): 1,
        (("event", "after_save"), ("listener", "gate"), ("outcome", "done")): 4,
        (("event", "after_save"), ("listener", "gate"), ("outcome", "vanished")): 1,
    }
    assert value(samples, "ckptwatch_listener_duration_seconds_count", listener="ok", event="after_save") == 5
    assert value(samples, "ckptwatch_listener_duration_seconds_count", listener="gate", event="after_save") == 4
    assert value(samples, "ckptwatch_stop_requests_total") == 1
    assert value(samples, "ckptwatch_vanished_checkpoints_total") == 1
    assert value(samples, "ckptwatch_rescans_total", reason="poll") >= 1
    assert value(samples, "ckptwatch_notification_overflows_total") == 0
    assert value(samples, "ckptwatch_stale") == 0
    info = [labels for (name, labels), v in samples.items() if name == "ckptwatch_info" and v == 1]
    assert len(info) == 1 and dict(info[0])["layout"] == "dcp"
    assert not any(name.endswith("_created") for name, _ in samples)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 1  # flaky failed


def test_overflow_and_relist_are_counted(ckpt, tmp_path, watch):
    """Steps: native notifications; SIGSTOP the watcher, make more events than the kernel's
    queue holds, SIGCONT.
    Result: ckptwatch_notification_overflows_total 1, a 'relist' rescan; before: a fresh
    watcher's values (0 commits, last step NaN)."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    w = watch(str(ckpt), "--metrics-port", "0", "--layout", "dcp")
    url = metrics_url(w)
    w.wait_ready()
    fresh = scrape(url)
    assert value(fresh, "ckptwatch_checkpoints_committed_total") == 0
    assert math.isnan(value(fresh, "ckptwatch_last_committed_step"))
    w.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(limit // 2 + 100):
            (ckpt / f"noise-{i}").write_bytes(b"")
    finally:
        w.proc.send_signal(signal.SIGCONT)
    w.wait_for(lambda r: "overflowed" in r["msg"])
    deadline = time.monotonic() + 30
    while value(samples := scrape(url), "ckptwatch_rescans_total", reason="relist") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert value(samples, "ckptwatch_notification_overflows_total") == 1
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0


def test_usage_errors_and_no_import_without_the_flag(ckpt, tmp_path, env):
    """A taken port is a usage error (exit 2, one line) before anything starts; without the
    flag a run never imports prometheus_client."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", str(ckpt), "--once", "--metrics-port", str(port), env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"cannot serve metrics on 127.0.0.1:{port}: "
                                                           "Address already in use")
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli("run", str(ckpt), "--once", "--metrics-port", "70000", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "70000" in result.stderr
    code = ("import sys\nfrom ckptwatch.cli import main\nstatus = main(['run', sys.argv[1], '--once'])\n"
            "print(status, sorted(m for m in sys.modules if m.startswith('prometheus')))")
    out = subprocess.run([sys.executable, "-c", code, str(ckpt)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr
