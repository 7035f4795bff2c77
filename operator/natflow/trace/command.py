"""``natflow trace`` (its arguments are cli.py's): the inputs (offline files as ``natflow attribute``
reads them, or live: kubeconfig, boto3 and the flow logs of the window), the output."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from typing import Any

from natflow.aws.files import load_inventory
from natflow.aws.inventory import Inventory
from natflow.cluster.dump import load_cluster
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import FormatError, LogFormat
from natflow.flowlogs.parquet_decoders import warm_decoders
from natflow.flowlogs.sources import discover
from natflow.pipeline import format_choices, inside_cidrs
from natflow.settings import Settings
from natflow.timeutil import parse_time
from natflow.trace.engine import Filters, TraceInputs, render_table, run_trace
from natflow.trace.network import build_network
from natflow.trace.subject import Subject, SubjectError, address_subject, pod_subject, workload_subject

LIVE_DEFAULT_SECONDS = 3600


class TraceUsageError(Exception):
    """A problem with what the user gave; one line, exit status 2."""


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        result = trace(args, settings)
    except (TraceUsageError, SubjectError, FormatError, FileNotFoundError) as error:
        print(f"natflow: error: {error}", file=sys.stderr)
        return 2
    if args.output == "json":
        # One line: a busy pod's trace holds many thousands of legs (jq formats it).
        print(json.dumps(result.document, separators=(",", ":")))
        for warning in result.document["warnings"]:
            print(f"natflow: warning: {warning['reason']}: {warning['message']}", file=sys.stderr)
    else:
        print(render_table(result))
    return 0


def _window(args: argparse.Namespace, live: bool) -> tuple[int | None, int | None]:
    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except ValueError as error:
        raise TraceUsageError(f"--start/--end: {error}") from None
    if live:
        end = end if end is not None else int(time.time())
        start = start if start is not None else end - LIVE_DEFAULT_SECONDS
    if start is not None and end is not None and end <= start:
        raise TraceUsageError(f"--end ({args.end}) must be after --start ({args.start})")
    return start, end


def trace(args: argparse.Namespace, settings: Settings) -> Any:
    offline = [name for name in ("cluster", "aws", "flow_logs") if getattr(args, name)]
    if offline and len(offline) < 3:
        raise TraceUsageError("offline: give all of --cluster, --aws and --flow-logs (or none of them, to trace live)")
    if args.workers < 1:
        raise TraceUsageError("--workers must be at least 1")
    override = None
    if args.log_format:
        from natflow.flowlogs.fields import parse_log_format

        override = parse_log_format(args.log_format, "--log-format")
    window = _window(args, live=not offline)
    filters = Filters(args.remote, args.port, args.protocol)
    with ExitStack() as stack:  # live: the fetched flow logs' temporary directory
        if offline:
            inputs = offline_inputs(args.cluster, args.aws, args.flow_logs, override, args.workers)
            subject = _subject(args, inputs.state, window)
        else:
            from natflow.trace.live import live_inputs

            start, end = window
            assert start is not None and end is not None
            inputs, subject = live_inputs(
                (start, end), override, stack, lambda state: _subject(args, state, window), settings
            )
        return run_trace(inputs, subject, filters, window, args.workers)


def _subject(args: argparse.Namespace, state: Any, window: tuple[int | None, int | None]) -> Subject:
    bounded = (window[0] if window[0] is not None else -(1 << 62), window[1] if window[1] is not None else 1 << 62)
    if args.pod:
        return pod_subject(state, args.pod, bounded)
    if args.workload:
        return workload_subject(state, args.workload, bounded)
    return address_subject(args.address)


def network_inputs(state: Any, inventory: Inventory, diagnostics: Diagnostics) -> Any:
    if not inventory.nat_gateways:
        diagnostics.warn(
            "NoNatGateways", "no NAT gateways in the inventory: only the interfaces' own legs can be shown"
        )
    state.set_interfaces(inventory.instance_interfaces())
    instances = [node.instance_id for node in state.nodes.values() if node.instance_id]
    return build_network(inventory, inside_cidrs(inventory, diagnostics), instances)


def offline_inputs(
    cluster: list[str], aws: list[str], flow_logs: list[str], override: LogFormat | None, workers: int
) -> TraceInputs:
    """The inputs of `natflow attribute`, read by the same loaders. The flow-log files are found
    first, so that the Parquet decoders they need start while the cluster and AWS inputs are read
    (their warnings still come after those inputs')."""
    diagnostics, found = Diagnostics(), Diagnostics()
    files, _ = discover(flow_logs, found)
    warm_decoders(files, workers)
    state, dump_stats = load_cluster(cluster, diagnostics)
    inventory, aws_files = load_inventory(aws, diagnostics)
    network = network_inputs(state, inventory, diagnostics)
    diagnostics.extend(found)
    if not files:
        raise TraceUsageError("--flow-logs: no flow-log files found (.log.gz, .log, .parquet or CloudWatch .json)")
    extra = {"clusterFilesRead": dump_stats.files_read, "awsFilesRead": aws_files}
    choices = format_choices(inventory.flow_logs.values(), override)
    return TraceInputs(state, network, files, choices, diagnostics, extra)
