"""kopf settings of the operator that change what kopf does per watch event."""

from __future__ import annotations

from typing import cast

import kopf

from natflow.handlers import OwnResourcesDiffBase, OwnResourcesProgressStorage


def test_kopf_keeps_the_last_handled_state_only_of_flowreports() -> None:
    storage = OwnResourcesDiffBase(prefix="natflow.io")
    pod = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "labels": {"app": "web"}},
                     "spec": {"nodeName": "n1"}, "status": {"podIP": "10.0.1.5"}})  # fmt: skip
    assert storage.build(body=pod) == {}
    report = kopf.Body({"apiVersion": "natflow.io/v1alpha1", "kind": "FlowReport",
                        "metadata": {"name": "daily", "labels": {"team": "a"}}, "spec": {"interval": "1h"}})  # fmt: skip
    assert storage.build(body=report) == {"metadata": {"labels": {"team": "a"}}, "spec": {"interval": "1h"}}


def test_kopf_looks_for_no_last_handled_state_of_watched_objects() -> None:
    storage = OwnResourcesDiffBase(prefix="natflow.io")
    key = "natflow.io/last-handled-configuration"
    pod = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "annotations": {key: "{}"}}})
    assert storage.fetch(body=pod) is None
    report = kopf.Body({"apiVersion": "natflow.io/v1alpha1", "kind": "FlowReport",
                        "metadata": {"name": "daily", "annotations": {key: '{"spec": {"interval": "1h"}}'}}})  # fmt: skip
    assert storage.fetch(body=report) == {"spec": {"interval": "1h"}}


def test_kopf_clears_its_progress_keys_only_from_essences_that_have_any() -> None:
    storage = OwnResourcesProgressStorage(prefix="natflow.io")
    empty = cast(kopf.BodyEssence, {})
    assert storage.clear(essence=empty) == {} and storage.clear(essence=empty) is not empty
    essence = cast(kopf.BodyEssence, {"metadata": {"annotations": {"natflow.io/report_timer": "{}", "team": "a"}}})
    assert storage.clear(essence=essence) == {"metadata": {"annotations": {"team": "a"}}}
