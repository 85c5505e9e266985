"""``ckptwatch doctor DIR``: what ckptwatch sees in a directory right now, and why.

The first thing to run when a listener does not fire. It looks once (twice
when a layout asks for a second look at a file written in place), the way
``ckptwatch run`` would, and reports: the layout detected and why (and the
other candidates), the committed checkpoints, the saves in progress, the
entries the layout ignores, and anything suspicious. It reads; it writes
nothing, not even the journal.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import layouts
from ..sources.fstype import filesystem_type, needs_polling
from ..delivery.journal import FINISHED, JOURNAL_NAME
from ..layouts.access import Access, LocalAccess
from ..layouts.base import Layout, Listing, Observation
from ..delivery.stopfile import read_stop_file
from ..urls import is_url

__all__ = ["Report", "examine"]

#: A save in progress whose files have not changed for this long is suspicious.
STALE_AFTER = 60.0
_SHOWN = 8


@dataclass
class Report:
    dir: str
    fstype: str | None = None
    notifications: str = ""
    layout: str | None = None
    why: str = ""
    candidates: list[tuple[str, str]] = field(default_factory=list)
    committed: list[dict[str, Any]] = field(default_factory=list)
    in_progress: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    ignored_count: int = 0
    suspicious: list[str] = field(default_factory=list)
    journal: str = ""
    stop_file: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def lines(self) -> list[str]:
        out = [f"directory   {self.dir}", f"file system {self.fstype or 'unknown'}: {self.notifications}"]
        if self.layout:
            out.append(f"layout      {self.layout}: {self.why}")
        else:
            out.append("layout      none recognised (ckptwatch run decides at the first save; see 'ckptwatch layouts')")
        for name, why in self.candidates[1:]:
            out.append(f"            also looks like {name}: {why} (pass --layout NAME to choose)")
        out.append(f"committed   {len(self.committed)}")
        for item in self.committed:
            out.append(f"  step {item['step']:>8}  {item['path']}  (commit marker {item['marker']})")
        out.append(f"in progress {len(self.in_progress)}")
        for item in self.in_progress:
            out.append(f"  step {item['step']:>8}  {item['path']}  (last change {item['age_s']:.0f} s ago)")
        if self.ignored_count:
            shown = ", ".join(self.ignored)
            more = f" and {self.ignored_count - len(self.ignored)} more" if self.ignored_count > len(self.ignored) else ""
            out.append(f"ignored     {self.ignored_count}: {shown}{more} (not part of the {self.layout} layout)")
        out.append(f"journal     {self.journal}")
        out.append(f"stop file   {self.stop_file}")
        out.append(f"suspicious  {len(self.suspicious)}")
        out += [f"  ! {line}" for line in self.suspicious]
        return out


def _view(listing: Listing, cls: type[Layout]) -> Listing:
    return Listing(
        listing.root,
        frozenset(n for n in listing.dirs if cls.interesting(n, True)),
        frozenset(n for n in listing.files if cls.interesting(n, False)),
        fs=listing.fs,
    )


def _age(access: Access, rel: str, listing: Listing | None = None) -> float:
    """Seconds since ``rel`` last changed; for a prefix (TensorFlow), the newest entry it starts."""
    base = os.path.basename(rel)
    names = [n for n in (listing.dirs | listing.files) if n.startswith(base)] if listing else []
    newest = 0.0
    for candidate in [rel, *(os.path.join(os.path.dirname(rel), n) for n in names)]:
        st = access.stat(candidate)
        if st is not None and st.st_mtime_ns:
            newest = max(newest, st.st_mtime_ns / 1e9)
    return time.time() - newest if newest else 0.0


def examine(directory: str, layout: str = "auto", state_dir: str | None = None, stop_file: str | None = None,
            storage_options: dict[str, Any] | None = None) -> Report:
    """Look at ``directory`` (a path or a URL) as ``ckptwatch run`` would. Raises OSError when it cannot be listed.

    For a URL, raises ``urls.MissingProtocol`` (a ValueError) when nothing is
    installed for its protocol, and FileNotFoundError when its bucket is missing.
    """
    from ..config import Config

    config = Config(directory, state_dir=state_dir, stop_file=stop_file)
    root, state_dir, stop_file = config.directory, config.state_path, config.stop_path
    access: Access
    if is_url(directory):
        from ..layouts.access import StoreUnavailable
        from ..sources.objstore import FsspecAccess

        remote = FsspecAccess(root, storage_options)
        try:
            remote.check()
        except StoreUnavailable as exc:
            raise OSError(5, f"cannot reach the store: {exc}") from None
        access = remote
        report = Report(root, f"object store ({root.split('://', 1)[0]})")
        report.notifications = "no notifications: ckptwatch run polls every 5 s (--poll S)"
    else:
        access = LocalAccess(root)
        report = Report(root, filesystem_type(root))
        report.notifications = (
            "no notifications for changes made elsewhere: ckptwatch run polls every 1 s"
            if needs_polling(report.fstype) else "native notifications (inotify)"
        )
    ignore = frozenset(os.path.basename(p) for p in (state_dir, stop_file) if os.path.dirname(p) == root)
    try:
        listing = Listing.read(root, ignore, access if access.remote else None)
    except Exception as exc:  # noqa: BLE001 - a store failing mid-way: one line
        if isinstance(exc, OSError):
            raise
        raise OSError(5, str(exc)) from None
    report.candidates = layouts.detect_all(lambda cls: _view(listing, cls))
    if layout != "auto":
        report.layout, report.why = layout, "chosen with --layout"
    elif report.candidates:
        report.layout, report.why = report.candidates[0]
    if report.layout:
        chosen = layouts.create(report.layout, root, access if access.remote else None)
        cls = type(chosen)
        observation = chosen.scan(_view(listing, cls))
        if observation.recheck is not None:  # a file written in place wants a second look
            time.sleep(min(observation.recheck, 1.0))
            observation = chosen.scan(_view(listing, cls))
        _describe(report, chosen, observation, listing, access)
        owned = [c.path for c in observation.committed] + [s.path for s in observation.in_progress]
        names = sorted(
            n for n in listing.dirs | listing.files
            if (not cls.interesting(n, n in listing.dirs) or cls.only_a_part(n)) and not _part_of(n, owned)
        )
        report.ignored_count = len(names)
        report.ignored = names[:_SHOWN]
    _journal(report, state_dir)
    _stop_file(report, stop_file, access if is_url(stop_file) and stop_file.startswith(root + "/") else None)
    return report


def _part_of(name: str, paths: list[str]) -> bool:
    """Whether a top-level name belongs to one of these checkpoints (``ckpt-10`` owns ``ckpt-10.index``)."""
    return any(name == path.split("/", 1)[0] or name.startswith(path + ".") for path in paths)


def _describe(report: Report, layout: Layout, observation: Observation, listing: Listing, access: Access) -> None:
    for checkpoint in sorted(observation.committed, key=lambda c: (c.step, c.path)):
        report.committed.append({"step": checkpoint.step, "path": checkpoint.path, "marker": checkpoint.marker})
    for save in sorted(observation.in_progress, key=lambda s: (s.step, s.path)):
        age = _age(access, save.path, listing)
        report.in_progress.append({"step": save.step, "path": save.path, "age_s": round(age, 1)})
        if age > STALE_AFTER:
            report.suspicious.append(
                f"save of step {save.step} ({save.path}) has not changed for {age / 60:.0f} min: "
                "a crashed save never commits"
            )
    report.suspicious += list(dict.fromkeys(observation.problems + layout.diagnose()))


def _journal(report: Report, state_dir: str) -> None:
    path = os.path.join(state_dir, JOURNAL_NAME)
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        report.journal = f"none at {path} (a first start)"
        return
    events = runs = 0
    unfinished: dict[tuple[int, str], str] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("r") == "event":
            events += 1
        elif record.get("r") == "run":
            runs += 1
            unfinished[(record.get("id"), record.get("listener"))] = record.get("status", "")
    left = sum(1 for status in unfinished.values() if status not in FINISHED)
    report.journal = f"{path}: {events} event(s), {runs} run record(s), {left} run(s) to resume"


def _stop_file(report: Report, stop_file: str, access: Access | None = None) -> None:
    if access is not None:  # a URL in DIR's store
        rel = stop_file[len(access.root) + 1:]
        got = access.read(rel, 1 << 20) if access.stat(rel) is not None else None
        if got is None:
            report.stop_file = f"none at {stop_file}"
            return
        try:
            body = json.loads(got[0])
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else None
        age = time.time() - got[1].st_mtime_ns / 1e9
    elif is_url(stop_file):
        report.stop_file = f"{stop_file} (in another store: not read)"
        return
    elif not os.path.lexists(stop_file):
        report.stop_file = f"none at {stop_file}"
        return
    else:
        body = read_stop_file(stop_file)
        age = _age(LocalAccess(os.path.dirname(stop_file)), os.path.basename(stop_file))
    if body is None:
        report.stop_file = f"{stop_file} exists but is not a readable stop request"
        return
    report.stop_file = (
        f"{stop_file}: step {body.get('step')} by {body.get('listener')} ({age / 60:.0f} min ago); "
        "training started after it ignores it"
    )
