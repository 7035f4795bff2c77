"""`natflow doctor`'s judgements without a cluster: AWS answers (through botocore's Stubber) mapped to
pass/fail, flow-log coverage and format per NAT Gateway, SNAT lines per decision."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.stub import Stubber

from natflow.aws.inventory import FlowLog, Inventory, NatGateway
from natflow.cluster.objects import node_record
from natflow.cluster.state import ClusterState
from natflow.doctor import ec2_checks, flow_log_checks, snat_checks
from natflow.flowlogs.fields import DEFAULT_FORMAT, RECOMMENDED_FORMAT


def test_dry_run_answers_map_to_allowed_and_denied() -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_nat_gateways", "DryRunOperation", http_status_code=412)
        stub.add_client_error("describe_vpcs", "UnauthorizedOperation", http_status_code=403)
        stub.add_response("describe_network_interfaces", {"NetworkInterfaces": []})  # a server ignoring DryRun
        stub.add_client_error("describe_flow_logs", "RequestLimitExceeded", http_status_code=503)
        checks = {c.subject: c for c in ec2_checks(ec2)}
    assert checks["ec2:DescribeNatGateways"].ok and "DryRun" in checks["ec2:DescribeNatGateways"].message
    denied = checks["ec2:DescribeVpcs"]
    assert not denied.ok and denied.fix is not None and "iam-policy.json" in denied.fix
    assert checks["ec2:DescribeNetworkInterfaces"].ok
    assert not checks["ec2:DescribeFlowLogs"].ok and checks["ec2:DescribeFlowLogs"].fix is None


def inventory(*flow_logs: dict[str, Any], regional: bool = False) -> Inventory:
    found = Inventory()
    gateway: dict[str, Any] = {"NatGatewayId": "nat-0a1", "VpcId": "vpc-1", "SubnetId": None if regional else "subnet-1",
                               "NatGatewayAddresses": [{"NetworkInterfaceId": "eni-1", "PublicIp": "3.3.3.3"}]}  # fmt: skip
    if regional:
        gateway["AvailabilityMode"] = "regional"
    found.add_nat_gateways([NatGateway.model_validate(gateway)])
    found.add_flow_logs(FlowLog.model_validate({"FlowLogStatus": "ACTIVE", "TrafficType": "ALL", **f}) for f in flow_logs)
    return found


def test_flow_log_coverage_and_format_per_gateway() -> None:
    (missing,) = flow_log_checks(inventory())
    assert not missing.ok and missing.fix is not None
    assert missing.fix.startswith("aws ec2 create-flow-logs --resource-type NetworkInterface --resource-ids eni-1 ")
    (default,) = flow_log_checks(inventory({"FlowLogId": "fl-1", "ResourceId": "vpc-1", "LogFormat": DEFAULT_FORMAT}))
    assert not default.ok and "lacks pkt-dstaddr, pkt-srcaddr" in default.message
    good = {"FlowLogId": "fl-2", "ResourceId": "eni-1", "LogFormat": RECOMMENDED_FORMAT, "LogDestinationType": "s3",
            "LogDestination": "arn:aws:s3:::flows"}  # fmt: skip
    (covered,) = flow_log_checks(inventory(good))
    assert covered.ok and "fl-2" in covered.message


def test_a_regional_gateway_needs_its_own_flow_log_with_resource_id() -> None:
    (missing,) = flow_log_checks(inventory(regional=True))
    assert missing.subject == "nat-0a1 (regional)" and missing.fix is not None
    assert "--resource-type RegionalNatGateway --resource-ids nat-0a1 " in missing.fix
    without_id = RECOMMENDED_FORMAT.replace(" ${resource-id}", "")
    on_gateway = {"FlowLogId": "fl-3", "ResourceId": "nat-0a1", "LogFormat": without_id}
    (gap,) = flow_log_checks(inventory(on_gateway, regional=True))
    assert not gap.ok and "resource-id" in gap.message
    with_id = {**on_gateway, "LogFormat": RECOMMENDED_FORMAT}
    (covered,) = flow_log_checks(inventory(with_id, regional=True))
    assert covered.ok


def test_snat_lines_count_nodes_and_pods_per_decision() -> None:
    state = ClusterState()
    for name, labels in (("mng-1", {}), ("auto-1", {"eks.amazonaws.com/compute-type": "auto",
                                                    "eks.amazonaws.com/nodeclass": "general"})):  # fmt: skip
        state.put_node(node_record({"kind": "Node", "metadata": {"name": name, "labels": labels}}))
    state.set_snat(0, {"kind": "DaemonSet", "metadata": {"name": "aws-node"}, "spec": {"template": {"spec": {
        "containers": [{"name": "aws-node", "env": [{"name": "AWS_VPC_K8S_CNI_EXTERNALSNAT", "value": "true"}]}]}}}})  # fmt: skip
    state.observe_snat_source(0, "NodeClass", "general", {"kind": "NodeClass", "apiVersion": "eks.amazonaws.com/v1",
                                                          "metadata": {"name": "general"}, "spec": {}})  # fmt: skip
    checks = {c.subject: c for c in snat_checks(state, {"mng-1": 3, "auto-1": 7}, [], 100)}
    assert checks["DaemonSet kube-system/aws-node"].ok
    assert "1 node(s) (mng-1), 3 running pod(s)" in checks["DaemonSet kube-system/aws-node"].message
    general = checks["NodeClass general"]
    assert not general.ok and "7 running pod(s)" in general.message and "snatPolicy=Random" in general.message
    assert general.fix is not None and "kubectl patch nodeclass general" in general.fix
