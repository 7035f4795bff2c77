"""kopf settings of the operator that change what kopf does per watch event."""

from __future__ import annotations

import kopf

from natflow.handlers import OwnResourcesDiffBase


def test_kopf_keeps_the_last_handled_state_only_of_flowreports() -> None:
    storage = OwnResourcesDiffBase(prefix="natflow.io")
    pod = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "labels": {"app": "web"}},
                     "spec": {"nodeName": "n1"}, "status": {"podIP": "10.0.1.5"}})  # fmt: skip
    assert storage.build(body=pod) == {}
    report = kopf.Body({"apiVersion": "natflow.io/v1alpha1", "kind": "FlowReport",
                        "metadata": {"name": "daily", "labels": {"team": "a"}}, "spec": {"interval": "1h"}})  # fmt: skip
    assert storage.build(body=report) == {"metadata": {"labels": {"team": "a"}}, "spec": {"interval": "1h"}}
