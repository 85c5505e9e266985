"""The stop file is readable by the training job, which usually runs as another user.

A real ``ckptwatch run --once`` writes it (a listener exits 3); another uid
reads it, as the training container would. The uid switches need root (CI
runs as root); without root those parts skip.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_listener
from test_protocol import dcp_save

NOBODY = 65534
SHARED_GID = 4242  # a group neither the watcher nor the reader has as its own


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A checkpoint directory that other users can reach (pytest's tmp_path is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="ckptwatch-shared-"))
    top.chmod(0o755)
    (top / "ckpt").mkdir(mode=0o755)
    yield top / "ckpt"
    shutil.rmtree(top)


def _watch_once(ckpt: Path, tmp_path: Path, env: dict[str, str], umask: int) -> subprocess.CompletedProcess[str]:
    """``ckptwatch run --once`` under ``umask``, with a listener that asks for a stop."""
    write_listener(tmp_path / "l", "stop", events="after_save", after="print('enough for today'); sys.exit(3)")
    dcp_save(ckpt, "step-7")
    return subprocess.run(
        [sys.executable, "-m", "ckptwatch", "run", str(ckpt), "--once", "-l", str(tmp_path / "l"), "--log-format", "json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(umask),
    )


def _read_as(path: Path, uid: int, gid: int) -> subprocess.CompletedProcess[str]:
    """Read ``path`` in a process of another user, as a training container would."""
    def become() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return subprocess.run(["cat", str(path)], capture_output=True, text=True, preexec_fn=become, timeout=30, cwd="/")


def _reason(read: subprocess.CompletedProcess[str]) -> str:
    assert read.returncode == 0, read.stderr
    return str(json.loads(read.stdout)["reason"])


def test_stop_file_is_0644_under_umask_022(ckpt, tmp_path, env):
    result = _watch_once(ckpt, tmp_path, env, 0o022)
    assert result.returncode == 0, result.stderr
    stop = ckpt / "ckptwatch.stop"
    assert stat.S_IMODE(stop.stat().st_mode) == 0o644
    assert json.loads(stop.read_text())["reason"] == "stop: enough for today"


@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another uid needs root")
def test_another_uid_reads_the_reason(shared, tmp_path, env):
    """Steps: the watcher (root here) writes the stop file; a process as nobody reads it.
    Result: nobody reads the listener's reason (mkstemp's 0600 would refuse it)."""
    assert _watch_once(shared, tmp_path, env, 0o022).returncode == 0
    assert _reason(_read_as(shared / "ckptwatch.stop", NOBODY, NOBODY)) == "stop: enough for today"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file another group needs root or that group")
def test_umask_027_gives_the_directory_group_alone(shared, tmp_path, env):
    """Steps: DIR belongs to group 4242 (not setgid: the watcher must give the group itself);
    the watcher runs under umask 027.
    Result: the stop file is 0640, group 4242; nobody in group 4242 reads it, nobody outside cannot."""
    os.chown(shared, -1, SHARED_GID)
    assert _watch_once(shared, tmp_path, env, 0o027).returncode == 0
    stop = shared / "ckptwatch.stop"
    st = stop.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, SHARED_GID)
    assert _reason(_read_as(stop, NOBODY, SHARED_GID)) == "stop: enough for today"
    refused = _read_as(stop, NOBODY, NOBODY)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr


def test_torn_temp_files_of_a_crash_are_removed_and_a_write_under_way_is_kept(tmp_path):
    from ckptwatch.delivery.stopfile import remove_torn_temp_files

    stop = tmp_path / "ckptwatch.stop"
    stop.write_text("{}")
    torn = tmp_path / ".ckptwatch.stop.k2j4_x"
    torn.write_text("{")
    os.utime(torn, (time.time() - 60, time.time() - 60))
    under_way = tmp_path / ".ckptwatch.stop.a8d0ss"
    under_way.write_text("{")
    other = tmp_path / ".ckptwatch.stopper"
    other.write_text("")
    os.utime(other, (time.time() - 60, time.time() - 60))
    remove_torn_temp_files(str(stop), time.time_ns() - 10_000_000_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([stop.name, under_way.name, other.name])
