"""The listener's side of a Python class listener: one process, one object, for a watcher session.

Started by :mod:`.host` with the watcher's own interpreter, in a session of
its own. Descriptor 3 brings commands, one JSON line each: first the target
(``{"init": {...}}``: the module or file, the class, its arguments), then one
``{"payload": ..., "env": ...}`` per event. Descriptor 4 takes one JSON line
per event: ``{"status": "done" | "stop" | "failed", "error": ...}``, written
after stdout and stderr were flushed, so the watcher has every line the run
printed when it reads the outcome. Descriptors 1 and 2 are the listener's
output, streamed to the log by the watcher.

The class is built on the first event, and ``begin`` is called before any
other method: by the ``begin`` event itself, or, in a process started later
in the session (the first one died), just before that process's first
event. An exception fails the run and keeps the object. End of file on
descriptor 3 (the watcher ended the session, or died) ends the process.

``python -c BOOT PACKAGE_ROOT --check`` instead reads one target on stdin
and prints what ``ckptwatch check`` needs to know (importable? a listener
class? takes these arguments?) as one JSON line.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
import traceback
from typing import Any

__all__ = ["BOOT", "main"]

#: The ``-c`` program: imports this module from the watcher's package root
#: (given as argv[1]), then leaves ``sys.path`` as the listener expects it.
BOOT = (
    "import sys; root = sys.argv[1]; sys.path.insert(0, root); "
    "import ckptwatch.delivery.hostchild as h; sys.path.remove(root); h.main(sys.argv[2:])"
)

_TF_HINT = (
    "the session does not exist out of process: ckptwatch calls TensorFlow listeners with session=None "
    "(read the checkpoint from disk instead: ckptwatch.listener.current_event().checkpoint, or "
    "tf.train.latest_checkpoint(dir))"
)


class _LoadError(Exception):
    """The listener class cannot be loaded or built; the message says why."""


def _module_name(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.isidentifier() and stem not in sys.modules:
        return stem
    return "_ckptwatch_listener_" + re.sub(r"\W", "_", stem)


def load_class(target: dict[str, Any]) -> type:
    """Import the target's module (or file) and return its class; raises _LoadError or what the module raised."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # python -c put the current directory first: decide below what comes first
    if target.get("file"):
        path = target["file"]
        sys.path.insert(0, os.path.dirname(path))  # as `python path.py` would: its siblings import
        name = _module_name(path)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise _LoadError(f"cannot load {path} as Python source")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        where = path
    else:
        sys.path.insert(0, os.getcwd())  # as `python -m` would
        module = importlib.import_module(target["module"])
        where = target["module"]
    found: Any = module
    for part in target["cls"].split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _LoadError(f"{where} has no {target['cls']}") from None
    if not isinstance(found, type):
        raise _LoadError(f"{where}:{target['cls']} is a {type(found).__name__}, not a class")
    return found


def listener_kind(cls: type) -> str | None:
    """``ckptwatch`` or ``tensorflow`` by the class's base, or None when it is not a listener class."""
    from ckptwatch.listener import CheckpointSaverListener

    if issubclass(cls, CheckpointSaverListener):
        return "ckptwatch"
    for base in cls.__mro__:
        if base.__name__ == "CheckpointSaverListener" and base.__module__.split(".")[0] in (
                "tensorflow", "tensorflow_estimator", "tf_keras"):
            return "tensorflow"
    return None


def _not_a_listener(target: dict[str, Any], cls: type) -> str:
    return (f"{target.get('file') or target['module']}:{target['cls']} is not a listener class: subclass "
            "ckptwatch.CheckpointSaverListener or tf.compat.v1.train.CheckpointSaverListener")


class _Hosted:
    """The object and what calling it needs."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.obj: Any = None
        self.kind = ""
        self.begun = False

    def build(self) -> None:
        cls = load_class(self.target)
        kind = listener_kind(cls)
        if kind is None:
            raise _LoadError(_not_a_listener(self.target, cls))
        self.obj = cls(**self.target.get("args", {}))
        self.kind = kind

    def call(self, name: str, payload: dict[str, Any]) -> Any:
        from ckptwatch import listener

        event = listener.ListenerEvent.from_json(payload)
        listener._current = event
        try:
            method = getattr(self.obj, name, None)
            if method is None:
                return None  # an event this class has no method for (a newer event name)
            if self.kind == "tensorflow":
                return method() if name == "begin" else method(None, event.step)
            return method(event)
        finally:
            listener._current = None


def _print_traceback(exc: BaseException) -> None:
    """The traceback from the listener's own code on (the host's frames say nothing to its author)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _run(hosted: _Hosted, payload: dict[str, Any]) -> tuple[str, str | None]:
    """One event: ``(status, error)``."""
    name = payload["event"]
    try:
        if hosted.obj is None:
            hosted.build()
        if not hosted.begun and name != "begin":
            # A process started mid-session: begin comes first, as in TensorFlow's hook.
            begin = {key: payload.get(key) for key in ("dir", "layout", "stop_file", "run_id")}
            hosted.begun = True
            hosted.call("begin", {"event": "begin", "step": None, "checkpoint": None, **begin})
        hosted.begun = True
        result = hosted.call(name, payload)
    except _LoadError as exc:
        print(f"cannot load the listener: {exc}", file=sys.stderr)
        return "failed", str(exc)
    except SystemExit as exc:
        code = exc.code
        if hosted.obj is None:
            print(f"cannot load the listener: its module called sys.exit({code!r})", file=sys.stderr)
            return "failed", f"its module called sys.exit({code!r})"
        if code in (None, 0):
            return "done", None
        if code == 3 and name == "after_save":
            return "stop", None
        return "failed", f"SystemExit: {code}"
    except BaseException as exc:  # noqa: BLE001 - a listener's error fails its run, never the host
        _print_traceback(exc)
        error = f"{type(exc).__name__}: {exc}"
        if hosted.kind == "tensorflow" and "NoneType" in str(exc):
            print(_TF_HINT, file=sys.stderr)
            error += f" ({_TF_HINT})"
        return "failed", error
    return ("stop" if name == "after_save" and result else "done"), None


def _serve(commands: Any, results: Any) -> int:
    from ckptwatch import listener

    listener._hosted = True
    first = commands.readline()
    if not first:
        return 0
    hosted = _Hosted(json.loads(first)["init"])
    for line in commands:
        message = json.loads(line)
        os.environ.update(message.get("env", {}))
        status, error = _run(hosted, message["payload"])
        _flush()
        results.write(json.dumps({"status": status, "error": error}).encode() + b"\n")
        if hosted.obj is None:
            return 1  # could not build the class: the next event starts a new process
    return 0


def _check(target: dict[str, Any]) -> dict[str, Any]:
    """What ``ckptwatch check`` reports of a target, without building it."""
    import inspect

    try:
        cls = load_class(target)
    except _LoadError as exc:
        return {"ok": False, "error": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - the module raised on import: report it
        frame = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
        return {"ok": False, "error": f"importing it raised {type(exc).__name__}: {exc}{where}"}
    kind = listener_kind(cls)
    if kind is None:
        return {"ok": False, "error": _not_a_listener(target, cls)}
    try:
        inspect.signature(cls).bind(**target.get("args", {}))
    except TypeError as exc:
        return {"ok": False, "kind": kind, "error": f"its constructor does not take args = {target.get('args')}: {exc}"}
    except ValueError:
        pass  # no signature to check (a builtin base)
    return {"ok": True, "kind": kind}


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--check":
        answer = os.dup(1)
        os.dup2(2, 1)  # what the module prints on import must not mix with the answer
        result = _check(json.loads(sys.stdin.readline()))
        _flush()
        os.write(answer, json.dumps(result).encode() + b"\n")
        os._exit(0)  # a module's threads or atexit hooks must not hold check up
    cmd_fd, result_fd = int(argv[0]), int(argv[1])
    for fd in (cmd_fd, result_fd):
        os.set_inheritable(fd, False)  # the listener's own children must not hold them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    with open(cmd_fd, "rb") as commands, open(result_fd, "wb", buffering=0) as results:
        code = _serve(commands, results)
    _flush()
    sys.exit(code)
