"""``natflow`` command line: ``attribute`` runs the engine on files; ``run`` starts the operator."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from natflow.attribution.engine import GROUP_BY_CHOICES, Attributor
from natflow.attribution.pricing import price_per_gb
from natflow.attribution.report import RunContext, build_document, derive_warnings, human_bytes
from natflow.aws.files import load_inventory
from natflow.cluster.dump import load_cluster
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import FormatError, LogFormat, parse_log_format
from natflow.flowlogs.readers import FormatChoices, read_all
from natflow.flowlogs.reduce import Reduction
from natflow.flowlogs.sources import discover
from natflow.flowlogs.vectorised import read_all_parallel
from natflow.net import CidrSet
from natflow.timeutil import parse_time

# Where the VPC's CIDRs are unknown, these private ranges stand in for "inside" (with a warning).
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")


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
                           help="flow-log reader: vectorised (compiled text scanner, polars for Parquet, in "
                           "--workers threads) or reference "
                           "(record by record); both give the same answer")  # fmt: skip
    attribute.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                           help="threads reading flow-log files (vectorised reader; default: the CPUs)")  # fmt: skip

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


def attribute(args: argparse.Namespace) -> dict[str, Any]:
    diagnostics = Diagnostics()
    window = _window(args)
    override = None
    if args.log_format:
        try:
            override = parse_log_format(args.log_format, "--log-format")
        except FormatError as error:
            raise UsageError(str(error)) from None

    state, dump_stats = load_cluster(args.cluster, diagnostics)
    inventory, aws_files = load_inventory(args.aws, diagnostics)
    if not inventory.nat_gateways:
        raise UsageError("--aws: no NAT Gateways found (give the output of `aws ec2 describe-nat-gateways`)")
    cidrs = inventory.vpc_cidrs()
    if not cidrs:
        cidrs = list(PRIVATE_RANGES)
        diagnostics.warn(
            "VpcCidrsUnknown",
            "--aws has no describe-vpcs output for the NAT Gateways' VPC; 'inside' is taken as the private "
            f"ranges {', '.join(PRIVATE_RANGES)}",
        )
    topology = inventory.topology(CidrSet(cidrs))
    if not topology.natgw_by_key:
        raise UsageError("--aws: the NAT Gateways have no NetworkInterfaceId in NatGatewayAddresses")
    inventory.warn_unmatched_gateways(diagnostics)
    state.set_interfaces(inventory.instance_interfaces())

    files, passed_over = discover(args.flow_logs)
    if not files:
        raise UsageError("--flow-logs: no flow-log files found (.log.gz, .log, .parquet or CloudWatch .json)")
    for path in passed_over:
        diagnostics.warn("FileSkipped", f"{path}: not a flow-log file name (.log.gz, .log, .parquet, .json)")
    choices = FormatChoices(override=override)
    by_id: dict[str, LogFormat] = {}
    for flow_log in inventory.flow_logs.values():
        fmt = flow_log.log_format()
        if fmt is None:
            continue
        by_id[flow_log.FlowLogId] = fmt
        (choices.s3 if flow_log.destination_type == "s3" else choices.cloudwatch).append(fmt)
    choices.by_flow_log_id = by_id

    bounded = (window[0] or -(1 << 62), window[1] or (1 << 62)) if window != (None, None) else None
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    reduction, files_read = Reduction(topology, bounded), 0
    for group_topology, group in inventory.files_by_topology(topology, files):  # see files_by_topology
        if args.reader == "vectorised":
            part = read_all_parallel(group, choices, group_topology, bounded, diagnostics, args.workers)
            files_read += len(group)
        else:
            part = Reduction(group_topology, bounded)
            files_read += read_all(group, choices, part, diagnostics)
        if not reduction.rows:  # the first group's rows as they are, not copied
            reduction.rows, part.rows = part.rows, {}
        reduction.merge(part)

    if args.price_per_gb is not None:
        if args.price_per_gb < 0:
            raise UsageError("--price-per-gb must not be negative")
        price, price_source = args.price_per_gb, "--price-per-gb"
    else:
        region = inventory.region() or next((f.region for f in files if f.region), None)
        price, price_source = price_per_gb(region)

    attributor = Attributor(
        state, topology.natgw_by_key, inventory.nat_gateways, inventory.address_owners(), args.group_by, price
    )
    result = attributor.attribute(reduction)
    derive_warnings(result, reduction, state, diagnostics)
    context = RunContext(
        files_read=files_read, files_skipped=len(passed_over), price_source=price_source
    )
    extra = {
        "clusterFilesRead": dump_stats.files_read,
        "clusterObjectsRead": dump_stats.objects_read,
        "clusterObjectsSkipped": dump_stats.objects_skipped,
        "awsFilesRead": aws_files,
    }
    return build_document(result, reduction, window, diagnostics, context, extra)


def render_table(document: dict[str, Any]) -> str:
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
    try:
        if args.command == "run":
            from natflow.run import run_operator

            try:
                return run_operator(args.once, args.window)
            except ValueError as error:
                raise UsageError(str(error)) from None
        document = attribute(args)
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
        if os.environ.get("NATFLOW_DEBUG"):
            raise
        print(
            f"natflow: internal error: {type(error).__name__}: {error} (NATFLOW_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
