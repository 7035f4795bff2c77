"""``natflow doctor``: a read-only preflight that tells a new user what to fix before natflow can be exact.

It runs with the user's kubeconfig and AWS credentials, reads what the operator reads with the
operator's code, and prints one line per check, ✓ or ✗ with the fix:

* ``flowLog``: each NAT Gateway of the cluster's VPC (zonal or regional) has an active flow log
  whose format has what attribution needs;
* ``snat``: who translates pod addresses on every node (aws-node, NodeClass, Cilium, Calico or
  unknown), with how many nodes and pods each decision covers;
* ``rbac``: the Kubernetes permissions of natflow's ClusterRole that this identity lacks
  (SelfSubjectAccessReview; ``--as`` checks another identity, e.g. natflow's ServiceAccount);
* ``iam``: the AWS actions of natflow's IAM policy (outside the optional Athena statement) that
  these credentials lack: each read call is tried, with DryRun where EC2 has it.

Exit status: 0 when every check passes, 1 when something must be fixed, 2 when doctor could not run.
``-o json`` prints the checks as a JSON list of ``{"check", "subject", "status": "pass"|"fail",
"message", "fix"}`` (``fix`` null when passing); when doctor could not run, one
``{"check": "doctor", "status": "error", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from natflow.attribution.report import format_gaps, missing_fields
from natflow.aws.discovery import create_flow_logs_commands, discover_inventory, gateway_flow_logs, vpc_of_instances
from natflow.aws.inventory import FlowLog, Inventory, NatGateway
from natflow.cluster.objects import ObjectError, describe
from natflow.cluster.snat import LOOKED_FOR, SnatDecision, source_kind
from natflow.cluster.state import ClusterState
from natflow.flowlogs.fields import RECOMMENDED_FORMAT, default_format
from natflow.settings import Settings

PASS, FAIL = "pass", "fail"
RBAC_FIX = "kubectl apply -f manifests/rbac.yaml (natflow's ClusterRole and its binding)"
IAM_FIX = "attach manifests/iam-policy.json (natflow's IAM policy) to the role these credentials use"
ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess", "Forbidden")
REGIONAL_FIELDS = ("resource-id",)  # a regional gateway's records are found by the gateway id
PAGE = 2000


@dataclass(frozen=True)
class Check:
    check: str  # flowLog, snat, rbac, iam
    subject: str
    ok: bool
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "subject": self.subject, "status": PASS if self.ok else FAIL,
                "message": self.message, "fix": None if self.ok else self.fix}  # fmt: skip


class DoctorError(Exception):
    """Doctor could not run (no cluster, no credentials, no VPC): exit status 2."""


# -- what natflow needs (tests/test_manifests.py holds these to manifests/) --------------------------
@dataclass(frozen=True)
class Need:
    group: str
    resource: str  # "flowreports/status" for a subresource
    verb: str
    name: str | None = None
    namespace: str | None = None


def _needs(groups: Iterable[str], resources: Iterable[str], verbs: Iterable[str], name: str | None = None,
           namespace: str | None = None) -> list[Need]:  # fmt: skip
    return [Need(g, r, v, name, namespace) for g in groups for r in resources for v in verbs]


READ = ("get", "list", "watch")
RBAC_NEEDS: tuple[Need, ...] = (
    *_needs(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["list", "watch"]),
    *_needs([""], ["namespaces"], ["list", "watch"]),
    *_needs([""], ["events"], ["create"]),
    *_needs([""], ["pods", "nodes"], READ),
    *_needs(["apps"], ["daemonsets"], READ),
    *_needs(["eks.amazonaws.com"], ["nodeclasses"], READ),
    *_needs(["crd.projectcalico.org"], ["ippools"], READ),
    *_needs(["operator.tigera.io"], ["installations"], READ),
    *_needs([""], ["configmaps"], READ, name="cilium-config", namespace="kube-system"),
    *_needs(["apps"], ["replicasets"], READ),
    *_needs(["batch"], ["jobs"], READ),
    *_needs(["natflow.io"], ["flowreports"], [*READ, "patch"]),
    *_needs(["natflow.io"], ["flowreports/status"], ["patch"]),
    *_needs(["natflow.io"], ["flowattributions"], [*READ, "create", "patch", "update", "delete"]),
    *_needs(["", "events.k8s.io"], ["events"], ["create", "patch"]),
)
IAM_ACTIONS = (
    "ec2:DescribeNatGateways", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces", "ec2:DescribeFlowLogs",
    "s3:ListBucket", "s3:GetObject", "logs:FilterLogEvents", "logs:DescribeLogStreams",
)  # fmt: skip


# -- RBAC -------------------------------------------------------------------------------------------
def rbac_checks(api: Any) -> list[Check]:
    """One line per resource: the verbs natflow needs on it that this identity may not use."""
    from kubernetes import client

    authorization = client.AuthorizationV1Api(api)
    missing: dict[tuple[str, str, str | None], list[str]] = {}
    for need in RBAC_NEEDS:
        resource, _, subresource = need.resource.partition("/")
        attributes = client.V1ResourceAttributes(
            group=need.group, resource=resource, verb=need.verb, subresource=subresource or None, name=need.name,
            namespace=need.namespace,
        )  # fmt: skip
        spec = client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
        review = authorization.create_self_subject_access_review(client.V1SelfSubjectAccessReview(spec=spec))
        verbs = missing.setdefault((need.group, need.resource, need.name), [])
        if review.status is None or not review.status.allowed:
            verbs.append(need.verb)
    checks = []
    for (group, resource, name), verbs in missing.items():
        subject = f"{resource}.{group}" if group else resource
        subject += f" {name}" if name else ""
        needed = [n.verb for n in RBAC_NEEDS if (n.group, n.resource, n.name) == (group, resource, name)]
        if verbs:
            checks.append(Check("rbac", subject, False, f"cannot {', '.join(verbs)} {subject}", RBAC_FIX))
        else:
            checks.append(Check("rbac", subject, True, f"may {', '.join(needed)} {subject}"))
    return checks


# -- the cluster and SNAT --------------------------------------------------------------------------
def _listed(lister: Callable[..., Any], **kwargs: Any) -> Iterable[dict[str, Any]]:
    token = None
    while True:
        response: Any = lister(limit=PAGE, _continue=token, _preload_content=False, **kwargs)
        page = json.loads(response.data)
        yield from page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def read_cluster(api: Any, now: int) -> tuple[ClusterState, dict[str, int], list[str], list[Check]]:
    """The cluster as the operator reads it: nodes, pods, aws-node and the other SNAT sources.
    Also running pods per node, what could not be read, and a failing check per unusable object."""
    from kubernetes import client

    from natflow.snat_watch import read_snat_sources

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    state = ClusterState()
    pods: dict[str, int] = {}
    unreadable: list[str] = []
    problems: list[Check] = []
    try:
        for item in _listed(core.list_node):
            state.apply({**item, "kind": "Node"})
        for item in _listed(core.list_pod_for_all_namespaces, field_selector="status.phase=Running"):
            node = (item.get("spec") or {}).get("nodeName")
            if node and not (item.get("spec") or {}).get("hostNetwork"):
                pods[node] = pods.get(node, 0) + 1
        response: Any = apps.list_namespaced_daemon_set(
            "kube-system", field_selector="metadata.name=aws-node", _preload_content=False
        )
        found = json.loads(response.data)["items"]
        state.set_snat(0, {**found[0], "kind": "DaemonSet"} if found else None)
    except client.exceptions.ApiException as error:
        if error.status != 403:
            raise
        unreadable.append(f"nodes, pods or DaemonSet kube-system/aws-node ({error.reason})")
    except ObjectError as error:
        problems.append(Check("snat", "objects", False, f"unusable object: {error}", None))
    listing = read_snat_sources(api)
    unreadable.extend(listing.forbidden)
    for obj in listing:
        identity = source_kind(obj)
        if identity is None:
            continue
        try:
            state.observe_snat_source(now, *identity, obj)
        except ObjectError as error:
            problems.append(Check("snat", describe(obj), False, f"unusable: {error}", None))
    return state, pods, unreadable, problems


def snat_checks(state: ClusterState, pods: dict[str, int], unreadable: list[str], now: int) -> list[Check]:
    """One line per SNAT decision in force now, with the nodes and running pods it covers."""
    nodes: dict[SnatDecision, list[str]] = {}
    for name, node in sorted(state.nodes.items()):
        if node.end is None:
            nodes.setdefault(state.snat_at(name, now), []).append(name)
    checks = []
    for decision, names in sorted(nodes.items(), key=lambda item: (item[0].source, item[0].origin)):
        count = sum(pods.get(name, 0) for name in names)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        scope = f"{len(names)} node(s) ({shown}), {count} running pod(s)"
        note = f"; {decision.note}" if decision.note else ""
        if decision.node_snat is None:
            cannot = f"; could not read: {', '.join(unreadable)}" if unreadable else ""
            message = f"{scope}: SNAT unknown ({decision.describe()}); looked for {LOOKED_FOR}{cannot}"
            fix = RBAC_FIX if unreadable else "none known: natflow reports these nodes' node-IP bytes as 'node'"
            checks.append(Check("snat", decision.origin, False, message, fix))
        elif decision.node_snat:
            message = f"{scope}: {decision.describe()} translates pod IPs to the node's IP{note}"
            checks.append(Check("snat", decision.origin, decision.fix is None, message, decision.fix_text() or None))
        else:
            message = f"{scope}: {decision.describe()}: pods reach the NAT Gateway with their own IPs{note}"
            checks.append(Check("snat", decision.origin, True, message))
    if not nodes:
        cannot = f"; could not read: {', '.join(unreadable)}" if unreadable else ""
        checks.append(Check("snat", "nodes", False, f"no nodes found{cannot}", RBAC_FIX if unreadable else None))
    return checks


# -- AWS ---------------------------------------------------------------------------------------------
def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _try(action: str, call: Callable[[], Any]) -> Check:
    """One read call: allowed (or DryRunOperation) passes; AccessDenied/UnauthorizedOperation fails."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as error:
        code = _error_code(error)
        if code == "DryRunOperation":
            return Check("iam", action, True, f"{action} allowed (DryRun)")
        if code in ACCESS_DENIED:
            return Check("iam", action, False, f"{action} denied: {code}", IAM_FIX)
        return Check("iam", action, False, f"{action} failed: {code}: {error}", None)
    return Check("iam", action, True, f"{action} allowed")


def ec2_checks(ec2: Any) -> list[Check]:
    return [
        _try("ec2:DescribeNatGateways", lambda: ec2.describe_nat_gateways(DryRun=True, MaxResults=5)),
        _try("ec2:DescribeVpcs", lambda: ec2.describe_vpcs(DryRun=True)),
        _try("ec2:DescribeNetworkInterfaces", lambda: ec2.describe_network_interfaces(DryRun=True, MaxResults=5)),
        _try("ec2:DescribeFlowLogs", lambda: ec2.describe_flow_logs(DryRun=True, MaxResults=5)),
    ]


def delivery_checks(s3: Any, logs: Any, flow_logs: Iterable[FlowLog], now: int) -> list[Check]:
    """Reading each flow log's destination: its S3 bucket (a list and an object) or its log group."""
    checks: list[Check] = []
    buckets: dict[str, str] = {}
    groups: set[str] = set()
    for flow_log in flow_logs:
        if flow_log.destination_type == "s3" and flow_log.LogDestination:
            bucket, _, prefix = flow_log.LogDestination.removeprefix("arn:aws:s3:::").partition("/")
            buckets.setdefault(bucket, prefix)
        elif flow_log.destination_type != "s3":
            groups.add(flow_log.LogGroupName or (flow_log.LogDestination or "").rsplit(":", 1)[-1])
    for bucket, prefix in sorted(buckets.items()):
        listed: dict[str, Any] = {}

        def list_bucket(bucket: str = bucket, prefix: str = prefix, listed: dict[str, Any] = listed) -> None:
            listed.update(s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1))

        checks.append(_subject(_try("s3:ListBucket", list_bucket), bucket))
        keys = [item["Key"] for item in listed.get("Contents") or []]
        if keys:
            checks.append(_subject(_try("s3:GetObject", partial(s3.head_object, Bucket=bucket, Key=keys[0])), bucket))
        elif checks[-1].ok:
            message = f"s3:GetObject not tried: {bucket} has no objects yet"
            checks.append(Check("iam", f"s3:GetObject {bucket}", True, message))
    for group in sorted(groups):
        streams = partial(logs.describe_log_streams, logGroupName=group, limit=1)
        events = partial(logs.filter_log_events, logGroupName=group, limit=1, startTime=(now - 300) * 1000)
        checks.append(_subject(_try("logs:DescribeLogStreams", streams), group))
        checks.append(_subject(_try("logs:FilterLogEvents", events), group))
    return checks


def _subject(check: Check, resource: str) -> Check:
    return Check(check.check, f"{check.subject} {resource}", check.ok, f"{check.message} on {resource}", check.fix)


def flow_log_checks(inventory: Inventory) -> list[Check]:
    checks = []
    for gateway in sorted(inventory.nat_gateways.values(), key=lambda g: g.NatGatewayId):
        checks.append(_gateway_check(inventory, gateway))
    if not checks:
        checks.append(Check("flowLog", "NAT Gateways", False, "no NAT Gateway in the cluster's VPC", None))
    return checks


def _gateway_check(inventory: Inventory, gateway: NatGateway) -> Check:
    regional = gateway.regional
    subject = f"{gateway.NatGatewayId} ({'regional' if regional else 'zonal'})"
    enis = [a.NetworkInterfaceId for a in gateway.NatGatewayAddresses if a.NetworkInterfaceId]
    flow_logs = gateway_flow_logs(inventory, gateway)
    fix = "; ".join(create_flow_logs_commands([gateway.NatGatewayId] if regional else enis, RECOMMENDED_FORMAT))
    if not flow_logs:
        return Check("flowLog", subject, False, f"no active flow log covers {subject}", fix)
    gaps: list[tuple[FlowLog, list[str]]] = []
    for flow_log in flow_logs:
        fields = (flow_log.log_format() or default_format()).fields
        missing = missing_fields(fields) + [f for f in REGIONAL_FIELDS if regional and f not in fields]
        if not missing:
            where = flow_log.LogDestination or flow_log.LogGroupName or flow_log.destination_type
            return Check(
                "flowLog", subject, True, f"{flow_log.FlowLogId} ({where}) covers it with every field attribution needs"
            )
        gaps.append((flow_log, missing))
    flow_log, missing = min(gaps, key=lambda gap: len(gap[1]))
    message = (
        f"{flow_log.FlowLogId} covers it but its format lacks {', '.join(missing)}: {format_gaps(missing)}"
        if set(missing) - set(REGIONAL_FIELDS) else
        f"{flow_log.FlowLogId} covers it but its format lacks resource-id: a regional gateway's records are found by it"
    )  # fmt: skip
    return Check("flowLog", subject, False, message, fix)


# -- the run ---------------------------------------------------------------------------------------
def run_checks(api: Any, aws: Any, vpc_id: str | None, now: int) -> list[Check]:
    """Every check, in the order printed. Raises DoctorError when doctor cannot run at all."""
    from botocore.exceptions import BotoCoreError, ClientError
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    try:
        checks = rbac_checks(api)
        state, pods, unreadable, problems = read_cluster(api, now)
    except (client.exceptions.ApiException, HTTPError, OSError) as error:
        raise DoctorError(f"cannot read the cluster: {getattr(error, 'reason', None) or error}") from None
    checks += problems + snat_checks(state, pods, unreadable, now)
    try:
        aws.sts.get_caller_identity()
    except (BotoCoreError, ClientError) as error:
        raise DoctorError(f"no usable AWS credentials: {error}") from None
    iam = ec2_checks(aws.ec2)
    checks += iam
    if not all(check.ok for check in iam):
        checks.append(Check("flowLog", "NAT Gateways", False, "not checked: EC2 describe calls are denied", IAM_FIX))
        return checks
    try:
        instances = sorted({n.instance_id for n in state.nodes.values() if n.instance_id})
        vpc = vpc_id or vpc_of_instances(aws.ec2, instances)
        if not vpc:
            message = "not checked: cannot tell the cluster's VPC (no node's ENI found)"
            checks.append(Check("flowLog", "NAT Gateways", False, message, "natflow doctor --vpc-id VPC_ID"))
            return checks
        inventory = discover_inventory(aws.ec2, vpc)
    except (BotoCoreError, ClientError) as error:
        raise DoctorError(f"AWS: {error}") from None
    checks += flow_log_checks(inventory)
    checks += delivery_checks(aws.s3, aws.logs, inventory.flow_logs.values(), now)
    return checks


def main(args: argparse.Namespace, settings: Settings) -> int:
    from natflow.controller import AwsClients  # boto3 and the kubernetes client: loaded only to run doctor

    try:
        aws = AwsClients.create(settings.aws_max_attempts, settings.aws_region)
        checks = run_checks(_kube(args.impersonate), aws, args.vpc_id or settings.vpc_id, int(time.time()))
    except DoctorError as error:
        if args.output == "json":
            print(json.dumps([{"check": "doctor", "subject": "run", "status": "error", "message": str(error),
                               "fix": None}], indent=2))  # fmt: skip
        print(f"natflow: error: {error}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps([check.as_dict() for check in checks], indent=2))
    else:
        for check in checks:
            fix = f"  fix: {check.fix}" if check.fix and not check.ok else ""
            print(f"{'✓' if check.ok else '✗'} [{check.check}] {check.subject}: {check.message}{fix}")
    return 0 if all(check.ok for check in checks) else 1


def _kube(impersonate: str | None) -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as error:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            raise DoctorError(f"no kubeconfig: {error}") from None
    api = client.ApiClient()
    if impersonate:
        api.set_default_header("Impersonate-User", impersonate)  # type: ignore[no-untyped-call]
    return api
