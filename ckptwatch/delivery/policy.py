"""Per-listener policy: how often a listener acts, what a failure does, and falling behind.

Set in ``[listener.NAME]`` of ckptwatch.toml or, for a script, in its
``# ckptwatch:`` line (``# ckptwatch: events=after_save every_n_steps=1000``):

- ``every_n_steps = N`` / ``every_n_secs = S``: TensorFlow's
  ``SecondOrStepTimer`` applied to saves. ``after_save`` runs for the first
  save, then only for a save N steps (S seconds) or more after the last save
  it ran for; ``before_save`` follows the same choice. A step lower than the
  last one run for (a new run or a resume) runs. ``end`` always runs, and its
  ``last_step_handled`` says whether the last checkpoint was handled.
- ``on_failure``: ``continue`` (default), ``retry:N`` (run again up to N
  times, after 1, 2, 4... seconds), ``stop-training`` (a failed run writes the
  stop file, naming the failure), ``stop-watcher`` (end the session: ``end``
  for the other listeners, exit 1).
- ``coalesce = true``: a listener that falls behind skips to the newest
  committed checkpoint; the saves it skips are journaled as skipped.

Parsing is pure and shared by the config, the script header and ``ckptwatch
check``; :class:`Schedule` is the timer, kept per listener by the dispatcher.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ON_FAILURE", "POLICY_KEYS", "Policy", "PolicyError", "Schedule", "parse_policy"]

#: The words of ``on_failure`` (``retry`` takes ``:N``).
ON_FAILURE = ("continue", "retry:N", "stop-training", "stop-watcher")
#: The keys this module reads from a ``[listener.NAME]`` table or a header line.
POLICY_KEYS = frozenset({"every_n_steps", "every_n_secs", "on_failure", "coalesce"})
#: Longest pause before a retry, in seconds.
MAX_BACKOFF = 30.0


class PolicyError(ValueError):
    """A policy setting that cannot be used; the message names the key and what it takes."""


@dataclass(frozen=True)
class Policy:
    every_n_steps: int | None = None
    every_n_secs: float | None = None
    #: continue | retry | stop-training | stop-watcher
    on_failure: str = "continue"
    #: With ``on_failure = "retry:N"``: N.
    retries: int = 0
    coalesce: bool = False

    @property
    def scheduled(self) -> bool:
        return self.every_n_steps is not None or self.every_n_secs is not None

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...): 1, 2, 4, ... at most ``MAX_BACKOFF``."""
        return min(MAX_BACKOFF, 2.0 ** (attempt - 2))

    def describe(self) -> str:
        """The settings that differ from the defaults, as header words (for ``check`` and logs)."""
        words = []
        if self.every_n_steps is not None:
            words.append(f"every_n_steps={self.every_n_steps}")
        if self.every_n_secs is not None:
            words.append(f"every_n_secs={self.every_n_secs:g}")
        if self.on_failure != "continue":
            words.append("on_failure=" + (f"retry:{self.retries}" if self.on_failure == "retry" else self.on_failure))
        if self.coalesce:
            words.append("coalesce=true")
        return " ".join(words)


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise PolicyError(f"{key} must be a whole number above 0, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PolicyError(f"{key} must be a whole number above 0, not {value!r}")
    return value


def _as_secs(key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PolicyError(f"{key} must be a number of seconds above 0, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise PolicyError(f"{key} must be a number of seconds above 0, not {value!r}")
    return float(value)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if not isinstance(value, bool):
        raise PolicyError(f"{key} must be true or false, not {value!r}")
    return value


def _on_failure(value: Any) -> tuple[str, int]:
    words = ", ".join(ON_FAILURE)
    if not isinstance(value, str):
        raise PolicyError(f"on_failure must be one of {words}, not {value!r}")
    text = value.strip()
    if text in ("continue", "stop-training", "stop-watcher"):
        return text, 0
    kind, colon, count = text.partition(":")
    if kind == "retry":
        if not colon:
            raise PolicyError("on_failure = retry needs a count: retry:N (run again up to N times)")
        try:
            retries = int(count)
        except ValueError:
            retries = 0
        if retries <= 0 or str(retries) != count.strip():
            raise PolicyError(f"on_failure = {text}: N in retry:N must be a whole number above 0")
        return "retry", retries
    raise PolicyError(f"on_failure must be one of {words}, not {text!r}")


def parse_policy(settings: Mapping[str, Any]) -> Policy:
    """The policy named by ``settings`` (a config table or header words; other keys are ignored).

    Header words arrive as strings, config values typed; both are checked the
    same way. Raises :class:`PolicyError`.
    """
    steps = _as_int("every_n_steps", settings["every_n_steps"]) if "every_n_steps" in settings else None
    secs = _as_secs("every_n_secs", settings["every_n_secs"]) if "every_n_secs" in settings else None
    if steps is not None and secs is not None:
        raise PolicyError("every_n_steps and every_n_secs cannot both be set (TensorFlow's timer takes one)")
    kind, retries = _on_failure(settings["on_failure"]) if "on_failure" in settings else ("continue", 0)
    coalesce = _as_bool("coalesce", settings["coalesce"]) if "coalesce" in settings else False
    return Policy(steps, secs, kind, retries, coalesce)


@dataclass
class Schedule:
    """``SecondOrStepTimer`` over saves, for one listener (engine thread only).

    A save's fate is decided once, at its ``before_save`` when that comes
    first, and its ``after_save`` follows it; the timer moves only when an
    ``after_save`` runs ("the last save it ran for").
    """

    policy: Policy
    clock: Callable[[], float] = time.monotonic
    _last_step: int | None = None
    _last_time: float = 0.0
    _decided: dict[tuple[str | None, int], bool] = field(default_factory=dict)

    def allows(self, name: str, step: int | None, checkpoint: str | None) -> bool:
        """Whether this listener runs for this event (only saves are scheduled)."""
        if not self.policy.scheduled or step is None or name not in ("before_save", "after_save"):
            return True
        key = (checkpoint, step)
        if name == "before_save":
            if len(self._decided) > 1000:  # saves seen starting that never committed
                self._decided.clear()
            decision = self._decided[key] = self._due(step)
            return decision
        decision = self._decided.pop(key, None)
        if decision is None:
            decision = self._due(step)
        if decision:
            self._last_step, self._last_time = step, self.clock()
        return decision

    def _due(self, step: int) -> bool:
        last = self._last_step
        if last is None or step < last:
            return True  # the first save, or a new run / a resume
        if step == last:
            return False
        if self.policy.every_n_steps is not None:
            return step >= last + self.policy.every_n_steps
        assert self.policy.every_n_secs is not None
        return self.clock() >= self._last_time + self.policy.every_n_secs
