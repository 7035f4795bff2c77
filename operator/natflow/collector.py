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
