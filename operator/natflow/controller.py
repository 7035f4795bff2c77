"""One FlowReport pass: due windows -> live flow logs -> the engine -> FlowAttributions and status.

The join is the same code as `natflow attribute`; only the inputs are live (the cluster state fed
by watch events, AWS through boto3) and the output goes to the API server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from cachetools import TTLCache

from natflow.attribution.engine import Attribution
from natflow.attribution.pricing import cost
from natflow.aws.athena import (
    AthenaQueryError,
    FlowLogTable,
    ensure_table,
    reduction_from_rows,
    reduction_sql,
    run_reduction,
)
from natflow.aws.discovery import describe_nat_gateways, discover_inventory, log_stream_prefixes, vpc_of_instances
from natflow.aws.flowsource import read_cloudwatch_window, read_s3_objects, window_objects
from natflow.aws.inventory import CONFIGURED_FLOW_LOG_ID, FlowLog, FlowLogDestinationOptions, Inventory
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.flowlogs import decoders
from natflow.flowlogs.fields import parse_log_format
from natflow.flowlogs.reduce import Reduction
from natflow.kube import GROUP, VERSION, KubeWriter
from natflow.pipeline import PlanError, WindowPlan, WindowSettings, flow_log_groups, run_window
from natflow.reports.attributions import merged_spec, object_name, object_namespace
from natflow.reports.conditions import (
    Condition,
    PassProblem,
    merged,
    pass_conditions,
    spec_conditions,
    window_conditions,
)
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
    def create(cls, max_attempts: int, region: str | None) -> AwsClients:
        """Clients for the session's region (else `region`, else us-east-1); throttling is retried with
        backoff up to `max_attempts` calls, and a window that still fails is retried at the next pass."""
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "adaptive", "max_attempts": max_attempts})
        session = boto3.session.Session()
        region = session.region_name or region or "us-east-1"
        services = ("ec2", "s3", "logs", "sts", "athena")
        clients = {name: session.client(name, region_name=region, config=config) for name in services}
        return cls(clients["ec2"], clients["s3"], clients["logs"], clients["sts"], clients["athena"], region)


@dataclass
class WindowOutcome:
    gateways: dict[str, dict[str, int]] = field(default_factory=dict)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    attributions_written: int = 0
    price_per_gb: float = 0.0
    athena: dict[str, Any] | None = None  # the last Athena query: lastQueryId, bytesScanned, error


class Controller:
    """Runs FlowReport passes: AWS and the API server around the shared window pipeline.

    `state_guard()` guards the cluster state (the Runtime's lock, with the queued watch events
    applied first): held for the join and for reading the nodes, never while flow logs are read.
    """

    def __init__(
        self,
        state: ClusterState,
        aws: AwsClients,
        writer: KubeWriter,
        namespace: str,
        clock: Callable[[], float] = time.time,
        state_guard: Callable[[], AbstractContextManager[object]] = nullcontext,
        vpc_id: str | None = None,
    ) -> None:
        self.state = state
        self.aws = aws
        self.writer = writer
        self.namespace = namespace
        self.clock = clock
        self.state_guard = state_guard
        self.vpc_id = vpc_id
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
            with self.state_guard():
                instances = sorted({n.instance_id for n in self.state.nodes.values() if n.instance_id})
            vpc = self._call("ec2:DescribeNetworkInterfaces", lambda: vpc_of_instances(ec2, instances))
            vpc = vpc or self.vpc_id
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
        settings = WindowSettings(
            group_by=spec.groupBy,
            log_format=parse_log_format(spec.logFormat, "spec.logFormat") if spec.logFormat else None,
            price_per_gb=spec.pricePerGB,
            price_source="spec.pricePerGB",
            region=self.aws.region,
        )

        def read(plan: WindowPlan, diagnostics: Diagnostics) -> Reduction:
            return self.read_window(spec, inventory, plan, outcome, diagnostics)

        try:
            done = run_window(inventory, self.state, read, window, settings, outcome.diagnostics, self.state_guard())
        except PlanError as error:
            raise AwsProblem(error.reason, f"the cluster's VPC: {error}") from None
        finally:
            decoders.stop_idle()  # a Parquet decoder process holds ~85 MB; windows are minutes apart
        outcome.price_per_gb = done.price_per_gb
        period = period_of(window[0], spec.period)
        for row in done.result.rows:
            if self._write(report, row, period, window, done.price_per_gb):
                outcome.attributions_written += 1
        for gateway in done.result.gateways.values():
            outcome.gateways[gateway.nat_gateway_id] = {
                "bytesOut": gateway.bytes_out,
                "bytesIn": gateway.bytes_in,
                "packetsOut": gateway.packets_out,
                "packetsIn": gateway.packets_in,
                "attributedBytes": gateway.attributed_bytes,
            }
        return outcome

    def read_window(
        self,
        spec: FlowReportSpec,
        inventory: Inventory,
        plan: WindowPlan,
        outcome: WindowOutcome,
        diagnostics: Diagnostics,
    ) -> Reduction:
        """The window's flow logs from S3, CloudWatch Logs or Athena, reduced (no cluster state needed)."""
        assert plan.window is not None  # the operator always reads a bounded window
        window = plan.window
        reduction = plan.new_reduction()
        sources = flow_log_groups(inventory, plan, self._configured_flow_logs(spec), diagnostics)
        account = self._account_id(inventory) if sources.groups else ""
        for flow_log, keys in sources.groups:
            # Each resource's records are counted from the one flow log chosen for it, though another
            # (a VPC's, say) may hold them too.
            group_plan = replace(plan, topology=plan.topology.only(keys))
            part = group_plan.new_reduction()
            choices = plan.choices_for(flow_log)
            if flow_log.destination_type == "s3":
                objects = self._call(
                    "s3:ListBucket", partial(window_objects, self.aws.s3, flow_log, account, self.aws.region, window)
                )
                if spec.athena is not None and sum(o.size for o in objects) > spec.athena.thresholdBytes:
                    self._reduce_with_athena(spec, spec.athena, flow_log, account, group_plan, part, outcome)
                else:
                    self._call(
                        "s3:GetObject",
                        partial(read_s3_objects, self.aws.s3, flow_log, objects, choices, part, diagnostics),
                    )
            else:
                group = flow_log.LogGroupName or (flow_log.LogDestination or "").rsplit(":", 1)[-1]
                streams = [prefix for key in keys for prefix in log_stream_prefixes(inventory, key)]
                self._call(
                    "logs:FilterLogEvents",
                    partial(read_cloudwatch_window, self.aws.logs, group, streams, window, choices, part),
                )
            reduction.merge(part)
        return reduction

    def _reduce_with_athena(
        self,
        spec: FlowReportSpec,
        athena: AthenaSpec,
        flow_log: FlowLog,
        account: str,
        plan: WindowPlan,
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
            assert plan.window is not None
            sql = reduction_sql(table, plan.topology, plan.window)
            result = self._call("athena:StartQueryExecution", partial(
                run_reduction, self.aws.athena, sql, athena.workgroup, athena.outputLocation))  # fmt: skip
            rows = self._call("athena:GetQueryResults", partial(
                reduction_from_rows, result.rows, plan.topology, plan.window, table.log_format))  # fmt: skip
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
        now = int(self.clock())
        found: list[Condition] = []
        try:
            spec = read_spec(report.get("spec"), name)
        except SpecError as error:
            self._event(report, "InvalidSpec", str(error), now, 300)
            return self._write_status(name, status, spec_conditions(str(error)), now, generation)
        found += spec_conditions(None)
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
            found += self._account_window(status, spec, window, outcome, report, now)
            if only_window is None:
                status["processedUntil"] = format_time(window[1])
            status["windowsProcessed"] = int(status.get("windowsProcessed") or 0) + 1
        if problem is not None:
            if problem.athena is not None:
                status["athena"] = problem.athena
            self._event(report, problem.reason, str(problem), now, spec.interval_seconds)
            log.warning("FlowReport %s: %s", name, problem)
        stopped = PassProblem(problem.reason, str(problem)) if problem is not None else None
        found += pass_conditions(stopped, status.get("processedUntil", "now"))
        return self._write_status(name, status, found, now, generation)

    def _write_status(
        self, name: str, status: dict[str, Any], found: list[Condition], now: int, generation: int
    ) -> dict[str, Any]:
        status.update(conditions=merged(status.get("conditions") or [], found, now, generation),
                      observedGeneration=generation)  # fmt: skip
        self.writer.patch_report_status(name, status)
        return status

    def _account_window(
        self,
        status: dict[str, Any],
        spec: FlowReportSpec,
        window: tuple[int, int],
        outcome: WindowOutcome,
        report: dict[str, Any],
        now: int,
    ) -> list[Condition]:
        """Add the window's totals to the period's; returns its conditions (and posts their Events)."""
        period_name = period_of(window[0], spec.period)[0]
        if status.get("period") != period_name:
            status["period"], status["natGateways"], status["windowsProcessed"] = period_name, [], 0
        totals = {g["natGatewayId"]: dict(g) for g in status.get("natGateways") or []}
        price = outcome.price_per_gb
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
        status["estimatedCostUSD"] = round(sum(g["estimatedCostUSD"] for g in status["natGateways"]), 6)
        conditions = window_conditions(outcome.diagnostics, athena_queried=outcome.athena is not None)
        for condition in conditions:
            if condition.status == "True":
                self._event(report, condition.reason, condition.message, now, spec.interval_seconds)
        for item in outcome.diagnostics.items:
            if item.reason in GATEWAY_WARNINGS:
                self._event(report, item.reason, item.message, now, spec.interval_seconds)
                log.warning("FlowReport %s: %s: %s", report["metadata"]["name"], item.reason, item.message)
        snat = next((d for d in outcome.diagnostics.items if d.reason == "NodeSNATHidesPodIPs"), None)
        if snat is not None:
            log.warning("FlowReport %s: %s", report["metadata"]["name"], snat.message)
            for node in snat.details.get("nodes", [])[:20]:
                self._node_event(node["node"], snat.message, now, spec.interval_seconds)
        return conditions

    # -- events, at most one per reason per report per interval ------------------------------------------
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
