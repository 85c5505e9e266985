"""The tracker's guarantees for any sequence of observations (Hypothesis).

Observations are drawn from a small model of a directory: saves start, commit
(in step order or not, several at once), get rescanned, rotated away, re-saved
under the same name with new content, or deleted file by file (so they look
unfinished again). Whatever the sequence, the stream must keep DESIGN.md's
guarantees 1, 2 and 4.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ckptwatch.events import Event
from ckptwatch.layouts.base import Checkpoint, Observation, SaveInProgress
from ckptwatch.tracker import Tracker, TrackerError

NAMES = [f"ckpt-{n}" for n in (1, 2, 3, 5, 8)]


def checkpoint(name: str, version: int) -> Checkpoint:
    step = int(name.split("-")[1])
    return Checkpoint("test", step, name, f"{name}/marker", 1000 + version, 10)


@st.composite
def histories(draw):
    """Observations, each a snapshot of a modelled directory, and the names that really started a save."""
    committed: dict[str, int] = {}  # name -> content version
    versions = {name: 0 for name in NAMES}
    starting: set[str] = set()
    really_started: set[str] = set()
    observations = []
    for _ in range(draw(st.integers(1, 25))):
        action = draw(st.sampled_from(["start", "commit", "rotate", "resave", "rescan", "delete-slowly"]))
        name = draw(st.sampled_from(NAMES))
        if action == "start":
            starting.add(name)
            really_started.add(name)
        elif action == "commit":
            for chosen in draw(st.sets(st.sampled_from(NAMES), min_size=1, max_size=3)):
                versions[chosen] += 1
                committed[chosen] = versions[chosen]
                starting.discard(chosen)
        elif action == "rotate":
            committed.pop(name, None)
        elif action == "resave" and name in committed:
            versions[name] += 1
            committed[name] = versions[name]
        elif action == "delete-slowly" and name in committed:
            del committed[name]
            observations.append(Observation(in_progress=[SaveInProgress(int(name.split("-")[1]), name)]))
            continue
        in_progress = [SaveInProgress(int(n.split("-")[1]), n) for n in sorted(starting)]
        done = [checkpoint(n, v) for n, v in committed.items()]
        observations.append(Observation(committed=draw(st.permutations(done)), in_progress=in_progress))
    return observations, really_started


def run(observations: list[Observation]) -> tuple[list[Event], list[list[Event]]]:
    tracker = Tracker()
    stream = [tracker.begin()]
    batches = []
    for observation in observations:
        batch = tracker.observe(observation)
        batches.append(batch)
        stream += batch
    stream.append(tracker.end())
    return stream, batches


@settings(max_examples=400, deadline=None)
@given(histories())
def test_stream_keeps_the_guarantees(history):
    observations, really_started = history
    stream, batches = run(observations)
    names = [e.name for e in stream]
    # 1 and 4: begin first and once, end last and once.
    assert names[0] == "begin" and names.count("begin") == 1
    assert names[-1] == "end" and names.count("end") == 1
    # 2: every commit seen gets exactly one after_save, preceded by its before_save.
    seen = {c.identity for o in observations for c in o.committed}
    delivered = [e.identity for e in stream if e.name == "after_save"]
    assert sorted(delivered) == sorted(seen)
    open_saves: set[tuple[str, int]] = set()
    for event in stream[1:-1]:
        key = (event.checkpoint, event.step)
        if event.name == "before_save":
            assert key not in open_saves, f"two before_save without an after_save: {key}"
            open_saves.add(key)
        else:
            assert key in open_saves, f"after_save without before_save: {key}"
            open_saves.discard(key)
    # A before_save marked observed is a save that really started (not one being deleted).
    for event in stream:
        if event.name == "before_save" and event.observed:
            assert event.checkpoint in really_started, f"{event.checkpoint} never started a save"
    # Several new commits in one observation: step order.
    for batch in batches:
        steps = [e.step for e in batch if e.name == "after_save"]
        assert steps == sorted(steps)
    # 4: end carries the last committed step.
    last_after = [e for e in stream if e.name == "after_save"]
    assert stream[-1].step == (last_after[-1].step if last_after else None)


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 25))
def test_restart_from_journal_state_repeats_nothing(history, cut):
    """A tracker rebuilt from what the first one delivered emits nothing twice."""
    observations, _ = history
    first = Tracker()
    first.begin()
    delivered: list[Event] = []
    for observation in observations[:cut]:
        delivered += first.observe(observation)
    after = [e for e in delivered if e.name == "after_save"]
    announced = set()
    for e in delivered:
        key = (e.checkpoint, e.step)
        if e.name == "before_save":
            announced.add(key)
        else:
            announced.discard(key)
    second = Tracker(
        delivered={e.identity for e in after},
        announced=announced,
        committed={(e.checkpoint, e.step) for e in after},
    )
    second.begin()
    again: list[Event] = []
    for observation in observations[cut:]:
        again += second.observe(observation)
    both = [e.identity for e in delivered + again if e.name == "after_save"]
    assert len(both) == len(set(both))
    seen = {c.identity for o in observations for c in o.committed}
    assert set(both) == seen


def test_order_is_enforced():
    tracker = Tracker()
    try:
        tracker.observe(Observation())
    except TrackerError:
        pass
    else:
        raise AssertionError("observe before begin must raise")
    tracker.begin()
    tracker.end()
    try:
        tracker.end()
    except TrackerError:
        pass
    else:
        raise AssertionError("a second end must raise")
