"""Static checks of crds/ and manifests/: no cluster, no network.

We test these aspects:
- every YAML file parses, and every kustomization's resources exist (and every manifest is listed);
- each CRD is apiextensions.k8s.io/v1 with a structural schema that a 1.20 API server accepts
  (types everywhere, no preserve-unknown-fields, junctors carrying value validations only,
  descriptions on every field, defaults that validate, no CEL rules, which 1.20 ignores);
- the sample FlowReport validates against the FlowReport schema, bad specs do not, and an empty
  spec defaults as the API server would default it;
- a FlowAttribution shaped like the engine's output validates against its schema;
- printer columns: FlowAttribution's order, and every column's JSONPath exists in the schema;
- RBAC: pods and nodes are read-only, no wildcards, the binding names the ServiceAccount;
- iam-policy.json: only read actions outside the optional AthenaAtScale statement;
- the Deployment: one replica, Recreate, non-root, read-only root, liveness probe, state volume;
- `kubectl kustomize manifests` renders, when kubectl is installed.

What a real 1.20 API server checks beyond this (that it accepts the CRDs, defaults and prunes) is
for the integration tests; jsonschema's draft 4 stands in for the server's OpenAPI v3 validation.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
MANIFESTS = ROOT / "manifests"
SAMPLE = MANIFESTS / "flowreport-sample.yaml"
NAMESPACE = "natflow-system"

JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# Inside junctors a structural schema may only validate values (Kubernetes "structural schema" rules).
FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")
READ_VERBS = {"get", "list", "watch"}
READ_ACTION = re.compile(r"^[a-z0-9-]+:(Describe|Get|List|Filter)[A-Za-z]+$")
ATHENA_SID = "AthenaAtScale"


def yaml_files() -> list[Path]:
    return sorted([*CRDS.glob("*.yaml"), *MANIFESTS.glob("*.yaml")])


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def load_one(path: Path, kind: str) -> dict[str, Any]:
    found = [doc for doc in load_all(path) if doc.get("kind") == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def crd(plural: str) -> dict[str, Any]:
    return load_one(CRDS / f"{plural}.yaml", "CustomResourceDefinition")


def version(definition: dict[str, Any]) -> dict[str, Any]:
    versions = definition["spec"]["versions"]
    assert len(versions) == 1
    return dict(versions[0])


def openapi_schema(plural: str) -> dict[str, Any]:
    return dict(version(crd(plural))["schema"]["openAPIV3Schema"])


def strip_kubernetes_extensions(node: Any) -> Any:
    """openAPIV3Schema minus x-kubernetes-* keys: close enough to JSON Schema draft 4."""
    if isinstance(node, dict):
        return {k: strip_kubernetes_extensions(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [strip_kubernetes_extensions(item) for item in node]
    return node


def validator(plural: str) -> jsonschema.Draft4Validator:
    schema = strip_kubernetes_extensions(openapi_schema(plural))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def errors(plural: str, document: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(plural).iter_errors(document)]


def subschemas(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node outside junctors, with a dotted path; junctors are checked on their own."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from subschemas(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from subschemas(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from subschemas(schema["additionalProperties"], f"{path}{{}}")


def junctor_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from junctor_nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from junctor_nodes(item)


def structural_problems(schema: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for path, node in subschemas(schema, "<root>"):
        is_metadata = path == "<root>.metadata"
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        if "x-kubernetes-preserve-unknown-fields" in node:
            problems.append(f"{path}: x-kubernetes-preserve-unknown-fields")
        if "x-kubernetes-validations" in node:
            problems.append(f"{path}: x-kubernetes-validations (CEL) is ignored by Kubernetes 1.20")
        if not node.get("description") and not is_metadata:
            problems.append(f"{path}: no description")
        if is_metadata and set(node) != {"type"}:
            problems.append(f"{path}: structural schemas may only restrict metadata.name/generateName")
        if node.get("type") == "object" and not is_metadata and "properties" not in node:
            problems.append(f"{path}: object without properties")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
        for key in node.get("x-kubernetes-list-map-keys", []):
            if key not in node["items"].get("required", []):
                problems.append(f"{path}: list-map key {key} is not required in items")
        for junctor in JUNCTORS:
            if junctor not in node:
                continue
            for inner in junctor_nodes(node[junctor]):
                for key in FORBIDDEN_IN_JUNCTORS:
                    if key in inner:
                        problems.append(f"{path}.{junctor}: {key} inside a junctor")
            branches = node[junctor] if isinstance(node[junctor], list) else [node[junctor]]
            for branch in branches:
                for name in branch.get("properties", {}):
                    if name not in node.get("properties", {}):
                        problems.append(f"{path}.{junctor}: {name} is not a property outside the junctor")
    return problems


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Default like the API server: missing properties get their default, then defaults nest."""
    if isinstance(value, dict) and "properties" in schema:
        for name, child in schema["properties"].items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema node a printer column's JSONPath points at, or None if the path leaves the schema."""
    node = schema
    for name, selector in re.findall(r"\.([A-Za-z0-9_]+)(\[[^\]]*\])?", json_path):
        child = node.get("properties", {}).get(name)
        if child is None:
            return None
        node = child
        if selector:
            if "items" not in node:
                return None
            node = node["items"]
    return node


def workload_rules() -> list[dict[str, Any]]:
    return list(load_one(MANIFESTS / "rbac.yaml", "ClusterRole")["rules"])


def iam_statements() -> list[dict[str, Any]]:
    policy = json.loads((MANIFESTS / "iam-policy.json").read_text(encoding="utf-8"))
    assert policy["Version"] == "2012-10-17"
    return list(policy["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def deployment() -> dict[str, Any]:
    return load_one(MANIFESTS / "deployment.yaml", "Deployment")


def kustomization(folder: Path) -> dict[str, Any]:
    return load_one(folder / "kustomization.yaml", "Kustomization")


def kustomize_entries(folder: Path) -> list[str]:
    return list(kustomization(folder)["resources"])


# --- parsing and kustomize ----------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_yaml_parses_into_kubernetes_objects(path: Path) -> None:
    documents = load_all(path)
    assert documents, f"{path} is empty"
    for document in documents:
        assert document.get("apiVersion") and document.get("kind"), f"{path}: not a Kubernetes object"


def test_kustomization_entries_exist() -> None:
    for resource in kustomize_entries(MANIFESTS):
        assert (MANIFESTS / resource).is_file(), f"manifests/kustomization.yaml: {resource} is not a file"


def test_kustomization_lists_every_manifest_but_the_sample() -> None:
    listed = {(MANIFESTS / r).resolve() for r in kustomize_entries(MANIFESTS)}
    files = {p.resolve() for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert files - listed == {SAMPLE.resolve()}


def test_crds_folder_holds_only_kubernetes_objects() -> None:
    """`kubectl apply -f crds/` applies every file in the folder: each must be a CRD."""
    for path in sorted(CRDS.iterdir()):
        for document in load_all(path):
            assert document["kind"] == "CustomResourceDefinition", f"{path.name}: {document['kind']}"


def test_manifests_kustomization_sets_namespace_and_label() -> None:
    base = kustomization(MANIFESTS)
    assert base["namespace"] == NAMESPACE
    assert base["commonLabels"] == {"app.kubernetes.io/name": "natflow"}


# --- CRDs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "kind", "scope", "short_name"),
    [("flowreports", "FlowReport", "Cluster", "fr"), ("flowattributions", "FlowAttribution", "Namespaced", "fa")],
)
def test_crd_identity(plural: str, kind: str, scope: str, short_name: str) -> None:
    definition = crd(plural)
    assert definition["apiVersion"] == "apiextensions.k8s.io/v1"
    assert definition["metadata"]["name"] == f"{plural}.natflow.io"
    spec = definition["spec"]
    assert spec["group"] == "natflow.io"
    assert spec["scope"] == scope
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short_name]
    served = version(definition)
    assert (served["name"], served["served"], served["storage"]) == ("v1alpha1", True, True)


def test_only_flowreport_has_a_status_subresource() -> None:
    assert version(crd("flowreports"))["subresources"] == {"status": {}}
    assert "subresources" not in version(crd("flowattributions"))


@pytest.mark.parametrize("plural", ["flowreports", "flowattributions"])
def test_schema_is_structural(plural: str) -> None:
    schema = openapi_schema(plural)
    assert schema["type"] == "object"
    assert "spec" in schema["properties"]
    assert structural_problems(schema) == []


def test_structural_checker_finds_problems() -> None:
    # The checker above must not pass vacuously.
    bad = {
        "type": "object",
        "description": "x",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "description": "x", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"a": {"description": "x"}, "b": {"type": "array", "description": "x"},
                                    "c": {"type": "string"}},
                     "anyOf": [{"type": "object", "properties": {"d": {"enum": ["x"]}}}]},
        },
    }  # fmt: skip
    problems = structural_problems(bad)
    for expected in ("spec: x-kubernetes-preserve-unknown-fields", "spec.a: no type", "spec.b: array without items",
                     "spec.c: no description", "spec.anyOf: type inside a junctor",
                     "spec.anyOf: d is not a property outside the junctor"):  # fmt: skip
        assert any(p.endswith(expected) for p in problems), (expected, problems)


@pytest.mark.parametrize("plural", ["flowreports", "flowattributions"])
def test_defaults_validate_against_their_own_schema(plural: str) -> None:
    # The API server rejects a CRD whose defaults do not validate (apiextensions.k8s.io/v1).
    for path, node in subschemas(openapi_schema(plural), "<root>"):
        if "default" in node:
            sub = jsonschema.Draft4Validator(strip_kubernetes_extensions(node))
            assert list(sub.iter_errors(node["default"])) == [], f"{path}: default does not validate"


# --- FlowReport ---------------------------------------------------------------------------------


def test_sample_flowreport_validates() -> None:
    sample = load_one(SAMPLE, "FlowReport")
    assert sample["apiVersion"] == "natflow.io/v1alpha1"
    assert sample["metadata"] == {"name": "default"}  # cluster-scoped: no namespace
    assert errors("flowreports", sample) == []


def test_empty_spec_defaults() -> None:
    defaulted = apply_defaults(openapi_schema("flowreports"), {"apiVersion": "natflow.io/v1alpha1", "kind": "FlowReport"})
    assert defaulted["spec"] == {
        "flowLogs": {"source": "discovered"},
        "interval": "15m",
        "deliveryDelay": "15m",
        "period": "Daily",
        "groupBy": "workload",
        "retention": "48h",
    }
    assert errors("flowreports", defaulted) == []


def test_nested_defaults_apply_inside_given_blocks() -> None:
    spec = {"flowLogs": {"source": "s3", "s3": {"bucket": "logs"}}, "athena": {}}
    defaulted = apply_defaults(openapi_schema("flowreports"), {"spec": spec})["spec"]
    assert defaulted["flowLogs"]["s3"] == {"bucket": "logs", "layout": "default", "perHour": False,
                                           "fileFormat": "plain-text"}  # fmt: skip
    assert defaulted["athena"] == {"thresholdBytes": 21474836480}


@pytest.mark.parametrize(
    "spec",
    [
        {"natGatewayIds": ["igw-0123"]},
        {"natGatewayIds": ["nat-0ABC"]},
        {"interval": "15 minutes"},
        {"deliveryDelay": "1d"},
        {"retention": "-1h"},
        {"period": "Weekly"},
        {"groupBy": "deployment"},
        {"pricePerGB": -0.01},
        {"flowLogs": {"source": "kinesis"}},
        {"flowLogs": {"source": "s3"}},
        {"flowLogs": {"source": "cloudwatch", "s3": {"bucket": "logs"}}},
        {"flowLogs": {"source": "s3", "s3": {"bucket": "logs", "layout": "flat"}}},
        {"flowLogs": {"source": "s3", "s3": {"bucket": "logs", "fileFormat": "csv"}}},
        {"athena": {"thresholdBytes": -1}},
        {"athena": {"outputLocation": "https://bucket/results"}},
    ],
    ids=repr,
)
def test_invalid_flowreport_specs_are_rejected(spec: dict[str, Any]) -> None:
    schema = openapi_schema("flowreports")
    document = apply_defaults(schema, {"apiVersion": "natflow.io/v1alpha1", "kind": "FlowReport", "spec": spec})
    assert errors("flowreports", document) != []


def test_flowreport_status_validates() -> None:
    status = {
        "observedGeneration": 3,
        "conditions": [{"type": "Ready", "status": "True", "reason": "WindowAttributed", "message": "",
                        "lastTransitionTime": "2026-11-21T12:15:00Z", "observedGeneration": 3}],
        "processedUntil": "2026-11-21T12:00:00Z",
        "windowsProcessed": 48,
        "natGateways": [{"natGatewayId": "nat-0a1b2c3d4e5f60718", "bytesOut": 10 * 2**40, "bytesIn": 2**30,
                         "packetsOut": 7, "packetsIn": 5, "estimatedCostUSD": 460.8, "attributedBytes": 2**30,
                         "coverage": 0.5}],
        "estimatedCostUSD": 460.8,
        "period": "2026-11-21",
        "athena": {"lastQueryId": "f1e2", "bytesScanned": 0, "error": ""},
    }
    assert errors("flowreports", {"spec": {}, "status": status}) == []
    status["conditions"][0]["status"] = "Yes"
    assert errors("flowreports", {"spec": {}, "status": status}) != []


# --- FlowAttribution ----------------------------------------------------------------------------


def flowattribution() -> dict[str, Any]:
    """A FlowAttribution as natflow writes it (the fields of `natflow attribute`'s rows, plus period)."""
    return {
        "apiVersion": "natflow.io/v1alpha1",
        "kind": "FlowAttribution",
        "metadata": {"name": "default-nat-0a1b2c3d-deployment-api-2026-11-21", "namespace": "shop"},
        "spec": {
            "report": "default",
            "natGatewayId": "nat-0a1b2c3d4e5f60718",
            "workload": {"kind": "Deployment", "name": "api", "namespace": "shop"},
            "source": "pod",
            "period": {"name": "2026-11-21", "start": "2026-11-21T00:00:00Z", "end": "2026-11-22T00:00:00Z"},
            "bytesOut": 123_456_789_012,
            "bytesIn": 9_876_543,
            "packetsOut": 1000,
            "packetsIn": 800,
            "splitBytes": 0,
            "estimatedCostUSD": 5.1747,
            "pods": ["api-7d9c-abcde", "api-7d9c-fghij"],
            "topDestinations": [{"destination": "52.94.0.1", "bytes": 100_000_000_000}],
            "windows": [{"start": "2026-11-21T00:00:00Z", "end": "2026-11-21T12:00:00Z"}],
        },
    }


def test_flowattribution_validates() -> None:
    assert errors("flowattributions", flowattribution()) == []
    unattributed = flowattribution()
    unattributed["spec"].update(
        workload={"kind": "IP", "name": "10.0.3.7"},
        source="unattributed",
        addressOwner={"interfaceId": "eni-0abc", "description": "VPC Endpoint Interface", "interfaceType": "vpc_endpoint"},
    )
    assert errors("flowattributions", unattributed) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("source", "pods"), ("natGatewayId", "nat-XYZ"), ("bytesOut", -1), ("estimatedCostUSD", "5"),
     ("workload", {"name": "api"}), ("period", {"name": "2026-11-21"})],
)
def test_invalid_flowattributions_are_rejected(field: str, value: Any) -> None:
    document = flowattribution()
    document["spec"][field] = value
    assert errors("flowattributions", document) != []


def test_flowattribution_printer_columns() -> None:
    columns = version(crd("flowattributions"))["additionalPrinterColumns"]
    default_columns = [c["name"] for c in columns if c.get("priority", 0) == 0]
    assert default_columns == ["NAT-GW", "WORKLOAD", "SOURCE", "OUT", "IN", "COST", "PERIOD", "AGE"]
    by_name = {c["name"]: c for c in columns}
    assert by_name["WORKLOAD"]["jsonPath"] == ".spec.workload.name"
    assert by_name["KIND"] == {**by_name["KIND"], "jsonPath": ".spec.workload.kind", "priority": 1}
    assert (by_name["OUT"]["type"], by_name["IN"]["type"], by_name["COST"]["type"]) == ("integer", "integer", "number")
    assert by_name["PERIOD"]["jsonPath"] == ".spec.period.name"


def test_flowreport_printer_columns() -> None:
    columns = version(crd("flowreports"))["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["PERIOD", "PROCESSED-UNTIL", "COST", "READY", "AGE"]
    assert columns[3]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


@pytest.mark.parametrize("plural", ["flowreports", "flowattributions"])
def test_printer_columns_point_into_the_schema(plural: str) -> None:
    schema = openapi_schema(plural)
    for column in version(crd(plural))["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        node = schema_at(schema, column["jsonPath"])
        assert node is not None, f"{column['name']}: {column['jsonPath']} is not in the schema"
        expected = {"integer": {"integer"}, "number": {"number", "integer"}, "string": {"string"}}[column["type"]]
        assert node["type"] in expected, f"{column['name']}: column type {column['type']}, field type {node['type']}"


# --- RBAC ---------------------------------------------------------------------------------------


def test_pods_and_nodes_are_read_only() -> None:
    granted: dict[str, set[str]] = {"pods": set(), "nodes": set()}
    for rule in workload_rules():
        if "" not in rule["apiGroups"]:
            continue
        for resource in granted:
            if resource in rule["resources"]:
                granted[resource] |= set(rule["verbs"])
    assert granted == {"pods": READ_VERBS, "nodes": READ_VERBS}


def test_rbac_has_no_wildcards_and_natflow_writes_only_its_own_objects() -> None:
    write_verbs = {"create", "update", "patch", "delete", "deletecollection", "*"}
    for rule in workload_rules():
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {rule}"
        if set(rule["verbs"]) & write_verbs:
            allowed = {"flowreports", "flowreports/status", "flowattributions", "events"}
            assert set(rule["resources"]) <= allowed, f"writes outside natflow's objects: {rule}"


def test_rbac_covers_what_natflow_needs() -> None:
    def verbs(group: str, resource: str) -> set[str]:
        return {v for r in workload_rules() if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}

    assert verbs("natflow.io", "flowattributions") == {"get", "list", "watch", "create", "patch", "update", "delete"}
    assert verbs("natflow.io", "flowreports") == {"get", "list", "watch", "patch"}
    assert verbs("natflow.io", "flowreports/status") == {"patch"}
    assert verbs("apiextensions.k8s.io", "customresourcedefinitions") >= {"list", "watch"}
    assert verbs("", "events") >= {"create"}
    assert verbs("events.k8s.io", "events") >= {"create"}
    for group, resource in [("apps", "daemonsets"), ("apps", "replicasets"), ("batch", "jobs"), ("", "namespaces")]:
        assert verbs(group, resource) <= READ_VERBS and verbs(group, resource) >= {"list", "watch"}


def test_binding_names_the_service_account() -> None:
    binding = load_one(MANIFESTS / "rbac.yaml", "ClusterRoleBinding")
    account = load_one(MANIFESTS / "serviceaccount.yaml", "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "natflow"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]  # fmt: skip
    assert deployment()["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_serviceaccount_documents_irsa_and_pod_identity() -> None:
    text = (MANIFESTS / "serviceaccount.yaml").read_text(encoding="utf-8")
    assert "#   eks.amazonaws.com/role-arn: arn:aws:iam::ACCOUNT_ID:role/natflow" in text
    assert "Pod Identity" in text
    assert "annotations" not in load_one(MANIFESTS / "serviceaccount.yaml", "ServiceAccount")["metadata"]


# --- IAM ----------------------------------------------------------------------------------------


def test_iam_policy_reads_only_outside_athena() -> None:
    statements = iam_statements()
    sids = [s["Sid"] for s in statements]
    assert len(set(sids)) == len(sids), "Sids must be unique"
    assert sids.count(ATHENA_SID) == 1
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement["Sid"]
        if statement["Sid"] != ATHENA_SID:
            assert [a for a in actions if not READ_ACTION.match(a)] == [], statement["Sid"]


def test_iam_policy_grants_what_natflow_calls_and_nothing_it_does_not() -> None:
    actions = {a for s in iam_statements() for a in as_list(s["Action"])}
    assert {"ec2:DescribeNatGateways", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces", "ec2:DescribeFlowLogs",
            "s3:ListBucket", "s3:GetObject", "logs:FilterLogEvents", "logs:DescribeLogStreams"} <= actions  # fmt: skip
    assert "ec2:DescribeInstances" not in actions  # nodes are matched by providerID and ENI attachment
    assert not [a for a in actions if a.startswith("pricing:")]  # prices come with the package
    athena = next(s for s in iam_statements() if s["Sid"] == ATHENA_SID)
    assert {"athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
            "athena:StopQueryExecution", "glue:GetTable", "glue:CreateTable", "glue:GetDatabase",
            "glue:CreateDatabase", "glue:UpdateTable", "s3:PutObject", "s3:GetObject"} <= set(athena["Action"])  # fmt: skip
    writes = {a for s in iam_statements() if s["Sid"] != ATHENA_SID for a in as_list(s["Action"])}
    assert not [a for a in writes if a.startswith(("athena:", "glue:"))]


# --- Deployment ---------------------------------------------------------------------------------


def test_deployment_runs_one_non_root_replica() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["args"] == ["run"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"] == "1Gi"


def test_deployment_liveness_probe_is_kopfs_endpoint() -> None:
    [container] = deployment()["spec"]["template"]["spec"]["containers"]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["path"] == "/healthz"
    assert ports.get(probe["port"], probe["port"]) == 8080


def test_deployment_environment_and_state_volume() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NATFLOW_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["NATFLOW_STORE"]["value"] == "/var/lib/natflow/state.sqlite"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = load_one(MANIFESTS / "pvc.yaml", "PersistentVolumeClaim")
    assert volumes[mounts["/var/lib/natflow"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["name"] == "natflow-state"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "emptyDir" in volumes[mounts["/tmp"]]


# --- kubectl kustomize --------------------------------------------------------------------------


def test_kubectl_kustomize_renders_the_base() -> None:
    # NATFLOW_KUBECTL picks another binary, e.g. Debian's kubectl 1.20 (kustomize v2.0.3).
    kubectl = os.environ.get("NATFLOW_KUBECTL") or shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubernetes-client)")
    completed = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    objects = [doc for doc in yaml.safe_load_all(completed.stdout) if doc]
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == sorted([
        "Namespace/natflow-system", "ServiceAccount/natflow", "ClusterRole/natflow", "ClusterRoleBinding/natflow",
        "PersistentVolumeClaim/natflow-state", "Deployment/natflow",
    ])  # fmt: skip
    cluster_scoped = {"CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"}
    for item in objects:
        assert item["metadata"]["labels"]["app.kubernetes.io/name"] == "natflow", item["kind"]
        if item["kind"] not in cluster_scoped:
            assert item["metadata"]["namespace"] == NAMESPACE, item["kind"]


def test_snat_sources_are_read_only_and_the_configmap_is_named() -> None:
    """NodeClasses, Calico pools: get/list/watch; ConfigMaps: only cilium-config, by name."""
    for group, resource in [("eks.amazonaws.com", "nodeclasses"), ("crd.projectcalico.org", "ippools"),
                            ("operator.tigera.io", "installations")]:  # fmt: skip
        rules = [r for r in workload_rules() if group in r["apiGroups"] and resource in r["resources"]]
        assert rules and all(set(r["verbs"]) == READ_VERBS for r in rules), resource
    configmaps = [r for r in workload_rules() if "" in r["apiGroups"] and "configmaps" in r["resources"]]
    assert configmaps == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cilium-config"],
                           "verbs": ["get", "list", "watch"]}]  # fmt: skip


def test_doctor_checks_exactly_the_permissions_the_manifests_grant() -> None:
    """`natflow doctor` carries natflow's permissions in code (it runs without the repo): they must
    be the ClusterRole's rules and the IAM policy's actions."""
    from natflow.doctor import IAM_ACTIONS, RBAC_NEEDS

    granted = {
        (group, resource, verb, name)
        for rule in workload_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [None]
    }
    needed = {(n.group, n.resource, n.verb, n.name) for n in RBAC_NEEDS}
    assert needed == granted
    actions = {a for s in iam_statements() if s["Sid"] != ATHENA_SID for a in as_list(s["Action"])}
    assert set(IAM_ACTIONS) == actions
