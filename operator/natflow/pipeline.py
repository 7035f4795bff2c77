"""One window, from inventory to attributed result: the code `natflow attribute` and the operator share.

What differs between them is only where the inputs come from (files, or the cluster's watch and
AWS) and where the result goes (a document, or FlowAttributions and status). Everything between
is here: the NAT topology and the flow-log formats chosen before reading, the reduction read by the
caller's reader, the join with the cluster state, the price and the warnings.

The reader runs without the join's lock: reading and reducing flow logs (S3 downloads, minutes in
a catch-up) needs the topology only, not the cluster state. Only the join holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from natflow.attribution import GroupBy
from natflow.attribution.engine import AttributionResult, Attributor
from natflow.attribution.pricing import price_per_gb
from natflow.attribution.report import derive_warnings
from natflow.aws.discovery import covering_flow_logs, create_flow_logs_commands
from natflow.aws.inventory import FlowLog, Inventory
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import LogFormat
from natflow.flowlogs.readers import FormatChoices
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.net import CidrSet

# Where the VPC's CIDRs are unknown, these private ranges stand in for "inside" (with a warning).
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
# Unbounded ends of a window given with one side only.
_EARLIEST, _LATEST = -(1 << 62), 1 << 62


class PlanError(Exception):
    """The inventory cannot be attributed against (no NAT Gateways, no NAT ENIs); `reason` names which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WindowSettings:
    """How to attribute: from the CLI's options or a FlowReport's spec."""

    group_by: GroupBy = "workload"
    log_format: LogFormat | None = None  # overrides every other source of the format
    price_per_gb: float | None = None  # None: the region's price
    price_source: str = ""  # what to call a given price in the stats (e.g. "--price-per-gb")
    region: str | None = None  # for the region's price


@dataclass(frozen=True)
class WindowPlan:
    """What is decided before any flow log is read."""

    window: tuple[int, int] | None  # records whose start lies in [start, end); None: all
    topology: NatTopology
    choices: FormatChoices  # every flow log's format (files may come from any of them)
    log_format: LogFormat | None

    def new_reduction(self) -> Reduction:
        return Reduction(self.topology, self.window)

    def choices_for(self, flow_log: FlowLog) -> FormatChoices:
        """The formats of objects and events that `flow_log` delivered."""
        return format_choices([flow_log], self.log_format)


@dataclass
class WindowResult:
    plan: WindowPlan
    reduction: Reduction
    result: AttributionResult
    diagnostics: Diagnostics
    price_per_gb: float
    price_source: str


# Reads the window's flow logs (files, S3, CloudWatch Logs, Athena) into a reduction made by
# `plan.new_reduction()`; warnings go to the diagnostics.
FlowLogRead = Callable[[WindowPlan, Diagnostics], Reduction]


def bounds(window: tuple[int | None, int | None]) -> tuple[int, int] | None:
    """A window with optional ends as the reduction's [start, end) (None: no window at all)."""
    if window == (None, None):
        return None
    start, end = window
    return (_EARLIEST if start is None else start, _LATEST if end is None else end)


def format_choices(flow_logs: Iterable[FlowLog], log_format: LogFormat | None) -> FormatChoices:
    """The formats the flow logs declare (describe-flow-logs LogFormat), by flow log and by destination."""
    choices = FormatChoices(override=log_format)
    by_id: dict[str, LogFormat] = {}
    for flow_log in flow_logs:
        fmt = flow_log.log_format()
        if fmt is None:
            continue
        by_id[flow_log.FlowLogId] = fmt
        (choices.s3 if flow_log.destination_type == "s3" else choices.cloudwatch).append(fmt)
    choices.by_flow_log_id = by_id
    return choices


def inside_cidrs(inventory: Inventory, diagnostics: Diagnostics) -> CidrSet:
    """The VPC's CIDRs, or the private ranges (with a warning) when no describe-vpcs output names them."""
    cidrs = inventory.vpc_cidrs()
    if not cidrs:
        cidrs = list(PRIVATE_RANGES)
        diagnostics.warn(
            "VpcCidrsUnknown",
            "no describe-vpcs output for the NAT Gateways' VPC; 'inside' is taken as the private "
            f"ranges {', '.join(PRIVATE_RANGES)}",
        )
    return CidrSet(cidrs)


def plan_window(
    inventory: Inventory,
    window: tuple[int | None, int | None],
    log_format: LogFormat | None,
    diagnostics: Diagnostics,
) -> WindowPlan:
    """The NAT topology and format choices for a window; PlanError when there is nothing to attribute."""
    if not inventory.nat_gateways:
        raise PlanError("NoNatGateways", "no NAT Gateways found")
    topology = inventory.topology(inside_cidrs(inventory, diagnostics))
    if not topology.natgw_by_key:
        raise PlanError("NoNatInterfaces", "the NAT Gateways have no NetworkInterfaceId in NatGatewayAddresses")
    inventory.warn_unmatched_gateways(diagnostics)
    choices = format_choices(inventory.flow_logs.values(), log_format)
    return WindowPlan(bounds(window), topology, choices, log_format)


@dataclass
class FlowLogGroups:
    """The flow log that each NAT ENI or regional NAT Gateway is read from; those no active flow log
    covers are `missing`."""

    groups: list[tuple[FlowLog, list[str]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def flow_log_groups(
    inventory: Inventory, plan: WindowPlan, configured: list[FlowLog], diagnostics: Diagnostics
) -> FlowLogGroups:
    """One flow log per NAT ENI or regional NAT Gateway (the configured one, else the first covering
    it), grouped by it; a FlowLogsMissing warning names those that none covers, with the commands that
    fix it."""
    found = FlowLogGroups()
    by_flow_log: dict[str, tuple[FlowLog, list[str]]] = {}
    for eni in sorted(plan.topology.natgw_by_key):  # NAT ENIs and regional NAT Gateways
        flow_logs = configured or covering_flow_logs(inventory, eni)
        if not flow_logs:
            found.missing.append(eni)
            continue
        chosen = flow_logs[0]
        by_flow_log.setdefault(chosen.FlowLogId, (chosen, []))[1].append(eni)
    found.groups = list(by_flow_log.values())
    if found.missing:
        enis = " ".join(found.missing)
        diagnostics.warn(
            "FlowLogsMissing",
            f"no active flow log covers NAT Gateway ENI(s) or regional NAT Gateway(s) {enis}; create: "
            + "; ".join(create_flow_logs_commands(found.missing)),
            enis=list(found.missing),
        )
    return found


def price_of(settings: WindowSettings) -> tuple[float, str]:
    """USD per GB and where it came from."""
    if settings.price_per_gb is not None:
        return settings.price_per_gb, settings.price_source or "given"
    return price_per_gb(settings.region)


def attribute_reduction(
    plan: WindowPlan,
    reduction: Reduction,
    inventory: Inventory,
    state: ClusterState,
    settings: WindowSettings,
    diagnostics: Diagnostics,
) -> WindowResult:
    """The join: the reduced rows against the cluster state (which this updates with the instances'
    interfaces), priced, with the warnings derived from it. The caller holds whatever guards `state`."""
    price, price_source = price_of(settings)
    state.set_interfaces(inventory.instance_interfaces())
    attributor = Attributor(
        state,
        plan.topology.natgw_by_key,
        inventory.nat_gateways,
        inventory.address_owners(),
        settings.group_by,
        price,
    )
    result = attributor.attribute(reduction)
    derive_warnings(result, reduction, state, diagnostics)
    return WindowResult(plan, reduction, result, diagnostics, price, price_source)


def run_window(
    inventory: Inventory,
    state: ClusterState,
    read: FlowLogRead,
    window: tuple[int | None, int | None],
    settings: WindowSettings,
    diagnostics: Diagnostics | None = None,
    state_guard: AbstractContextManager[object] | None = None,
) -> WindowResult:
    """Plan, read (without `state_guard`), join (inside it): one window's attributed result.

    `diagnostics` may hold earlier warnings (reading the inputs); the result's come after them.
    PlanError when the inventory has nothing to attribute against; the reader's exceptions pass through.
    """
    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    plan = plan_window(inventory, window, settings.log_format, diagnostics)
    reduction = read(plan, diagnostics)
    with state_guard if state_guard is not None else nullcontext():
        return attribute_reduction(plan, reduction, inventory, state, settings, diagnostics)
