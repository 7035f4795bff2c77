"""Settings for the whole test run."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

# `make sanitize` preloads AddressSanitizer, which reserves terabytes of shadow address space in every
# process: a decoder process under the usual address-space cap could not even start.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture(autouse=True, scope="session")
def _decoders_without_a_cap_under_asan() -> Iterator[None]:
    if not UNDER_ASAN:
        yield
        return
    from natflow.flowlogs import decoders

    with decoders._pool_lock:
        decoders._pool = decoders.DecoderPool(address_space=resource.RLIM_INFINITY)
    yield
