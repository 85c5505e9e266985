"""The command line: parse, build a Config, hand it to the engine.

Kept thin and cheap to import: the engine, watchdog and rich load only inside
the commands that need them, so ``ckptwatch --help`` stays fast. A user error
is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import __version__

__all__ = ["main"]

EXIT_USAGE = 2
#: Set once ``run`` starts: its exit goes through the interpreter's normal teardown.
_watcher_ran = False


def _load_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager: read ckptwatch.toml into click's default_map, below flags and environment."""
    import os

    from .config import ConfigError, load_toml

    path = value or ("ckptwatch.toml" if os.path.isfile("ckptwatch.toml") else None)
    if path is None:
        return None
    try:
        run_options, listener_settings = load_toml(path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.default_map = {**(ctx.default_map or {}), **run_options}
    ctx.meta["listener_settings"] = listener_settings
    return path


def _listener_args(items: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``-l`` values, with ``MODULE:CLASS`` put back together where CKPTWATCH_LISTENERS split it at its colon."""
    import os
    import re

    out: list[str] = []
    for item in items:
        if out and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", item) and not os.path.lexists(item) \
                and not os.path.lexists(out[-1]) and re.fullmatch(r"[A-Za-z_][\w.]*|.+\.py", out[-1]):
            out[-1] = f"{out[-1]}:{item}"
        else:
            out.append(item)
    return tuple(out)


def _listener_options(func: Any) -> Any:
    """``-l``, ``--config`` and ``--listener-timeout``, read as ``run`` reads them (tools share them)."""
    func = click.option("--listener-timeout", envvar="CKPTWATCH_LISTENER_TIMEOUT",
                        type=click.FloatRange(0, min_open=True), metavar="SECONDS",
                        help="Kill a listener run (its whole process group) after this long.")(func)
    func = click.option("--config", "config_file", envvar="CKPTWATCH_CONFIG", is_eager=True,
                        type=click.Path(dir_okay=False, path_type=str), callback=_load_config_file,
                        help="A ckptwatch.toml.  [default: ./ckptwatch.toml when it exists]")(func)
    func = click.option("-l", "--listeners", "listeners", multiple=True, envvar="CKPTWATCH_LISTENERS",
                        type=click.Path(path_type=str),
                        help="A listener directory, an executable, or a Python class (MODULE:CLASS, "
                        "PATH.py:CLASS, an installed listener's name); repeatable. Default: ./listeners.d "
                        "when it exists, and the classes ckptwatch.toml names.")(func)
    return func


def _listener_locations(listeners: tuple[str, ...]) -> tuple[str, ...]:
    import os

    if listeners:
        return _listener_args(listeners)
    return ("listeners.d",) if os.path.isdir("listeners.d") else ()


def _help_width() -> int:
    """The width click would pick (terminal columns, at most 100, less 2, at least 50).

    Given to click, it spares ``--help`` the import of ``shutil`` (4 ms of a 60 ms budget).
    """
    import os

    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(min(columns or 80, 100) - 2, 50)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "terminal_width": _help_width()})
@click.version_option(__version__, prog_name="ckptwatch")
def cli() -> None:
    """Run listeners on each checkpoint save of any training job, and stop it on request.

    TensorFlow's CheckpointSaverListener (begin, before_save, after_save, end),
    out of process: ckptwatch watches the checkpoint directory, reads the save
    markers the framework writes, and runs the executables in listeners.d/.
    """


class _StepList(click.ParamType):
    """``100,200,300`` (flag, environment) or a list (ckptwatch.toml) -> a tuple of steps."""

    name = "steps"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, (list, tuple)):
            return tuple(value)
        try:
            steps = tuple(int(part) for part in str(value).replace(" ", "").split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of steps (100,200,300)", param, ctx)
        return steps


def _report_options(command: Any) -> Any:
    """The options of issue 12/13's reporters (metrics, staleness), applied to ``run``."""
    options = [
        click.option("--metrics-port", envvar="CKPTWATCH_METRICS_PORT", type=click.IntRange(0, 65535),
                     metavar="PORT", help="Serve Prometheus metrics on PORT (0: any free port; needs the 'metrics' "
                     "extra: pip install 'ckptwatch[metrics]')."),
        click.option("--metrics-addr", envvar="CKPTWATCH_METRICS_ADDR", default="127.0.0.1", metavar="ADDR",
                     help="The address the metrics endpoint listens on (0.0.0.0: every interface)."),
        click.option("--stale-after", envvar="CKPTWATCH_STALE_AFTER", type=click.FloatRange(0, min_open=True),
                     metavar="SECONDS", help="When no save has committed for this long: say so once, set "
                     "ckptwatch_stale, mark 'status' unhealthy, and fire 'stale' to listeners that subscribe to it."),
        click.option("--expect-checkpoints", envvar="CKPTWATCH_EXPECT_CHECKPOINTS", type=click.IntRange(0),
                     metavar="N", help="Expect at least N checkpoints committed (exit 4 otherwise)."),
        click.option("--expect-steps", envvar="CKPTWATCH_EXPECT_STEPS", type=_StepList(), metavar="S1,S2,...",
                     help="Expect exactly these steps committed, in this order."),
        click.option("--expect-last-step", envvar="CKPTWATCH_EXPECT_LAST_STEP", type=int, metavar="N",
                     help="Expect the last committed step to be N."),
        click.option("--expect-stop/--expect-no-stop", envvar="CKPTWATCH_EXPECT_STOP", default=None,
                     show_default=False, help="Expect a listener to have asked for a stop / none to have."),
        click.option("--expect-within", envvar="CKPTWATCH_EXPECT_WITHIN", type=click.FloatRange(0, min_open=True),
                     metavar="SECONDS", help="Expect the first commit within SECONDS of the start."),
        click.option("--summary-json", envvar="CKPTWATCH_SUMMARY_JSON", type=click.Path(dir_okay=False,
                     path_type=str), metavar="PATH", help="Write the session as one JSON document (docs/summary-json.md)."),
        click.option("--junit-xml", envvar="CKPTWATCH_JUNIT_XML", type=click.Path(dir_okay=False, path_type=str),
                     metavar="PATH", help="Write a JUnit XML report: a test case per listener run and expectation."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command(context_settings={"show_default": True})
@click.argument("dir", type=click.Path(file_okay=False, path_type=str))
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARGS]...]")
@click.option("-l", "--listeners", "listeners", multiple=True, envvar="CKPTWATCH_LISTENERS",
              type=click.Path(path_type=str), show_default=False,
              help="A listener directory, an executable, or a Python class (MODULE:CLASS, PATH.py:CLASS, an "
              "installed listener's name); repeatable. Default: ./listeners.d when it exists. Env "
              "CKPTWATCH_LISTENERS (':'-separated).")
@click.option("--layout", envvar="CKPTWATCH_LAYOUT", default="auto",
              help="auto, or a layout name (see 'ckptwatch layouts').")
@click.option("--stop-file", envvar="CKPTWATCH_STOP_FILE", type=click.Path(dir_okay=False, path_type=str),
              help="Written when a listener asks training to stop.  [default: DIR/ckptwatch.stop]")
@click.option("--state-dir", envvar="CKPTWATCH_STATE_DIR", type=click.Path(file_okay=False, path_type=str),
              help="Where the journal lives (needed when DIR is read-only).  [default: DIR/.ckptwatch]")
@click.option("--config", "config_file", envvar="CKPTWATCH_CONFIG", is_eager=True, expose_value=True,
              type=click.Path(dir_okay=False, path_type=str), callback=_load_config_file,
              help="A ckptwatch.toml.  [default: ./ckptwatch.toml when it exists]")
@click.option("--start-from", envvar="CKPTWATCH_START_FROM", default="all", metavar="all|latest|now|STEP",
              help="On a first start (empty journal), which checkpoints already there get events.")
@click.option("--poll", envvar="CKPTWATCH_POLL", type=click.FloatRange(0), is_flag=False, flag_value=1.0,
              default=None, metavar="[SECONDS]", show_default=False,
              help="Scan every SECONDS (default 1) instead of native notifications (NFS, FUSE). Automatic on "
              "network and FUSE file systems; --poll 0 never polls.")
@click.option("--pin", is_flag=True, envvar="CKPTWATCH_PIN",
              help="While a checkpoint's listeners run, hold a hard-linked copy of it in the state dir and "
              "hand them that (rotation cannot delete it under them).")
@click.option("--once", is_flag=True, envvar="CKPTWATCH_ONCE",
              help="Deliver what DIR holds now, fire end, exit (for CI and cron).")
@click.option("--idle-timeout", envvar="CKPTWATCH_IDLE_TIMEOUT", type=click.FloatRange(0, min_open=True),
              metavar="SECONDS", help="End the session when no save has committed for this long.")
@click.option("--listener-timeout", envvar="CKPTWATCH_LISTENER_TIMEOUT", type=click.FloatRange(0, min_open=True),
              metavar="SECONDS", help="Kill a listener run (its whole process group) after this long.")
@click.option("--shutdown-timeout", envvar="CKPTWATCH_SHUTDOWN_TIMEOUT", type=click.FloatRange(0), default=20.0,
              metavar="SECONDS", help="On SIGTERM/SIGINT, how long queued listener runs may still run before end.")
@click.option("--on-stop", envvar="CKPTWATCH_ON_STOP", default="file", metavar="file|signal:NAME",
              help="With -- COMMAND: after a stop request's file is written, also send signal NAME (SIGTERM, "
              "SIGINT...) to the command's process group, for training that cannot read the stop file.")
@click.option("--role", envvar="CKPTWATCH_ROLE", type=click.Choice(["chief", "worker", "auto"]), default="chief",
              help="worker: run only listeners with roles = [\"worker\"] and never write the stop file (a sidecar "
              "per host). auto: from TF_CONFIG, RANK or JOB_COMPLETION_INDEX.")
@click.option("--log-format", envvar="CKPTWATCH_LOG_FORMAT", type=click.Choice(["auto", "text", "json"]),
              default="auto", help="auto: rich on a terminal, plain lines otherwise; json: JSON lines.")
@_report_options
@click.option("--storage-option", "storage_option", multiple=True, envvar="CKPTWATCH_STORAGE_OPTION",
              metavar="KEY=VALUE", show_default=False,
              help="For a URL DIR (s3://, gs://): an fsspec storage option (endpoint_url=..., anon=true); "
              "repeatable.")
@click.pass_context
def run(ctx: click.Context, **options: Any) -> None:
    """Watch DIR and run listeners at begin, before_save, after_save and end.

    \b
    Examples:
      ckptwatch run runs/demo -- python examples/train.py runs/demo
      ckptwatch run /ckpt --once -l listeners.d      # CI: deliver what is there, then end
      ckptwatch run ckpt --expect-steps 20,40 --junit-xml junit.xml -- python train.py ckpt

    \b
    Exit status, the first that applies:
      2    a usage error (one line, before anything starts)
      N    the wrapped command's status when it was not 0 (128+N: killed by signal N)
      4    an expectation (--expect-*, [expect]) did not hold
      1    a listener run failed or timed out
      0    otherwise (a stop request is not a failure)
    """
    import os

    from .config import Config, ConfigError
    from .report.console import setup_logging
    from .engine import UsageError, run as run_engine

    global _watcher_ran
    _watcher_ran = True
    options.pop("config_file")
    options["listeners"] = _listener_args(options["listeners"])
    options["command"] = tuple(options["command"])
    options["storage_option"] = tuple(options["storage_option"])
    try:
        config = Config(listener_settings=ctx.meta.get("listener_settings", {}), **options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    logging_thread = setup_logging(config.log_format, verbose=bool(os.environ.get("CKPTWATCH_DEBUG")))
    try:
        status = run_engine(config)
    except UsageError as exc:
        logging_thread.stop()
        raise click.UsageError(str(exc)) from None
    logging_thread.stop()
    ctx.exit(status)


@cli.command()
@click.argument("dir", type=str)
@click.option("--layout", default="auto", help="auto, or a layout name (see 'ckptwatch layouts').")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=str), help="[default: DIR/.ckptwatch]")
@click.option("--stop-file", type=click.Path(dir_okay=False, path_type=str), help="[default: DIR/ckptwatch.stop]")
@click.option("--storage-option", "storage_option", multiple=True, envvar="CKPTWATCH_STORAGE_OPTION",
              metavar="KEY=VALUE", help="For a URL DIR: an fsspec storage option; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
def doctor(dir: str, layout: str, state_dir: str | None, stop_file: str | None, storage_option: tuple[str, ...],
           as_json: bool) -> None:
    """What ckptwatch sees in DIR (a directory or a URL) now: layout and why, checkpoints, saves in progress.

    Run it first when a listener does not fire. It only reads.
    """
    from .tools.doctor import examine
    from .config import Config, ConfigError
    from .layouts import UnknownLayout

    try:
        config = Config(dir, layout=layout, state_dir=state_dir, stop_file=stop_file, storage_option=storage_option)
        report = examine(dir, layout, state_dir, stop_file, config.storage_options)
    except (UnknownLayout, ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.UsageError(f"cannot read {dir}: {exc.strerror or exc}") from None
    click.echo(report.to_json() if as_json else "\n".join(report.lines()))


@cli.command()
@click.argument("dir", required=False, type=click.Path(file_okay=False, path_type=str))
@click.option("--state-dir", envvar="CKPTWATCH_STATE_DIR", type=click.Path(file_okay=False, path_type=str),
              help="The watcher's state directory.  [default: DIR/.ckptwatch]")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_context
def status(ctx: click.Context, dir: str | None, state_dir: str | None, as_json: bool) -> None:
    """Is a watcher running, what it saw last, how each listener fares; from the state directory alone.

    Works from another process or container, and after the watcher died.
    Exit status: 0 when a watcher is running and nothing is stale, 1 otherwise
    (a container health check or a Kubernetes probe can call it).
    """
    from .config import Config
    from .tools.status import examine, lines

    if state_dir is None and dir is None:
        raise click.UsageError("pass DIR or --state-dir PATH (or set CKPTWATCH_STATE_DIR)")
    # the state dir that `run DIR` uses: DIR/.ckptwatch, or a local one for a URL
    report = examine(Config(dir=dir or ".", state_dir=state_dir).state_path)
    if as_json:
        import json

        click.echo(json.dumps(report, indent=2, default=str))
    elif sys.stdout.isatty():
        from .tools.status import render_rich

        render_rich(report)
    else:
        click.echo("\n".join(lines(report)))
    ctx.exit(0 if report["healthy"] else 1)


@cli.command("layouts")
def layouts_command() -> None:
    """List the layouts: what each treats as a save starting and as its commit (on disk, on object stores)."""
    from .layouts import REGISTRY, layout_class

    rows = [(name, layout_class(name)) for name in REGISTRY]
    width = max(len(name) for name, _ in rows)
    for name, cls in rows:
        click.echo(f"{name:<{width}}  {cls.framework}")
        click.echo(f"{'':<{width}}    starts:  {cls.starts}")
        click.echo(f"{'':<{width}}    commits: {cls.commits}")
        click.echo(f"{'':<{width}}    s3/gs:   {cls.object_store or 'not on object stores'}")


@cli.command("listeners")
def listeners_command() -> None:
    """List the Python listeners installed packages offer (entry point group ckptwatch.listeners).

    Run one with -l NAME, or [listener.X] class = "NAME" in ckptwatch.toml.
    Nothing is imported to list them.
    """
    from .tools.listeners import installed, lines

    for line in lines(installed()):
        click.echo(line)


@cli.command("init")
@click.argument("dir", default=".", type=click.Path(file_okay=False, path_type=str))
def init_command(dir: str) -> None:
    """Start listeners in DIR (default: here): listeners.d/ with a script and a Python class, ckptwatch.toml.

    Every file is commented; an existing file is never overwritten. Then:
    ckptwatch check, and ckptwatch simulate to see them run.
    """
    from .tools.init import init

    try:
        made = init(dir)
    except OSError as exc:
        raise click.UsageError(f"cannot write in {dir}: {exc.strerror}") from None
    for path in made.created:
        click.echo(f"created  {path}")
    for path in made.kept:
        click.echo(f"kept     {path} (it exists; not overwritten)")
    where = "" if dir in (".", "./") else f"cd {dir} && "
    click.echo(f"next:    {where}ckptwatch check && ckptwatch simulate")


@cli.command("check")
@_listener_options
@click.pass_context
def check_command(ctx: click.Context, listeners: tuple[str, ...], config_file: str | None,
                  listener_timeout: float | None) -> None:
    """Read ckptwatch.toml and every listener as run would, one line per listener; exit 2 on any problem.

    Checks: executable, #! interpreter found, not writable by every user,
    the ckptwatch: line, a Python class importable (in a process of its own)
    and a listener class taking its args, settings typed.
    """
    from .tools.check import check

    result = check(_listener_locations(listeners), ctx.meta.get("listener_settings", {}), listener_timeout)
    for line in result.lines:
        click.echo(line)
    for problem in result.problems:
        click.echo(f"problem: {problem}")
    ok = sum(1 for line in result.lines if line.startswith("ok"))
    click.echo(f"{ok} listener(s) ok, {len(result.problems)} problem(s)")
    ctx.exit(0 if result.ok else EXIT_USAGE)


@cli.command("fire")
@click.argument("event", type=click.Choice(["begin", "before_save", "after_save", "end"]))
@click.option("--step", type=int, help="The step.  [default: the newest checkpoint's in DIR]")
@click.option("--checkpoint", type=click.Path(path_type=str),
              help="The checkpoint path.  [default: the one at --step (or the newest) in DIR]")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False, path_type=str),
              help="The checkpoint directory.  [default: .]")
@click.option("--layout", envvar="CKPTWATCH_LAYOUT", default="auto", help="auto, or a layout name.")
@click.option("--stop-file", envvar="CKPTWATCH_STOP_FILE", type=click.Path(dir_okay=False, path_type=str),
              help="Given to listeners; never written by fire.  [default: DIR/ckptwatch.stop]")
@click.option("--log-format", envvar="CKPTWATCH_LOG_FORMAT", type=click.Choice(["auto", "text", "json"]),
              default="auto", help="auto: rich on a terminal, plain lines otherwise; json: JSON lines.")
@_listener_options
@click.pass_context
def fire_command(ctx: click.Context, event: str, step: int | None, checkpoint: str | None, directory: str,
                 layout: str, stop_file: str | None, log_format: str, listeners: tuple[str, ...],
                 config_file: str | None, listener_timeout: float | None) -> None:
    """Run the listeners for one EVENT now, exactly as run would; exit 0, 1 (one failed) or 3 (one asked to stop).

    \b
    Examples:
      ckptwatch fire after_save --dir /ckpt            # the newest checkpoint there
      ckptwatch fire after_save --dir /ckpt --step 500 -l listeners.d/20-upload
    No stop file is written and the journal is not touched.
    """
    from .report.console import setup_logging
    from .tools.fire import FireError, fire

    global _watcher_ran
    _watcher_ran = True  # listener processes to end: the normal teardown
    thread = setup_logging(log_format)  # type: ignore[arg-type]
    try:
        status = fire(event, step=step, checkpoint=checkpoint, directory=directory,
                      locations=_listener_locations(listeners), settings=ctx.meta.get("listener_settings", {}),
                      layout=layout, stop_file=stop_file, listener_timeout=listener_timeout)
    except FireError as exc:
        thread.stop()
        raise click.UsageError(str(exc)) from None
    thread.stop()
    ctx.exit(status)


@cli.command("simulate")
@click.option("--layout", default="tf", show_default=True,
              type=click.Choice(["tf", "hf", "dcp", "orbax", "deepspeed", "torch", "lightning"]),
              help="The framework's save protocol to fake.")
@click.option("--saves", default=5, show_default=True, type=click.IntRange(1), help="How many saves.")
@click.option("--every", default=1.0, show_default=True, type=click.FloatRange(0), metavar="SECONDS",
              help="Seconds between saves.")
@click.option("--step-size", default=100, show_default=True, type=click.IntRange(1), help="Steps between saves.")
@click.option("--keep", is_flag=True, help="Keep the temporary directory (its path is logged).")
@click.option("--log-format", envvar="CKPTWATCH_LOG_FORMAT", type=click.Choice(["auto", "text", "json"]),
              default="auto", help="auto: rich on a terminal, plain lines otherwise; json: JSON lines.")
@_listener_options
@click.pass_context
def simulate_command(ctx: click.Context, layout: str, saves: int, every: float, step_size: int, keep: bool,
                     log_format: str, listeners: tuple[str, ...], config_file: str | None,
                     listener_timeout: float | None) -> None:
    """A fake training run that saves (real-looking files) into a temporary directory, watched live.

    ckptwatch run wraps it and runs your listeners on each save; it ends at
    the last save or when a listener asks for a stop. Exit status: run's.

    \b
    Example:
      ckptwatch simulate --layout hf --saves 5 --every 0.5 -l listeners.d
    """
    from .engine import UsageError
    from .tools.simulate import simulate

    global _watcher_ran
    _watcher_ran = True
    try:
        status = simulate(layout=layout, saves=saves, every=every, step_size=step_size,
                          locations=_listener_args(listeners), settings=ctx.meta.get("listener_settings", {}),
                          log_format=log_format, listener_timeout=listener_timeout, keep=keep)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.exit(status)


def _negative_poll(argv: list[str]) -> str | None:
    """``--poll -1``: click reads "-1" as an option (the value is optional); say what is wrong."""
    for i, arg in enumerate(argv):
        if arg == "--":
            return None
        value = arg[len("--poll="):] if arg.startswith("--poll=") else argv[i + 1] if arg == "--poll" and i + 1 < len(
            argv) else None
        if value is not None and value.startswith("-") and value[1:].replace(".", "", 1).isdigit():
            return value
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and exit 2."""
    args = sys.argv[1:] if argv is None else argv
    negative = _negative_poll(args)
    if negative is not None:
        click.echo(f"ckptwatch run: error: --poll must be 0 (never poll) or more seconds, not {negative}", err=True)
        return EXIT_USAGE
    try:
        # Without standalone mode, click returns ctx.exit()'s status instead of exiting.
        status = cli.main(args=args, prog_name="ckptwatch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("ckptwatch: aborted", err=True)
        return 130
    except click.ClickException as exc:
        command = exc.ctx.command_path if getattr(exc, "ctx", None) else "ckptwatch"
        click.echo(f"{command}: error: {exc.format_message()}", err=True)
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    return status if isinstance(status, int) else 0


def entry() -> None:
    """The ``ckptwatch`` command: :func:`main`, then exit.

    The interpreter's teardown (freeing every module) costs about 5 ms, a
    tenth of ``--help``'s budget. Help, version, ``layouts``, ``doctor`` and
    usage errors leave nothing running that needs it, so they flush their
    output and leave at once; ``run`` exits the normal way.
    """
    import os

    status = main()
    if _watcher_ran:
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe (ckptwatch --help | head -1): nothing more to say
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
