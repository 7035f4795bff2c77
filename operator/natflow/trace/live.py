"""Live inputs of ``natflow trace``: the cluster from the kubeconfig, the VPC from boto3, and the flow
logs that cover the window fetched into a temporary directory (S3 objects by the window's key
prefixes; CloudWatch Logs by the streams of the interfaces on the path), then read as offline files."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from natflow.aws.discovery import covering_flow_logs, discover_inventory, vpc_of_instances
from natflow.aws.flowsource import S3Location, window_objects
from natflow.aws.inventory import FlowLog, Inventory
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import LogFormat
from natflow.flowlogs.sources import FileKind, FlowLogFile
from natflow.pipeline import format_choices
from natflow.settings import Settings
from natflow.trace.command import TraceUsageError, network_inputs
from natflow.trace.engine import TraceInputs
from natflow.trace.subject import Subject

LIST_LIMIT = 1000  # objects per page of a list


def _kube_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _pages(lister: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The items of a list call, a page of LIST_LIMIT at a time."""
    token = None
    while True:
        response = lister(limit=LIST_LIMIT, _preload_content=False, **({"_continue": token} if token else {}), **kwargs)
        page = json.loads(response.data)
        yield from page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def live_cluster(api: Any) -> ClusterState:
    """The cluster as listed now (pods deleted before now are not in it: their addresses show as
    their node's, or unattributed)."""
    from kubernetes import client

    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    state = ClusterState()
    for kind, lister in (
        ("Node", core.list_node),
        ("Pod", core.list_pod_for_all_namespaces),
        ("ReplicaSet", apps.list_replica_set_for_all_namespaces),
        ("Job", batch.list_job_for_all_namespaces),
    ):
        for item in _pages(lister):
            state.apply({**item, "kind": kind})
    found = list(
        _pages(apps.list_namespaced_daemon_set, namespace="kube-system", field_selector="metadata.name=aws-node")
    )
    state.set_snat(0, found[0] if found else None)
    return state


def live_inputs(
    window: tuple[int, int],
    override: LogFormat | None,
    stack: ExitStack,
    resolve: Callable[[ClusterState], Subject],
    settings: Settings,
) -> tuple[TraceInputs, Subject]:
    from botocore.exceptions import BotoCoreError, ClientError

    from natflow.controller import AwsClients

    diagnostics = Diagnostics()
    state = live_cluster(_kube_api())
    subject = resolve(state)
    aws = AwsClients.create(settings.aws_max_attempts, settings.aws_region)
    try:
        instances = sorted({n.instance_id for n in state.nodes.values() if n.instance_id})
        vpc = vpc_of_instances(aws.ec2, instances) or settings.vpc_id
        if not vpc:
            raise TraceUsageError("cannot tell the cluster's VPC: no node ENIs found and NATFLOW_VPC_ID is unset")
        inventory = discover_inventory(aws.ec2, vpc)
        network = network_inputs(state, inventory, diagnostics)
        on_path = _interfaces_on_path(inventory, subject, network.eni_of_address)
        _add_interface_flow_logs(aws.ec2, inventory, on_path)
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="natflow-trace-")))
        files = _fetch(aws, inventory, on_path, window, directory, diagnostics)
    except (ClientError, BotoCoreError) as error:
        raise TraceUsageError(f"AWS: {error}") from None
    extra = {"flowLogsRead": len({f.flow_log_id for f in files})}
    choices = format_choices(inventory.flow_logs.values(), override)
    return TraceInputs(state, network, files, choices, diagnostics, extra), subject


def _interfaces_on_path(inventory: Inventory, subject: Subject, eni_of: Callable[[str], str | None]) -> list[str]:
    """The subject's own ENIs and every NAT gateway ENI of the VPC."""
    own = [eni for eni in (eni_of(address) for address in subject.addresses) if eni]
    nat = [
        a.NetworkInterfaceId
        for g in inventory.nat_gateways.values()
        for a in g.NatGatewayAddresses
        if a.NetworkInterfaceId
    ]
    return list(dict.fromkeys([*own, *nat]))


def _add_interface_flow_logs(ec2: Any, inventory: Inventory, enis: list[str]) -> None:
    """Flow logs on the path's ENIs themselves and their subnets (discovery found the VPC's and the
    NAT gateways', and regional gateways' by their id)."""
    resources = set(enis) | set(inventory.nat_gateways)
    resources |= {i.SubnetId for e in enis if (i := inventory.interfaces.get(e)) and i.SubnetId}
    wanted = sorted(resources - {f.ResourceId for f in inventory.flow_logs.values()})
    for first in range(0, len(wanted), 200):
        paginator = ec2.get_paginator("describe_flow_logs")
        filters = [{"Name": "resource-id", "Values": wanted[first : first + 200]}]
        for page in paginator.paginate(Filters=filters):
            inventory.add_flow_logs(FlowLog.model_validate(f) for f in page.get("FlowLogs", []))


def _chosen_flow_logs(inventory: Inventory, resources: list[str]) -> dict[str, tuple[FlowLog, list[str]]]:
    """One flow log for each resource on the path (S3 first, then by id), with the resources it was
    chosen for: two flow logs covering one ENI deliver its records twice, which would be two legs."""
    chosen: dict[str, tuple[FlowLog, list[str]]] = {}
    for resource in resources:
        if resource in inventory.nat_gateways:  # a regional gateway: flow logs on the gateway itself
            covering = [f for f in inventory.flow_logs.values()
                        if f.ResourceId == resource and (f.FlowLogStatus or "ACTIVE") == "ACTIVE"]  # fmt: skip
        else:
            covering = covering_flow_logs(inventory, resource)
        if covering:
            best = min(covering, key=lambda f: (f.destination_type != "s3", f.FlowLogId))
            chosen.setdefault(best.FlowLogId, (best, []))[1].append(resource)
    return chosen


def _fetch(
    aws: Any, inventory: Inventory, resources: list[str], window: tuple[int, int], directory: Path,
    diagnostics: Diagnostics,
) -> list[FlowLogFile]:  # fmt: skip
    """Download what the chosen flow logs hold for the window: an S3 flow log's objects (every
    interface's records), a CloudWatch flow log's streams of the resources it was chosen for."""
    files: list[FlowLogFile] = []
    account = next((i.OwnerId for i in inventory.interfaces.values() if i.OwnerId), None)
    for number, (flow_log, chosen_for) in enumerate(_chosen_flow_logs(inventory, resources).values()):
        if flow_log.destination_type == "s3":
            account = account or str(aws.sts.get_caller_identity()["Account"])
            bucket = S3Location.from_destination(flow_log.LogDestination or "").bucket
            for item in window_objects(aws.s3, flow_log, account, aws.region, window):
                local = directory / f"{number:03d}-{os.path.basename(item.key)}"
                aws.s3.download_file(bucket, item.key, str(local))
                files.append(dataclasses.replace(item.file, path=str(local)))
        else:
            group = flow_log.LogGroupName or (flow_log.LogDestination or "").rsplit(":", 1)[-1]
            path = directory / f"{number:03d}-cloudwatch.json"
            _write_events(aws.logs, group, chosen_for, window, path)
            files.append(FlowLogFile(str(path), FileKind.CLOUDWATCH, flow_log.FlowLogId, aws.region, None))
    if not files:
        diagnostics.warn("NoFlowLogs", "no active flow log covers the VPC's NAT gateways or the subject's interfaces")
    return files


def _write_events(logs: Any, group: str, enis: list[str], window: tuple[int, int], path: Path) -> None:
    """The window's events of each interface's streams, as a `filter-log-events` export, streamed."""
    paginator = logs.get_paginator("filter_log_events")

    def events() -> Iterator[dict[str, Any]]:
        for eni in enis:
            pages = paginator.paginate(
                logGroupName=group, logStreamNamePrefix=eni, startTime=window[0] * 1000, endTime=window[1] * 1000 - 1
            )
            for page in pages:
                yield from page.get("events", [])

    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{"events": [')
        for index, event in enumerate(events()):
            handle.write(
                ("," if index else "")
                + json.dumps({"timestamp": event.get("timestamp"), "message": event.get("message")})
            )
        handle.write("]}")
