"""The media worker's collector policy (media.worker.CollectorPolicy), on an explicit clock."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from media.worker import CollectorPolicy


class Node:
    """A container that can take part in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    """Leave the test process's collector as found: nothing frozen, collection enabled."""
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def test_young_steps_follow_the_clock() -> None:
    policy = CollectorPolicy(young_every=1.0, full_every=60.0)
    assert [policy.step(t) for t in (0.0, 0.5, 1.0, 1.9, 2.0)] == [
        "young",
        None,
        "young",
        None,
        "young",
    ]
    assert policy.step(60.0) == "full"
    assert policy.step(60.5) is None  # the full step counted as this second's young one
    assert policy.step(61.0) == "young"


def test_young_step_collects_new_garbage_and_freezes_survivors() -> None:
    policy = CollectorPolicy(young_every=1.0, full_every=60.0)
    kept, kept_ref = cycle()
    dropped_ref = cycle()[1]
    frozen_before = gc.get_freeze_count()
    policy.step(0.0)
    assert dropped_ref() is None  # garbage made before the step: collected
    assert kept_ref() is kept
    assert gc.get_freeze_count() > frozen_before  # survivors are out of later collections


def test_a_frozen_cycle_that_becomes_garbage_waits_for_the_full_step() -> None:
    policy = CollectorPolicy(young_every=1.0, full_every=60.0)
    node, ref = cycle()
    policy.step(0.0)
    del node
    gc.collect()  # what the interpreter would run on its own: frozen objects are skipped
    policy.step(1.0)
    assert ref() is not None
    assert policy.step(60.0) == "full"
    assert ref() is None
