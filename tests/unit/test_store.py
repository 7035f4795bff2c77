"""The SQLite store: what is saved comes back as the same cluster state; pruning by retention."""

from __future__ import annotations

from pathlib import Path

from natflow.cluster.objects import NodeRecord, OwnerRef, PodRecord, SnatSetting
from natflow.cluster.state import ClusterState
from natflow.store import Store
from tests.unit.held import held


def test_round_trip_and_prune(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state.sqlite"))
    gone = PodRecord(
        "u1", "shop", "job-1", "n1", ("10.0.1.5",), False, 100, 200, False, OwnerRef("Job", "j"), None, False
    )
    live = PodRecord(
        "u2",
        "shop",
        "web-1",
        "n1",
        ("10.0.1.5",),
        False,
        300,
        None,
        False,
        OwnerRef("ReplicaSet", "web-7d"),
        "7d",
        True,
    )
    with store.batch():
        store.save_pod(gone)
        store.save_pod(live)
        store.save_node(NodeRecord("n", "n1", ("10.0.0.10",), "i-1", 0, None))
        store.save_owner(("shop", "ReplicaSet", "web-7d"), OwnerRef("Deployment", "web"))
        store.save_snat(0, SnatSetting(False, ("10.9.0.0/16",), "strict"))
        store.save_snat(250, None)
    store.close()

    state = ClusterState()
    assert Store(str(tmp_path / "state.sqlite")).load(state) == 2
    assert state.pods == {"u1": gone, "u2": live}
    assert state.workload(live).name == "web"
    assert [pod.uid for _, _, pod, _ in held(state.ipmap, "10.0.1.5", 150, 350) if pod] == ["u1", "u2"]
    assert state.snat.at(10) == SnatSetting(False, ("10.9.0.0/16",), "strict") and state.snat.at(260) is None

    store = Store(str(tmp_path / "state.sqlite"))
    assert store.prune(before=250) == 1
    state = ClusterState()
    assert store.load(state) == 1 and list(state.pods) == ["u2"]
