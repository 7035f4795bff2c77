"""`natflow doctor` as a user runs it: the command line, a kubeconfig for the local API server, AWS
credentials for moto. Each check's line and the exit status: all pass, a flow log gone (exit 1 with
the create-flow-logs command), an identity without natflow's RBAC (exit 1), no cluster (exit 2).

(Named to run after test_harness_smoke, which needs the natflow user still unbound.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.harness.kubeapi import KubeAPI
from tests.harness.motoserver import MotoServer
from tests.integration.world import prepared_world

pytestmark = pytest.mark.integration

NATFLOW = str(Path(sys.executable).with_name("natflow"))
NODE = "ip-node-doctor"


@pytest.fixture(scope="module")
def doctor_world(kubeapi: KubeAPI, moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    with prepared_world(kubeapi, moto_server, "doctor", NODE) as (api, world):
        try:
            yield world
        finally:
            kubernetes.client.CoreV1Api(api).delete_node(NODE)  # later modules must not find it


def doctor(kubeapi: KubeAPI, moto: MotoServer, *args: str, kubeconfig: Path | None = None) -> tuple[int, list[Any], str]:
    env = {**os.environ, **moto.env(), "KUBECONFIG": str(kubeconfig or kubeapi.user_kubeconfig())}
    done = subprocess.run([NATFLOW, "doctor", "-o", "json", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    return done.returncode, json.loads(done.stdout), done.stderr


def by_check(checks: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in checks if c["check"] == kind]


def test_doctor_passes_what_natflow_has_and_names_each_fix(
    kubeapi: KubeAPI, moto_server: MotoServer, doctor_world: dict[str, Any]
) -> None:
    code, checks, _ = doctor(kubeapi, moto_server)
    assert {c["check"] for c in checks} == {"rbac", "snat", "iam", "flowLog"}
    assert all(set(c) == {"check", "subject", "status", "message", "fix"} for c in checks)
    assert code == (0 if all(c["status"] == "pass" for c in checks) else 1)
    assert [c for c in by_check(checks, "rbac") if c["status"] != "pass"] == []  # the natflow user has the ClusterRole
    assert [c for c in by_check(checks, "iam") if c["status"] != "pass"] == []  # moto allows every call
    subjects = {c["subject"] for c in by_check(checks, "iam")}
    assert {"ec2:DescribeNatGateways", "s3:ListBucket flows", "s3:GetObject flows"} <= subjects
    (gateway,) = [c for c in by_check(checks, "flowLog") if c["subject"].startswith(doctor_world["nat"])]
    assert gateway["status"] == "pass" and doctor_world["flow_log"] in gateway["message"]
    (snat,) = [c for c in by_check(checks, "snat") if NODE in c["message"]]
    assert snat["status"] == "pass" and snat["subject"] == "DaemonSet kube-system/aws-node"
    assert "(AWS_VPC_K8S_CNI_EXTERNALSNAT=true): pods reach the NAT Gateway with their own IPs" in snat["message"]
    assert re.match(r"\d+ node\(s\) \([^)]*\), \d+ running pod\(s\): ", snat["message"])  # other modules' nodes too

    ec2 = kubernetes_free_ec2(moto_server)
    ec2.delete_flow_logs(FlowLogIds=[doctor_world["flow_log"]])
    code, checks, _ = doctor(kubeapi, moto_server)
    (gateway,) = [c for c in by_check(checks, "flowLog") if c["subject"].startswith(doctor_world["nat"])]
    assert code == 1 and gateway["status"] == "fail"
    assert gateway["fix"].startswith(
        f"aws ec2 create-flow-logs --resource-type NetworkInterface --resource-ids {doctor_world['eni']} "
    )


def kubernetes_free_ec2(moto: MotoServer) -> Any:
    import boto3

    env = moto.env()
    return boto3.client("ec2", region_name=env["AWS_DEFAULT_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def test_doctor_names_the_permissions_an_identity_lacks(
    kubeapi: KubeAPI, moto_server: MotoServer, doctor_world: dict[str, Any]
) -> None:
    """The admin impersonating a user with no roles: every RBAC line fails with the fix; the cluster
    cannot be read, and the SNAT line says so."""
    admin = kubeapi.write_kubeconfig(kubeapi.work_dir / "kubeconfig-doctor-admin")
    code, checks, stderr = doctor(kubeapi, moto_server, "--as", "nobody", kubeconfig=admin)
    assert code == 1, stderr
    rbac = by_check(checks, "rbac")
    assert rbac and all(c["status"] == "fail" and "manifests/rbac.yaml" in c["fix"] for c in rbac)
    assert any(c["subject"] == "nodeclasses.eks.amazonaws.com" and c["message"].startswith("cannot get, list, watch")
               for c in rbac)  # fmt: skip
    assert any(c["subject"] == "configmaps cilium-config" for c in rbac)
    snat = by_check(checks, "snat")
    assert [c["status"] for c in snat] == ["fail"] and "could not read" in snat[0]["message"]


def test_doctor_that_cannot_run_exits_2(kubeapi: KubeAPI, moto_server: MotoServer, tmp_path: Path) -> None:
    code, checks, stderr = doctor(kubeapi, moto_server, kubeconfig=tmp_path / "missing-kubeconfig")
    assert code == 2 and [c["status"] for c in checks] == ["error"]
    assert stderr.startswith("natflow: error: ")
