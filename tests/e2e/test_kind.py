"""End to end on kind: the image, crds/ and manifests/ as a user installs them, moto as AWS.

Runs where Docker (with a running engine) and kind exist; skipped with the reason elsewhere. It is
also the way to try natflow on a laptop (see the README). Steps: create a kind cluster, build and
load the image, apply crds/ and manifests/ with the Deployment pointed at an in-cluster moto, make
a VPC/NAT Gateway/flow log in moto and put flow records for a pod's IP, apply a FlowReport, and
wait for the pod's FlowAttribution.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLUSTER, CONTEXT = "natflow-e2e", "kind-natflow-e2e"
IMAGE = "natflow:e2e"


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


if shutil.which("kind") is None or not _docker_engine():
    pytest.skip("e2e needs kind and a running Docker engine (not on this machine)", allow_module_level=True)


def sh(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=900)
    if check and done.returncode:
        raise AssertionError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    return done.stdout


def kubectl(*argv: str, stdin: str | None = None) -> str:
    return sh("kubectl", "--context", CONTEXT, *argv, stdin=stdin)


def in_moto(script: str) -> str:
    """Run boto3 code inside the natflow pod (it has boto3 and the moto endpoint in its env)."""
    return kubectl("exec", "-n", "natflow-system", "deploy/natflow", "--", "python", "-c", script)


@pytest.fixture(scope="module")
def cluster() -> Any:
    sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)
    sh("kind", "create", "cluster", "--name", CLUSTER, "--wait", "120s")
    try:
        sh("docker", "build", "-t", IMAGE, str(ROOT))
        sh("kind", "load", "docker-image", IMAGE, "--name", CLUSTER)
        kubectl("apply", "-f", str(ROOT / "crds"))
        kubectl("apply", "-k", str(ROOT / "manifests"))
        kubectl("apply", "-f", str(ROOT / "tests" / "e2e" / "moto.yaml"))
        kubectl("-n", "natflow-system", "set", "image", "deploy/natflow", f"natflow={IMAGE}")
        kubectl("-n", "natflow-system", "set", "env", "deploy/natflow", "AWS_ENDPOINT_URL=http://moto:5000",
                "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1",
                "NATFLOW_TIMER_SECONDS=5")  # fmt: skip
        kubectl("-n", "natflow-system", "rollout", "status", "deploy/moto", "--timeout=180s")
        kubectl("-n", "natflow-system", "rollout", "status", "deploy/natflow", "--timeout=180s")
        yield
    finally:
        sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)


def test_flowreport_to_flowattribution_on_kind(cluster: Any) -> None:
    kubectl("create", "namespace", "shop")
    kubectl("-n", "shop", "run", "web", "--image=registry.k8s.io/pause:3.9")
    kubectl("-n", "shop", "wait", "--for=condition=Ready", "pod/web", "--timeout=120s")
    pod_ip = json.loads(kubectl("-n", "shop", "get", "pod", "web", "-o", "json"))["status"]["podIP"]
    now = int(time.time())
    setup = f"""
import boto3, gzip, json
ec2, s3 = boto3.client("ec2"), boto3.client("s3")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/8")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/16")["Subnet"]["SubnetId"]
nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"])["NatGateway"]
address = nat["NatGatewayAddresses"][0]
s3.create_bucket(Bucket="flows")
flow = ec2.create_flow_logs(ResourceIds=[vpc], ResourceType="VPC", TrafficType="ALL", LogDestinationType="s3",
                            LogDestination="arn:aws:s3:::flows")["FlowLogIds"][0]
lines = ["version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"]
for minute in range({now} - 600, {now} + 600, 60):
    lines.append(f"2 123456789012 {{address['NetworkInterfaceId']}} {pod_ip} {{address['PrivateIp']}} 1 443 6 1 100 {{minute}} {{minute + 59}} ACCEPT OK")
import time
stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime({now}))
day = time.strftime("%Y/%m/%d", time.gmtime({now}))
key = f"AWSLogs/123456789012/vpcflowlogs/us-east-1/{{day}}/123456789012_vpcflowlogs_us-east-1_{{flow}}_{{stamp}}_e2e.log.gz"
s3.put_object(Bucket="flows", Key=key, Body=gzip.compress(("\\n".join(lines) + "\\n").encode()))
print(nat["NatGatewayId"])
"""
    nat_id = in_moto(setup).strip().splitlines()[-1]
    report = {"apiVersion": "natflow.io/v1alpha1", "kind": "FlowReport", "metadata": {"name": "e2e"},
              "spec": {"natGatewayIds": [nat_id], "interval": "1m", "deliveryDelay": "0s"}}  # fmt: skip
    kubectl("apply", "-f", "-", stdin=json.dumps(report))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        items = json.loads(kubectl("get", "flowattributions", "-n", "shop", "-o", "json"))["items"]
        if items:
            assert items[0]["spec"]["workload"]["name"] == "web" and items[0]["spec"]["bytesOut"] % 100 == 0
            print(kubectl("get", "flowattributions", "-A"))
            return
        time.sleep(5)
    pytest.fail("no FlowAttribution within 5 minutes:\n" + kubectl("-n", "natflow-system", "logs", "deploy/natflow"))
