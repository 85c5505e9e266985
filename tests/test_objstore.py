"""DIR in an object store: ``ckptwatch run s3://bucket/run`` and ``gs://``, against real servers on the loopback.

moto in server mode (S3) and gcp-storage-emulator (GCS) are started by
fixtures; the writers in ``storewriters.py`` save object by object in each
framework's order. Faults are real: the S3 server is stopped and started
again, a proxy answers 503 SlowDown, an upload is left half done. The layout
rules on object stores are also checked in process on ``memory://``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import WAIT, expected_stream, json_log, read_records, run_cli, summary, write_listener

from objservers import GCSServer, Proxy, S3Server  # noqa: E402 - first: it sets gcsfs's environment

pytest.importorskip("s3fs")
pytest.importorskip("gcsfs")
pytest.importorskip("moto")

from storewriters import OrbaxManager, TFManager, Trainer  # noqa: E402

BUCKET = "bucket"


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    server.filesystem().mkdir(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gcs():
    server = GCSServer(BUCKET).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def state_home(env, tmp_path) -> Path:
    """The default state directory of a URL DIR is under $XDG_STATE_HOME: one per test."""
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    return tmp_path / "xdg-state"


@pytest.fixture
def prefix(request) -> str:
    """A fresh run prefix per test (the servers are shared by the module)."""
    return "run-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[-60:]


def events(records, name=None):
    return [s for e, s in summary(records, name) if e == "after_save"]


# Usage, and nothing of fsspec for a local DIR -------------------------------------------------


def test_local_dir_imports_no_fsspec(ckpt, tmp_path, env):
    """Steps: ``run DIR --once`` and ``doctor DIR`` on a local TF directory, in one process.
    Result: both work, and fsspec (and s3fs, gcsfs) were never imported."""
    (ckpt / "ckpt-1.index").write_bytes(b"i")
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    code = (
        "import sys\n"
        "from ckptwatch.cli import main\n"
        f"assert main(['run', {str(ckpt)!r}, '--once', '--log-format', 'json']) == 0\n"
        f"assert main(['doctor', {str(ckpt)!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fsspec', 's3fs', 'gcsfs', 'botocore')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "args,expect",
    [
        (["s3://bucket/x", "--pin"], "--pin cannot be used with an object store"),
        (["s3://bucket/x", "--state-dir", "s3://bucket/state"], "--state-dir must be a local directory"),
        (["s3://bucket/x", "--poll", "0"], "--poll 0 cannot watch an object store"),
        (["nosuchproto://bucket/x"], "no fsspec implementation of nosuchproto://"),
        (["s3://no-such-bucket/x"], "the bucket no-such-bucket does not exist"),
        (["s3://bucket/x", "--storage-option", "novalue"], "storage-option must be KEY=VALUE"),
    ],
)
def test_usage_errors(args, expect, s3, tmp_path, env):
    """Steps: ``run URL`` with an option that cannot work there. Result: exit 2, one line that says why."""
    result = run_cli("run", *args, "--once", env={**env, **s3.env()}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], result.stderr


def test_layouts_command_names_the_object_store_rules(tmp_path, env):
    result = run_cli("layouts", env=env, cwd=tmp_path)
    assert result.returncode == 0
    rules = [line.split("s3/gs:", 1)[1].strip() for line in result.stdout.splitlines() if "s3/gs:" in line]
    assert len(rules) == 13 and all(rules)
    assert any("commit_success.txt" in rule for rule in rules)


# The layouts' object-store rules, in process on memory:// -------------------------------------


def _scan(access, layout_name):
    from ckptwatch import layouts
    from ckptwatch.dirindex import DirIndex

    cls = layouts.layout_class(layout_name)
    index = DirIndex(access.root, [cls], fs=access)
    index.relist()
    layout = layouts.create(layout_name, access.root, access)
    return layout.scan(index.view(cls))


@pytest.mark.parametrize("layout", ["tf", "orbax", "hf", "dcp", "lightning"])
def test_memory_store_commit_rules(layout):
    """Steps: on memory://, two saves and a third stopped just before its commit object, object by object.
    Result: the two committed (in step order, with their markers), the third only in progress."""
    import fsspec

    from ckptwatch.sources.objstore import FsspecAccess

    fs = fsspec.filesystem("memory")
    root = f"/mem-{layout}"
    fs.rm(root, recursive=True) if fs.exists(root) else None

    class Stop(Exception):
        pass

    def stop(phase: str) -> None:
        if phase == "commit":
            raise Stop

    if layout == "dcp":
        for step in (10, 20, 30):
            fs.pipe_file(f"{root}/step-{step}/__0_0.distcp", b"x" * 64)
            if step != 30:
                fs.pipe_file(f"{root}/step-{step}/.metadata", b"meta")
    elif layout == "lightning":
        for step in (10, 20):
            fs.pipe_file(f"{root}/epoch=0-step={step}.ckpt", b"PK" * 40)
    else:
        writer = {"tf": lambda: TFManager(fs, root), "orbax": lambda: OrbaxManager(fs, root, keep=5),
                  "hf": lambda: Trainer(fs, root)}[layout]()
        writer.save(10)
        writer.save(20)
        with pytest.raises(Stop):
            writer.save(30, stop)
    obs = _scan(FsspecAccess(f"memory://{root}"), layout)
    obs.committed.sort(key=lambda c: c.step)  # the tracker orders them; not every layout does
    assert [c.step for c in obs.committed] == [10, 20]
    if layout not in ("lightning", "tf"):  # TF: _temp/ is deleted (merged) before the state file is written
        assert [s.step for s in obs.in_progress] == [30]
    marker = {"tf": "ckpt-20.index", "orbax": "20/commit_success.txt", "hf": "checkpoint-20/trainer_state.json",
              "dcp": "step-20/.metadata", "lightning": "epoch=0-step=20.ckpt"}[layout]
    assert obs.committed[-1].marker == marker


def test_memory_store_tf_full_url_paths():
    """TF1 writes full paths into 'checkpoint' (``memory://root/ckpt-10``): inside DIR, taken as relative;
    a URL elsewhere is ignored with a problem line."""
    import fsspec

    from ckptwatch.sources.objstore import FsspecAccess

    fs = fsspec.filesystem("memory")
    writer = TFManager(fs, "/mem-tf1", absolute="memory:///mem-tf1")
    writer.save(10)
    fs.pipe_file("/mem-tf1/checkpoint", fs.cat_file("/mem-tf1/checkpoint")
                 + b'all_model_checkpoint_paths: "memory:///elsewhere/ckpt-5"\n')
    obs = _scan(FsspecAccess("memory:///mem-tf1"), "tf")
    assert [(c.step, c.path) for c in obs.committed] == [(10, "ckpt-10")]
    assert any("outside DIR" in p for p in obs.problems)


# Live, against the real servers ---------------------------------------------------------------


def _live(watch, tmp_path, url, server_env, writer, steps, *extra):
    """Watch ``url`` with a recording listener while ``writer`` saves ``steps``, each paused once
    started until its before_save ran (the save was seen under way); then SIGTERM."""
    write_listener(tmp_path / "listeners", "rec")
    w = watch(url, "-l", str(tmp_path / "listeners"), "--poll", "0.2", *extra, extra_env=server_env)
    w.wait_ready()
    for step in steps:
        def pause(phase: str, step: int = step) -> None:
            if phase == "started":
                w.wait_run("rec", "before_save", step)
        writer.save(step, pause)
        w.wait_run("rec", "after_save", step)
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0, "\n".join(w.lines[-30:])
    return w


def test_s3_tf_saves_live(s3, prefix, tmp_path, watch, records_path):
    """Steps: ``run s3://bucket/PREFIX`` (auto layout); a TF CheckpointManager's saves written object by
    object (temp objects, copies for renames, two state writes, rotation). Result: begin, one observed
    before_save and one after_save per save in order, end; listeners get URLs (stdin and environment)."""
    fs = s3.filesystem()
    url = f"s3://{BUCKET}/{prefix}"
    w = _live(watch, tmp_path, url, s3.env(), TFManager(fs, f"{BUCKET}/{prefix}", keep=2), [10, 20, 30, 40])
    records = read_records(records_path)
    assert summary(records) == expected_stream([10, 20, 30, 40])
    after = [r for r in records if r["argv"] == ["after_save"]]
    assert [r["stdin"]["checkpoint"] for r in after] == [f"{url}/ckpt-{s}" for s in (10, 20, 30, 40)]
    assert [r["env"]["CKPTWATCH_CHECKPOINT"] for r in after] == [f"{url}/ckpt-{s}" for s in (10, 20, 30, 40)]
    assert all(r["stdin"]["dir"] == url and r["stdin"]["stop_file"] == f"{url}/ckptwatch.stop" for r in records)
    assert all(r["stdin"]["observed"] for r in records if r["argv"] == ["before_save"])
    assert w.wait_for(lambda r: r.get("layout") == "tf" and "detected" in r.get("msg", ""))
    journal = tmp_path / "xdg-state" / "ckptwatch" / "s3" / BUCKET / prefix / "journal.jsonl"
    assert journal.exists()  # the journal stays local, at a place the URL names


@pytest.mark.parametrize("framework", ["orbax", "tf1"])
def test_gcs_saves_live(framework, gcs, prefix, tmp_path, watch, records_path):
    """Steps: ``run gs://bucket/PREFIX``; Orbax's CommitFileTemporaryPath saves (no tmp dir, no rename:
    commit_success.txt last, rotation), or TF1's (full gs:// paths in 'checkpoint').
    Result: every save once, in order, observed; the checkpoint is the step prefix's URL."""
    fs = gcs.filesystem()
    url = f"gs://{BUCKET}/{prefix}"
    root = f"{BUCKET}/{prefix}"
    writer = OrbaxManager(fs, root, keep=2) if framework == "orbax" else TFManager(fs, root, keep=2, absolute=url)
    _live(watch, tmp_path, url, gcs.env(), writer, [5, 10, 15])
    records = read_records(records_path)
    assert summary(records) == expected_stream([5, 10, 15])
    name = (lambda s: str(s)) if framework == "orbax" else (lambda s: f"ckpt-{s}")
    assert [r["stdin"]["checkpoint"] for r in records if r["argv"] == ["after_save"]] == \
        [f"{url}/{name(s)}" for s in (5, 10, 15)]


def test_stop_file_is_one_put_to_the_bucket(s3, prefix, tmp_path, watch, records_path):
    """Steps: a listener exits 3 at after_save of the second save. Result: ``URL/ckptwatch.stop`` is an
    object with the stop request (step, checkpoint URL, listener, run id); written once."""
    fs = s3.filesystem()
    url = f"s3://{BUCKET}/{prefix}"
    write_listener(tmp_path / "listeners", "stopper", events="after_save",
                   after='sys.exit(3 if json.loads(payload)["step"] == 2 else 0)')
    w = watch(url, "-l", str(tmp_path / "listeners"), "--poll", "0.2", extra_env=s3.env())
    w.wait_ready()
    writer = Trainer(fs, f"{BUCKET}/{prefix}")
    writer.save(1)
    w.wait_run("stopper", "after_save", 1)
    writer.save(2)
    stop = w.wait_for(lambda r: r.get("kind") == "stop")
    assert stop["stop_file"] == f"{url}/ckptwatch.stop"
    body = json.loads(fs.cat_file(f"{BUCKET}/{prefix}/ckptwatch.stop"))
    assert body["step"] == 2 and body["checkpoint"] == f"{url}/checkpoint-2" and body["listener"] == "stopper"
    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0
    puts = [line for line in w.lines if "ckptwatch.stop" in line and '"kind": "stop"' in line]
    assert len(puts) == 1


def test_half_uploaded_checkpoints_never_commit(s3, prefix, tmp_path, env, records_path):
    """Steps: a Lightning checkpoint whose multipart upload was started and not completed; a Trainer
    checkpoint without trainer_state.json; an Orbax step without commit_success.txt; ``run --once`` per
    layout. Then the upload completes, and ``run --once`` again.
    Result: nothing committed while half done (the Trainer and Orbax saves announced only); the completed
    upload delivered once."""
    fs = s3.filesystem()
    root = f"{BUCKET}/{prefix}"
    write_listener(tmp_path / "listeners", "rec")
    handle = fs.open(f"{root}/lt/epoch=0-step=9.ckpt", "wb", block_size=5 * 2**20)
    handle.write(b"PK" + b"\0" * (6 * 2**20))
    handle.flush()  # the first part is uploaded; the upload is not complete
    fs.pipe_file(f"{root}/lt/epoch=0-step=3.ckpt", b"PK" * 100)
    Trainer(fs, f"{root}/hf").save(1)

    class Stop(Exception):
        pass

    def stop(phase: str) -> None:
        if phase == "commit":
            raise Stop

    with pytest.raises(Stop):
        Trainer(fs, f"{root}/hf").save(2, stop)
    OrbaxManager(fs, f"{root}/ob").save(1)
    with pytest.raises(Stop):
        OrbaxManager(fs, f"{root}/ob").save(2, stop)
    senv = {**env, **s3.env()}
    for sub, layout in (("lt", "lightning"), ("hf", "hf"), ("ob", "orbax")):
        result = run_cli("run", f"s3://{root}/{sub}", "--once", "--layout", layout, "-l",
                         str(tmp_path / "listeners"), "--log-format", "json", env=senv, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    records = read_records(records_path)
    assert events(records) == [3, 1, 1]
    assert ("before_save", 2) in summary(records)
    handle.close()  # completes the multipart upload: now the object exists, whole
    records_path.unlink()
    result = run_cli("run", f"s3://{root}/lt", "--once", "--layout", "lightning", "-l", str(tmp_path / "listeners"),
                     "--log-format", "json", env=senv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert events(read_records(records_path)) == [9]


# Faults: the server stopped and started again, throttling --------------------------------------


def _outage_lines(w):
    return [r for r in w.records if r.get("kind") == "store"]


def test_s3_server_stopped_and_restarted(tmp_path, watch, records_path, prefix):
    """Steps: watch s3://bucket/PREFIX at --poll 0.2; save 1; stop the S3 server; wait for the log to say
    it is unreachable; start it again on the same port; save 2 and 3.
    Result: every save once, in order; exactly one log line when the outage began and one when it ended."""
    server = S3Server().start()
    try:
        fs = server.filesystem()
        fs.mkdir("bucket-restart")  # moto keeps buckets per process: a name of this test's own
        url = f"s3://bucket-restart/{prefix}"
        write_listener(tmp_path / "listeners", "rec")
        w = watch(url, "-l", str(tmp_path / "listeners"), "--poll", "0.2",
                  "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1}',
                  extra_env=server.env())
        w.wait_ready()
        writer = Trainer(fs, f"bucket-restart/{prefix}")
        writer.save(1)
        w.wait_run("rec", "after_save", 1)
        server.stop()
        w.wait_for(lambda r: r.get("kind") == "store" and r.get("outage") == "begin")
        server.start()
        fs = server.filesystem()
        writer.fs = fs
        writer.save(2)
        writer.save(3)
        w.wait_for(lambda r: r.get("kind") == "store" and r.get("outage") == "end", timeout=WAIT * 3)
        w.wait_run("rec", "after_save", 3, timeout=WAIT * 3)
        w.send(signal.SIGTERM)
        assert w.wait_exit() == 0
        assert summary(read_records(records_path)) == [("begin", None), ("before_save", 1), ("after_save", 1),
                                                       ("before_save", 2), ("after_save", 2),
                                                       ("before_save", 3), ("after_save", 3), ("end", 3)]
        assert [r["outage"] for r in _outage_lines(w)] == ["begin", "end"]
    finally:
        server.stop()


@pytest.mark.parametrize("status", [503, 429])
def test_throttling_backs_off_and_loses_nothing(status, s3, prefix, tmp_path, watch, records_path):
    """Steps: the watcher talks to S3 through a proxy; save 1; for 8 s the proxy answers every request
    503 SlowDown (or 429 TooManyRequests); two saves are written meanwhile (straight to the server);
    then the proxy forwards again.
    Result: one log line "throttled" and one "reachable again"; saves 2 and 3 delivered once, in order;
    the back-off spaced the looks out (429, one request a look: a handful in 8 s, not 40)."""
    proxy = Proxy(s3.port)
    proxy.throttle_status = status
    try:
        fs = s3.filesystem()
        url = f"s3://{BUCKET}/{prefix}"
        write_listener(tmp_path / "listeners", "rec")
        w = watch(url, "-l", str(tmp_path / "listeners"), "--poll", "0.2",
                  "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}',
                  extra_env=s3.env(proxy.endpoint))
        w.wait_ready()
        writer = Trainer(fs, f"{BUCKET}/{prefix}")
        writer.save(1)
        w.wait_run("rec", "after_save", 1)
        proxy.throttle.set()
        began = w.wait_for(lambda r: r.get("kind") == "store" and r.get("outage") == "begin")
        assert began["throttled"] is True and "throttled" in began["msg"]
        writer.save(2)
        writer.save(3)
        done = threading.Event()
        threading.Timer(8.0, done.set).start()
        done.wait()
        proxy.throttle.clear()
        w.wait_run("rec", "after_save", 3)
        w.send(signal.SIGTERM)
        assert w.wait_exit() == 0
        assert events(read_records(records_path)) == [1, 2, 3]
        outage = _outage_lines(w)
        assert [r["outage"] for r in outage] == ["begin", "end"]
        assert proxy.throttled > 0
        if status == 429:  # without back-off: a look every 0.2 s, 40 in 8 s; with it 1 s, 2 s, 4 s apart
            assert outage[1]["failed_looks"] <= 6 and proxy.throttled <= 8, (outage[1], proxy.throttled)
        else:  # s3fs retries SlowDown itself (5 requests and ~1 s a look): the looks are few either way
            assert outage[1]["failed_looks"] <= 4, outage[1]
    finally:
        proxy.close()


# Cost -----------------------------------------------------------------------------------------


def test_poll_cost_grows_with_checkpoints_not_files(s3, prefix, tmp_path, watch):
    """Steps: 120 Trainer checkpoints of 5 objects each in s3://bucket/PREFIX, all committed; watch it
    at --poll 0.2 through a counting proxy, with the debug log on.
    Result: after the first look, each poll makes at most 1 + REVERIFY_PER_POLL requests (not one per
    checkpoint, and never one per file); the proxy counts the same as the debug log says."""
    from ckptwatch.sources.objstore import REVERIFY_PER_POLL

    fs = s3.filesystem()
    root = f"{BUCKET}/{prefix}"
    fs.pipe({f"{root}/checkpoint-{s}/{name}": b"{}" if name == "trainer_state.json" else b"x"
             for s in range(1, 121) for name in ("config.json", "a.bin", "b.bin", "c.bin", "trainer_state.json")})
    proxy = Proxy(s3.port)
    try:
        w = watch(f"s3://{root}", "--poll", "0.2", "--start-from", "now",
                  extra_env={**s3.env(proxy.endpoint), "CKPTWATCH_DEBUG": "1"})
        w.wait_ready()
        w.wait_for(lambda r: r.get("kind") == "debug" and sum(x.get("kind") == "debug" for x in w.records) > 12)
        debug = [r["requests"] for r in w.records if r.get("kind") == "debug"]
        first, rest = debug[0], debug[1:12]
        assert first >= 120  # the first look reads every marker once
        assert max(rest) <= 1 + REVERIFY_PER_POLL, rest
        before = proxy.count()
        w.send(signal.SIGTERM)
        assert w.wait_exit() == 0
        assert before >= sum(debug[:12])
    finally:
        proxy.close()


def test_thousands_of_checkpoints_listed(s3, prefix, tmp_path, env):
    """Steps: 2,500 Lightning checkpoints at the top of s3://bucket/PREFIX; ``run --once --start-from
    latest`` through a counting proxy. Result: the newest delivered, the 2,499 others skipped (said once);
    the whole run cost a handful of requests (three listing pages, no HEAD per checkpoint)."""
    fs = s3.filesystem()
    root = f"{BUCKET}/{prefix}"
    fs.pipe({f"{root}/epoch=0-step={s}.ckpt": b"PK" for s in range(1, 2501)})
    proxy = Proxy(s3.port)
    try:
        result = run_cli("run", f"s3://{root}", "--once", "--start-from", "latest", "--log-format", "json",
                         env={**env, **s3.env(proxy.endpoint)}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        log = json_log(result.stderr)
        assert [r["step"] for r in log if r.get("event") == "after_save"] == [2500]
        assert any("2499 checkpoint(s) already there get no events" in r.get("msg", "") for r in log)
        assert proxy.count() <= 8, proxy.log
    finally:
        proxy.close()


def test_doctor_url(s3, prefix, tmp_path, env):
    """Steps: two Orbax saves and one half done in s3://bucket/PREFIX; ``doctor URL``.
    Result: the layout and why, the two checkpoints with their commit_success.txt markers, the save in progress."""
    fs = s3.filesystem()
    root = f"{BUCKET}/{prefix}"
    writer = OrbaxManager(fs, root, keep=5)
    writer.save(1)
    writer.save(2)
    fs.pipe_file(f"{root}/3/_CHECKPOINT_METADATA", b"{}")
    result = run_cli("doctor", f"s3://{root}", env={**env, **s3.env()}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "object store (s3)" in out and "layout      orbax" in out
    assert "(commit marker 2/commit_success.txt)" in out and "committed   2" in out
    assert "in progress 1" in out


def test_readme_object_store_commands(s3, tmp_path, env):
    """Steps: the README's "Object stores" commands, copied as a new user would, from another directory,
    against the S3 server (AWS_ENDPOINT_URL), with the bucket they name holding two Trainer saves.
    Result: ``doctor`` shows them; ``run ... -l listeners.d`` gets ready, delivers them, ends on SIGTERM."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("## Object stores", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.startswith("ckptwatch ")]
    doctor = next(c for c in commands if c.startswith("ckptwatch doctor s3://"))
    run = next(c for c in commands if c.startswith("ckptwatch run s3://"))
    fs = s3.filesystem()
    bucket = doctor.split("s3://", 1)[1].split("/", 1)[0]
    fs.mkdir(bucket)
    root = doctor.split("s3://", 1)[1]
    Trainer(fs, root).save(100)
    Trainer(fs, root).save(200)
    user = tmp_path / "elsewhere"
    write_listener(user / "listeners.d", "rec")
    uenv = {**env, **s3.env()}
    result = subprocess.run([sys.executable, "-m", "ckptwatch", *doctor.split()[1:]], capture_output=True,
                            text=True, env=uenv, cwd=user, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "committed   2" in result.stdout and "layout      hf" in result.stdout
    proc = subprocess.Popen([sys.executable, "-m", "ckptwatch", *run.split()[1:], "--log-format", "json"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=uenv, cwd=user)
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if '"after_save"' in line and '"step": 200' in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert events(read_records(Path(env["RECORD_FILE"]))) == [100, 200]


def test_url_helpers_for_the_training_side(s3, prefix):
    """``ckptwatch.urls``: what a training loop needs to read a stop file at a URL (one request each).
    Result: stat and read of a missing object are None; after one PUT, the time, size and bytes."""
    from ckptwatch.urls import is_url, put_bytes, read_bytes, stat_url

    url = f"s3://{BUCKET}/{prefix}/ckptwatch.stop"
    options = {"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"}
    assert is_url(url) and not is_url("/ckpt/ckptwatch.stop") and not is_url("file:///ckpt")
    assert stat_url(url, options) is None and read_bytes(url, options) is None
    put_bytes(url, b'{"step": 3}', options)
    mtime, size = stat_url(url, options)
    assert size == 11 and abs(mtime - __import__("time").time()) < 120
    assert read_bytes(url, options) == b'{"step": 3}'


def test_memory_store_orbax_first_save_needs_its_commit_file():
    """On an object store Orbax has no tmp directory: a step prefix is final from its first object.
    Steps: the first save ever, stopped just before commit_success.txt. Result: in progress, not committed
    (on a local disk, a <step>/ without commit files is a renamed, committed tmp dir)."""
    import fsspec

    from ckptwatch.sources.objstore import FsspecAccess

    fs = fsspec.filesystem("memory")

    class Stop(Exception):
        pass

    def stop(phase: str) -> None:
        if phase == "commit":
            raise Stop

    with pytest.raises(Stop):
        OrbaxManager(fs, "/mem-orbax-first").save(5, stop)
    obs = _scan(FsspecAccess("memory:///mem-orbax-first"), "orbax")
    assert obs.committed == [] and [s.step for s in obs.in_progress] == [5]


def test_once_on_an_unreachable_store_gives_up(tmp_path, env):
    """Steps: ``run s3://bucket/x --once`` with the endpoint pointing at a port where nothing listens.
    Result: one line that the store cannot be reached yet, one outage line, then after five failed looks
    the session ends with exit 1 (no traceback, begin and end fired)."""
    from objservers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli("run", "s3://bucket/x", "--once", "--poll", "0.2", "--log-format", "json", "--storage-option",
                     'config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1}',
                     env={**env, **S3Server().env(dead)}, cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr
    log = json_log(result.stderr)
    assert [r.get("outage") for r in log if r.get("kind") == "store" and r.get("outage")] == ["begin"]
    assert any("--once gives up" in r.get("msg", "") for r in log)
    assert [r["event"] for r in log if r.get("kind") == "event"] == ["begin", "end"]
    assert "Traceback" not in result.stderr
