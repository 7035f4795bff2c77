"""natflow.cluster.dump: Lists, watch streams, damaged files, duplicate uids and empty inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from natflow import jsonstream
from natflow.cluster.dump import SKIPS_NAMED_PER_FILE, NoUsableObjects, load_cluster
from natflow.cluster.state import ClusterState
from natflow.diagnostics import Diagnostics
from natflow.timeutil import parse_time


def pod(index: int, version: int = 100, node: str = "n1", uid: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"web-{index}",
            "namespace": "shop",
            "uid": uid or f"pod-uid-{index}",
            "resourceVersion": str(version),
            "creationTimestamp": "2026-11-20T10:00:00Z",
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {"f:podIP": {}}}}],
        },
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "web:1"}]},
        "status": {"phase": "Running", "podIP": f"10.0.1.{index}", "podIPs": [{"ip": f"10.0.1.{index}"}]},
    }


def node(name: str = "n1", version: int = 50, uid: str = "node-uid-1") -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": uid,
            "resourceVersion": str(version),
            "creationTimestamp": "2026-11-20T00:00:00Z",
        },
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.250"}]},
    }


def listing(*items: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "v1", "items": list(items), "kind": "List", "metadata": {}}, indent=4)


def watch(*events: tuple[str, dict[str, Any]]) -> str:
    return "\n".join(json.dumps({"type": kind, "object": obj}, indent=4) for kind, obj in events) + "\n"


def load(*paths: Path) -> tuple[ClusterState, Diagnostics]:
    diagnostics = Diagnostics()
    state, _ = load_cluster([str(path) for path in paths], diagnostics)
    return state, diagnostics


def reasons(diagnostics: Diagnostics) -> list[str]:
    return [item.reason for item in diagnostics.items]


def test_a_list_and_a_watch_stream_merge_by_uid(tmp_path: Path) -> None:
    (tmp_path / "a-cluster.json").write_text(listing(node(), pod(1), pod(2)))
    deleted = pod(2, version=300)
    deleted["metadata"]["deletionTimestamp"] = "2026-11-20T11:00:00Z"
    bookmark = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "400"}}
    (tmp_path / "b-watch.json").write_text(
        watch(("MODIFIED", pod(3, version=200)), ("DELETED", deleted), ("BOOKMARK", bookmark))
    )
    diagnostics = Diagnostics()
    state, stats = load_cluster([str(tmp_path)], diagnostics)
    assert diagnostics.items == []
    assert (stats.files_read, stats.objects_read, stats.objects_used) == (2, 5, 4)
    assert sorted(state.pods) == ["pod-uid-1", "pod-uid-2", "pod-uid-3"]
    assert state.pods["pod-uid-2"].end == parse_time("2026-11-20T11:00:00Z")
    assert state.pods["pod-uid-1"].end is None and list(state.nodes) == ["n1"]


def test_items_of_a_typed_list_take_its_kind(tmp_path: Path) -> None:
    item = pod(1)
    del item["kind"]
    (tmp_path / "pods.json").write_text(json.dumps({"kind": "PodList", "apiVersion": "v1", "items": [item]}))
    state, diagnostics = load(tmp_path / "pods.json")
    assert list(state.pods) == ["pod-uid-1"] and diagnostics.items == []


def test_a_deleted_event_older_than_the_kept_version_still_ends_the_pod(tmp_path: Path) -> None:
    newer = pod(1, version=500)
    newer["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-20T10:30:00Z"}]
    (tmp_path / "a.json").write_text(listing(node(), newer))
    (tmp_path / "b.json").write_text(watch(("DELETED", pod(1, version=400))))
    state, diagnostics = load(tmp_path)
    record = state.pods["pod-uid-1"]
    assert record.end == parse_time("2026-11-20T10:30:00Z") and record.end_is_estimate
    assert diagnostics.items == []  # two numbered versions of one object are its history


def test_a_truncated_watch_stream_keeps_the_objects_before_the_cut(tmp_path: Path) -> None:
    text = watch(("ADDED", node()), ("ADDED", pod(1)), ("ADDED", pod(2)))
    cut = text.index('"name": "web-2"')
    path = tmp_path / "watch.json"
    path.write_text(text[:cut])
    state, diagnostics = load(path)
    assert list(state.pods) == ["pod-uid-1"]
    [warning] = diagnostics.items
    assert warning.reason == "ClusterFileTruncated"
    assert warning.message == (
        f"{path}: truncated at byte {cut}: the input ends inside a value; kept the 2 objects before it"
    )


def test_bytes_that_are_not_utf8_end_the_file_there(tmp_path: Path) -> None:
    text = listing(node(), pod(1), pod(2)).encode()
    bad = text.index(b"web-2")
    path = tmp_path / "pods.json"
    path.write_bytes(text[:bad] + b"\xff\xfe" + text[bad:])
    state, diagnostics = load(path)
    assert list(state.pods) == ["pod-uid-1"]
    [warning] = diagnostics.items
    assert warning.reason == "ClusterFileUnreadable"
    assert f"{path}: not kubectl JSON: not UTF-8 at byte {bad}; kept the 2 objects before it" == warning.message


def test_deep_nesting_is_one_warning_and_the_other_files_count(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(listing(node(), pod(1)))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    inner = pod(2)
    inner["metadata"]["labels"] = {"x": "PLACEHOLDER"}
    (tmp_path / "deep-item.json").write_text(listing(inner).replace('"PLACEHOLDER"', "[" * 5000 + "]" * 5000))
    state, diagnostics = load(tmp_path)
    assert list(state.pods) == ["pod-uid-1"]
    messages = {item.message for item in diagnostics.items}
    assert any(m.startswith(f"{tmp_path / 'deep.json'}: not kubectl JSON: JSON nested deeper than") for m in messages)
    assert any(m.startswith(f"{tmp_path / 'deep-item.json'}: not kubectl JSON: JSON nested deeper") for m in messages)


def test_a_huge_string_is_refused_and_what_came_before_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonstream, "MAX_VALUE_CHARS", 1 << 16)
    huge = pod(2)
    huge["metadata"]["annotations"] = {"note": "x" * (1 << 17)}
    (tmp_path / "pods.json").write_text(listing(node(), pod(1), huge, pod(3)))
    state, diagnostics = load(tmp_path / "pods.json")
    assert list(state.pods) == ["pod-uid-1"]
    assert "a single JSON value larger than" in diagnostics.items[0].message


def test_a_time_that_is_a_huge_value_is_shown_short(tmp_path: Path) -> None:
    bad = pod(2)
    bad["metadata"]["creationTimestamp"] = "9" * 100_000
    (tmp_path / "pods.json").write_text(listing(node(), pod(1), bad))
    state, diagnostics = load(tmp_path / "pods.json")
    assert list(state.pods) == ["pod-uid-1"]
    [warning] = diagnostics.items
    assert warning.reason == "ClusterObjectSkipped" and len(warning.message) < 300
    assert "Pod shop/web-2: metadata.creationTimestamp is not a time" in warning.message


def test_same_uid_with_equal_versions_and_different_content_warns_and_keeps_the_later(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(listing(node(), pod(1, version=100, node="n1")))
    (tmp_path / "b.json").write_text(listing(pod(1, version=100, node="n2")))
    state, diagnostics = load(tmp_path)
    assert state.pods["pod-uid-1"].node == "n2"
    [warning] = diagnostics.items
    assert warning.reason == "ClusterObjectDuplicate"
    assert warning.message.startswith(
        f"1 uid with different content in both {tmp_path / 'a.json'} and {tmp_path / 'b.json'}; kept the later-read (equal resourceVersions); first: uid pod-uid-1: Pod at "
        f"{tmp_path / 'a.json'} value 1 item 1 (resourceVersion 100) and Pod shop/web-1 at {tmp_path / 'b.json'} "
        f"value 1 item 0 (resourceVersion 100): kept {tmp_path / 'b.json'} value 1 item 0"
    )


def test_same_uid_in_two_kinds_names_both_and_keeps_the_newest(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(listing(node(version=900, uid="shared"), pod(1)))
    (tmp_path / "b.json").write_text(listing(pod(2, version=100, uid="shared")))
    state, diagnostics = load(tmp_path)
    assert list(state.nodes) == ["n1"] and "shared" not in state.pods
    [warning] = diagnostics.items
    assert "kept the newest resourceVersion" in warning.message
    assert "Node at" in warning.message and "Pod shop/web-2 at" in warning.message


def test_same_uid_without_numeric_versions_keeps_the_later_read(tmp_path: Path) -> None:
    first, second = pod(1, node="n1"), pod(1, node="n2")
    first["metadata"]["resourceVersion"] = "abc"
    (tmp_path / "a.json").write_text(listing(node(), first, second))
    state, diagnostics = load(tmp_path)
    assert state.pods["pod-uid-1"].node == "n2"
    [warning] = diagnostics.items
    assert f"1 uid with different content twice in {tmp_path / 'a.json'}" in warning.message
    assert "kept the later-read (resourceVersions are not both numbers)" in warning.message


def test_the_same_object_twice_is_no_warning(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(listing(node(), pod(1)))
    (tmp_path / "b.json").write_text(listing(pod(1)))
    assert load(tmp_path)[1].items == []


def test_no_usable_object_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "services.json").write_text(listing({"kind": "Service", "metadata": {"name": "s"}}))
    with pytest.raises(NoUsableObjects) as raised:
        load(tmp_path)
    assert str(raised.value) == (
        "--cluster: no usable object (a Pod, Node, ReplicaSet, Job or the aws-node DaemonSet) in 1 file, "
        "1 object read (1 Service)"
    )
    (tmp_path / "services.json").write_text("")
    (tmp_path / "cut.json").write_text('{"kind": "List", "items": [{"kind": "Pod", "metad')
    with pytest.raises(NoUsableObjects, match=r"in 2 files, 0 objects read; first problem: .*cut.json: truncated"):
        load(tmp_path)


def test_skipped_objects_are_named_up_to_a_bound_then_counted(tmp_path: Path) -> None:
    junk = [{"kind": "Pod", "metadata": {"uid": f"u{i}"}} for i in range(SKIPS_NAMED_PER_FILE + 5)]
    (tmp_path / "a.json").write_text(listing(node(), *junk))
    diagnostics = Diagnostics()
    _, stats = load_cluster([str(tmp_path)], diagnostics)
    assert stats.objects_skipped == SKIPS_NAMED_PER_FILE + 5
    assert len(diagnostics.items) == SKIPS_NAMED_PER_FILE + 1
    assert diagnostics.items[-1].message == f"{tmp_path / 'a.json'}: 5 more objects skipped"


def test_versions_that_are_no_revision_number_are_not_compared_as_numbers(tmp_path: Path) -> None:
    huge, odd = pod(1, node="n1"), pod(1, node="n2")
    huge["metadata"]["resourceVersion"] = "9" * 5000  # more digits than int() takes
    odd["metadata"]["resourceVersion"] = "²"  # a digit to str.isdigit, not to int()
    (tmp_path / "a.json").write_text(listing(node(), huge, odd))
    state, diagnostics = load(tmp_path)
    assert state.pods["pod-uid-1"].node == "n2"
    [warning] = diagnostics.items
    assert "kept the later-read (resourceVersions are not both numbers)" in warning.message
    assert len(warning.message) < 600
