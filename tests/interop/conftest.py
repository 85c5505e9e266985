"""Interop tests: the real frameworks, in their own venv, against a live ``ckptwatch run``.

The framework code (writers/*.py, loaders.py) runs with the interop venv's
python: ``$CKPTWATCH_INTEROP_PYTHON``, default ``.venv-interop/bin/python``
(``make interop-venv`` / ``tests/interop/setup.sh`` creates it). The dev venv
stays light; when that python is missing, every interop test skips and says why.

A skipped interop test must not pass unnoticed. With ``CKPTWATCH_REQUIRE_INTEROP=1``
(``make test`` sets it), a skip of an ``interop`` test that is not listed in
``tests/interop/allowed-skips.txt`` (``TEST_ID  REASON`` per line) makes the
session fail, with one line per such test naming it and its skip reason.

(``tests/interop/__init__.py`` makes this ``interop.conftest``, so that
``from conftest import ...`` everywhere still means ``tests/conftest.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WRITERS = HERE / "writers"
ALLOWLIST = HERE / "allowed-skips.txt"
DEFAULT_PYTHON = REPO / ".venv-interop" / "bin" / "python"
LOADER_START_TIMEOUT = 300.0  # a cold first import of TF + torch + jax on a loaded 2-core machine
# Everything the session's interop tests load; imported once by the warm loader.
FRAMEWORKS = ("tf1", "tf2", "keras", "torch", "dcp", "hf", "lightning", "orbax", "deepspeed")
# Keras hidden units (writers/loaders.py keras_model): the loader builds the same model as the writer.
KERAS_UNITS = "1024"


def interop_python() -> Path:
    return Path(os.environ.get("CKPTWATCH_INTEROP_PYTHON") or DEFAULT_PYTHON)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def interop_py() -> Path:
    """The interop venv's python; skips (with how to get it) when missing."""
    python = interop_python()
    if not (python.exists() and os.access(python, os.X_OK)):
        pytest.skip(
            f"interop venv missing: no {python} (run `make interop-venv`, or set CKPTWATCH_INTEROP_PYTHON "
            "to a python with tests/interop/requirements.txt installed)"
        )
    return python


class Loader:
    """writers/loadserver.py, frameworks imported once; the listeners ask it to load over a Unix socket."""

    def __init__(self, python: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ckw-load-"))  # short: a socket path has ~100 bytes
        self.socket = self.dir / "loader.sock"
        self.log = self.dir / "loader.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTWATCH_")}
        env["INTEROP_KERAS_UNITS"] = KERAS_UNITS
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(python), str(WRITERS / "loadserver.py"), str(self.socket), *FRAMEWORKS],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, cwd=WRITERS, env=env,
            )
        ready = threading.Event()

        def wait_ready() -> None:
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() == b"READY":
                ready.set()

        threading.Thread(target=wait_ready, daemon=True).start()
        if not ready.wait(LOADER_START_TIMEOUT):
            self.close()
            raise RuntimeError(f"the loader did not start within {LOADER_START_TIMEOUT:g} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for path in (self.socket, self.log):
            path.unlink(missing_ok=True)
        self.dir.rmdir()


@pytest.fixture(scope="session")
def loader(interop_py: Path) -> Iterator[Loader]:
    server = Loader(interop_py)
    yield server
    server.close()


# --------------------------------------------------------------------------- skips must be allowed


def read_allowlist(path: Path = ALLOWLIST) -> tuple[dict[str, str], list[str]]:
    """``{test id (or prefix*): reason}`` and the lines that are not ``TEST_ID  REASON``."""
    allowed: dict[str, str] = {}
    bad: list[str] = []
    if not path.exists():
        return allowed, bad
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) < 2 or not parts[1].strip():
            bad.append(f"{path.name}:{number}: no reason given: {line}")
            continue
        allowed[parts[0]] = parts[1].strip()
    return allowed, bad


def allows(pattern: str, nodeid: str) -> bool:
    """An exact test id, or a prefix ending in ``*`` (no other wildcards: ids hold ``[...]``)."""
    return nodeid.startswith(pattern[:-1]) if pattern.endswith("*") else nodeid == pattern


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    return str(longrepr)


_skipped: dict[str, str] = {}
_verdict: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "interop" in report.keywords and not hasattr(report, "wasxfail"):
        _skipped.setdefault(report.nodeid, _skip_reason(report))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CKPTWATCH_REQUIRE_INTEROP") != "1":
        return
    allowed, bad = read_allowlist()
    _verdict.extend(f"interop allowlist: {line}" for line in bad)
    for nodeid, reason in _skipped.items():
        if not any(allows(pattern, nodeid) for pattern in allowed):
            _verdict.append(f"interop test skipped and not in tests/interop/allowed-skips.txt: {nodeid}: {reason}")
    if _verdict and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    if _verdict:
        terminalreporter.section("interop skips (CKPTWATCH_REQUIRE_INTEROP=1)", red=True)
        for line in _verdict:
            terminalreporter.write_line(line, red=True)
    elif _skipped and os.environ.get("CKPTWATCH_REQUIRE_INTEROP") == "1":
        terminalreporter.write_line(f"interop: {len(_skipped)} skip(s), all in tests/interop/allowed-skips.txt")


def load_request(socket_path: str, framework: str, path: str) -> dict[str, object]:
    """What the listener does (kept here for tests of the loader itself)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(socket_path)
        conn.sendall((json.dumps({"framework": framework, "path": path}) + "\n").encode())
        return json.loads(conn.makefile("rb").readline())
