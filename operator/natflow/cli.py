"""``natflow`` command line: ``attribute`` runs the engine on files; ``run`` starts the operator."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Only what parsing the arguments and starting the Parquet decoders need is imported with this
# module; each command imports the rest when it runs (see find_flow_logs).
from natflow.attribution import GROUP_BY_CHOICES
from natflow.collector import no_cycle_collection
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import FormatError, parse_log_format
from natflow.flowlogs.parquet_decoders import warm_decoders
from natflow.flowlogs.sources import FlowLogFile, discover
from natflow.timeutil import parse_time


class UsageError(Exception):
    """A problem with what the user gave; printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="natflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    attribute = commands.add_parser(
        "attribute",
        help="attribute NAT Gateway bytes to workloads from files",
        description="Attribute NAT Gateway bytes in VPC Flow Logs to Kubernetes workloads, offline.",
    )
    attribute.add_argument(
        "--cluster",
        nargs="+",
        required=True,
        metavar="PATH",
        help="kubectl get -o json outputs and watch streams (files or directories)",
    )
    attribute.add_argument(
        "--aws",
        nargs="+",
        required=True,
        metavar="PATH",
        help="describe-nat-gateways/-vpcs/-network-interfaces/-flow-logs JSON outputs",
    )
    attribute.add_argument(
        "--flow-logs",
        nargs="+",
        required=True,
        metavar="PATH",
        help="S3 objects (.log.gz, .log, .log.parquet) and CloudWatch Logs exports (.json)",
    )
    attribute.add_argument("--start", help="keep records whose start is at or after this ISO 8601 time")
    attribute.add_argument("--end", help="keep records whose start is before this ISO 8601 time")
    attribute.add_argument("--log-format", metavar="FMT", help="flow-log format, e.g. '${version} ${account-id} ...'")
    attribute.add_argument("--group-by", choices=GROUP_BY_CHOICES, default="workload")
    attribute.add_argument(
        "--price-per-gb", type=float, metavar="X", help="USD per GB (2^30 bytes) processed; default: the region's price"
    )
    attribute.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    attribute.add_argument("--reader", choices=("vectorised", "reference"), default="vectorised",
                           help="flow-log reader: vectorised (compiled text scanner, pyarrow for Parquet, in "
                           "--workers threads) or reference "
                           "(record by record); both give the same answer")  # fmt: skip
    attribute.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                           help="threads reading flow-log files (vectorised reader; default: the CPUs)")  # fmt: skip

    trace = commands.add_parser(
        "trace",
        help="follow one pod's, workload's or address's conversations leg by leg",
        description="Follow conversations through the flow logs of every interface on their path: where "
        "they are translated, which NAT gateway carries each direction, where they are rejected or die. "
        "Offline with --cluster/--aws/--flow-logs (as natflow attribute); live without them.",
    )
    subject = trace.add_mutually_exclusive_group(required=True)
    subject.add_argument("--pod", metavar="NAMESPACE/NAME")
    subject.add_argument("--workload", metavar="NAMESPACE/KIND/NAME")
    subject.add_argument("--address", metavar="IP")
    trace.add_argument("--remote", metavar="IP", help="only conversations with this remote address")
    trace.add_argument("--port", type=int, metavar="N", help="only conversations to this remote port")
    trace.add_argument("--protocol", type=int, metavar="N", help="only this IP protocol number (6 tcp, 17 udp)")
    trace.add_argument("--start", help="ISO 8601; records starting at or after it (live default: an hour ago)")
    trace.add_argument("--end", help="ISO 8601; records starting before it (live default: now)")
    trace.add_argument("--cluster", nargs="+", metavar="PATH", help="kubectl get -o json outputs (offline)")
    trace.add_argument("--aws", nargs="+", metavar="PATH", help="describe-* JSON outputs (offline)")
    trace.add_argument("--flow-logs", nargs="+", metavar="PATH", help="flow-log objects and exports (offline)")
    trace.add_argument("--log-format", metavar="FMT", help="flow-log format, e.g. '${version} ${account-id} ...'")
    trace.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="threads reading flow-log files (default: the CPUs)",
    )
    trace.add_argument("-o", "--output", choices=("table", "json"), default="table")

    doctor = commands.add_parser(
        "doctor", help="check what natflow needs (flow logs, SNAT, permissions); read-only",
        description="``natflow doctor``: a read-only preflight that tells a new user what to fix before natflow "
        "can be exact.",
    )  # fmt: skip
    doctor.add_argument("-o", "--output", choices=("text", "json"), default="text")
    doctor.add_argument("--vpc-id", help="the cluster's VPC (default: found from the nodes' ENIs, or NATFLOW_VPC_ID)")
    doctor.add_argument("--as", dest="impersonate", metavar="USER",
                        help="check this identity's Kubernetes permissions, e.g. "
                        "system:serviceaccount:natflow-system:natflow (needs impersonate rights)")  # fmt: skip

    run = commands.add_parser("run", help="run the operator (kopf) in the cluster")
    run.add_argument("--once", action="store_true", help="run one report pass over --window and exit")
    run.add_argument("--window", metavar="START/END", help="with --once: the window to process (ISO 8601)")
    return parser


def _window(args: argparse.Namespace) -> tuple[int | None, int | None]:
    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except ValueError as error:
        raise UsageError(f"--start/--end: {error}") from None
    if start is not None and end is not None and end <= start:
        raise UsageError(f"--end ({args.end}) must be after --start ({args.start})")
    return start, end


@dataclass(frozen=True)
class FlowLogFiles:
    """What ``--flow-logs`` names: the files to read, those passed over, and the warnings saying why."""

    files: list[FlowLogFile]
    passed_over: list[str]
    diagnostics: Diagnostics


def find_flow_logs(args: argparse.Namespace) -> FlowLogFiles | Exception:
    """``natflow attribute``'s flow-log files, found before anything else is imported or read, so that
    the Parquet decoders they need start now and import pyarrow meanwhile. What went wrong finding
    them is returned, for `attribute` to raise after the checks that come before it."""
    diagnostics = Diagnostics()
    try:
        files, passed_over = discover(args.flow_logs, diagnostics)
    except Exception as error:
        return error
    if args.reader == "vectorised":
        warm_decoders(files, args.workers)
    return FlowLogFiles(files, passed_over, diagnostics)


def attribute(args: argparse.Namespace, flow_logs: FlowLogFiles | Exception) -> dict[str, Any]:
    """The document of ``natflow attribute``; `flow_logs` is what find_flow_logs found."""
    # The engine: imported once the Parquet decoders have started (find_flow_logs).
    from natflow.attribution.report import RunContext, build_document
    from natflow.aws.files import load_inventory
    from natflow.cluster.dump import load_cluster
    from natflow.flowlogs.readers import read_all
    from natflow.flowlogs.reduce import Reduction
    from natflow.flowlogs.vectorised import read_all_parallel
    from natflow.pipeline import PlanError, WindowPlan, WindowSettings, run_window

    diagnostics = Diagnostics()
    window = _window(args)
    override = None
    if args.log_format:
        try:
            override = parse_log_format(args.log_format, "--log-format")
        except FormatError as error:
            raise UsageError(str(error)) from None
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.price_per_gb is not None and args.price_per_gb < 0:
        raise UsageError("--price-per-gb must not be negative")
    if isinstance(flow_logs, Exception):
        raise flow_logs
    files = flow_logs.files
    state, dump_stats = load_cluster(args.cluster, diagnostics)
    inventory, aws_files = load_inventory(args.aws, diagnostics)
    diagnostics.extend(flow_logs.diagnostics)  # after the cluster's and AWS's warnings, as the inputs are given

    def read(plan: WindowPlan, diagnostics: Diagnostics) -> Reduction:
        if not files:
            raise UsageError("--flow-logs: no flow-log files found (.log.gz, .log, .parquet or CloudWatch .json)")
        reduction = plan.new_reduction()
        for topology, group in inventory.files_by_topology(plan.topology, files):  # see files_by_topology
            if args.reader == "vectorised":
                part = read_all_parallel(group, plan.choices, topology, plan.window, diagnostics, args.workers)
            else:
                part = Reduction(topology, plan.window)
                read_all(group, plan.choices, part, diagnostics)
            if not reduction.rows:  # the first group's rows as they are, not copied
                reduction.rows, part.rows = part.rows, {}
            reduction.merge(part)
        return reduction

    settings = WindowSettings(
        group_by=args.group_by,
        log_format=override,
        price_per_gb=args.price_per_gb,
        price_source="--price-per-gb",
        region=inventory.region() or next((f.region for f in files if f.region), None),
    )
    try:
        done = run_window(inventory, state, read, window, settings, diagnostics)
    except PlanError as error:
        hint = " (give the output of `aws ec2 describe-nat-gateways`)" if error.reason == "NoNatGateways" else ""
        raise UsageError(f"--aws: {error}{hint}") from None
    context = RunContext(
        files_read=len(files), files_skipped=len(flow_logs.passed_over), price_source=done.price_source
    )
    extra = {
        "clusterFilesRead": dump_stats.files_read,
        "clusterObjectsRead": dump_stats.objects_read,
        "clusterObjectsSkipped": dump_stats.objects_skipped,
        "awsFilesRead": aws_files,
    }
    return build_document(done.result, done.reduction, window, done.diagnostics, context, extra)


def render_table(document: dict[str, Any]) -> str:
    from natflow.attribution.report import human_bytes  # with the engine, loaded by attribute()

    rows = sorted(document["attributions"], key=lambda r: (-r["estimatedCostUSD"], -(r["bytesOut"] + r["bytesIn"])))
    header = ("NAT-GW", "NAMESPACE", "WORKLOAD", "SOURCE", "OUT", "IN", "COST", "PODS")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        workload = f"{row['workloadKind']}/{row['workloadName']}"
        lines.append(
            (
                row["natGatewayId"],
                row["namespace"] or "-",
                workload,
                row["source"],
                human_bytes(row["bytesOut"]),
                human_bytes(row["bytesIn"]),
                f"${row['estimatedCostUSD']:.4f}",
                str(len(row["pods"])),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines]
    window = document["window"]
    out.append("")
    out.append(f"Window: {window['start']} .. {window['end']}")
    for gateway in document["natGateways"]:
        out.append(
            f"Total {gateway['natGatewayId']}: out {human_bytes(gateway['bytesOut'])}, "
            f"in {human_bytes(gateway['bytesIn'])}, ${gateway['estimatedCostUSD']:.4f}, "
            f"attributed {gateway['coverage']:.1%}"
        )
    stats = document["stats"]
    out.append(
        f"Read {stats['filesRead']} file(s), {stats['recordsRead']} record(s): {stats['recordsCounted']} counted, "
        f"{stats['malformedRecords']} malformed, {stats['rejectedRecords']} rejected, "
        f"{stats['noDataRecords']} NODATA, {stats['skipDataRecords']} SKIPDATA. "
        f"Price ${stats['pricePerGB']}/GB ({stats['priceSource']}; 1 GB = 2^30 bytes)."
    )
    if document["warnings"]:
        out.append("")
        out.append("WARNINGS")
        out.extend(f"- {w['reason']}: {w['message']}" for w in document["warnings"])
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flow_logs = find_flow_logs(args) if args.command == "attribute" else None
    from natflow.settings import Settings, SettingsError  # pydantic-settings: after the decoders start

    try:
        settings = Settings.load()
    except SettingsError as error:
        print(f"natflow: error: {error}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            from natflow.run import run_operator

            try:
                return run_operator(args.once, args.window, settings)
            except ValueError as error:
                raise UsageError(str(error)) from None
        if args.command == "doctor":
            from natflow import doctor

            return doctor.main(args, settings)
        # A batch command: the rows it makes hold no cycles, and it ends when done; the cyclic
        # collector would visit every row made so far, again and again (a tenth of its CPU).
        with no_cycle_collection():
            if args.command == "trace":
                from natflow.trace import command as trace_command

                return trace_command.main(args, settings)
            assert flow_logs is not None  # found above for attribute
            document = attribute(args, flow_logs)
        if args.output == "json":
            print(json.dumps(document, indent=2))
        elif args.output == "yaml":
            import yaml

            print(yaml.safe_dump(document, sort_keys=False), end="")
        else:
            print(render_table(document))
        if args.output != "table":
            for warning in document["warnings"]:
                print(f"natflow: warning: {warning['reason']}: {warning['message']}", file=sys.stderr)
        return 0
    except (UsageError, FileNotFoundError, FormatError) as error:
        print(f"natflow: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # never a traceback for the user; NATFLOW_DEBUG=1 shows it
        if settings.debug:
            raise
        print(
            f"natflow: internal error: {type(error).__name__}: {error} (NATFLOW_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
