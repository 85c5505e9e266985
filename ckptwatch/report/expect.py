"""Expectations of a CI smoke check (``--expect-*``, ``[expect]``), checked when the watcher ends.

Each one held or not, with one line that says what was expected and what was
seen instead (``expected checkpoints at steps 100,200,300; committed:
100,200 (300 started at 12:01:07, never committed)``). All are checked, not
only the first that failed; one that did not hold makes the exit status 4
(after a usage error and the wrapped command's own failure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .hub import Verdict

if TYPE_CHECKING:
    from ..config import Config
    from .record import SessionRecord

__all__ = ["Expectations", "check"]


@dataclass(frozen=True)
class Expectations:
    checkpoints: int | None = None
    steps: tuple[int, ...] | None = None
    last_step: int | None = None
    #: True: a stop must be requested; False: none may be.
    stop: bool | None = None
    within: float | None = None

    @classmethod
    def from_config(cls, config: Config) -> Expectations:
        return cls(config.expect_checkpoints, config.expect_steps, config.expect_last_step, config.expect_stop,
                   config.expect_within)

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.checkpoints, self.steps, self.last_step, self.stop,
                                                   self.within))


def check(expect: Expectations, record: SessionRecord) -> tuple[Verdict, ...]:
    """Every expectation set, in the order of the options."""
    verdicts = []
    steps = [c.step for c in record.commits]
    committed = _steps(steps)
    unfinished = "".join(f" ({s.step} started at {_clock(s.started)}, never committed)"
                         for s in record.never_committed())
    if expect.checkpoints is not None:
        held = len(steps) >= expect.checkpoints
        wanted = f"at least {expect.checkpoints} checkpoint(s)"
        seen = f"{len(steps)} committed" + (f" (steps {committed})" if steps else "") + unfinished
        verdicts.append(_verdict("checkpoints", held, wanted, seen, f"expected {wanted}; {seen}"))
    if expect.steps is not None:
        held = tuple(steps) == expect.steps
        wanted = f"checkpoints at steps {_steps(expect.steps)}"
        seen = f"committed: {committed or 'none'}{unfinished}"
        verdicts.append(_verdict("steps", held, wanted, seen, f"expected {wanted}; {seen}"))
    if expect.last_step is not None:
        held = bool(steps) and steps[-1] == expect.last_step
        wanted = f"the last committed step to be {expect.last_step}"
        seen = f"it was {steps[-1]}" if steps else "none was committed"
        verdicts.append(_verdict("last-step", held, wanted, seen + unfinished, f"expected {wanted}; {seen}{unfinished}"))
    if expect.stop is not None:
        asked = record.stop_asked
        if expect.stop:
            wanted = "a stop request"
            seen = _stop_seen(record) if asked else "none was made"
            verdicts.append(_verdict("stop", bool(asked), wanted, seen, f"expected {wanted}; {seen}"))
        else:
            wanted = "no stop request"
            seen = _stop_seen(record) if asked else "none was made"
            verdicts.append(_verdict("no-stop", not asked, wanted, seen, f"expected {wanted}; {seen}"))
    if expect.within is not None:
        wanted = f"the first commit within {expect.within:g} s of the start"
        if record.commits:
            after = record.commits[0].committed - record.started
            held = after <= expect.within
            seen = f"it came after {after:.1f} s (step {record.commits[0].step})"
        else:
            held = False
            ended = record.ending.finished if record.ending else time.time()
            seen = f"none came in {ended - record.started:.1f} s" + unfinished
        verdicts.append(_verdict("within", held, wanted, seen, f"expected {wanted}; {seen}"))
    return tuple(verdicts)


def _verdict(name: str, held: bool, wanted: str, seen: str, line: str) -> Verdict:
    return Verdict(name, held, wanted, seen, line)


def _stop_seen(record: SessionRecord) -> str:
    if record.stops:
        first = record.stops[0]
        return f"{first.listener} asked at step {first.step} ({first.reason})"
    event = record.stop_asked[0]
    return f"a stop was asked at step {event.step} (the stop file could not be written)"


def _steps(steps: object) -> str:
    return ",".join(str(s) for s in steps)  # type: ignore[attr-defined]


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))
