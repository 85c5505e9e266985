"""What people and machines see: rich on a terminal, plain lines, or JSON lines.

Library code logs to the ``ckptwatch`` logger with a ``kind`` and fields in
``extra={"ckw": {...}}`` (see :func:`emit`); only the CLI attaches a handler.
Rendering happens on a logging thread (:class:`RenderThread`), so the engine
thread only puts a record on a queue: the commit-to-listener path stays light.
(``logging.handlers`` has the same pair, at the price of importing sockets and
pickle into every start.)
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import sys
import time
from typing import Any, Literal, TextIO

__all__ = ["LogFormat", "RenderThread", "emit", "log", "setup_logging"]

LogFormat = Literal["auto", "text", "json"]
log = logging.getLogger("ckptwatch")


def emit(kind: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one line of a given kind (``event``, ``run``, ``output``, ``info``...)."""
    if log.isEnabledFor(level):
        log.log(level, message, extra={"ckw": {"kind": kind, **fields}})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, "ckw", {"kind": "info"})


def _clock(created: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(created)) + f".{int(created % 1 * 1000):03d}"


class PlainFormatter(logging.Formatter):
    """One unwrapped, uncoloured line a record, with the time first."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        prefix = _clock(record.created)
        if record.levelno >= logging.WARNING:
            prefix += f" {record.levelname.lower()}:"
        if fields["kind"] == "output":
            return f"{prefix} [{fields['listener']}] {record.getMessage()}"
        return f"{prefix} {record.getMessage()}"


class JsonFormatter(logging.Formatter):
    """JSON lines: time, level, kind, msg and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
        }
        body.update(_fields(record))
        body["msg"] = record.getMessage()
        return json.dumps(body, ensure_ascii=True, default=str)


class RichHandler(logging.Handler):
    """Styled lines for a person at a terminal (step, duration and outcome in colour)."""

    _OUTCOME_STYLE = {"done": "green", "stop": "bold magenta", "failed": "bold red", "timeout": "bold red"}

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        from rich.console import Console
        from rich.markup import escape

        self._escape = escape
        self._console = Console(file=stream, highlight=False, soft_wrap=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.print(self._render(record))
        except Exception:  # noqa: BLE001 - a log line must never take the watcher down
            self.handleError(record)

    def _render(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        kind = fields["kind"]
        text = self._escape(record.getMessage())
        clock = f"[dim]{_clock(record.created)}[/dim]"
        if kind == "output":
            return f"{clock} [cyan]{self._escape(fields['listener'])}[/cyan] [dim]|[/dim] {text}"
        if kind == "event":
            return f"{clock} [bold blue]{text}[/bold blue]"
        if kind == "run":
            style = self._OUTCOME_STYLE.get(fields.get("outcome", ""), "yellow")
            return f"{clock} [{style}]{text}[/{style}]"
        if record.levelno >= logging.ERROR:
            return f"{clock} [bold red]error:[/bold red] {text}"
        if record.levelno >= logging.WARNING:
            return f"{clock} [yellow]warning:[/yellow] {text}"
        if kind == "stop":
            return f"{clock} [bold magenta]{text}[/bold magenta]"
        return f"{clock} {text}"


class _Enqueue(logging.Handler):
    """Puts each record on a queue, its message already formatted (cheap, on the caller's thread)."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | None]) -> None:
        super().__init__()
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        self._records.put(record)


class RenderThread(threading.Thread):
    """Renders queued records with ``target`` until :meth:`stop`, which drains the queue first."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | None], target: logging.Handler) -> None:
        super().__init__(name="log", daemon=True)
        self._records = records
        self._target = target

    def run(self) -> None:
        while (record := self._records.get()) is not None:
            self._target.handle(record)

    def stop(self) -> None:
        self._records.put(None)
        self.join()


def setup_logging(fmt: LogFormat, stream: TextIO | None = None, verbose: bool = False) -> RenderThread:
    """Attach the one handler, rendered on its own thread; stop the listener at exit."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "rich" if stream.isatty() else "text"  # type: ignore[assignment]
    target: logging.Handler
    if fmt == "rich":
        target = RichHandler(stream)
    else:
        target = logging.StreamHandler(stream)
        target.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    for handler in list(log.handlers):
        log.removeHandler(handler)
    log.addHandler(_Enqueue(records))
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    thread = RenderThread(records, target)
    thread.start()
    return thread
