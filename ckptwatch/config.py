"""One frozen, typed Config that every module reads.

Settings come in layers: command-line flags win over the environment
(``CKPTWATCH_<OPTION>``), which wins over ``ckptwatch.toml``, which wins over
the defaults. Click resolves the first three (the file becomes its
``default_map``); :func:`load_toml` reads the file, and ``Config`` can be built
without click for tests and embedding.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .events import ALL_EVENT_NAMES
from .urls import is_url, strip

__all__ = ["Config", "ConfigError", "LogFormat", "load_toml", "RUN_KEYS"]

LogFormat = Literal["auto", "text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "text", "json")

#: Keys of the ``[run]`` table of ckptwatch.toml (the options of ``ckptwatch run``).
RUN_KEYS = frozenset(
    {
        "listeners",
        "layout",
        "stop_file",
        "state_dir",
        "once",
        "idle_timeout",
        "listener_timeout",
        "shutdown_timeout",
        "log_format",
        "poll",
        "start_from",
        "pin",
        "on_stop",
        "role",
        "metrics_port",
        "metrics_addr",
        "stale_after",
        "summary_json",
        "junit_xml",
        "storage_option",
    }
)
#: Keys of the ``[expect]`` table: the ``--expect-*`` options less ``expect-``.
EXPECT_KEYS = ("checkpoints", "steps", "last_step", "stop", "within")


class ConfigError(ValueError):
    """A setting that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Config:
    dir: str
    listeners: tuple[str, ...] = ()
    layout: str = "auto"
    stop_file: str | None = None
    state_dir: str | None = None
    once: bool = False
    idle_timeout: float | None = None
    listener_timeout: float | None = None
    shutdown_timeout: float = 20.0
    log_format: LogFormat = "auto"
    command: tuple[str, ...] = ()
    #: Per-listener settings from ``[listener.NAME]`` tables: events, timeout, class, args, policy.
    listener_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Seconds between scans instead of native notifications; None: automatic
    #: (poll at 1 s on network and FUSE file systems); 0: never poll.
    poll: float | None = None
    #: On a first start (empty journal), which checkpoints already there get events.
    start_from: str = "all"
    #: Hold a hard-linked copy of each checkpoint in the state dir while its listeners run.
    pin: bool = False
    #: How often to look again with native notifications, in case one was lost.
    rescan_interval: float = 10.0
    #: ``file`` (the stop file only) or ``signal:NAME`` (also NAME to the wrapped command's group).
    on_stop: str = "file"
    #: ``chief``, ``worker`` (runs only listeners with roles "worker"; never writes the stop file) or ``auto``.
    role: str = "chief"
    #: Serve Prometheus metrics on this port (0: any free port; None: no metrics).
    metrics_port: int | None = None
    #: The address the metrics endpoint listens on (0.0.0.0 only when asked).
    metrics_addr: str = "127.0.0.1"
    #: Say so (log, metrics, status, the ``stale`` event) when no save has committed for this long.
    stale_after: float | None = None
    #: CI expectations, checked when the watcher ends (exit 4 when one does not hold).
    expect_checkpoints: int | None = None
    expect_steps: tuple[int, ...] | None = None
    expect_last_step: int | None = None
    expect_stop: bool | None = None
    expect_within: float | None = None
    #: Reports written when the watcher ends.
    summary_json: str | None = None
    junit_xml: str | None = None
    #: ``KEY=VALUE`` options for fsspec when DIR (or the stop file) is a URL.
    storage_option: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "listener_timeout", "stale_after", "expect_within"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be more than 0 seconds, not {value:g}")
        if self.shutdown_timeout < 0:
            raise ConfigError(f"shutdown-timeout must be 0 or more seconds, not {self.shutdown_timeout:g}")
        if self.poll is not None and self.poll < 0:
            raise ConfigError(f"poll must be 0 (never) or more seconds, not {self.poll:g}")
        if self.start_from not in ("all", "latest", "now") and not str(self.start_from).isdigit():
            raise ConfigError(f"start-from must be all, latest, now or a step number, not {self.start_from!r}")
        if self.role not in ("chief", "worker", "auto"):
            raise ConfigError(f"role must be chief, worker or auto, not {self.role!r}")
        from .delivery.onstop import parse_on_stop

        try:
            parse_on_stop(self.on_stop)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.on_stop != "file" and not self.command:
            raise ConfigError(f"--on-stop {self.on_stop} signals the wrapped command: add -- COMMAND, or drop it")
        if self.expect_checkpoints is not None and self.expect_checkpoints < 0:
            raise ConfigError(f"expect-checkpoints must be 0 or more, not {self.expect_checkpoints}")
        if self.expect_steps is not None and not self.expect_steps:
            raise ConfigError("expect-steps must name at least one step (100,200,300)")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics-port must be a port number (0 to 65535), not {self.metrics_port}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log-format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")
        self.storage_options  # noqa: B018 - parses them: a bad one is a usage error now
        if is_url(self.state_dir):
            raise ConfigError(f"--state-dir must be a local directory, not {self.state_dir}: the journal is "
                              "written at every event and must survive a crash (the default for a URL DIR is "
                              "local too)")
        if self.is_url:
            if self.pin:
                raise ConfigError("--pin cannot be used with an object store: it hard-links files on a local "
                                  "file system, and an object store has no links (listeners get the URL)")
            if self.poll == 0:
                raise ConfigError("--poll 0 cannot watch an object store: it sends no notifications; "
                                  "use --poll SECONDS (default 5 there)")

    @property
    def is_url(self) -> bool:
        """DIR is an object store (``s3://``, ``gs://``, any fsspec protocol)."""
        return is_url(self.dir)

    @property
    def storage_options(self) -> dict[str, Any]:
        """``--storage-option KEY=VALUE`` as fsspec keyword arguments (JSON values: true, 3, {...})."""
        import json

        options: dict[str, Any] = {}
        for item in self.storage_option:
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"storage-option must be KEY=VALUE, not {item!r}")
            try:
                options[key.strip()] = json.loads(value)
            except ValueError:
                options[key.strip()] = value
        return options

    @property
    def directory(self) -> str:
        return strip(self.dir) if self.is_url else os.path.abspath(self.dir)

    @property
    def stop_path(self) -> str:
        if self.stop_file:
            return self.stop_file if is_url(self.stop_file) else os.path.abspath(self.stop_file)
        return f"{self.directory}/ckptwatch.stop" if self.is_url else os.path.join(self.directory, "ckptwatch.stop")

    @property
    def state_path(self) -> str:
        if self.state_dir:
            return os.path.abspath(self.state_dir)
        return url_state_dir(self.directory) if self.is_url else os.path.join(self.directory, ".ckptwatch")

    @property
    def listener_paths(self) -> tuple[str, ...]:
        """The listener locations, defaulting to ``./listeners.d`` when it exists."""
        if self.listeners:
            return self.listeners
        return ("listeners.d",) if os.path.isdir("listeners.d") else ()


def url_state_dir(url: str) -> str:
    """The local state directory of a URL DIR: ``$XDG_STATE_HOME/ckptwatch/PROTOCOL/BUCKET/PATH``.

    The journal must be written at every event and survive a crash, which a
    bucket cannot promise, so it stays on this host, at a place the URL names
    (a restarted watcher for the same URL finds it; another URL never shares it).
    """
    protocol, _, rest = strip(url).partition("://")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
    return os.path.join(base, "ckptwatch", protocol.lower(), *parts)


def load_toml(path: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(run options, per-listener settings)`` from a ckptwatch.toml.

    The file has a ``[run]`` table with the options of ``ckptwatch run``
    (``-`` or ``_`` in names), ``[listener.NAME]`` tables with ``events``
    and ``timeout``, a Python class listener's ``class`` and ``args``, and
    the policy keys (``every_n_steps``, ``every_n_secs``, ``on_failure``,
    ``coalesce``), and ``roles`` (which ``--role`` runs it); and an
    ``[expect]`` table with the ``--expect-*`` options less ``expect-``
    (given back as ``expect_*`` run options).
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    unknown_tables = sorted(set(data) - {"run", "listener", "expect"})
    if unknown_tables:
        raise ConfigError(f"config {path}: unknown table(s) {', '.join(unknown_tables)}; use [run], [listener.NAME] "
                          "and [expect]")
    for table in ("run", "listener", "expect"):
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"config {path}: {table} must be a table ([{table}]), not {type(data[table]).__name__}")
    run = {key.replace("-", "_"): value for key, value in data.get("run", {}).items()}
    unknown = sorted(set(run) - RUN_KEYS)
    if unknown:
        raise ConfigError(f"config {path}: unknown [run] key(s) {', '.join(unknown)}; known: {', '.join(sorted(RUN_KEYS))}")
    if isinstance(run.get("listeners"), str):
        run["listeners"] = [run["listeners"]]
    for key, value in run.items():
        kinds = _RUN_TYPES[key]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            wanted = " or ".join(dict.fromkeys(_TYPE_NAMES[k] for k in kinds))
            raise ConfigError(f"config {path}: [run] {key.replace('_', '-')} must be {wanted}, not {value!r}")
    if any(not isinstance(item, str) for item in run.get("listeners", [])):
        raise ConfigError(f"config {path}: [run] listeners must be a list of paths")
    if isinstance(run.get("storage_option"), str):
        run["storage_option"] = [run["storage_option"]]
    if any(not isinstance(item, str) for item in run.get("storage_option", [])):
        raise ConfigError(f"config {path}: [run] storage-option must be a list of \"KEY=VALUE\" strings")
    if "start_from" in run:
        run["start_from"] = str(run["start_from"])
    run.update(_load_expect(path, data.get("expect", {})))
    listeners: dict[str, dict[str, Any]] = {}
    for name, table in data.get("listener", {}).items():
        listeners[name] = _listener_table(path, name, table)
    return run, listeners


#: Keys of a ``[listener.NAME]`` table.
LISTENER_KEYS = ("events", "timeout", "class", "args", "every_n_steps", "every_n_secs", "on_failure", "coalesce",
                 "roles")


def _listener_table(path: str, name: str, table: Any) -> dict[str, Any]:
    """One ``[listener.NAME]`` table, checked: every key known and typed."""
    from .delivery.policy import PolicyError, parse_policy

    where = f"config {path}: [listener.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(LISTENER_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(LISTENER_KEYS)}")
    events = table.get("events", [])
    if not isinstance(events, list) or not set(events) <= set(ALL_EVENT_NAMES) or not events and "events" in table:
        raise ConfigError(f"{where} events must be a list of {', '.join(ALL_EVENT_NAMES)}")
    timeout = table.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"{where} timeout must be a number of seconds above 0")
    if "class" in table and (not isinstance(table["class"], str) or not table["class"].strip()):
        raise ConfigError(f"{where} class must be a string: MODULE:CLASS, PATH.py:CLASS or an installed listener")
    if "args" in table and not isinstance(table["args"], dict):
        raise ConfigError(f"{where} args must be a table of keyword arguments (args = {{ key = value }})")
    roles = table.get("roles", ["chief"])
    if not isinstance(roles, list) or not roles or not set(roles) <= {"chief", "worker"}:
        raise ConfigError(f"{where} roles must be a list of chief, worker (default [\"chief\"])")
    try:
        parse_policy(table)
    except PolicyError as exc:
        raise ConfigError(f"{where} {exc}") from None
    return table


def _load_expect(path: str, table: dict[str, Any]) -> dict[str, Any]:
    """``[expect]`` as the ``expect_*`` options of ``run``."""
    expect = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(expect) - set(EXPECT_KEYS))
    if unknown:
        known = ", ".join(k.replace("_", "-") for k in EXPECT_KEYS)
        raise ConfigError(f"config {path}: unknown [expect] key(s) {', '.join(unknown)}; known: {known}")
    kinds = {"checkpoints": "a number", "last_step": "a number", "within": "a number of seconds",
             "stop": "true or false", "steps": "a list of step numbers"}
    for key, value in expect.items():
        if key == "stop":
            good = isinstance(value, bool)
        elif key == "steps":
            good = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif key == "within":
            good = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            good = isinstance(value, int) and not isinstance(value, bool)
        if not good:
            raise ConfigError(f"config {path}: [expect] {key.replace('_', '-')} must be {kinds[key]}, not {value!r}")
    return {f"expect_{key}": tuple(value) if key == "steps" else value for key, value in expect.items()}


_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a number", float: "a number", list: "a list"}
_RUN_TYPES: dict[str, tuple[type, ...]] = {
    "listeners": (list,),
    "layout": (str,),
    "stop_file": (str,),
    "state_dir": (str,),
    "once": (bool,),
    "idle_timeout": (int, float),
    "listener_timeout": (int, float),
    "shutdown_timeout": (int, float),
    "log_format": (str,),
    "poll": (int, float),
    "start_from": (str, int),
    "pin": (bool,),
    "on_stop": (str,),
    "role": (str,),
    "metrics_port": (int,),
    "metrics_addr": (str,),
    "stale_after": (int, float),
    "summary_json": (str,),
    "junit_xml": (str,),
    "storage_option": (list, str),
}
