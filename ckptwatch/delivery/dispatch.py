"""Fanning events out: one FIFO and one worker thread per listener.

A slow listener delays only its own queue; saves keep being observed and the
other listeners keep running. When a listener is idle, the engine thread
starts its run itself and hands the process to the worker, which streams its
output and records the outcome: the commit-to-start path crosses no thread.
A :class:`Delivery` is one event handed to its
listeners; when the last of them has finished, the stop file is written if
any asked (exit 3 from ``after_save``), as ``CheckpointSaverHook._save`` runs
every listener and ORs their answers. Every outcome is told to the
:class:`~ckptwatch.report.hub.Hub`.

A Python class listener's runs go to its warm process (:mod:`.host`) instead
of a new one; everything else (order, journal, timeout, stop) is the same.
Each listener's policy (:mod:`.policy`) is applied here: its schedule when an
event is dispatched, ``coalesce`` when a queued run's turn comes, and
``on_failure`` when a run has failed.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..report.console import emit
from ..report.hub import Hub, RunRecord
from ..events import Event
from ..faults import crash_point
from .journal import Journal, PendingRun
from .environment import listener_environment
from .host import WarmHost, WarmRun, host_logger
from .listeners import ListenerSpec
from .pin import Pin, PinError, pin_checkpoint
from .policy import Schedule
from .runner import RunOutcome, StartedRun, process_start_ticks, start_listener, supervise
from .shebang import spawn_error
from .stopfile import StopRequest, write_stop_file

__all__ = ["Dispatcher", "RunContext"]


@dataclass
class RunContext:
    """What every listener run is told besides the event itself."""

    dir: str
    stop_file: str
    run_id: str
    layout: str = ""
    #: Where ``--pin`` keeps pinned checkpoints (None: no pinning).
    pin_dir: str | None = None
    base_env: dict[str, str] = field(default_factory=listener_environment)
    #: False for ``ckptwatch fire``: a stop request is reported, no stop file written.
    write_stop_file: bool = True
    #: ``worker`` (``--role``): stop requests are logged, and no stop file is written.
    role: str = "chief"
    #: Whether a path relative to DIR is there; None: ``os.path.lexists`` (DIR is local).
    exists: Callable[[str], bool] | None = None
    #: fsspec options for a stop file at a URL.
    storage_options: dict[str, object] | None = None

    def path(self, rel: str | None) -> str:
        return os.path.join(self.dir, rel) if rel else ""

    def there(self, rel: str) -> bool:
        """Whether ``rel`` (a checkpoint's marker) is still in DIR."""
        return self.exists(rel) if self.exists is not None else os.path.lexists(self.path(rel))


class Delivery:
    """One event for a set of listeners; collects their stop requests."""

    def __init__(self, event: Event, event_id: int | None, listeners: list[str], on_last: Callable[[Delivery], None]):
        """``on_last`` is called once the last of ``listeners`` has finished."""
        self.event = event
        self.event_id = event_id
        self._remaining = len(listeners)
        self._lock = threading.Lock()
        self._on_last = on_last
        self.stop_requests: list[tuple[str, str]] = []
        #: A run was cut off or dropped by a shutdown: the next session finishes this event.
        self.cut_off = False
        self._pin: Pin | None = None
        self._pin_tried = False

    def pinned(self, context: RunContext) -> str | None:
        """The pinned path of the checkpoint (pinned by the first listener to ask), or None if gone."""
        with self._lock:
            if not self._pin_tried:
                self._pin_tried = True
                assert context.pin_dir is not None and self.event_id is not None
                try:
                    self._pin = pin_checkpoint(context.path(self.event.checkpoint), context.pin_dir, str(self.event_id))
                except PinError:
                    self._pin = None
                if self._pin is not None and self._pin.copied:
                    emit("info", f"pin of step {self.event.step}: hard links refused for {self._pin.copied} "
                         "file(s); copied them", logging.WARNING)
            return self._pin.path if self._pin else None

    def ask_stop(self, listener: str, reason: str) -> None:
        """A stop request that is not an exit 3 (``on_failure = "stop-training"``)."""
        with self._lock:
            self.stop_requests.append((listener, reason))

    def finished(self, listener: str, outcome: RunOutcome | None) -> None:
        with self._lock:
            if outcome is not None and outcome.status == "stop":
                self.stop_requests.append((listener, outcome.last_line))
            self._remaining -= 1
            last = self._remaining == 0
        if last and self._pin is not None:
            self._pin.release(self.event.checkpoint or "")
        if last:
            self._on_last(self)


@dataclass
class _Job:
    delivery: Delivery
    attempt: int = 1
    #: Set when the engine thread already started the run (the listener was idle).
    started: _Started | None = None
    #: True when the engine thread tried to start it: ``started`` None then means nothing to supervise.
    start_tried: bool = False
    start_error: Exception | None = None


class _Owed:
    """What a run that went well still owes: its report and its count, then its outcome's fsync.

    A listener's worker pays it just after the next run's start when one is
    waiting (a before_save that had to run first delays its after_save by no
    report and no disk flush), else before it waits. The count comes before
    the fsync: the engine may start this listener's next run meanwhile.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.steps: list[Callable[[], None]] = []
        self.sync = False

    def __bool__(self) -> bool:
        return bool(self.steps) or self.sync

    def pay(self) -> None:
        steps, self.steps = self.steps, []
        sync, self.sync = self.sync, False
        for step in [*steps, *([self._journal.sync] if sync else [])]:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - an fsync that fails: said, and the queue goes on
                emit("info", f"after a listener run: {type(exc).__name__}: {exc}", logging.ERROR)


@dataclass
class _Started:
    """A run started, with what its report needs."""

    run: StartedRun | WarmRun
    checkpoint: str
    retry: bool


class Dispatcher:
    def __init__(
        self, listeners: list[ListenerSpec], journal: Journal, context: RunContext, hub: Hub | None = None
    ) -> None:
        self.listeners = listeners
        self.journal = journal
        self.context = context
        self.hub = hub or Hub()
        self.failures = 0
        self.stop_written: StopRequest | None = None
        #: Stop requests of events whose stop file was not written (``write_stop_file`` False).
        self.stop_asked: list[tuple[str, str]] = []
        #: Called (from a worker) when a listener with ``on_failure = "stop-watcher"`` failed: (listener, why).
        self.on_stop_watcher: Callable[[str, str], None] | None = None
        self._queues: dict[str, queue.SimpleQueue[_Job | None]] = {s.name: queue.SimpleQueue() for s in listeners}
        self._cancel = threading.Event()
        self._force = threading.Event()
        self._outstanding = 0
        #: Runs queued or running, per listener; 0 means its worker is idle and its queue empty.
        self._busy = {s.name: 0 for s in listeners}
        self._idle = threading.Condition()
        self._specs = {s.name: s for s in listeners}
        self._hosts: dict[str, WarmHost] = {
            s.name: WarmHost(s.name, s.python, *host_logger(s.name)) for s in listeners if s.python is not None
        }
        self._schedules = {s.name: Schedule(s.policy) for s in listeners if s.policy.scheduled}
        #: Per coalescing listener: the newest after_save queued for it (event id, checkpoint, step).
        self._newest: dict[str, tuple[int, str | None, int | None]] = {}
        #: Listeners that failed with ``on_failure = "stop-watcher"``: they get nothing more this session.
        self._halted: set[str] = set()
        self._threads = [
            threading.Thread(target=self._work, args=(spec,), name=f"listener {spec.name}", daemon=True)
            for spec in listeners
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    # Submitting ----------------------------------------------------------------

    def dispatch(self, event: Event, announce: Callable[[Event], None] | None = None) -> int:
        """Queue ``event`` for each listener that subscribes to it; how many did."""
        return self.dispatch_all([event], announce)[0]

    def dispatch_all(self, events: list[Event], announce: Callable[[Event], None] | None = None) -> list[int]:
        """Dispatch events in order; for each, how many listeners it was queued for.

        An idle listener's run starts here, on the caller's thread, and the
        journal's records of the events go out with the first run's
        ``started`` (in one write, before that spawn) or at the end. Then, in
        the events' order, ``announce(event)`` is called and the event's jobs
        are handed to the workers (or the hub told that no listener wanted
        it): reporters learn of a commit off the path to the listeners'
        start, yet before any of its runs can report back.
        """
        handed: list[tuple[Event, list[str], list[_Job]]] = []
        for event in events:
            wanted = [spec.name for spec in self.listeners if spec.wants(event.name) and self._due(spec, event)]
            event_id = None
            if event.name in ("before_save", "after_save"):
                event_id = self.journal.record_event(event, tuple(wanted), self.context.run_id).id
                crash_point("event-queued", self.journal.flush)
            jobs = []
            if wanted:
                delivery = Delivery(event, event_id, wanted, self._settle)
                jobs = [self._take(name, _Job(delivery), start_here=True) for name in wanted]
            handed.append((event, wanted, jobs))
        self.journal.flush()
        for event, wanted, jobs in handed:
            if announce is not None:
                announce(event)
            for name, job in zip(wanted, jobs):
                self._queues[name].put(job)
            if not wanted:
                self.hub.event_finished(event, False)
        return [len(wanted) for _, wanted, _ in handed]

    def _due(self, spec: ListenerSpec, event: Event) -> bool:
        """Whether the listener's policy lets it run for ``event`` (its schedule; not after stop-watcher)."""
        if spec.name in self._halted:
            return False
        schedule = self._schedules.get(spec.name)
        return schedule is None or schedule.allows(event.name, event.step, event.checkpoint)

    def resume(self, pending: list[PendingRun]) -> None:
        """Queue runs an earlier session left unfinished (``retry`` when they had started)."""
        known = {spec.name for spec in self.listeners}
        deliveries: dict[int, Delivery] = {}
        owed: dict[int, list[str]] = {}
        for queued, asked, finished in self.journal.stop_owed():
            if finished:  # every listener is done: the file is owed now
                delivery = Delivery(queued.event, queued.id, [], self._settle)
                delivery.stop_requests = _asked_earlier(asked)
                self._settle(delivery)
            else:
                owed[queued.id] = asked
        waiting: dict[int, list[str]] = {}
        for run in pending:
            if run.listener in known:
                waiting.setdefault(run.queued.id, []).append(run.listener)
        for run in pending:
            if run.listener not in known:
                emit("info", f"listener {run.listener} is gone; its unfinished {run.queued.event.name} "
                     f"for step {run.queued.event.step} is dropped", logging.WARNING)
                continue
            if run.attempt > 1:
                _kill_leftover(run, self._run_key(run.queued.id, run.listener, run.attempt - 1))
            delivery = deliveries.get(run.queued.id)
            if delivery is None:
                # Counts down over the runs still to do; carries the stop requests already made.
                delivery = Delivery(run.queued.event, run.queued.id, waiting[run.queued.id], self._settle)
                delivery.stop_requests = _asked_earlier(owed.get(run.queued.id, []))
                deliveries[run.queued.id] = delivery
            self._submit(run.listener, _Job(delivery, run.attempt))
        if pending:
            emit("info", f"resuming {len(pending)} listener run(s) left unfinished by an earlier session")

    def _run_key(self, event_id: int, listener: str, attempt: int) -> str:
        """Names one run of one listener in its environment, to find its leftovers after a crash."""
        return f"{self.journal.path}:{event_id}:{listener}:{attempt}"

    def _submit(self, name: str, job: _Job) -> None:
        """Queue ``job`` for the listener's worker."""
        self._queues[name].put(self._take(name, job))

    def _take(self, name: str, job: _Job, *, start_here: bool = False) -> _Job:
        """Count ``job`` as the listener's; with ``start_here`` and the listener idle, start it on this thread.

        The caller then queues it. Only the engine thread submits, and a job
        counted here makes its listener busy, so a listener seen idle here
        stays idle until the job is queued: starting it here keeps its FIFO order.
        """
        event = job.delivery.event
        if event.name == "after_save" and job.delivery.event_id is not None and self._specs[name].policy.coalesce:
            self._newest[name] = (job.delivery.event_id, event.checkpoint, event.step)
        with self._idle:
            idle = self._busy[name] == 0
            self._outstanding += 1
            self._busy[name] += 1
        if start_here and idle and self.context.pin_dir is None:
            job.start_tried = True
            try:
                job.started = self._start(self._specs[name], job, just_seen=True)
            except Exception as exc:  # noqa: BLE001 - reported by the worker, as if it had failed there
                job.start_error = exc
        return job

    # Waiting and stopping ------------------------------------------------------

    def drain(self, timeout: float | None, abort: Callable[[], bool] = lambda: False) -> bool:
        """Wait until every queued run has finished; False on timeout or abort."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._outstanding:
                if abort() or (deadline is not None and time.monotonic() >= deadline):
                    return False
                self._idle.wait(0.05)
        return True

    def cancel(self, *, force: bool = False) -> int:
        """Cut off running runs and drop queued ones (kept in the journal); how many.

        With ``force``, running listeners are killed at once, without a grace period.
        """
        if force:
            self._force.set()
        self._cancel.set()
        dropped = 0
        for name, q in self._queues.items():
            running = []
            while True:
                try:
                    job = q.get_nowait()
                except queue.Empty:
                    break
                if job is not None and job.started is not None:
                    running.append(job)  # started by the engine thread: its worker cuts it off
                elif job is not None:
                    dropped += 1
                    job.delivery.cut_off = True
                    self._done(job.delivery, name, None)
            for job in running:
                q.put(job)
        return dropped

    def resume_after_cancel(self) -> None:
        self._cancel.clear()

    def close(self) -> None:
        for q in self._queues.values():
            q.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        for host in self._hosts.values():
            host.close(force=self._force.is_set())

    # The workers ---------------------------------------------------------------

    def _work(self, spec: ListenerSpec) -> None:
        jobs = self._queues[spec.name]
        owed = _Owed(self.journal)
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                owed.pay()
                job = jobs.get()
            if job is None:
                owed.pay()
                return
            outcome = None
            try:
                while True:
                    outcome = self._run(spec, job, owed)
                    if outcome is None or outcome.status != "retried":
                        break
                    job = _Job(job.delivery, job.attempt + 1)
                    if self._cancel.wait(spec.policy.backoff(job.attempt)):
                        job.delivery.cut_off = True  # the next session runs the retry
                        outcome = None
                        break
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the queue
                why = spawn_error(spec.path, exc, self.context.base_env) if isinstance(exc, OSError) else str(exc)
                self.failures += 1
                emit("run", f"{spec.name} {job.delivery.event.name}: could not run: {why}", logging.ERROR,
                     listener=spec.name, outcome="failed")
                self.hub.run_finished(RunRecord(spec.name, job.delivery.event, "failed", None, 0.0, job.attempt,
                                                None, (f"could not run: {why}",)))
            finally:
                if owed:
                    owed.steps.append(functools.partial(self._done, job.delivery, spec.name, outcome))
                else:
                    self._done(job.delivery, spec.name, outcome)

    def _done(self, delivery: Delivery, name: str, outcome: RunOutcome | None) -> None:
        delivery.finished(name, outcome)
        with self._idle:
            self._outstanding -= 1
            if name:
                self._busy[name] -= 1
            self._idle.notify_all()

    def _run(self, spec: ListenerSpec, job: _Job, owed: _Owed) -> RunOutcome | None:
        """Start (unless the engine thread did) and finish one run; what the last run owed is paid once it started."""
        try:
            if job.start_error is not None:
                raise job.start_error
            if not job.start_tried and self._overtaken(spec, job):
                return None
            started = job.started if job.start_tried else self._start(spec, job)
        finally:
            owed.pay()
        if started is None:
            return None  # cancelled, or the checkpoint vanished before its turn
        return self._finish(spec, job, started, owed)

    def _start(self, spec: ListenerSpec, job: _Job, *, just_seen: bool = False) -> _Started | None:
        """Start one run (journaled first); None when cancelled or the checkpoint vanished.

        ``just_seen``: the scan that made the event looked at the marker a moment ago.
        """
        event, event_id = job.delivery.event, job.delivery.event_id
        ctx = self.context
        if self._cancel.is_set() or spec.name in self._halted:
            job.delivery.cut_off = True
            return None
        checkpoint = plain = ctx.path(event.checkpoint)
        if ctx.pin_dir is not None and event.name == "after_save" and event_id is not None:
            pinned = job.delivery.pinned(ctx)
            if pinned is None:
                self._vanished(spec, job)
                return None
            checkpoint = pinned
        elif event_id is not None and event.marker and not just_seen and not ctx.there(event.marker):
            self._vanished(spec, job)
            return None
        retry = job.attempt > 1
        last_handled = None
        if event.name == "end":
            status = self.journal.after_save_status(event.identity, spec.name) if event.identity else None
            last_handled = status in ("done", "stop")
        payload = {
            "event": event.name,
            "step": event.step,
            "checkpoint": checkpoint or None,
            "dir": ctx.dir,
            "layout": ctx.layout,
            "stop_file": ctx.stop_file,
            "run_id": ctx.run_id,
            "retry": retry,
            "attempt": job.attempt,
        }
        if event.name == "before_save":
            payload["observed"] = event.observed
        if event.name == "end":
            payload["last_step_handled"] = last_handled
        if event.name == "stale":
            payload["seconds_since_commit"] = event.seconds_since_commit
        if checkpoint != plain:
            payload["pinned_from"] = plain
        own = dict(
            CKPTWATCH_EVENT=event.name,
            CKPTWATCH_STEP="" if event.step is None else str(event.step),
            CKPTWATCH_DIR=ctx.dir,
            CKPTWATCH_CHECKPOINT=checkpoint,
            CKPTWATCH_LAYOUT=ctx.layout,
            CKPTWATCH_STOP_FILE=ctx.stop_file,
            CKPTWATCH_RUN_ID=ctx.run_id,
            CKPTWATCH_RETRY="1" if retry else "0",
            CKPTWATCH_RUN_KEY="" if event_id is None else self._run_key(event_id, spec.name, job.attempt),
            CKPTWATCH_LAST_STEP_HANDLED="" if last_handled is None else str(int(last_handled)),
        )
        if event.name == "stale":
            own["CKPTWATCH_SECONDS_SINCE_COMMIT"] = f"{event.seconds_since_commit:.3f}"
        host = self._hosts.get(spec.name)
        if host is not None:
            def before_send(pid: int, ticks: int | None) -> None:
                if event_id is not None:  # journaled before the process can see the event
                    self.journal.run_started(event_id, spec.name, job.attempt, pid, ticks)

            return _Started(host.start(payload, own, {**ctx.base_env, **own}, before_send), checkpoint, retry)
        env = dict(ctx.base_env)
        env.update(own)
        if event_id is not None:
            # Journaled before the spawn: a crash from here on makes the next run a retry.
            self.journal.run_started(event_id, spec.name, job.attempt)
        return _Started(start_listener([spec.path, event.name], payload, env), checkpoint, retry)

    def _finish(self, spec: ListenerSpec, job: _Job, started: _Started, owed: _Owed) -> RunOutcome:
        """Supervise a started run to its end; journal and report the outcome.

        A run that went well leaves its report and its outcome's fsync in ``owed``.
        """
        event, event_id = job.delivery.event, job.delivery.event_id
        ctx = self.context
        checkpoint = started.checkpoint

        def on_start(pid: int) -> None:
            if event_id is not None:
                self.journal.run_started(event_id, spec.name, job.attempt, pid, process_start_ticks(pid))

        def line(text: str) -> None:
            emit("output", text, listener=spec.name, event=event.name, step=event.step)

        def say(text: str) -> None:
            emit("info", f"{spec.name}: {text}", logging.WARNING, listener=spec.name)

        host = self._hosts.get(spec.name)
        if host is not None:
            assert isinstance(started.run, WarmRun)
            crash_point("run-spawned")
            outcome = host.wait(started.run, spec.timeout, say, self._cancel, self._force)
        else:
            assert isinstance(started.run, StartedRun)
            outcome = supervise(started.run, spec.timeout, on_start, line, say, self._cancel, self._force)
        crash_point("run-exited")
        status = outcome.status
        if status == "failed" and checkpoint == ctx.path(event.checkpoint) and event.marker \
                and not ctx.there(event.marker):
            status = "vanished"
        if status == "stop" and event.name != "after_save":
            say(f"exit 3 asks for a stop, which only after_save can do; taken as success at {event.name}")
            status = "done"
        policy = spec.policy
        if status in ("failed", "timeout") and policy.on_failure == "retry" and job.attempt <= policy.retries \
                and not self._cancel.is_set():
            status = "retried"  # not finished: a crash before the next attempt leaves it owed
        if status != outcome.status:
            outcome = RunOutcome(status, outcome.exit_code, outcome.duration, outcome.last_line, outcome.tail)
        later = status == "done"
        if event_id is not None:
            self.journal.run_finished(event_id, spec.name, job.attempt, status, outcome.exit_code, sync=not later)
            owed.sync = later
        if status in ("failed", "timeout"):
            self.failures += 1
            self._failed(spec, job, outcome)
        if status == "interrupted":
            job.delivery.cut_off = True

        def report() -> None:
            self._report(spec, event, outcome, started.retry, job.attempt)
            self.hub.run_finished(RunRecord(spec.name, event, status, outcome.exit_code, outcome.duration,
                                            job.attempt, checkpoint or None, outcome.tail))

        if later:
            owed.steps.append(report)
        else:
            report()
        return outcome

    def _failed(self, spec: ListenerSpec, job: _Job, outcome: RunOutcome) -> None:
        """``on_failure``: a stop request, or the end of the session, after a run failed for good."""
        event = job.delivery.event
        step = "" if event.step is None else f" step {event.step}"
        why = f"{event.name}{step} {'timed out' if outcome.status == 'timeout' else 'failed'}"
        if outcome.last_line and outcome.status == "failed":
            why += f": {outcome.last_line}"
        if spec.policy.on_failure == "stop-training":
            if event.name == "end":
                emit("info", f"{spec.name}: {why}; on_failure = stop-training, but training has ended: no stop file",
                     logging.WARNING, listener=spec.name)
            else:
                job.delivery.ask_stop(spec.name, why)
        elif spec.policy.on_failure == "stop-watcher" and spec.name not in self._halted:
            self._halted.add(spec.name)
            emit("info", f"{spec.name}: {why}; on_failure = stop-watcher: ending the session (end goes to the "
                 "other listeners; its queued runs stay in the journal)", logging.ERROR, listener=spec.name)
            if self.on_stop_watcher is not None:
                self.on_stop_watcher(spec.name, why)

    def _overtaken(self, spec: ListenerSpec, job: _Job) -> bool:
        """``coalesce``: skip a queued save when a newer checkpoint is already queued for this listener."""
        event, event_id = job.delivery.event, job.delivery.event_id
        newest = self._newest.get(spec.name)
        if newest is None or event_id is None or event.name not in ("before_save", "after_save"):
            return False
        newest_id, checkpoint, step = newest
        if newest_id <= event_id or (event.name == "before_save" and (checkpoint, step) == (event.checkpoint, event.step)):
            return False
        self.journal.run_finished(event_id, spec.name, job.attempt, "skipped", None)
        if event.name == "after_save":
            emit("run", f"{spec.name} after_save step {event.step}: skipped (coalesce: step {step} is already "
                 "queued for it)", listener=spec.name, event=event.name, step=event.step, outcome="skipped")
        self.hub.run_finished(RunRecord(spec.name, event, "skipped", None, 0.0, job.attempt,
                                        self.context.path(event.checkpoint) or None))
        return True

    def _vanished(self, spec: ListenerSpec, job: _Job) -> None:
        event = job.delivery.event
        assert job.delivery.event_id is not None
        self.journal.run_finished(job.delivery.event_id, spec.name, job.attempt, "vanished", None)
        emit("run", f"{spec.name} {event.name} step {event.step}: skipped, checkpoint {event.checkpoint} "
             "vanished before its turn (rotated?)", logging.WARNING, listener=spec.name,
             event=event.name, step=event.step, outcome="vanished")
        self.hub.run_finished(RunRecord(spec.name, event, "vanished", None, 0.0, job.attempt,
                                        self.context.path(event.checkpoint) or None))

    def _report(self, spec: ListenerSpec, event: Event, outcome: RunOutcome, retry: bool, attempt: int) -> None:
        step = "" if event.step is None else f" step {event.step}"
        code = "" if outcome.exit_code in (0, None) else f" (exit {outcome.exit_code})"
        if spec.python is not None and outcome.status in ("failed", "retried") and outcome.last_line:
            code = f" ({outcome.last_line})"  # a class listener's failure is an exception, not a status
        again = " (retry)" if retry else ""
        level = logging.ERROR if outcome.status in ("failed", "timeout") else logging.INFO
        if outcome.status in ("vanished", "retried"):
            level = logging.WARNING
        said = outcome.status
        if outcome.status == "retried":
            attempts = spec.policy.retries + 1
            said = (f"failed, trying again in {spec.policy.backoff(attempt + 1):g} s (attempt {attempt + 1} of "
                    f"{attempts})")
        emit(
            "run",
            f"{spec.name} {event.name}{step}{again}: {said}{code} in {outcome.duration * 1000:.0f} ms",
            level,
            listener=spec.name,
            event=event.name,
            step=event.step,
            outcome=outcome.status,
            exit=outcome.exit_code,
            duration_ms=round(outcome.duration * 1000, 3),
            retry=retry,
            attempt=attempt,
        )

    def _settle(self, delivery: Delivery) -> None:
        """Every run of a delivery has finished: write the stop file if one asked, then tell the hub."""
        if delivery.stop_requests and self.context.role == "worker":
            names = ", ".join(name for name, _ in delivery.stop_requests)
            emit("stop", f"{names} asked for a stop at step {delivery.event.step}, but this watcher is a worker "
                 "(--role): only the chief writes the stop file", logging.WARNING, step=delivery.event.step)
            delivery.stop_requests = []
        if delivery.stop_requests and not self.context.write_stop_file:
            self.stop_asked += delivery.stop_requests
        elif delivery.stop_requests:
            self._write_stop(delivery)
        if not delivery.cut_off:
            self.hub.event_finished(delivery.event, bool(delivery.stop_requests))

    def _write_stop(self, delivery: Delivery) -> None:
        names = [name for name, _ in delivery.stop_requests]
        reason = "; ".join(f"{name}: {line}" if line else name for name, line in delivery.stop_requests)
        event = delivery.event
        request = StopRequest(event.step, self.context.path(event.checkpoint), names, reason, self.context.run_id)
        try:
            write_stop_file(self.context.stop_file, request, self.context.storage_options)
        except OSError as exc:
            emit("stop", f"cannot write the stop file {self.context.stop_file}: {exc.strerror}", logging.ERROR)
            self.failures += 1
            return
        if delivery.event_id is not None:
            self.journal.stop_file_written(delivery.event_id)
        self.stop_written = request
        self.hub.stop_written(request)
        emit("stop", f"stop requested at step {event.step} by {request.listener}: wrote {self.context.stop_file}",
             step=event.step, listeners=names, reason=reason, stop_file=self.context.stop_file)


def _asked_earlier(listeners: list[str]) -> list[tuple[str, str]]:
    """Stop requests journaled by an earlier session (their output is not kept)."""
    return [(name, "(asked in an earlier session)") for name in listeners]


def _kill_leftover(run: PendingRun, key: str) -> None:
    """Kill what is left of a cut-off run before its retry.

    Its process group when the journal has it (and the leader is still that
    process); else (a crash between the spawn and that record) every process
    whose environment carries the run's ``CKPTWATCH_RUN_KEY``.
    """
    groups = set()
    if run.pgid is not None:
        if run.pgid_start is None or process_start_ticks(run.pgid) == run.pgid_start:
            groups.add(run.pgid)
    else:
        groups |= _groups_with_key(key)
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
            emit("info", f"killed what was left of {run.listener}'s cut-off run (process group {group})")
        except (ProcessLookupError, PermissionError):
            pass


def _groups_with_key(key: str) -> set[int]:
    needle = b"\0" + f"CKPTWATCH_RUN_KEY={key}".encode() + b"\0"
    groups = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in b"\0" + handle.read() + b"\0":
                    groups.add(os.getpgid(int(entry)))
        except OSError:
            continue
    return groups
