"""TensorFlow: the ``checkpoint`` state file of ``Saver`` and ``CheckpointManager``.

A save starts with a ``PREFIX-N_temp/`` directory (sharded saves, the default
of ``MonitoredTrainingSession``) or ``PREFIX-N.*.tempstate<n>`` files
(unsharded). It commits when the state file ``checkpoint`` is replaced by a
rename and names the new prefix. The committed checkpoints are the prefixes the
state file lists whose ``.index`` is there; the path handed to listeners is the
prefix, as ``tf.train.latest_checkpoint`` gives it.

Both start markers can vanish before the commit: ``CheckpointManager`` renames
the files out of ``_temp/`` and removes it about 20 ms before the state file is
renamed in, and ``.tempstate`` files are renamed to their final names. So a
prefix whose ``.index`` or ``.data`` file is there, with a step above the newest
the state file ever named for its base, is a save under way too. For a base the
state file does not name, the prefixes that were in DIR before the watcher set
that floor (another tool's files, or ``tf.train.Checkpoint.write``, which names
none): only those written while it watches are saves under way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from itertools import islice

from .access import Access
from .base import Checkpoint, Layout, Listing, Observation, SaveInProgress

__all__ = ["TFLayout", "parse_state_file"]

STATE_FILE = "checkpoint"
_PATH_LINE = re.compile(rb'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"((?:[^"\\]|\\.)*)"\s*$')
_STEP = re.compile(r"-(\d+)$")
#: How many ``.index`` files detection checks for their data file.
_DETECT_LOOKS = 8
_TEMP_DIR = re.compile(r"^(.+-(\d+))_temp$")
_TEMP_FILE = re.compile(r"^(.+-(\d+))\.(?:data-\d{5}-of-\d{5}|index)\.tempstate\d+$")
#: A prefix's own files, under their final names: ``BASE-N.index``, ``BASE-N.data-00000-of-00001``.
_PREFIX_FILE = re.compile(r"^(.+)-(\d+)\.(?:index|data-\d{5}-of-\d{5})$")
#: The ones the index keeps (the .index: one name per checkpoint); a quick test, per name of a listing.
_KEPT_PREFIX_FILE = re.compile(r".-\d+\.index\Z")
_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b'"': b'"', b"'": b"'", b"\\": b"\\"}


def _unescape(raw: bytes) -> bytes:
    """Undo the C escapes of a text-proto string (``\\"``, ``\\\\``, ``\\ooo``, ``\\xHH``)."""
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        char = raw[i : i + 1]
        if char != b"\\" or i + 1 == len(raw):
            out += char
            i += 1
            continue
        nxt = raw[i + 1 : i + 2]
        octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
        if octal:
            out.append(int(octal.group(0), 8) & 0xFF)
            i += 1 + len(octal.group(0))
        elif nxt == b"x" and re.match(rb"[0-9a-fA-F]{2}", raw[i + 2 : i + 4]):
            out.append(int(raw[i + 2 : i + 4], 16))
            i += 4
        else:
            out += _ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


def parse_state_file(data: bytes) -> tuple[str | None, list[str]]:
    """``(model_checkpoint_path, all_model_checkpoint_paths)`` of a state file."""
    latest: str | None = None
    kept: list[str] = []
    for line in data.splitlines():
        match = _PATH_LINE.match(line)
        if not match:
            continue
        path = os.fsdecode(_unescape(match.group(2)))
        if match.group(1) == b"model_checkpoint_path":
            latest = path
        else:
            kept.append(path)
    return latest, kept


class TFLayout(Layout):
    name = "tf"
    framework = "TensorFlow Saver (TF1) / CheckpointManager (TF2)"
    starts = "PREFIX-N_temp/ dir, PREFIX-N.*.tempstate file, or PREFIX-N.index/.data above the state file's newest"
    commits = "'checkpoint' state file renamed in, naming PREFIX-N (its .index present)"
    object_store = "the 'checkpoint' object (written whole; TF's rename is a copy there) names PREFIX-N (relative, or a full URL under DIR) whose .index object is there"

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        self._real_root = os.path.realpath(root)
        # Per prefix base ("model.ckpt"): the newest step the state file named at an earlier look.
        self._newest_listed: dict[str, int] = {}
        self._seen_without_state = False
        self._last: Observation | None = None
        #: Per prefix the state file named at the last read, its checkpoint then (to skip the lstat).
        self._known: dict[str, Checkpoint] = {}
        #: The top-level names of every ``.index`` the state file named at the last read,
        #: there or not yet: a change at one of them needs a new look.
        self._index_names: set[str] = set()
        #: Start markers there now (``_temp/`` dirs, ``.tempstate`` files): name -> the save.
        self._marks: dict[str, SaveInProgress] = {}
        #: Per base, the step at or below which a prefix's files are no save under way:
        #: the newest the state file named, or (a base it never named) the newest that was
        #: in DIR before the watcher.
        self._floor: dict[str, int] = {}
        #: Files of prefixes above their floor when last seen: name -> (base, step, prefix).
        self._above: dict[str, tuple[str, int, str]] = {}
        self._floor_found = False

    name_pattern_hint = r"\Acheckpoint\Z|\.tempstate|_temp\Z|-\d+\.index\Z"
    fixed_markers = (STATE_FILE,)

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        # A prefix's .index too (one name per checkpoint, not its data shards): a look at
        # everything (and detection) finds a save under way by it. A look after a
        # notification reads only the names it hints at, so 10,000 checkpoints cost it nothing.
        if is_dir:
            return name.endswith("_temp")
        return name == STATE_FILE or ".tempstate" in name or _KEPT_PREFIX_FILE.search(name) is not None

    @classmethod
    def only_a_part(cls, name: str) -> bool:
        return bool(_PREFIX_FILE.match(name))

    def _matters(self, name: str) -> bool:
        """Whether a change at ``name`` can change what a scan sees."""
        if name == STATE_FILE or name.endswith("_temp") or ".tempstate" in name:
            return True
        if name in self._index_names or name in self._above:
            return True
        match = _PREFIX_FILE.match(name)
        return match is not None and int(match.group(2)) > self._floor.get(match.group(1), -1)

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        if STATE_FILE in listing.files:
            return "state file 'checkpoint' at the top"
        for name in listing.dirs:
            if _TEMP_DIR.match(name):
                return f"save directory {name}/ being written"
        for name in listing.files:
            if ".tempstate" in name and _TEMP_FILE.match(name):
                return f"save file {name} being written"  # an unsharded save's first file
        bundles = (n for n in listing.files if n.endswith(".index") and _PREFIX_FILE.match(n))
        for name in islice(bundles, _DETECT_LOOKS):  # a TensorFlow bundle: the .index and its data
            data = name[: -len(".index")] + ".data-00000-of-00001"
            if listing.access.stat(data) is not None:
                return f"checkpoint files {name} and {data}"
        return None

    def scan(self, listing: Listing) -> Observation:
        last = self._last
        if last is not None and listing.changed is not None and not any(map(self._matters, listing.changed)):
            # Only the files of older prefixes moved (rotation, a .meta): the state file
            # and the saves under way are as the last look left them.
            return Observation(list(last.committed), list(last.in_progress))
        full = listing.changed is None or last is None
        obs = Observation()
        self._look_at_marks(listing, full)
        # Before the state file is read: a prefix seen here and committed by then is named in it.
        self._look_at_prefixes(listing, full)
        if STATE_FILE not in listing.files:
            self._seen_without_state = True
        else:
            obs.committed = self._committed(listing, obs.problems)
            obs.committed += self._between_looks(listing, obs)
            obs.committed.sort(key=lambda c: c.step)
        if not self._floor_found and listing.complete:
            self._floor_found = True  # the first look at all of DIR
            if listing.as_found:
                self._first_floor()
        obs.in_progress = _unique([*self._marks.values(), *self._starting()])
        self._last = obs
        return obs

    def _look_at_marks(self, listing: Listing, full: bool) -> None:
        """The ``_temp/`` dirs and ``.tempstate`` files there now (a hinted look: only the hinted names)."""
        if full:
            self._marks = {}
            names: Iterable[str] = [*listing.dirs, *(n for n in listing.files if ".tempstate" in n)]
        else:
            names = listing.changed or ()
        for name in names:
            self._marks.pop(name, None)
            if name in listing.dirs:
                match = _TEMP_DIR.match(name)
            elif name in listing.files and ".tempstate" in name:
                match = _TEMP_FILE.match(name)
            else:
                continue
            if match:
                self._marks[name] = SaveInProgress(int(match.group(2)), match.group(1))

    def _look_at_prefixes(self, listing: Listing, full: bool) -> None:
        """Files of prefixes above their floor: a full look reads the ``.index`` names the
        index keeps; a hinted look only the hinted names (a data shard is not in the index:
        one ``lstat``, and only above the floor)."""
        if full:
            self._above = {}
            for name in listing.files:
                match = _PREFIX_FILE.match(name) if name.endswith(".index") else None
                if match and int(match.group(2)) > self._floor.get(match.group(1), -1):
                    self._above[name] = _prefix_of(match)
            return
        for name in listing.changed or ():
            match = _PREFIX_FILE.match(name)
            if match is None:
                continue
            if int(match.group(2)) <= self._floor.get(match.group(1), -1):
                self._above.pop(name, None)
                continue
            there = name in listing.files if self.interesting(name, False) else self.stat(name) is not None
            if there:
                self._above[name] = _prefix_of(match)
            else:
                self._above.pop(name, None)

    def _first_floor(self) -> None:
        """Prefixes that were in DIR before the watcher, of a base the state file does not name, are no saves under way."""
        present: dict[str, int] = {}
        for base, step, _ in self._above.values():
            if base not in self._floor:
                present[base] = max(step, present.get(base, step))
        self._floor.update(present)

    def _starting(self) -> list[SaveInProgress]:
        """Prefixes above their floor: files in place, not named by the state file yet."""
        saves = {}
        for name, (base, step, prefix) in list(self._above.items()):
            if step <= self._floor.get(base, -1):
                del self._above[name]  # named by the state file since: committed (or dropped)
            else:
                saves[prefix] = SaveInProgress(step, prefix)
        return list(saves.values())

    def _between_looks(self, listing: Listing, obs: Observation) -> list[Checkpoint]:
        """Saves committed and dropped from the state file between two looks.

        The state file lists only the newest ``max_to_keep``; in a burst of
        saves a look can come after several commits. A saver commits in
        order, so a prefix of the same base whose ``.index`` is here, with a
        step between the newest listed at the previous look and the newest
        listed now, was committed by a state file we did not see (a save in
        progress has a step above the newest listed, or a ``_temp`` dir).
        """
        newest: dict[str, int] = {}
        listed = set()
        for checkpoint in obs.committed:
            base = checkpoint.path[: checkpoint.path.rfind("-")]
            newest[base] = max(newest.get(base, checkpoint.step), checkpoint.step)
            listed.add(checkpoint.path)
        starting = {save.path for save in self._marks.values()}
        found = []
        for base, step in newest.items():
            # A first look at a state file fills nothing (older prefixes may be another
            # run's), unless this session saw DIR without one: then all came since.
            before = self._newest_listed.get(base, -1 if self._seen_without_state else None)
            self._newest_listed[base] = step if before is None else max(step, before)
            if before is None or step - before < 2:
                continue
            # The index knows only the names whose notifications were handled; the state
            # file was read just now. A listing taken after that read holds every .index
            # the state file implies, so the saves it dropped come with it, in step order.
            for name in self._index_files(base):
                prefix = name[: -len(".index")]
                match = _STEP.search(prefix)
                if not match or prefix[: match.start()] != base:
                    continue
                number = int(match.group(1))
                if before < number < step and prefix not in listed and prefix not in starting:
                    index = self.stat(name)
                    if index is not None:
                        found.append(Checkpoint(self.name, number, prefix, name, index.st_mtime_ns, index.st_size))
        return found

    def diagnose(self) -> list[str]:
        found: list[str] = []
        data = self.read_marker(STATE_FILE, found)
        if not data:
            return found
        latest, kept = parse_state_file(data)
        for named in dict.fromkeys([*kept, *([latest] if latest else [])]):
            prefix = self._resolve(named, [])
            if prefix is not None and self.stat(prefix + ".index") is None:
                found.append(f"'checkpoint' names {named}, whose .index is missing "
                             "(rotated, or the state file is ahead of the disk)")
        return found

    def _index_files(self, base: str) -> list[str]:
        """``BASE-N.index`` names in DIR now (a listing of DIR: only when a look fell behind)."""
        head = os.path.basename(base) + "-"
        prefix = os.path.dirname(base)
        names = [n for n in self.fs.names(prefix) if n.startswith(head) and n.endswith(".index")]
        return [os.path.join(prefix, n) if prefix else n for n in names]

    def _committed(self, listing: Listing, problems: list[str]) -> list[Checkpoint]:
        known, self._known = self._known, {}
        self._index_names = set()
        data = self.read_marker(STATE_FILE, problems)
        if data is None:
            return []
        latest, kept = parse_state_file(data)
        if latest is None:
            if data.strip():
                problems.append("'checkpoint' has no model_checkpoint_path line; not read as a TensorFlow state file")
            return []
        found: dict[str, Checkpoint] = {}
        for named in [*kept, latest]:
            prefix = self._resolve(named, problems)
            if prefix is None or prefix in found:
                continue
            step_match = _STEP.search(prefix)
            if not step_match:
                problems.append(f"'checkpoint' names {named!r}, which has no -STEP suffix; ignored")
                continue
            step = int(step_match.group(1))
            base = prefix[: step_match.start()]
            if step > self._floor.get(base, -1):
                self._floor[base] = step
            marker = prefix + ".index"
            top = marker.split("/", 1)[0]
            self._index_names.add(top)
            earlier = known.get(prefix)
            if earlier is not None and listing.changed is not None and top not in listing.changed:
                found[prefix] = self._known[prefix] = earlier  # no notification about it since: as it was
                continue
            index = self.stat(marker)
            if index is None:
                continue  # rotated away, or the state file is ahead of the disk
            found[prefix] = self._known[prefix] = Checkpoint(
                self.name, step, prefix, marker, index.st_mtime_ns, index.st_size
            )
        return sorted(found.values(), key=lambda c: c.step)

    def _resolve(self, named: str, problems: list[str]) -> str | None:
        """The prefix relative to DIR, or None when it points out of DIR.

        TF1 writes absolute paths; a sidecar sees the same volume elsewhere.
        An absolute path whose name exists in DIR is taken as that name.
        """
        if self.fs.remote and "://" in named:
            return self._resolve_url(named, problems)
        if not os.path.isabs(named):
            if self.inside(named):
                return os.path.normpath(named)
            problems.append(f"'checkpoint' names {named!r}, outside DIR; ignored")
            return None
        parent, base = os.path.split(os.path.normpath(named))
        if os.path.realpath(parent) == self._real_root:
            return base
        if self.stat(base + ".index") is not None:
            problems.append(f"'checkpoint' names paths under {parent}; using the same names in DIR "
                            "(the volume is mounted elsewhere here)")
            return base
        if os.path.lexists(named + ".index"):
            problems.append(f"'checkpoint' names {named!r}, outside DIR; ignored")
        return None  # else rotated away, as seen from here

    def _resolve_url(self, named: str, problems: list[str]) -> str | None:
        """TF1 on an object store names ``gs://bucket/run/model.ckpt-100``: inside DIR when under its URL."""
        head = self.root.rstrip("/") + "/"
        rel = named[len(head):] if named.startswith(head) else None
        if rel and self.inside(rel):
            return os.path.normpath(rel)
        problems.append(f"'checkpoint' names {named!r}, outside DIR; ignored")
        return None


def _prefix_of(match: re.Match[str]) -> tuple[str, int, str]:
    """``(base, step, prefix)`` of a ``_PREFIX_FILE`` match."""
    return match.group(1), int(match.group(2)), f"{match.group(1)}-{match.group(2)}"


def _unique(saves: list[SaveInProgress]) -> list[SaveInProgress]:
    return sorted({(s.step, s.path): s for s in saves}.values(), key=lambda s: (s.step, s.path))
