"""The watcher's lifecycle, shaped like uvicorn's Server.

``Engine.run`` prepares (listeners, usage checks), captures signals, starts
the wrapped command, then runs sessions: ``startup`` (journal, layout,
listeners, observer, ``begin``) -> ``main_loop`` (wait for a wake or a
timeout, scan, dispatch; one method decides to exit) -> ``shutdown`` (stop
watching, let queued runs finish within a limit, ``end``, close the journal).
DIR deleted and created again ends one session and begins the next.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from . import layouts
from .config import Config, ConfigError
from .report.console import emit
from .report.hub import Ending, Hub, SessionFacts
from .delivery.dispatch import Dispatcher, RunContext
from .events import Event
from .delivery.journal import Journal, JournalBusy
from .dirindex import DirIndex
from .idlegc import IdleCollector
from .sources.fstype import filesystem_type, needs_polling
from .layouts.access import StoreUnavailable
from .layouts.base import Layout, Observation
from .delivery.environment import listener_environment
from .delivery.listeners import ListenerError, ListenerSpec, discover
from .delivery.reaper import Reaper, become_subreaper
from .delivery.runner import close_inherited_fds
from .delivery.stopfile import remove_torn_temp_files
from .sources.watch import InotifyWatcher, ObserverWatcher, Waker, Watcher
from .staleness import Staleness
from .urls import is_url

if TYPE_CHECKING:
    from .command import TrainingCommand
    from .report.setup import Reports
    from .sources.objstore import FsspecAccess, Outage

__all__ = ["EXIT_EXPECTATION", "EXIT_LISTENER_FAILED", "EXIT_OK", "EXIT_USAGE", "Engine", "UsageError", "run"]

EXIT_OK = 0
EXIT_LISTENER_FAILED = 1
EXIT_USAGE = 2
#: An expectation (``--expect-*``) did not hold.
EXIT_EXPECTATION = 4
#: With --once, how many second looks a layout may ask for before the session ends.
_ONCE_RECHECKS = 50
#: While auto-detection is undecided, how many new subdirectories get a watch.
_UNDECIDED_WATCHES = 64
#: How long the watcher is quiet before a garbage collection that is due runs (a commit's
#: listeners start first).
_QUIET_BEFORE_GC = 0.01
#: Seconds between polls of an object store unless --poll says otherwise.
STORE_POLL = 5.0
#: With --once, how many failed looks at an object store before the session ends (exit 1).
ONCE_STORE_TRIES = 5


class UsageError(Exception):
    """A user error: one line that says what to fix, exit status 2."""


def run(config: Config) -> int:
    """Watch ``config.dir`` until the session ends; the exit status."""
    return Engine(config).run()


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.dir = config.directory
        self.waker = Waker()
        self.listeners: list[ListenerSpec] = []
        self.command: TrainingCommand | None = None
        self.exit_reason: str | None = None
        self.exit_signal: int | None = None
        self.force_signal: int | None = None
        self.failures = 0
        #: Where every session tells what happened (metrics, reports, status files subscribe here).
        self.hub = Hub()
        self.reports: Reports | None = None
        #: How the watcher ended, once it has.
        self.ending: Ending | None = None
        #: The first session's run id (the wrapped command gets it); later sessions add ``.2``, ``.3``...
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()
        self._sessions = 0
        #: chief or worker (``--role``), and why.
        self.role, self.role_why = "chief", "--role chief"
        #: DIR in an object store (a URL): how it is read; None for a local DIR.
        self.access: FsspecAccess | None = None
        #: Garbage collection happens between looks (see :mod:`.idlegc`).
        self.collector = IdleCollector()

    def next_run_id(self) -> str:
        self._sessions += 1
        return self.run_id if self._sessions == 1 else f"{self.run_id}.{self._sessions}"

    # Start and finish ----------------------------------------------------------

    def prepare(self) -> None:
        """Everything that can be a usage error, checked before anything starts."""
        config = self.config
        if config.layout != "auto":
            try:
                layouts.create(config.layout, self.dir)
            except (layouts.UnknownLayout, ValueError) as exc:
                raise UsageError(str(exc)) from None
        if config.is_url:
            from .sources.objstore import open_store  # fsspec: only for a URL
            from .urls import MissingProtocol

            try:
                self.access = open_store(config.directory, config.storage_options)
            except (MissingProtocol, FileNotFoundError) as exc:
                raise UsageError(str(exc)) from None
        elif os.path.exists(self.dir) and not os.path.isdir(self.dir):
            raise UsageError(f"{config.dir} is not a directory")
        elif config.once and not os.path.isdir(self.dir):
            raise UsageError(f"{config.dir} does not exist (--once reads what is there now)")
        try:
            self.listeners = discover(
                config.listener_paths,
                lambda text: emit("info", text, logging.WARNING),
                config.listener_settings,
                config.listener_timeout,
                env=listener_environment(),
            )
        except ListenerError as exc:
            raise UsageError(str(exc)) from None
        self._apply_role()
        from .report.setup import install

        try:  # the status file, metrics, reports, expectations: as the options ask
            self.reports = install(self.hub, config)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if not self.listeners:
            emit("info", "no listeners (add executables to ./listeners.d or pass -l PATH): events are only logged",
                 logging.WARNING)

    def _apply_role(self) -> None:
        """``--role``: a worker keeps only the listeners marked for workers, and says so."""
        from .delivery.roles import resolve_role

        self.role, self.role_why = resolve_role(self.config.role, os.environ)
        if self.role != "worker":
            if self.config.role == "auto":
                emit("info", f"role chief ({self.role_why})", role="chief")
            return
        kept = [spec for spec in self.listeners if "worker" in spec.roles]
        left = [spec.name for spec in self.listeners if "worker" not in spec.roles]
        self.listeners = kept
        emit("info", f"role worker ({self.role_why}): this watcher never writes the stop file; running "
             f"{len(kept)} listener(s) marked roles = [\"worker\"]"
             + (f", not {', '.join(left)} (chief only)" if left else ""), role="worker", skipped=left)

    def run(self) -> int:
        self.prepare()
        from .report.progress import ProgressReporter

        self.hub.add(ProgressReporter(self.role))
        close_inherited_fds()
        reaper = Reaper() if become_subreaper() else None
        if reaper is not None:
            reaper.start()
        with self._capture_signals(), self.collector:
            served = False
            try:
                self._serve()
                served = True
            finally:
                if self.command is not None and (self.force_signal is not None or not self.command.exited):
                    self.command.kill()
                if reaper is not None:
                    reaper.stop()
                if served:
                    self.ending = self._ending()
                    self.hub.finished(self.ending)
                self.hub.close()
        self.waker.close()
        return self._exit_status()

    def _serve(self) -> None:
        if self.config.command:
            self._start_command()
        while self._wait_for_dir():
            reason = Session(self).run()
            if reason != "dir-gone" or self.config.once:
                break
            emit("info", f"{self.config.dir} was deleted: session ended; waiting for it to come back")
        if self.command is not None:
            # --once or an idle timeout ended the watch first: the command decides the exit.
            while not self.command.exited and self.force_signal is None:
                self.waker.wait(0.1)

    def _exit_status(self) -> int:
        return (self.ending or self._ending()).status

    def _ending(self) -> Ending:
        """The exit status and why, in the order of precedence (usage errors never get here):
        forced out, the wrapped command's failure, an expectation, a listener's failure, 0."""
        command = self.command
        command_status = command.exit_status if command is not None and command.exited else None
        argv = tuple(self.config.command)
        verdicts = self.reports.verdicts() if self.reports is not None else ()

        def end(status: int, reason: str) -> Ending:
            return Ending(status, reason, argv, command_status, verdicts)

        if self.force_signal is not None:
            return end(128 + self.force_signal, f"forced out by a second {signal.Signals(self.force_signal).name}")
        if command_status:
            return end(command_status, f"the training command {_exited(command_status)}")
        failed = [verdict for verdict in verdicts if not verdict.held]
        if failed:
            more = f" (and {len(failed) - 1} more expectation(s) that did not hold, above)" if len(failed) > 1 else ""
            return end(EXIT_EXPECTATION, failed[0].line + more)
        if self.failures:
            return end(EXIT_LISTENER_FAILED, f"{self.failures} listener run(s) failed")
        return end(EXIT_OK, "no listener failed")

    def _start_command(self) -> None:
        from .command import TrainingCommand  # with subprocess: only when there is a command

        assert self.config.command
        env = dict(os.environ, CKPTWATCH_STOP_FILE=self.config.stop_path, CKPTWATCH_DIR=self.dir,
                   CKPTWATCH_STATE_DIR=self.config.state_path, CKPTWATCH_RUN_ID=self.run_id)
        self.command = TrainingCommand(self.config.command, env, self._command_exited)
        try:
            self.command.start()
        except OSError as exc:
            raise UsageError(f"cannot start {self.config.command[0]}: {exc.strerror}") from None
        emit("info", f"started {' '.join(self.config.command)} (pid {self.command.pid})")
        self._on_stop(self.command)

    def _on_stop(self, command: TrainingCommand) -> None:
        """``--on-stop signal:NAME``: the signal follows the stop file to the command's group."""
        from .delivery.onstop import OnStopSignal, parse_on_stop

        sig = parse_on_stop(self.config.on_stop)
        if sig is None:
            return
        if self.role == "worker":
            emit("info", f"--on-stop {self.config.on_stop}: a worker never asks for a stop; no signal will be sent",
                 logging.WARNING)
            return
        self.hub.add(OnStopSignal(command, sig))

    def _command_exited(self) -> None:
        self.exit_reason = self.exit_reason or "command"
        self.waker.wake()

    def _wait_for_dir(self) -> bool:
        """True once DIR exists; False when the watcher should exit first."""
        if self.access is not None or os.path.isdir(self.dir):  # a URL: a prefix is there once written
            return True
        emit("info", f"{self.config.dir} does not exist yet; waiting for it")
        self.hub.waiting_for_dir(self.dir)
        started = time.monotonic()
        while not os.path.isdir(self.dir):
            if self.exit_reason or self.force_signal is not None:
                return False
            idle = self.config.idle_timeout
            if idle is not None and time.monotonic() - started >= idle:
                emit("info", f"no checkpoint directory for {idle:g} s: idle timeout")
                return False
            self.waker.wait(0.2)
        return True

    # Signals -------------------------------------------------------------------

    @contextmanager
    def _capture_signals(self) -> Iterator[None]:
        """Handlers only set flags; installed on the main thread, restored after.

        The waker is the wakeup descriptor too: a signal the kernel hands to
        another thread still ends the main thread's wait at once.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        undo_wakeup = self.waker.wake_on_signals()
        try:
            yield
        finally:
            undo_wakeup()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.exit_signal is None:
            self.exit_signal = sig
            if self.command is not None and self.command.forward(sig):
                emit("info", f"got {signal.Signals(sig).name}: passed it to the training command; "
                     "ending when it exits (again to force)")
            else:
                self.exit_reason = self.exit_reason or "signal"
                emit("info", f"got {signal.Signals(sig).name}: ending the session (again to force)")
        else:
            self.force_signal = sig
            emit("info", f"got {signal.Signals(sig).name} again: forcing exit", logging.WARNING)
        self.waker.wake()


class Session:
    """One ``begin`` ... ``end``: the journal, the layout, the listeners and the watch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self.dir = engine.dir
        self.run_id = engine.next_run_id()
        self.layout: Layout | None = None
        self.layout_fixed = False
        self.watcher: InotifyWatcher | ObserverWatcher | None = None
        self.interval = self.config.rescan_interval
        self.trust_mtime = True
        self.start_pending = self.config.start_from != "all"
        self.recheck_at: float | None = None
        self._once_rechecks = 0
        #: What the session did, logged at its end: a commit should cost few scans and no waits.
        self.stats = {"scans": 0, "commits": 0, "recheck_waits": 0}
        self.hub = engine.hub
        #: When each save under way was seen starting (wall clock), for the save's duration.
        self._save_started: dict[tuple[str, int], float] = {}
        self._problems_seen: set[str] = set()
        self._said_undecided = False
        self._said_unclaimed = False
        self._ready_said = False
        self._said_others = False
        ignore = frozenset(
            os.path.basename(path)
            for path in (self.config.state_path, self.config.stop_path)
            if os.path.dirname(path) == self.dir
        )
        if self.config.layout != "auto":
            candidates = [layouts.layout_class(self.config.layout.partition(":")[0])]
        else:
            candidates = [layouts.layout_class(n) for n in layouts.names()]
        self.index = DirIndex(self.dir, candidates, ignore, engine.access)
        #: Back-off while an object store cannot be asked (a URL DIR only).
        self.outage: Outage | None = None
        if engine.access is not None:
            from .sources.objstore import Outage

            self.outage = Outage(self.config.dir, self.config.poll or STORE_POLL)

    def run(self) -> str:
        self.startup()
        reason = "error"
        try:
            reason = self.main_loop()
        finally:
            self.shutdown(reason)
        return reason

    # startup -------------------------------------------------------------------

    def startup(self) -> None:
        config = self.config
        self._started_ns = time.time_ns() - 1_000_000_000  # a second early: file times are coarse
        try:
            self.journal = Journal(config.state_path)
        except JournalBusy as exc:
            raise UsageError(f"{exc}; stop it, or pass --state-dir PATH") from None
        except OSError as exc:
            raise UsageError(
                f"cannot use the state directory {config.state_path}: {exc.strerror}; pass --state-dir PATH"
            ) from None
        if self.journal.dropped_lines:
            emit("info", f"journal: dropped {self.journal.dropped_lines} torn or unreadable line(s) "
                 "(a crash mid-write); continuing", logging.WARNING)
        pins = os.path.join(config.state_path, "pins") if config.pin else None
        if pins is not None:
            import shutil  # with bz2 and lzma: only for --pin

            shutil.rmtree(pins, ignore_errors=True)  # pins of a crashed session
        access = self.engine.access
        self.context = RunContext(self.dir, config.stop_path, self.run_id, pin_dir=pins, role=self.engine.role,
                                  exists=access.exists if access is not None else None,
                                  storage_options=config.storage_options or None)
        self.hub.session_started(SessionFacts(self.run_id, self.dir, config.stop_path, config.state_path,
                                              tuple(spec.name for spec in self.engine.listeners), os.getpid()))
        if config.layout != "auto":
            self._use_layout(config.layout, "chosen with --layout", fixed=True)
        self.tracker = self.journal.tracker()
        self.dispatcher = Dispatcher(self.engine.listeners, self.journal, self.context, self.hub)
        self.dispatcher.on_stop_watcher = self._stop_watcher
        self.dispatcher.start()
        self._dispatch(self.tracker.begin())
        self.dispatcher.resume(self.journal.pending())
        self.first_start = self.journal.empty
        if not config.once:
            self._start_watching()
        self.last_commit = time.monotonic()
        self.staleness = Staleness(config.stale_after, self.last_commit)

    def _stop_watcher(self, listener: str, why: str) -> None:
        """A listener with ``on_failure = "stop-watcher"`` failed: end the session (from its worker thread)."""
        self.engine.exit_reason = self.engine.exit_reason or "listener-failed"
        self.engine.waker.wake()

    def _say_ready(self) -> None:
        """After the first look: a save from now on is seen, and what was there is known."""
        config = self.config
        names = ", ".join(spec.name for spec in self.engine.listeners) or "none"
        emit("ready", f"watching {config.dir} (layout {config.layout}, listeners: {names}, run {self.run_id})",
             dir=self.dir, layout=config.layout, listeners=[s.name for s in self.engine.listeners],
             run_id=self.run_id, stop_file=config.stop_path, state_dir=config.state_path)

    def _start_watching(self) -> None:
        """Native notifications, or a scan on a timer where they cannot be trusted."""
        config = self.config
        if self.outage is not None:
            self.trust_mtime = False
            self.interval = self.outage.interval
            emit("info", f"polling {config.dir} every {self.interval:g} s (an object store sends no notifications); "
                 f"journal in {config.state_path}", poll=self.interval, state_dir=config.state_path)
            return
        fstype = filesystem_type(self.dir)
        self.trust_mtime = not needs_polling(fstype)
        poll = config.poll
        if poll is None and needs_polling(fstype):
            poll = 1.0
            emit("info", f"{config.dir} is on {fstype}, where changes made elsewhere send no notification: "
                 "scanning every 1 s (--poll 0 forces native notifications)")
        if poll:
            self.interval = poll
            emit("info", f"polling {config.dir} every {poll:g} s", poll=poll)
            return
        self.watcher = Watcher(self.dir, self.engine.waker, self.hub.notifications_overflowed)
        try:
            self.watcher.start()
        except OSError as exc:
            self.watcher = None
            self.interval = 1.0
            emit("info", f"cannot watch {config.dir} natively ({exc.strerror or exc}); scanning every "
                 f"{self.interval:g} s instead", logging.WARNING)
            return
        if isinstance(self.watcher, ObserverWatcher):
            emit("info", "notifications through watchdog's observer thread")

    # main loop -----------------------------------------------------------------

    def main_loop(self) -> str:
        waker = self.engine.waker
        waker.hint_everything()  # the first scan, at once, of everything
        first = True
        while True:
            woken = self._wait()
            recheck = not woken and self.recheck_at is not None and time.monotonic() >= self.recheck_at
            if recheck:
                self.stats["recheck_waits"] += 1
            everything, hints = waker.take()
            reason = self.should_exit()
            try:
                if self.index.listing_pending:
                    self.index.merge_listing()
                if first and self.watcher is not None and not reason:
                    self._first_look(hints)
                elif everything or reason:
                    self.index.relist()
                    if everything and not first and not reason:
                        self.hub.rescanned("relist")
                elif recheck and self.watcher is not None:
                    # A layout's second look (a file written in place settling): it looks again
                    # at what asked for it, not at every checkpoint; notifications tell the rest.
                    self.hub.rescanned("recheck")
                elif not woken:
                    self.hub.rescanned("recheck" if recheck else "timer" if self.watcher is not None else "poll")
                    # A poll tick, or the safety timer: look at every marker again. A
                    # poll also lists DIR (whole on a network file system, which may
                    # cache its mtime); with native notifications it need not: inotify
                    # reports its losses as an overflow, which lists DIR again.
                    if self.watcher is None:
                        self.index.relist(only_if_changed=self.trust_mtime)
                    self.index.everything_changed()
                elif hints:
                    self.index.refresh(hints)
                looked = self.scan()
                if self.outage is not None:
                    self._polled()
                first = False
                if looked and not self._ready_said:
                    self._ready_said = True
                    self._say_ready()
                    self._remove_torn_stop_files()
                self._check_stale()
            except (FileNotFoundError, NotADirectoryError):
                return "dir-gone"
            except StoreUnavailable as exc:
                if reason:
                    return reason
                if self._store_failed(exc):
                    return "once"
                continue
            if reason:
                # A save written in place just before the end (training saves, then exits) gets its
                # second look too: without it, that committed checkpoint would never be delivered.
                if reason == "forced" or self.recheck_at is None or self._once_rechecks >= _ONCE_RECHECKS:
                    return reason
                self._once_rechecks += 1
                continue
            if self.config.once:
                # A layout that needs a second look (a file written in place) gets it.
                if self.recheck_at is None or self._once_rechecks >= _ONCE_RECHECKS:
                    return "once"
                self._once_rechecks += 1

    def _wait(self) -> bool:
        """Wait for a wake or the next timer; True if woken.

        A garbage collection that is due waits until the watcher has been
        quiet for a moment (a look's listeners are starting just after it)
        and is never in the middle of a look.
        """
        waker, collector = self.engine.waker, self.engine.collector
        timeout = self._wait_timeout()
        if collector.due() and timeout > _QUIET_BEFORE_GC:
            if waker.wait(_QUIET_BEFORE_GC):
                return True
            collector.collect()
            timeout = self._wait_timeout()
        return waker.wait(timeout)

    def _remove_torn_stop_files(self) -> None:
        """Temp files of a stop file that a crash cut off, removed on a thread once the watcher is ready.

        Beside a million files this lists DIR for a second: never on the way
        to the first look. Only files older than the session: the clock of
        file times is coarse, and a stop file this session writes is kept.
        """
        if not is_url(self.config.stop_path):
            threading.Thread(target=remove_torn_temp_files, args=(self.config.stop_path, self._started_ns),
                             name="torn stop files", daemon=True).start()

    def _first_look(self, hints: set[str]) -> None:
        """List DIR whole on a thread, and look at once at the names where commits are recorded.

        The watch is already set, so nothing that changes meanwhile is lost;
        beside a million files, the listing takes a second or more, and a
        layout with fixed markers (:meth:`_layout_before_listing`) serves
        commits before it is done.
        """
        self.index.relist_in_background(self.engine.waker.wake)
        markers = {name for cls in self.index.candidates for name in cls.fixed_markers}
        self.index.refresh(markers, hinted=False)
        self.index.refresh(hints)

    def _polled(self) -> None:
        """A look at an object store worked: the outage (if any) is over; its cost in the debug log."""
        assert self.outage is not None and self.engine.access is not None
        if self.outage.since is not None:
            self.outage.succeeded()
            self.interval = self.outage.interval
        access = self.engine.access
        self.stats["requests"] = access.total_requests
        emit("debug", f"poll: {access.requests} request(s)", logging.DEBUG, requests=access.requests)

    def _store_failed(self, exc: StoreUnavailable) -> bool:
        """A look at the object store failed: back off. True when ``--once`` gives up."""
        assert self.outage is not None
        self.interval = self.outage.failed(exc)
        if self.config.once and self.outage.failures >= ONCE_STORE_TRIES:
            emit("info", f"{self.config.dir}: still unavailable after {ONCE_STORE_TRIES} looks; --once gives up",
                 logging.ERROR)
            self.engine.failures += 1
            return True
        return False

    def _wait_timeout(self) -> float:
        timeout = self.interval
        if self.recheck_at is not None:
            timeout = max(0.0, min(timeout, self.recheck_at - time.monotonic()))
        if self.config.idle_timeout is not None:
            left = self.config.idle_timeout - (time.monotonic() - self.last_commit)
            timeout = max(0.0, min(timeout, left))
        stale_in = self.staleness.left(time.monotonic())
        if stale_in is not None:
            timeout = min(timeout, stale_in)
        return timeout

    def _check_stale(self) -> None:
        """``--stale-after``: the spell starts here (said once, told to the hub, ``stale`` fired)."""
        seconds = self.staleness.check(time.monotonic())
        if seconds is None:
            return
        last = self.tracker.last
        step = last.step if last else None
        self.hub.stale_changed(True, seconds, step)
        emit("info", f"no checkpoint committed for {seconds:.0f} s (--stale-after {self.config.stale_after:g}): "
             "stale; a commit clears it", logging.WARNING, stale=True, seconds_since_commit=round(seconds, 3),
             step=step)
        self._dispatch(Event("stale", step, last.path if last else None,
                             seconds_since_commit=round(seconds, 3)))

    def should_exit(self) -> str | None:
        """The one place that decides the session is over, and why (a last scan follows)."""
        engine = self.engine
        if engine.force_signal is not None:
            return "forced"
        if engine.exit_reason:
            return engine.exit_reason
        idle = self.config.idle_timeout
        if idle is not None and time.monotonic() - self.last_commit >= idle:
            emit("info", f"no new checkpoint for {idle:g} s: idle timeout")
            return "idle"
        if self.watcher is not None and not self.watcher.alive():
            why = getattr(self.watcher, "failure", None) or "watchdog's observer thread exited"
            self.watcher = None
            self.interval = 1.0
            self.engine.waker.hint_everything()
            emit("info", f"native notifications stopped ({why}); scanning every 1 s from now on", logging.ERROR)
        return None

    def scan(self) -> bool:
        """Turn what the index says of DIR into events, and narrow the watches.

        False when it did not look: the first listing still runs, and what
        was there before cannot be known without it.
        """
        if self.index.listing_pending:
            layout = self._layout_before_listing()
            if layout is None:
                return False
        else:
            layout = self._current_layout()
        self.stats["scans"] += 1
        if layout is None:
            self.start_pending = False  # nothing recognisable was there at the start
            if self.watcher is not None:
                self.watcher.watch_subdirs(self.index.dirs(_UNDECIDED_WATCHES))
            return True
        observation = layout.scan(self.index.view(type(layout)))
        if self.start_pending:
            self.start_pending = False
            self._skip_at_start(observation)
        self.recheck_at = None if observation.recheck is None else time.monotonic() + observation.recheck
        for problem in observation.problems:
            self._problem(problem)
        previous = self.tracker.last.step if self.tracker.last else None
        events = self.tracker.observe(observation)
        # Listeners start first; the reporters hear of each event after its runs started
        # and the log lines (handed to another thread) come after all.
        counts = self.dispatcher.dispatch_all(events, self._tell_hub) if events else []
        for event, count in zip(events, counts):
            if event.name == "after_save":
                self.stats["commits"] += 1
                self.last_commit = time.monotonic()
                spell = self.staleness.committed(self.last_commit)
                if spell is not None:
                    self.hub.stale_changed(False, spell, event.step)
                    emit("info", f"step {event.step} committed after {spell:.0f} s: no longer stale", stale=False,
                         step=event.step)
                if previous is not None and event.step is not None and event.step < previous:
                    emit("info", f"step {event.step} is lower than step {previous} seen before: "
                         "a new run or a resume")
                previous = event.step
            self._say_event(event, count)
        if observation.committed and not self.layout_fixed and not self.index.listing_pending:
            self.layout_fixed = True
            self.index.narrow(type(layout))
        if self.watcher is not None and self.watcher.watch_subdirs(observation.watch):
            self.engine.waker.wake()  # a new watch may have missed what came before it
        return True

    def _layout_before_listing(self) -> Layout | None:
        """The layout that may serve notifications while the first listing runs; None: wait for it.

        Only a layout that records every commit at fixed names can: a look at
        them finds each commit the listing would, so ``--start-from``, the
        journal's resume and step order hold as after a full listing. Under
        auto-detection it must also be the layout the listing would choose:
        the first in precedence, recognised by those names alone.
        """
        if not self.layout_fixed:
            first = layouts.layout_class(layouts.names()[0])
            if first not in self.index.candidates or not first.detect(self.index.peek(first)):
                return None
            self._current_layout()
        layout = self.layout
        return layout if layout is not None and type(layout).fixed_markers else None

    def _tell_hub(self, event: Event) -> None:
        """Saves seen starting and commits, for the reporters (once the event's listeners started)."""
        if event.step is None or event.checkpoint is None:
            return
        if event.name == "after_save":
            started = self._save_started.pop((event.checkpoint, event.step), None)
            self.hub.committed(event, time.time(), started)
        elif event.name == "before_save" and event.observed:
            now = time.time()
            self._save_started[(event.checkpoint, event.step)] = now
            self.hub.save_started(event.step, event.checkpoint, now)

    def _skip_at_start(self, observation: Observation) -> None:
        """``--start-from``: on a first start, which checkpoints already there get no events."""
        start = self.config.start_from
        if not self.first_start:
            emit("info", f"--start-from {start} applies to a first start only; the journal says where to resume")
            return
        committed = sorted(observation.committed, key=lambda c: c.step)
        if start == "now":
            skipped = committed
        elif start == "latest":
            skipped = committed[:-1]
        else:
            skipped = [c for c in committed if c.step < int(start)]
        self.tracker.skip(skipped)
        for checkpoint in skipped:
            self.journal.record_event(
                Event("after_save", checkpoint.step, checkpoint.path, checkpoint.identity, marker=checkpoint.marker),
                (), self.run_id,
            )
        self.journal.flush()
        if skipped:
            emit("info", f"--start-from {start}: {len(skipped)} checkpoint(s) already there get no events "
                 f"(steps {skipped[0].step}..{skipped[-1].step})")

    def _current_layout(self) -> Layout | None:
        if self.layout_fixed:
            return self.layout
        found = layouts.detect_all(self.index.peek)
        if not found:
            if not self._said_undecided and self.layout is None:
                self._said_undecided = True
                emit("info", "no checkpoint seen yet: the layout is decided when the first save appears")
            self._say_unclaimed()
            return self.layout
        name, why = found[0]
        if self.layout is None or self.layout.name != name:
            self._use_layout(name, f"detected: {why}", fixed=False)
            self._said_others = False
        # Said once the first listing is in (a layout decided before it cannot know the rest of DIR).
        if len(found) > 1 and not self._said_others and not self.index.listing_pending:
            self._said_others = True
            others = "; ".join(f"{n} ({w})" for n, w in found[1:])
            emit("info", f"DIR also looks like: {others}. {name} comes first; pass --layout NAME to choose",
                 logging.WARNING, candidates=[n for n, _ in found])
        return self.layout

    def _say_unclaimed(self) -> None:
        """Files that look like checkpoints but that no layout is sure of (a lone ``last.pt``)."""
        if self.layout is not None or self._said_unclaimed:
            return
        for name in ("torch", "lightning", "keras"):
            files = sorted(self.index.peek(layouts.layout_class(name)).files)
            if files:
                self._said_unclaimed = True
                emit("info", f"{files[0]} looks like a checkpoint, but auto-detection is not sure of it "
                     f"(no step in its name): pass --layout {name}, or --layout 'glob:PATTERN'", logging.WARNING)
                return

    def _use_layout(self, name: str, why: str, *, fixed: bool) -> None:
        self.layout = layouts.create(name, self.dir, self.engine.access)
        self.layout_fixed = fixed
        self.context.layout = name
        emit("info", f"layout {name} ({self.layout.framework}): {why}", layout=name)
        self.hub.layout_chosen(name, why)

    def _dispatch(self, event: Event) -> None:
        self._say_event(event, self.dispatcher.dispatch(event))

    def _say_event(self, event: Event, count: int) -> None:
        step = "" if event.step is None else f" step {event.step}"
        where = f" {event.checkpoint}" if event.checkpoint else ""
        seen = " (start not seen)" if event.name == "before_save" and not event.observed else ""
        emit("event", f"{event.name}{step}{where}{seen} -> {count} listener(s)", event=event.name,
             step=event.step, checkpoint=event.checkpoint, observed=event.observed, listeners=count)

    def _problem(self, text: str) -> None:
        if text not in self._problems_seen:
            self._problems_seen.add(text)
            emit("info", text, logging.WARNING)

    # shutdown ------------------------------------------------------------------

    def shutdown(self, reason: str) -> None:
        engine = self.engine
        if self.watcher is not None:
            self.watcher.stop()
        forced = lambda: engine.force_signal is not None  # noqa: E731
        dispatcher = self.dispatcher
        limit = self.config.shutdown_timeout if reason == "signal" else None
        if not dispatcher.drain(limit, forced) and not forced():
            left = dispatcher.cancel()
            dispatcher.drain(None, forced)
            dispatcher.resume_after_cancel()
            emit("info", f"shutdown timeout ({limit:g} s): {left} queued run(s) kept in the journal "
                 "for the next session", logging.WARNING)
        if forced():
            dispatcher.cancel(force=True)
            emit("info", "forced exit: end was not delivered", logging.WARNING)
        else:
            self._dispatch(self.tracker.end())
            if not dispatcher.drain(None, forced):
                dispatcher.cancel(force=True)
        dispatcher.close()
        self.journal.close()
        engine.failures += dispatcher.failures
        self.hub.session_ended(reason)
        stats = {**self.stats, "full_listings": self.index.full_listings}
        emit("info", f"session {self.run_id} ended ({reason})", reason=reason, **stats)


def _exited(status: int) -> str:
    """``exited 3`` or ``was killed by SIGKILL`` (an exit status of 128+N)."""
    if status > 128:
        try:
            return f"was killed by {signal.Signals(status - 128).name}"
        except ValueError:
            pass
    return f"exited {status}"
