"""The only code that writes to the Kubernetes API: FlowAttributions, FlowReport status, Events.

Reads of Pods/Nodes/DaemonSets come through kopf's watches; natflow never writes to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP, VERSION = "natflow.io", "v1alpha1"
REPORTS, ATTRIBUTIONS = "flowreports", "flowattributions"
MAX_CONFLICT_RETRIES = 5

log = logging.getLogger("natflow.kube")


class KubeWriter:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def upsert_attribution(
        self,
        namespace: str,
        name: str,
        merge: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        owner: dict[str, Any],
        labels: dict[str, str],
    ) -> bool:
        """Create or update one FlowAttribution with `merge(existing spec)`; False when nothing changed.

        Updates carry the resourceVersion they read, so two writers never lose each other's bytes:
        a conflict re-reads and merges again (and the merge skips windows already in the object).
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            current: dict[str, Any] | None
            try:
                current = cast(
                    dict[str, Any],
                    self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ATTRIBUTIONS, name),
                )
            except ApiException as error:
                if error.status != 404:
                    raise
                current = None
            spec = merge(current.get("spec") if current else None)
            if spec is None:
                return False
            try:
                if current is None:
                    body = {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "FlowAttribution",
                        "metadata": {
                            "name": name,
                            "namespace": namespace,
                            "labels": labels,
                            "ownerReferences": [owner],
                        },
                        "spec": spec,
                    }
                    self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ATTRIBUTIONS, body)
                else:
                    current["spec"] = spec
                    self.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, ATTRIBUTIONS, name, current)
                return True
            except ApiException as error:
                if error.status != 409:
                    raise
                log.info("conflict writing FlowAttribution %s/%s; merging again", namespace, name)
        raise RuntimeError(f"FlowAttribution {namespace}/{name}: gave up after {MAX_CONFLICT_RETRIES} conflicts")

    def patch_report_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object_status(GROUP, VERSION, REPORTS, name, {"status": status})

    def list_reports(self) -> list[dict[str, Any]]:
        found = cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, REPORTS))
        return list(found.get("items", []))

    def event(self, namespace: str, involved: dict[str, Any], reason: str, message: str, kind: str = "Warning") -> None:
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="natflow-", namespace=namespace),
            involved_object=client.V1ObjectReference(**involved),
            reason=reason,
            message=message[:1024],
            type=kind,
            source=client.V1EventSource(component="natflow"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException as error:  # an Event is best effort: never fail a report for it
            log.warning("could not post Event %s: %s %s", reason, error.reason, (error.body or "")[:300])
