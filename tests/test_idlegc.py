"""Garbage collection deferred to the engine's idle moments (ckptwatch/idlegc.py), with real cycles."""

from __future__ import annotations

import gc
import weakref

import pytest

from ckptwatch.idlegc import IdleCollector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def normal_gc():
    """Each test starts with CPython's default thresholds and collection on, and leaves them so."""
    saved, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    gc.collect()
    yield
    gc.set_threshold(*saved)
    (gc.enable if enabled else gc.disable)()


def test_cycles_wait_for_collect_and_go_then():
    """Steps: inside the collector, a cycle becomes garbage, then 5,000 more allocations
    (far past the default threshold of 700).
    Result: nothing collected it on the way; ``collect()`` does (generation 0 at least),
    and the thresholds are CPython's again after the block."""
    with IdleCollector() as collector:
        ref = weakref.ref(Node())
        keep = [[] for _ in range(5000)]
        assert ref() is not None, "collected on the way: the threshold was not moved"
        assert collector.due()
        assert collector.collect() is not None
        assert not collector.due()
        assert ref() is None
        assert collector.collect() is None  # nothing past the threshold since
        del keep
    assert gc.get_threshold() == (700, 10, 10)


def test_the_safety_net_still_collects_on_its_own():
    """Steps: a small safety net (2,000); a cycle becomes garbage, then 10,000 allocations
    and no ``collect()`` call. Result: CPython collected it by itself."""
    with IdleCollector(safety_net=2000):
        ref = weakref.ref(Node())
        keep = [[] for _ in range(10_000)]
        assert ref() is None
        del keep


def test_an_older_generation_is_collected_when_its_turn_has_come():
    """Steps: 11 young collections (past the second generation's threshold of 10), each
    through ``collect()``. Result: the 11th collects generation 1 or older, as CPython's own
    choice would."""
    with IdleCollector() as collector:
        generations = []
        for _ in range(12):
            keep = [[] for _ in range(800)]
            generations.append(collector.collect())
            del keep
        assert generations[:10] == [0] * 10
        assert max(g for g in generations if g is not None) >= 1


def test_collection_switched_off_stays_off():
    gc.disable()
    with IdleCollector() as collector:
        keep = [[] for _ in range(2000)]
        assert collector.collect() is None
        del keep
    assert not gc.isenabled()
