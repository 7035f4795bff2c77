"""The `natflow trace` figure: one pod over the hour of the bench's flow logs, against `natflow
attribute` on the same files in the same run (issue 13: at most twice its time)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

# A pod of bench/flowgen.py's cluster: node 0's first pod, which talks all hour through NAT gateway 1.
POD = "shop/app0-5d8f7c9b4-0000"
TARGET_RATIO = 2.0


def command(inputs: list[str], files: list[str], workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "natflow.cli",
        "trace",
        "--pod",
        POD,
        *inputs,
        "--workers",
        str(workers),
        "-o",
        "json",
        "--flow-logs",
        *files,
    ]


def rows(trace: Any, attribute: Any, records: int, row: Callable[..., Any]) -> list[Any]:
    """The figure's rows: trace's time against attribute's, and what it found (so a trace that found
    nothing cannot pass)."""
    document = json.loads(trace.output)
    read = document["stats"]["recordsRead"]
    if read != records:
        raise SystemExit(f"natflow trace read {read} records, the data set holds {records}")
    if not document["conversations"]:
        raise SystemExit(f"natflow trace found no conversation of {POD}")
    ratio = trace.seconds / attribute.seconds
    legs = document["stats"]["legs"]
    return [
        row(
            f"(f) trace of one pod, {records / 1e6:g}M gzip text, s",
            f"{trace.seconds:.1f} s",
            f"{attribute.seconds:.1f} s",
            f"{ratio:.2f}x",
            f"<= {TARGET_RATIO:g}x",
            "pass" if ratio <= TARGET_RATIO else "fail",
            f"{trace.cpu_seconds:.1f} / {attribute.cpu_seconds:.1f}",
        ),
        row(
            f"    its conversations / legs ({document['stats']['filesReadAgain']} file(s) read again)",
            f"{len(document['conversations'])} / {legs}",
            "-",
            "-",
            "-",
            "-",
        ),
        row(
            "    peak RSS of the trace, all processes",
            f"{trace.tree_rss / (1 << 20):.0f} MB",
            "-",
            "-",
            "<= 400 MB",
            "pass" if trace.tree_rss <= 400 << 20 else "fail",
        ),
    ]
