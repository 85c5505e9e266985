"""Prometheus metrics of a watcher, served on ``--metrics-port`` (``--metrics-addr``).

Imported only when the flag is given: prometheus-client (the ``metrics``
extra) costs a plain ``run`` nothing. Every value comes from a hub fact; the
metrics live in a registry of their own (no process or platform collectors:
a scrape says what the watcher saw, nothing else).

| metric | type | labels | from |
| --- | --- | --- | --- |
| ``ckptwatch_checkpoints_committed_total`` | counter | | each commit seen |
| ``ckptwatch_last_committed_step`` | gauge | | the last commit (NaN before the first) |
| ``ckptwatch_last_commit_timestamp_seconds`` | gauge | | its time (NaN before the first) |
| ``ckptwatch_save_duration_seconds`` | histogram | | save seen starting -> commit |
| ``ckptwatch_listener_runs_total`` | counter | listener, event, outcome | each run that ended |
| ``ckptwatch_listener_duration_seconds`` | histogram | listener, event | each run that ran |
| ``ckptwatch_stop_requests_total`` | counter | | each stop file written |
| ``ckptwatch_vanished_checkpoints_total`` | counter | | checkpoints gone before a listener's turn |
| ``ckptwatch_rescans_total`` | counter | reason | looks not hinted by a notification |
| ``ckptwatch_notification_overflows_total`` | counter | | inotify queue overflows |
| ``ckptwatch_stale`` | gauge | | 1 while ``--stale-after`` passed with no commit |
| ``ckptwatch_session_start_timestamp_seconds`` | gauge | | when the current session began |
| ``ckptwatch_info`` | gauge (1) | version, run_id, layout | the current session |
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .. import __version__
from .hub import Reporter, RunRecord, SessionFacts

if TYPE_CHECKING:
    from ..integrations.stopfile import StopRequest
    from ..events import Event

__all__ = ["Metrics", "MetricsError"]

#: Saves take from milliseconds (a small model) to an hour (a large sharded one).
SAVE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: Listener runs: a shell one-liner to an evaluation.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class MetricsError(Exception):
    """The endpoint cannot be served (the port is taken, the address is not this host's)."""


class Metrics(Reporter):
    def __init__(self, port: int, addr: str = "127.0.0.1") -> None:
        prometheus_client.disable_created_metrics()  # no *_created series: counters start with the watcher
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.committed_total = Counter("ckptwatch_checkpoints_committed", "Checkpoints committed.", registry=registry)
        self.last_step = Gauge("ckptwatch_last_committed_step", "Step of the last committed checkpoint.",
                               registry=registry)
        self.last_commit = Gauge("ckptwatch_last_commit_timestamp_seconds",
                                 "When the last checkpoint committed (unix time).", registry=registry)
        self.save_duration = Histogram("ckptwatch_save_duration_seconds",
                                       "From a save seen starting to its commit.", buckets=SAVE_BUCKETS,
                                       registry=registry)
        self.runs = Counter("ckptwatch_listener_runs", "Listener runs by outcome.",
                            ("listener", "event", "outcome"), registry=registry)
        self.run_duration = Histogram("ckptwatch_listener_duration_seconds", "How long listener runs took.",
                                      ("listener", "event"), buckets=RUN_BUCKETS, registry=registry)
        self.stops = Counter("ckptwatch_stop_requests", "Stop files written.", registry=registry)
        self.vanished = Counter("ckptwatch_vanished_checkpoints",
                                "Checkpoints gone before a listener's turn.", registry=registry)
        self.rescans = Counter("ckptwatch_rescans", "Looks not hinted by a notification.",
                               ("reason",), registry=registry)
        self.overflows = Counter("ckptwatch_notification_overflows", "Kernel notification queue overflows.",
                                 registry=registry)
        self.stale = Gauge("ckptwatch_stale", "1 while no save has committed for --stale-after seconds.",
                           registry=registry)
        self.session_start = Gauge("ckptwatch_session_start_timestamp_seconds", "When the session began.",
                                   registry=registry)
        self.info = Gauge("ckptwatch_info", "The current session.", ("version", "run_id", "layout"),
                          registry=registry)
        self.last_step.set(math.nan)
        self.last_commit.set(math.nan)
        self._run_id = ""
        self._layout = ""
        self._vanished_seen: set[tuple[str, int | None, str | None]] = set()
        self._lock = threading.Lock()
        try:
            self._server, self._thread = prometheus_client.start_http_server(port, addr, registry=registry)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
        host = self._server.server_address[0]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self._server.server_port}/metrics"

    def _set_info(self) -> None:
        self.info.clear()
        self.info.labels(__version__, self._run_id, self._layout).set(1)

    def session_started(self, facts: SessionFacts) -> None:
        self._run_id, self._layout = facts.run_id, ""
        self.session_start.set(facts.started)
        self.stale.set(0)
        self._set_info()

    def layout_chosen(self, name: str, why: str) -> None:
        self._layout = name
        self._set_info()

    def committed(self, event: Event, when: float, started: float | None) -> None:
        self.committed_total.inc()
        if event.step is not None:
            self.last_step.set(event.step)
        self.last_commit.set(when)
        if started is not None:
            self.save_duration.observe(max(0.0, when - started))

    def run_finished(self, run: RunRecord) -> None:
        name = run.event.name
        self.runs.labels(run.listener, name, run.status).inc()
        if run.status == "vanished":
            key = (name, run.event.step, run.event.checkpoint)
            with self._lock:
                new = key not in self._vanished_seen
                self._vanished_seen.add(key)
            if new:
                self.vanished.inc()
        else:
            self.run_duration.labels(run.listener, name).observe(run.duration)

    def stop_written(self, request: StopRequest) -> None:
        self.stops.inc()

    def rescanned(self, reason: str) -> None:
        self.rescans.labels(reason).inc()

    def notifications_overflowed(self) -> None:
        self.overflows.inc()

    def stale_changed(self, stale: bool, seconds_since_commit: float, step: int | None) -> None:
        self.stale.set(1 if stale else 0)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
