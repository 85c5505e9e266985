"""The image, run with podman as a sidecar next to a training process on the host.

Run by tests/container/run.sh (``make container-test``), which builds the image
and sets CKPTWATCH_IMAGE; without it this module skips. Each scenario starts
real containers from the image, mounts real host directories, saves with
examples/train.py on the host, and waits for facts (log lines, files, exits),
never for a fixed time.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

IMAGE = os.environ.get("CKPTWATCH_IMAGE")
if not IMAGE or not shutil.which("podman"):
    pytest.skip("container tests: run tests/container/run.sh (make container-test)", allow_module_level=True)

from conftest import expected_stream, read_records  # noqa: E402
from test_deploy import COMPOSE, NATIVE, configmap_tree, sidecar  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

UID = GID = 10001  # the image's user
WAIT = 120.0

RECORDER = """#!/usr/bin/env python3
# Appends each event it gets, with its own uid, to /records/records.jsonl.
import json, os, sys
record = {"name": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "stdin": json.load(sys.stdin),
          "env": {k: v for k, v in os.environ.items() if k.startswith("CKPTWATCH_")}, "uid": os.getuid()}
with open("/records/records.jsonl", "a") as out:
    out.write(json.dumps(record) + "\\n")
"""


def podman(*args: str, timeout: float = WAIT, check: bool = True) -> subprocess.CompletedProcess[str]:
    print("+ " + shlex.join(["podman", *args]), file=sys.stderr)  # shown with -s, or for a failed test
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
    return result


class Container:
    """A detached container from the image; its JSON log lines are collected as they come."""

    def __init__(self, name: str, run_args: list[str], command: list[str]) -> None:
        self.name = name
        podman("run", "-d", "--name", name, "--health-interval", "disable", "-e", "CKPTWATCH_LOG_FORMAT=json",
               *run_args, IMAGE, *command)  # type: ignore[arg-type]
        self.records: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._logs = subprocess.Popen(["podman", "logs", "-f", name], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._logs.stdout is not None
        for line in self._logs.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    pass
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"{self.name}: no matching log line; got:\n" + "\n".join(self.lines[-40:]))
                self._changed.wait(min(left, 0.5))

    def wait_run(self, listener: str, event: str, step: int | None = None) -> dict[str, Any]:
        return self.wait_for(lambda r: r.get("kind") == "run" and r.get("listener") == listener
                             and r.get("event") == event and (step is None or r.get("step") == step))

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=False)

    def stop(self) -> int:
        """``podman stop`` (SIGTERM, KILL after 40 s); the container's exit status."""
        podman("stop", "-t", "40", self.name, timeout=90)
        return self.exit_code()

    def wait_exit(self) -> int:
        podman("wait", self.name, timeout=WAIT)
        return self.exit_code()

    def exit_code(self) -> int:
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())
        self._reader.join(timeout=10)
        return code

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)
        self._logs.kill()
        self._logs.wait()


@pytest.fixture
def containers() -> Iterator[Callable[..., Container]]:
    started: list[Container] = []

    def start(run_args: list[str], command: list[str] | None = None) -> Container:
        container = Container(f"ckptwatch-test-{uuid.uuid4().hex[:8]}", run_args, command or [])
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove()


def shared_dir(path: Path, uid: int = 0, gid: int = GID, mode: int = 0o2775) -> Path:
    """A host directory as a volume shared with the container (group 10001, setgid, as fsGroup makes it)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def listeners(path: Path, *examples: str) -> Path:
    """A listener directory: the repo's examples named, and the recorder (50-record)."""
    path.mkdir()
    for name in examples:
        shutil.copy2(ROOT / "listeners.d" / name, path / name)
    (path / "50-record").write_text(RECORDER)
    for entry in path.iterdir():
        entry.chmod(0o755)
    return path


def train(ckpt: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """examples/train.py on the host, saving every 20 steps into ``ckpt``, stopping when
    ``ckpt/ckptwatch.stop`` asks (and saving a last checkpoint there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
    env.update(PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "examples" / "train.py"), str(ckpt), "--keep", "100",
                           "--step-time", "0.05", *args], env=env, capture_output=True, text=True, timeout=WAIT)


TRAIN_READING_THE_ENVIRONMENT = """
import json, os, sys, time
from ckptwatch import stop_requested
for step in range(1, 401):
    time.sleep(0.05)
    if step % 20 == 0:
        folder = os.path.join(sys.argv[1], f"checkpoint-{step}")
        os.mkdir(folder)
        with open(os.path.join(folder, "model.json"), "w") as out:
            out.write("{}")
        with open(os.path.join(folder, "trainer_state.json"), "w") as out:  # last: the commit
            json.dump({"global_step": step}, out)
    if stop_requested():  # $CKPTWATCH_STOP_FILE
        print(f"stop requested; stopping at step {step}")
        break
"""


def train_with_stop_file(ckpt: Path, stop_file: Path) -> subprocess.CompletedProcess[str]:
    """A training loop on the host that finds the stop file through $CKPTWATCH_STOP_FILE
    (the file is not in the checkpoint directory here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
    env.update(PYTHONPATH=str(ROOT), CKPTWATCH_STOP_FILE=str(stop_file))
    return subprocess.run([sys.executable, "-c", TRAIN_READING_THE_ENVIRONMENT, str(ckpt)], env=env,
                          capture_output=True, text=True, timeout=WAIT)


def saved_steps(ckpt: Path) -> list[int]:
    """The steps saved in ``ckpt`` (nothing is rotated: --keep 100)."""
    return sorted(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*"))


def events(records: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(r["argv"][0], r["stdin"]["step"]) for r in records]


def test_sidecar_gets_every_event_stops_training_and_ends_on_podman_stop(tmp_path, containers):
    """Steps: the image with its defaults (`run /ckpt`, listeners at /etc/ckptwatch/listeners.d,
    mounted read-only); a host directory at /ckpt; training on the host saves every 20 steps;
    30-stop-at-step asks for a stop at step 60; then `podman stop`.
    Result: the container's listeners get begin, before_save/after_save for each save, in order;
    training reads the stop file and stops (saving a last checkpoint, which asks again); the
    host reads the stop file (mode 0644, written by uid 10001);
    `podman stop` fires end and the container exits 0; ckptwatch is PID 1, not root."""
    ckpt = shared_dir(tmp_path / "ckpt")
    records = shared_dir(tmp_path / "records", uid=UID)
    box = containers(["-v", f"{ckpt}:/ckpt", "-v", f"{listeners(tmp_path / 'l', '10-log-event', '30-stop-at-step')}"
                      ":/etc/ckptwatch/listeners.d:ro", "-v", f"{records}:/records", "-e", "STOP_AT_STEP=60"])
    ready = box.wait_for(lambda r: r.get("kind") == "ready")
    assert ready["listeners"] == ["10-log-event", "30-stop-at-step", "50-record"]
    assert (ready["dir"], ready["state_dir"]) == ("/ckpt", "/var/lib/ckptwatch")

    trained = train(ckpt, "--steps", "400")
    assert trained.returncode == 0, trained.stderr
    assert "stop requested at step 60 (30-stop-at-step: step 60 reached STOP_AT_STEP=60" in trained.stdout
    steps = saved_steps(ckpt)  # the last one is training's own, at the step where it stopped
    assert steps[:3] == [20, 40, 60] and 60 < steps[-1] < 400

    # The last save asks for a stop again: wait for that request, then read it as the host.
    box.wait_for(lambda r: r.get("kind") == "stop" and r.get("step") == steps[-1])
    stop_file = ckpt / "ckptwatch.stop"
    request = json.loads(stop_file.read_text())
    assert (request["step"], request["listeners"]) == (steps[-1], ["30-stop-at-step"])
    assert "reached STOP_AT_STEP=60" in request["reason"]
    st = stop_file.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o644, UID, GID)

    box.wait_run("50-record", "after_save", steps[-1])
    status = box.exec("cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(UID)] * 4
    assert "ckptwatch" in box.exec("cat", "/proc/1/cmdline").stdout
    assert box.exec("id", "-u").stdout.strip() == str(UID)

    assert box.stop() == 0
    got = read_records(records / "records.jsonl")
    assert events(got) == expected_stream(steps)
    assert {r["uid"] for r in got} == {UID}
    assert got[-1]["stdin"]["checkpoint"] == f"/ckpt/checkpoint-{steps[-1]}"
    assert got[0]["env"]["CKPTWATCH_STOP_FILE"] == "/ckpt/ckptwatch.stop"
    log_event = [r["msg"] for r in box.records if r.get("kind") == "output" and r.get("listener") == "10-log-event"]
    assert log_event[0].startswith("begin: watching /ckpt") and log_event[-1].startswith(f"end at step {steps[-1]}")
    assert any(r.get("msg", "").endswith("ended (signal)") for r in box.records)


def test_read_only_checkpoints_with_the_state_dir_on_another_volume(tmp_path, containers):
    """Steps: /ckpt mounted read-only, the root file system read-only too (as
    readOnlyRootFilesystem), `--state-dir /state --stop-file /state/ckptwatch.stop` on a
    volume; training on the host; a stop at step 40; `podman stop`; then a second
    container on the same state volume with --once.
    Result: every event, the stop file read by the host from the state volume, nothing
    written under the checkpoints, exit 0; the second session repeats no after_save."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    ckpt.chmod(0o755)  # root's, and mounted :ro besides
    state = shared_dir(tmp_path / "state", uid=UID)
    records = shared_dir(tmp_path / "records", uid=UID)
    mounts = ["--read-only", "--read-only-tmpfs=false", "-v", f"{ckpt}:/ckpt:ro", "-v", f"{state}:/state",
              "-v", f"{listeners(tmp_path / 'l', '30-stop-at-step')}:/etc/ckptwatch/listeners.d:ro",
              "-v", f"{records}:/records", "-e", "STOP_AT_STEP=40"]
    args = ["run", "/ckpt", "--state-dir", "/state", "--stop-file", "/state/ckptwatch.stop"]
    box = containers(mounts, args)
    assert box.wait_for(lambda r: r.get("kind") == "ready")["state_dir"] == "/state"

    trained = train_with_stop_file(ckpt, state / "ckptwatch.stop")
    assert trained.returncode == 0 and "stop requested" in trained.stdout, trained.stderr
    steps = saved_steps(ckpt)
    assert json.loads((state / "ckptwatch.stop").read_text())["step"] == 40
    box.wait_run("50-record", "after_save", steps[-1])
    assert box.stop() == 0
    assert events(read_records(records / "records.jsonl")) == expected_stream(steps)
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(f"checkpoint-{s}" for s in steps)

    again = containers(mounts, [*args, "--once"])
    assert again.wait_exit() == 0
    second = read_records(records / "records.jsonl")[len(expected_stream(steps)):]
    assert events(second) == [("begin", None), ("end", steps[-1])]
    assert second[-1]["env"]["CKPTWATCH_LAST_STEP_HANDLED"] == "1"


def test_user_override(tmp_path, containers):
    """Steps: `--user 4242:4242` with a checkpoint already saved, `run /ckpt --once`.
    Result: the listeners run as 4242 (the journal in the image's open state directory), exit 0."""
    ckpt = shared_dir(tmp_path / "ckpt", uid=4242, gid=4242)
    records = shared_dir(tmp_path / "records", uid=4242, gid=4242)
    assert train(ckpt, "--steps", "20").returncode == 0
    box = containers(["--user", "4242:4242", "-v", f"{ckpt}:/ckpt", "-v", f"{records}:/records",
                      "-v", f"{listeners(tmp_path / 'l')}:/etc/ckptwatch/listeners.d:ro"], ["run", "/ckpt", "--once"])
    assert box.wait_exit() == 0, "\n".join(box.lines)
    got = read_records(records / "records.jsonl")
    assert events(got) == expected_stream([20]) and {r["uid"] for r in got} == {4242}


def test_kubernetes_configmap_and_sidecar_arguments_in_the_image(tmp_path, containers):
    """Steps: the ConfigMap of deploy/kubernetes laid out as the kubelet mounts it, at
    /etc/ckptwatch, read-only; the native Job's sidecar arguments plus --once; two saves.
    Result: the ConfigMap's three listeners run in the image (20-report, in Python, only
    at after_save and end, as its ckptwatch.toml says), a stop at step 40, exit 0."""
    config = configmap_tree(tmp_path / "etc-ckptwatch")
    ckpt = shared_dir(tmp_path / "ckpt")
    assert train(ckpt, "--steps", "40").returncode == 0
    args = sidecar(NATIVE)["args"]
    box = containers(["-v", f"{config}:/etc/ckptwatch:ro", "-v", f"{ckpt}:/ckpt", "-e", "STOP_AT_STEP=40"],
                     [*args, "--once"])
    assert box.wait_exit() == 0, "\n".join(box.lines)
    runs = {(r["listener"], r["event"], r["step"]) for r in box.records if r.get("kind") == "run"}
    assert {("10-log-event", "begin", None), ("20-report", "after_save", 40), ("20-report", "end", 40),
            ("30-stop-at-step", "after_save", 40)} <= runs
    assert not any(name == "20-report" and event == "before_save" for name, event, _ in runs)
    assert json.loads((ckpt / "ckptwatch.stop").read_text())["listeners"] == ["30-stop-at-step"]


def test_health_check_probes_and_metrics_with_the_job_arguments(tmp_path, containers):
    """Steps: the image with the native Job's sidecar arguments (--stale-after, --metrics-port
    9400 on 0.0.0.0), the port published on the host's loopback; three saves on the host;
    `podman healthcheck run` (the image's HEALTHCHECK) and the probes' command; a scrape from
    the host; then the same image with no watcher running.
    Result: healthy, the probe exits 0, the scrape counts the three commits (last step 60,
    not stale); without a watcher the health check says unhealthy."""
    ckpt = shared_dir(tmp_path / "ckpt")
    box = containers(["-v", f"{ckpt}:/ckpt", "-p", "127.0.0.1::9400"], sidecar(NATIVE)["args"])
    box.wait_for(lambda r: r.get("kind") == "ready")
    assert train(ckpt, "--steps", "60").returncode == 0
    box.wait_run("10-log-event", "after_save", 60)

    health = podman("healthcheck", "run", box.name, check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    assert podman("inspect", "--format", "{{.State.Health.Status}}", box.name).stdout.strip() == "healthy"
    probe = box.exec(*sidecar(NATIVE)["readinessProbe"]["exec"]["command"])
    assert probe.returncode == 0, probe.stdout + probe.stderr

    address = podman("port", box.name, "9400").stdout.split()[0]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
        scraped = response.read().decode()
    values = dict(line.rsplit(" ", 1) for line in scraped.splitlines() if line and not line.startswith("#"))
    assert float(values["ckptwatch_checkpoints_committed_total"]) == 3
    assert float(values["ckptwatch_last_committed_step"]) == 60
    assert float(values["ckptwatch_stale"]) == 0
    assert box.stop() == 0

    idle = containers(["--entrypoint", "sleep"], ["600"])
    sick = podman("healthcheck", "run", idle.name, check=False)
    assert (sick.returncode, sick.stdout.strip()) == (1, "unhealthy")


def compose_tool() -> list[str] | None:
    if subprocess.run(["podman", "compose", "version"], capture_output=True).returncode == 0:
        return ["podman", "compose"]
    return ["podman-compose"] if shutil.which("podman-compose") else None


@pytest.mark.skipif(compose_tool() is None, reason="neither `podman compose` nor podman-compose is installed")
def test_compose_file_trains_stops_and_ends(tmp_path):
    """Steps: `podman-compose -f deploy/compose.yaml up` with the image built here.
    Result: training (uid 20002) runs until 30-stop-at-step asks for a stop at step 100,
    reads the stop file and leaves its done file; ckptwatch fires end; both exit 0."""
    tool = compose_tool()
    assert tool is not None
    project = f"ckptwatch-test-{uuid.uuid4().hex[:8]}"
    base = [*tool, "-p", project, "-f", str(COMPOSE)]
    env = {**os.environ, "CKPTWATCH_IMAGE": str(IMAGE)}
    print("+ CKPTWATCH_IMAGE=" + str(IMAGE) + " " + shlex.join([*base, "up", "--no-build"]), file=sys.stderr)
    try:
        up = subprocess.run([*base, "up", "--no-build"], env=env, capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
        names = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}",
                       "--format", "{{.Names}}").stdout.split()
        codes = {n: int(podman("inspect", "--format", "{{.State.ExitCode}}", n).stdout) for n in names}
        logs = {n: podman("logs", n).stdout + podman("logs", n).stderr for n in names}
        [train_name] = [n for n in names if "_train_" in n]
        [watch_name] = [n for n in names if "_ckptwatch_" in n]
        assert codes == {train_name: 0, watch_name: 0}, up.stdout[-3000:] + up.stderr[-3000:]
        assert "stop requested" in logs[train_name]
        assert "asking training to stop" in logs[watch_name] and "end at step" in logs[watch_name]
    finally:
        subprocess.run([*base, "down", "-v", "-t", "0"], env=env, capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
