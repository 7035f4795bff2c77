"""One FlowReport pass: due windows -> live flow logs -> the engine -> FlowAttributions and status.

The join is the same code as `natflow attribute`; only the inputs are live (the cluster state fed
by watch events, AWS through boto3) and the output goes to the API server.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cachetools import TTLCache

from natflow.attribution.engine import Attribution, Attributor
from natflow.attribution.pricing import cost, price_per_gb
from natflow.attribution.report import derive_warnings
from natflow.aws.athena import (
    AthenaQueryError,
    FlowLogTable,
    ensure_table,
    reduction_from_rows,
    reduction_sql,
    run_reduction,
)
from natflow.aws.discovery import (
    covering_flow_logs,
    create_flow_logs_commands,
    describe_nat_gateways,
    discover_inventory,
    log_stream_prefixes,
    vpc_of_instances,
)
from natflow.aws.flowsource import read_cloudwatch_window, read_s3_objects, window_objects
from natflow.aws.inventory import CONFIGURED_FLOW_LOG_ID, FlowLog, FlowLogDestinationOptions, Inventory
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import parse_log_format
from natflow.flowlogs.readers import FormatChoices
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.kube import GROUP, VERSION, KubeWriter
from natflow.net import CidrSet
from natflow.reports.attributions import merged_spec, object_name, object_namespace
from natflow.reports.spec import AthenaSpec, FlowReportSpec, SpecError, read_spec
from natflow.reports.windows import due_windows, period_of
from natflow.timeutil import format_time, parse_time

log = logging.getLogger("natflow.controller")
# Warnings that say data contradicts what natflow assumes about a NAT Gateway: an Event and a log line each.
GATEWAY_WARNINGS = (
    "NatGatewayUnmatched",
    "UnclassifiedNatRecords",
    "RegionalNatOwnAddress",
    "RegionalNatGatewayUnseen",
)
# Events about cluster-scoped objects (FlowReports, Nodes) must live in "default": the API server
# rejects them elsewhere.
CLUSTER_EVENTS_NAMESPACE = "default"
ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess")


class AwsProblem(Exception):
    def __init__(self, reason: str, message: str, athena: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.athena = athena


@dataclass
class AwsClients:
    ec2: Any
    s3: Any
    logs: Any
    sts: Any
    athena: Any
    region: str

    @classmethod
    def create(cls) -> AwsClients:
        import boto3
        from botocore.config import Config

        # Throttling is retried with backoff here; a window that still fails is retried at the next pass.
        attempts = int(os.environ.get("NATFLOW_AWS_MAX_ATTEMPTS", "10"))
        config = Config(retries={"mode": "adaptive", "max_attempts": attempts})
        session = boto3.session.Session()
        region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
        services = ("ec2", "s3", "logs", "sts", "athena")
        clients = {name: session.client(name, region_name=region, config=config) for name in services}
        return cls(clients["ec2"], clients["s3"], clients["logs"], clients["sts"], clients["athena"], region)


@dataclass
class WindowOutcome:
    gateways: dict[str, dict[str, int]] = field(default_factory=dict)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    missing_flow_logs: list[str] = field(default_factory=list)
    attributions_written: int = 0
    athena: dict[str, Any] | None = None  # the last Athena query: lastQueryId, bytesScanned, error


def set_condition(
    conditions: list[dict[str, Any]], kind: str, status: str, reason: str, message: str, now: int, generation: int
) -> None:
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != status:
                condition["lastTransitionTime"] = format_time(now)
            condition.update(status=status, reason=reason, message=message[:2000], observedGeneration=generation)
            return
    conditions.append(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message[:2000],
            "lastTransitionTime": format_time(now),
            "observedGeneration": generation,
        }
    )


class Controller:
    def __init__(
        self,
        state: ClusterState,
        aws: AwsClients,
        writer: KubeWriter,
        namespace: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.aws = aws
        self.writer = writer
        self.namespace = namespace
        self.clock = clock
        self._inventories: TTLCache[tuple[str, tuple[str, ...]], Inventory] = TTLCache(maxsize=16, ttl=300)
        self._account: str | None = None
        self._last_event: dict[tuple[str, str], float] = {}
        self._athena_tables: set[str] = set()

    # -- AWS --------------------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            reason = "AWSAccessDenied" if code in ACCESS_DENIED else "AWSError"
            raise AwsProblem(reason, f"{what}: {code}: {error.response.get('Error', {}).get('Message', '')}") from None
        except BotoCoreError as error:
            raise AwsProblem("AWSError", f"{what}: {error}") from None

    def inventory(self, spec: FlowReportSpec) -> Inventory:
        ec2 = self.aws.ec2
        if spec.natGatewayIds:
            found = self._call(
                "ec2:DescribeNatGateways", lambda: ec2.describe_nat_gateways(NatGatewayIds=spec.natGatewayIds)
            )
            vpc = next((g.get("VpcId") for g in found.get("NatGateways", []) if g.get("VpcId")), None)
        else:
            instances = sorted({n.instance_id for n in self.state.nodes.values() if n.instance_id})
            vpc = self._call("ec2:DescribeNetworkInterfaces", lambda: vpc_of_instances(ec2, instances))
            vpc = vpc or os.environ.get("NATFLOW_VPC_ID")
        if not vpc:
            raise AwsProblem(
                "VPCUnknown", "cannot tell the cluster's VPC: no node ENIs found and NATFLOW_VPC_ID is unset"
            )
        key = (vpc, tuple(spec.natGatewayIds))
        cached = self._inventories.get(key)
        if cached is not None:  # NAT Gateways every pass: a regional gateway's AZs come and go
            gateways = self._call(
                "ec2:DescribeNatGateways", lambda: describe_nat_gateways(ec2, vpc, spec.natGatewayIds or None)
            )
            if {g.NatGatewayId for g in gateways} == set(cached.nat_gateways):
                cached.add_nat_gateways(gateways)
            else:  # a gateway came or went: its flow logs and ENIs too
                cached = None
        if cached is None:
            cached = self._call("ec2:Describe*", lambda: discover_inventory(ec2, vpc, spec.natGatewayIds or None))
            self._inventories[key] = cached
        return cached

    def _account_id(self, inventory: Inventory) -> str:
        if self._account is None:
            owners = [i.OwnerId for i in inventory.interfaces.values() if i.OwnerId]
            self._account = (
                owners[0]
                if owners
                else str(self._call("sts:GetCallerIdentity", self.aws.sts.get_caller_identity)["Account"])
            )
        return self._account

    # -- one window -------------------------------------------------------------------------------------
    def process_window(self, report: dict[str, Any], spec: FlowReportSpec, window: tuple[int, int]) -> WindowOutcome:
        outcome = WindowOutcome()
        inventory = self.inventory(spec)
        if not inventory.nat_gateways:
            raise AwsProblem("NoNatGateways", "no NAT Gateways found in the cluster's VPC")
        self.state.set_interfaces(inventory.instance_interfaces())
        topology = inventory.topology(CidrSet(inventory.vpc_cidrs()))
        inventory.warn_unmatched_gateways(outcome.diagnostics)
        override = parse_log_format(spec.logFormat, "spec.logFormat") if spec.logFormat else None
        reduction = Reduction(topology, window)
        by_flow_log: dict[str, tuple[FlowLog, list[str]]] = {}
        for eni in sorted(topology.natgw_by_key):  # NAT ENIs and regional NAT Gateways
            flow_logs = self._configured_flow_logs(spec) or covering_flow_logs(inventory, eni)
            if not flow_logs:
                outcome.missing_flow_logs.append(eni)
                continue
            chosen = flow_logs[0]
            by_flow_log.setdefault(chosen.FlowLogId, (chosen, []))[1].append(eni)
        account = self._account_id(inventory) if by_flow_log else ""
        for flow_log, keys in by_flow_log.values():
            # Each resource's records are counted from the one flow log chosen for it, though another
            # (a VPC's, say) may hold them too.
            part = Reduction(topology.only(keys), window)
            enis = [prefix for key in keys for prefix in log_stream_prefixes(inventory, key)]
            fmt = flow_log.log_format()
            choices = FormatChoices(
                override=override,
                by_flow_log_id={flow_log.FlowLogId: fmt} if fmt else {},
                cloudwatch=[fmt] if fmt else [],
            )
            if flow_log.destination_type == "s3":
                objects = self._call(
                    "s3:ListBucket", partial(window_objects, self.aws.s3, flow_log, account, self.aws.region, window)
                )
                if spec.athena is not None and sum(o.size for o in objects) > spec.athena.thresholdBytes:
                    self._reduce_with_athena(spec, spec.athena, flow_log, account, part.topology, window, part, outcome)
                else:
                    self._call(
                        "s3:GetObject",
                        partial(read_s3_objects, self.aws.s3, flow_log, objects, choices, part, outcome.diagnostics),
                    )
            else:
                group = flow_log.LogGroupName or (flow_log.LogDestination or "").rsplit(":", 1)[-1]
                self._call(
                    "logs:FilterLogEvents",
                    partial(read_cloudwatch_window, self.aws.logs, group, enis, window, choices, part),
                )
            reduction.merge(part)
        price = self._price(spec)
        attributor = Attributor(
            self.state, topology.natgw_by_key, inventory.nat_gateways, inventory.address_owners(), spec.groupBy, price
        )
        result = attributor.attribute(reduction)
        derive_warnings(result, reduction, self.state, outcome.diagnostics)
        period = period_of(window[0], spec.period)
        for row in result.rows:
            if self._write(report, row, period, window, price):
                outcome.attributions_written += 1
        for gateway in result.gateways.values():
            outcome.gateways[gateway.nat_gateway_id] = {
                "bytesOut": gateway.bytes_out,
                "bytesIn": gateway.bytes_in,
                "packetsOut": gateway.packets_out,
                "packetsIn": gateway.packets_in,
                "attributedBytes": gateway.attributed_bytes,
            }
        return outcome

    def _reduce_with_athena(
        self,
        spec: FlowReportSpec,
        athena: AthenaSpec,
        flow_log: FlowLog,
        account: str,
        topology: NatTopology,
        window: tuple[int, int],
        reduction: Reduction,
        outcome: WindowOutcome,
    ) -> None:
        """Too much data for one pod: Athena reduces the window and the same attribution follows."""
        if spec.logFormat:
            flow_log = flow_log.model_copy(update={"LogFormat": spec.logFormat})
        table = FlowLogTable(flow_log, athena.database or "natflow", account, self.aws.region)
        try:
            if table.name not in self._athena_tables:
                self._call("athena:StartQueryExecution (DDL)", partial(
                    ensure_table, self.aws.athena, table, athena.workgroup, athena.outputLocation))  # fmt: skip
                self._athena_tables.add(table.name)
            sql = reduction_sql(table, topology, window)
            result = self._call("athena:StartQueryExecution", partial(
                run_reduction, self.aws.athena, sql, athena.workgroup, athena.outputLocation))  # fmt: skip
            rows = self._call("athena:GetQueryResults", partial(
                reduction_from_rows, result.rows, topology, window, table.log_format))  # fmt: skip
        except AthenaQueryError as error:
            failed = {"lastQueryId": error.query_id, "bytesScanned": 0, "error": str(error)}
            raise AwsProblem("AthenaFailed", str(error), athena=failed) from None
        reduction.merge(rows)
        # error None: the merge patch removes a previous query's error
        outcome.athena = {"lastQueryId": result.query_id, "bytesScanned": result.data_scanned_bytes, "error": None}

    def _configured_flow_logs(self, spec: FlowReportSpec) -> list[FlowLog]:
        source = spec.flowLogs
        if source.source == "s3" and source.s3 is not None:
            destination = f"arn:aws:s3:::{source.s3.bucket}" + (
                f"/{source.s3.prefix.strip('/')}" if source.s3.prefix else ""
            )
            return [
                FlowLog(
                    FlowLogId=CONFIGURED_FLOW_LOG_ID,
                    LogDestinationType="s3",
                    LogDestination=destination,
                    LogFormat=spec.logFormat,
                    DestinationOptions=FlowLogDestinationOptions(
                        FileFormat=source.s3.fileFormat,
                        HiveCompatiblePartitions=source.s3.layout == "hive",
                        PerHourPartition=source.s3.perHour,
                    ),
                )
            ]
        if source.source == "cloudwatch" and source.cloudwatch is not None:
            return [
                FlowLog(
                    FlowLogId=CONFIGURED_FLOW_LOG_ID,
                    LogDestinationType="cloud-watch-logs",
                    LogGroupName=source.cloudwatch.logGroupName,
                    LogFormat=spec.logFormat,
                )
            ]
        return []

    def _write(
        self,
        report: dict[str, Any],
        row: Attribution,
        period: tuple[str, int, int],
        window: tuple[int, int],
        price: float,
    ) -> bool:
        meta = report["metadata"]
        name = object_name(
            meta["name"], row.nat_gateway_id, row.workload_kind, row.workload_name, row.source, period[0]
        )
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FlowReport",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": False,
        }
        labels = {"natflow.io/report": meta["name"], "natflow.io/period": period[0].replace(":", "-")}
        return self.writer.upsert_attribution(
            object_namespace(row, self.namespace),
            name,
            lambda existing: merged_spec(
                existing, row, report=meta["name"], period=period, window=window, price_per_gb=price
            ),
            owner,
            labels,
        )

    # -- the report ----------------------------------------------------------------------------------------
    def run_report(self, report: dict[str, Any], only_window: tuple[int, int] | None = None) -> dict[str, Any]:
        """Process the report's due windows (or one given window); returns the status written."""
        meta = report["metadata"]
        name, generation = meta["name"], int(meta.get("generation") or 0)
        status: dict[str, Any] = dict(report.get("status") or {})
        conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]
        now = int(self.clock())
        try:
            spec = read_spec(report.get("spec"), name)
        except SpecError as error:
            set_condition(conditions, "InvalidSpec", "True", "InvalidSpec", str(error), now, generation)
            set_condition(conditions, "Ready", "False", "InvalidSpec", str(error), now, generation)
            self._event(report, "InvalidSpec", str(error), now, 300)
            status.update(conditions=conditions, observedGeneration=generation)
            self.writer.patch_report_status(name, status)
            return status
        set_condition(conditions, "InvalidSpec", "False", "Valid", "spec is valid", now, generation)
        processed = parse_time(status["processedUntil"]) if status.get("processedUntil") else None
        windows = (
            [only_window] if only_window else due_windows(processed, spec.interval_seconds, spec.delay_seconds, now)
        )
        problem: AwsProblem | None = None
        for window in windows:
            try:
                outcome = self.process_window(report, spec, window)
            except AwsProblem as error:
                problem = error
                break  # this window is retried at the next pass, never skipped
            self._account_window(status, spec, window, outcome, conditions, report, now, generation)
            if only_window is None:
                status["processedUntil"] = format_time(window[1])
            status["windowsProcessed"] = int(status.get("windowsProcessed") or 0) + 1
        if problem is not None and problem.athena is not None:
            status["athena"] = problem.athena
            set_condition(conditions, "AthenaFailed", "True", "AthenaFailed", str(problem), now, generation)
        if problem is not None:
            denied = problem.reason == "AWSAccessDenied"
            set_condition(
                conditions,
                "AWSAccessDenied",
                "True" if denied else "False",
                problem.reason,
                str(problem) if denied else "no access problem",
                now,
                generation,
            )
            set_condition(conditions, "Ready", "False", problem.reason, str(problem), now, generation)
            self._event(report, problem.reason, str(problem), now, spec.interval_seconds)
            log.warning("FlowReport %s: %s", name, problem)
        else:
            set_condition(conditions, "AWSAccessDenied", "False", "AccessOK", "AWS calls succeeded", now, generation)
            set_condition(
                conditions,
                "Ready",
                "True",
                "WindowsProcessed",
                f"processed until {status.get('processedUntil', 'now')}",
                now,
                generation,
            )
        status.update(conditions=conditions, observedGeneration=generation)
        self.writer.patch_report_status(name, status)
        return status

    def _account_window(
        self,
        status: dict[str, Any],
        spec: FlowReportSpec,
        window: tuple[int, int],
        outcome: WindowOutcome,
        conditions: list[dict[str, Any]],
        report: dict[str, Any],
        now: int,
        generation: int,
    ) -> None:
        period_name = period_of(window[0], spec.period)[0]
        if status.get("period") != period_name:
            status["period"], status["natGateways"], status["windowsProcessed"] = period_name, [], 0
        totals = {g["natGatewayId"]: dict(g) for g in status.get("natGateways") or []}
        price = self._price(spec)
        for gateway_id, add in outcome.gateways.items():
            entry = totals.setdefault(gateway_id, {"natGatewayId": gateway_id})
            for key, value in add.items():
                entry[key] = int(entry.get(key, 0)) + value
            total = entry.get("bytesOut", 0) + entry.get("bytesIn", 0)
            entry["estimatedCostUSD"] = cost(total, price)
            entry["coverage"] = round(entry.get("attributedBytes", 0) / total, 4) if total else 0.0
        status["natGateways"] = [totals[k] for k in sorted(totals)]
        if outcome.athena is not None:
            status["athena"] = outcome.athena
            set_condition(conditions, "AthenaFailed", "False", "AthenaSucceeded", "the last Athena query succeeded",
                          now, generation)  # fmt: skip
        status["estimatedCostUSD"] = round(sum(g["estimatedCostUSD"] for g in status["natGateways"]), 6)
        reasons = {d.reason: d for d in outcome.diagnostics.items}
        for item in outcome.diagnostics.items:
            if item.reason in GATEWAY_WARNINGS:
                self._event(report, item.reason, item.message, now, spec.interval_seconds)
                log.warning("FlowReport %s: %s: %s", report["metadata"]["name"], item.reason, item.message)
        snat = reasons.get("NodeSNATHidesPodIPs")
        if snat is not None:
            set_condition(conditions, "SNATHidesPodIPs", "True", "NodeSNATHidesPodIPs", snat.message, now, generation)
            self._event(report, "NodeSNATHidesPodIPs", snat.message, now, spec.interval_seconds)
            log.warning("FlowReport %s: %s", report["metadata"]["name"], snat.message)
            for node in snat.details.get("nodes", [])[:20]:
                self._node_event(node["node"], snat.message, now, spec.interval_seconds)
        else:
            set_condition(
                conditions, "SNATHidesPodIPs", "False", "PodIPsVisible", "no bytes hidden by node SNAT", now, generation
            )
        if outcome.missing_flow_logs:
            enis = " ".join(outcome.missing_flow_logs)
            commands = "; ".join(create_flow_logs_commands(outcome.missing_flow_logs))
            message = (
                f"no active flow log covers NAT Gateway ENI(s) or regional NAT Gateway(s) {enis}; create: {commands}"
            )
            set_condition(conditions, "FlowLogsMissing", "True", "FlowLogsMissing", message, now, generation)
            self._event(report, "FlowLogsMissing", message, now, spec.interval_seconds)
        else:
            set_condition(
                conditions, "FlowLogsMissing", "False", "FlowLogsFound", "every NAT ENI has a flow log", now, generation
            )
        gaps = reasons.get("FormatLacksFields")
        if gaps is not None:
            set_condition(conditions, "FormatLacksFields", "True", "FormatLacksFields", gaps.message, now, generation)
            self._event(report, "FormatLacksFields", gaps.message, now, spec.interval_seconds)
        else:
            set_condition(
                conditions,
                "FormatLacksFields",
                "False",
                "FormatComplete",
                "the flow-log format has what attribution needs",
                now,
                generation,
            )

    # -- events, at most one per reason per report per interval ------------------------------------------
    def _price(self, spec: FlowReportSpec) -> float:
        return spec.pricePerGB if spec.pricePerGB is not None else price_per_gb(self.aws.region)[0]

    def _event(self, report: dict[str, Any], reason: str, message: str, now: int, every: int) -> None:
        meta = report["metadata"]
        involved = {"api_version": f"{GROUP}/{VERSION}", "kind": "FlowReport", "name": meta["name"], "uid": meta["uid"]}
        self._post(involved, reason, message, now, every)

    def _node_event(self, node: str, message: str, now: int, every: int) -> None:
        record = self.state.nodes.get(node)
        involved = {"api_version": "v1", "kind": "Node", "name": node, "uid": record.uid if record else None}
        self._post(involved, "NodeSNATHidesPodIPs", message, now, every)

    def _post(self, involved: dict[str, Any], reason: str, message: str, now: int, every: int) -> None:
        """An Event on a cluster-scoped object, at most one per object and reason per `every` seconds."""
        key = (f"{involved['kind']}/{involved['name']}", reason)
        if now - self._last_event.get(key, -(1 << 62)) < every:
            return
        self._last_event[key] = now
        self.writer.event(CLUSTER_EVENTS_NAMESPACE, involved, reason, message)
