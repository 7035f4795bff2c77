"""Pausing Python's cyclic garbage collector around bulk work that makes no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """No cyclic collection meanwhile: hundreds of thousands of new rows (tuples, lists), none in a
    cycle, would start collection after collection, each visiting every row made so far. (Another
    thread may turn it back on early: that only costs time.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# The operator's collector. A young collection every YOUNG_THRESHOLD net allocations: kopf's per-event
# objects (Body, its views, Patch) form cycles that keep each event's parsed JSON alive until the
# collector runs; with CPython's default (700) it took 40% of the operator's CPU during a large
# cluster's initial list, a fifth with this one.
YOUNG_THRESHOLD = 100_000
MIDDLE_THRESHOLD = 10  # CPython's default
# Full collections are never started by CPython (it would after this many middle-generation ones),
# but by `FullCollections`: after the initial sync of 150,000 pods the oldest generation holds a
# million objects (kopf's memory of every object, the cluster state) and one full collection holds
# the GIL for 0.8-1.2 s, a third of a 6,000-event burst's time.
NEVER = 1_000_000_000
# Middle-generation collections since the last full one: when a quiet moment runs a full collection
# (CPython's own threshold), and when one runs anyway, busy or not (garbage promoted while in flight
# -- a few objects an event -- must not pile up in a cluster that is never quiet: ~150,000 events).
FULL_DUE = MIDDLE_THRESHOLD
FULL_FORCED = 30


def defer_full_collections() -> None:
    """Young and middle collections as usual, full ones left to `FullCollections`."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NEVER)


class FullCollections:
    """The full collections that `defer_full_collections` took from CPython: when the operator is quiet,
    or after FULL_FORCED middle ones when it never is. The first one run in a quiet moment (in practice
    right after the initial sync) freezes what survives it (the cluster as listed, kopf's memory of
    each object): later full collections scan only what came since, milliseconds instead of a second.
    Frozen objects are still freed when their last reference goes; only cyclic garbage among them
    would stay, and kopf's per-object memories and the state's records have no cycles."""

    def __init__(self) -> None:
        self.frozen = False

    def run(self, quiet: bool) -> bool:
        """Collect if due; returns whether it did."""
        since = gc.get_count()[2]
        if since < (FULL_DUE if quiet else FULL_FORCED):
            return False
        gc.collect()
        if quiet and not self.frozen:
            gc.freeze()
            self.frozen = True
        return True
