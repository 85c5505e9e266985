"""Looking at DIR entry by entry, so that a commit costs the same beside 10 or 10,000 checkpoints.

Most layouts decide per top-level entry (``checkpoint-N/``, ``step-N/``, a
``.pt`` file) whether it is a committed checkpoint, a save under way, or
nothing of theirs. :class:`EntryLayout` keeps what each entry said at the last
look (:class:`Found`) and looks again only where something can have changed:

- a look at everything (``Listing.changed`` is None: the first look, a poll
  tick, the safety timer, a relisting) looks at every entry, except that a
  settled checkpoint is reused and read again only every ``settled_every``-th
  such pass (a re-save in place that no notification told of is still found);
  its observation holds everything DIR holds;
- a hinted look (after notifications) looks at the hinted entries, at those
  that asked to be looked at again (a save under way: a tag or state file
  elsewhere can commit it; a file waiting for its second look; a directory
  whose watch is new) and at the entries ``related`` to any of them. Its
  observation is a delta (``Observation.delta``): the checkpoints of the
  entries looked at; every other entry said what it says at an earlier look,
  and the tracker has it. Saves under way and watches are always whole.

A deleted entry leaves with the notification of its deletion (or at the next
look at everything), and with it what it said.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import ClassVar

from .access import Access
from .base import Checkpoint, Layout, Listing, Observation, SaveInProgress

__all__ = ["EntryLayout", "Found"]


@dataclass(frozen=True)
class Found:
    """What one top-level entry said at the last look at it.

    ``watch``: subdirectories (relative to DIR) to watch while it says so.
    ``again``: look at it at every look, hinted or not (a save under way is
    looked at again anyway).
    """

    committed: tuple[Checkpoint, ...] = ()
    starting: tuple[SaveInProgress, ...] = ()
    watch: tuple[str, ...] = ()
    again: bool = False


class EntryLayout(Layout):
    """A layout whose scan calls :meth:`look_at_entries`; subclasses implement :meth:`look_at`."""

    #: In looks at everything, a settled checkpoint is read again every Nth such look.
    settled_every: ClassVar[int] = 3

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        self._found: dict[str, Found] = {}
        self._again: set[str] = set()
        self._watching: dict[str, tuple[str, ...]] = {}
        self._full_passes = 0
        self._looked = False

    # Hooks ----------------------------------------------------------------------

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        """What top-level entry ``name`` says now; None when it is nothing of this layout's.

        Problems and ``recheck`` go straight into ``obs``.
        """
        raise NotImplementedError

    def related(self, name: str) -> Iterable[str]:
        """Entries whose answer can change when ``name`` changes (NeMo: ``X-unfinished`` -> ``X``)."""
        return ()

    def look_order(self, name: str) -> object:
        """Sort key within one look: an entry that reads what others said comes after them."""
        return name

    def entry_changed(self, name: str, before: Found | None, after: Found | None) -> None:
        """Called when what ``name`` says changes (None: nothing, or gone), for a layout's own tallies."""

    # The looks --------------------------------------------------------------------

    def look_at_entries(
        self, listing: Listing, obs: Observation, *, also: Iterable[str] = (), everything: bool = False
    ) -> None:
        """Update what the entries say and fill ``obs`` from it (see the module's docstring).

        ``also``: more entries to look at (a layout-wide file named them);
        ``everything``: look at every entry now, settled ones included.
        """
        if everything or listing.changed is None or not self._looked:
            self._look_at_everything(listing, obs, reuse=not everything)
        else:
            self._look_at_hinted(listing, obs, set(chain(listing.changed, also)))
        self._looked = True

    def _look_at_everything(self, listing: Listing, obs: Observation, *, reuse: bool) -> None:
        self._full_passes += 1
        reuse = reuse and self._full_passes % self.settled_every != 0
        for name in [n for n in self._found if n not in listing.dirs and n not in listing.files]:
            self._keep(name, None)
        for name in sorted(chain(listing.dirs, listing.files), key=self.look_order):
            known = self._found.get(name)
            if reuse and known is not None and known.committed and name not in self._again:
                continue  # settled: read again at every settled_every-th look at everything
            self._keep(name, self.look_at(name, name in listing.dirs, listing, obs))
        found = self._found.values()
        obs.committed = [c for f in found for c in f.committed]
        obs.in_progress = [s for f in found for s in f.starting]
        obs.watch = sorted(chain.from_iterable(self._watching.values()))

    def _look_at_hinted(self, listing: Listing, obs: Observation, names: set[str]) -> None:
        names |= self._again
        names.update(chain.from_iterable([self.related(n) for n in names]))
        looked: list[Found] = []
        for name in sorted(names, key=self.look_order):
            is_dir = name in listing.dirs
            found = self.look_at(name, is_dir, listing, obs) if is_dir or name in listing.files else None
            self._keep(name, found)
            if found is not None:
                looked.append(found)
        obs.committed = [c for f in looked for c in f.committed]
        obs.in_progress = [s for f in looked for s in f.starting]
        obs.watch = sorted(chain.from_iterable(self._watching.values()))
        obs.delta = True

    def _keep(self, name: str, found: Found | None) -> None:
        before = self._found.pop(name, None)
        self._again.discard(name)
        self._watching.pop(name, None)
        if found is not None:
            self._found[name] = found
            new_watch = bool(found.watch) and (before is None or before.watch != found.watch)
            if found.again or found.starting or new_watch:  # a new watch: the look after it is added
                self._again.add(name)
            if found.watch:
                self._watching[name] = found.watch
        if before != found:
            self.entry_changed(name, before, found)
