"""The IP map's history on disk (SQLite), so that it survives restarts and moves.

Flow logs arrive 5-15 minutes late and reports re-read past windows, so the leases of pods that
are already gone must outlive the process. Every pod/node/owner/SNAT change is written here and
the cluster state is rebuilt from it on start; rows older than the retention are pruned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from natflow.cluster.ipmap import PodColumns
from natflow.cluster.objects import NodeRecord, OwnerRef, PodRecord, SnatSetting
from natflow.cluster.state import ClusterState
from natflow.collector import no_cycle_collection

SCHEMA = """
CREATE TABLE IF NOT EXISTS pods (
    uid TEXT PRIMARY KEY, namespace TEXT, name TEXT, node TEXT, ips TEXT, host_network INTEGER,
    start INTEGER, end_time INTEGER, end_is_estimate INTEGER, owner_kind TEXT, owner_name TEXT,
    template_hash TEXT, branch_eni INTEGER);
CREATE INDEX IF NOT EXISTS pods_end ON pods (end_time);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY, uid TEXT, internal_ips TEXT, instance_id TEXT, start INTEGER, end_time INTEGER);
CREATE TABLE IF NOT EXISTS owners (
    namespace TEXT, kind TEXT, name TEXT, owner_kind TEXT, owner_name TEXT, PRIMARY KEY (namespace, kind, name));
CREATE TABLE IF NOT EXISTS snat (since INTEGER PRIMARY KEY, setting TEXT);
CREATE TABLE IF NOT EXISTS snat_sources (
    kind TEXT, name TEXT, since INTEGER, object TEXT, PRIMARY KEY (kind, name, since));
"""
# Columns added since the first schema: (table, column, type).
ADDED_COLUMNS = (("nodes", "nodeclass", "TEXT"),)


POD_COLUMNS = (
    "uid, namespace, name, node, ips, host_network, start, end_time, end_is_estimate, owner_kind, owner_name, "
    "template_hash, branch_eni"
)
# Pods handed to the cluster state at once on load. Small batches keep few rows alive at a time, so
# the few lasting objects a load makes do not pin allocator arenas full of freed rows (at 65536 the
# process kept some 80 MB more for a million pods).
LOAD_CHUNK = 8192


def _addresses(text: str) -> tuple[str, ...]:
    """A pod's JSON list of IPs; one plain address is read without the JSON parser (a million at a restart)."""
    if text.startswith('["') and text.endswith('"]') and text.count('"') == 2 and "\\" not in text:
        return (text[2:-2],)
    return tuple(json.loads(text))


def _pod_row(pod: PodRecord) -> tuple[object, ...]:
    owner = pod.owner
    return (
        pod.uid,
        pod.namespace,
        pod.name,
        pod.node,
        json.dumps(pod.ips),
        int(pod.host_network),
        pod.start,
        pod.end,
        int(pod.end_is_estimate),
        owner.kind if owner else None,
        owner.name if owner else None,
        pod.template_hash,
        int(pod.branch_eni),
    )


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        for table, column, kind in ADDED_COLUMNS:
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes in one transaction (an initial list of 150,000 pods)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def save_pod(self, pod: PodRecord) -> None:
        self.save_pods((pod,))

    def save_pods(self, pods: Iterable[PodRecord]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO pods VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", map(_pod_row, pods))

    def save_node(self, node: NodeRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO nodes (name, uid, internal_ips, instance_id, start, end_time, nodeclass) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                node.name,
                node.uid,
                json.dumps(node.internal_ips),
                node.instance_id,
                node.start,
                node.end,
                node.nodeclass,
            ),
        )

    def save_owner(self, key: tuple[str, str, str], owner: OwnerRef | None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO owners VALUES (?,?,?,?,?)",
            (*key, owner.kind if owner else None, owner.name if owner else None),
        )

    def save_snat(self, since: int, setting: SnatSetting | None) -> None:
        encoded = None
        if setting is not None:
            encoded = json.dumps(
                {
                    "externalSnat": setting.external_snat,
                    "exclude": list(setting.exclude_cidrs),
                    "podSgMode": setting.pod_sg_mode,
                    "ipv6": setting.ipv6,
                }
            )
        self._db.execute("INSERT OR REPLACE INTO snat VALUES (?,?)", (since, encoded))

    def save_snat_source(self, kind: str, name: str, since: int, obj: Mapping[str, Any] | None) -> None:
        """A NodeClass, the cilium-config ConfigMap or a Calico pool object (None: gone) from `since` on."""
        encoded = json.dumps(obj, sort_keys=True) if obj is not None else None
        self._db.execute("INSERT OR REPLACE INTO snat_sources VALUES (?,?,?,?)", (kind, name, since, encoded))

    def open_pod_uids(self) -> set[str]:
        """Pods that still held an IP when last seen (found by the end_time index, no records built)."""
        return {uid for (uid,) in self._db.execute("SELECT uid FROM pods WHERE end_time IS NULL")}

    def prune(self, before: int) -> int:
        """Forget pods that released their IP before `before`; returns how many."""
        cursor = self._db.execute("DELETE FROM pods WHERE end_time IS NOT NULL AND end_time < ?", (before,))
        self._db.execute("DELETE FROM nodes WHERE end_time IS NOT NULL AND end_time < ?", (before,))
        return cursor.rowcount

    def load(self, state: ClusterState) -> int:
        """Rebuild the cluster state from disk; returns the number of pod leases loaded."""
        for row in self._db.execute("SELECT * FROM owners"):
            namespace, kind, name, owner_kind, owner_name = row
            state.owners[(namespace, kind, name)] = OwnerRef(owner_kind, owner_name) if owner_kind else None
        for since, encoded in self._db.execute("SELECT since, setting FROM snat ORDER BY since"):
            setting = None
            if encoded is not None:
                data = json.loads(encoded)
                setting = SnatSetting(
                    data["externalSnat"], tuple(data["exclude"]), data["podSgMode"], bool(data.get("ipv6"))
                )
            state.snat.set(since, setting)
        for kind, name, since, encoded in self._db.execute(
            "SELECT kind, name, since, object FROM snat_sources ORDER BY since, kind, name"
        ):
            state.replay_snat_source(kind, name, since, json.loads(encoded) if encoded is not None else None)
        nodes = "SELECT name, uid, internal_ips, instance_id, start, end_time, nodeclass FROM nodes"
        for name, uid, ips, instance_id, start, end, nodeclass in self._db.execute(nodes):
            state.put_node(NodeRecord(uid, name, tuple(json.loads(ips)), instance_id, start, end, nodeclass))
        cursor = self._db.execute(f"SELECT {POD_COLUMNS} FROM pods")
        with no_cycle_collection():
            count = self._load_pods(cursor, state)
        state.ipmap.rebuild()
        return count

    @staticmethod
    def _load_pods(cursor: sqlite3.Cursor, state: ClusterState) -> int:
        count = 0
        while rows := cursor.fetchmany(LOAD_CHUNK):
            uid, namespace, name, node, ips, host, start, end, estimate, owner_kind, owner_name, template, branch = zip(
                *rows, strict=True
            )
            owners = [(kind, owner) if kind else None for kind, owner in zip(owner_kind, owner_name, strict=True)]
            addresses = [_addresses(text) for text in ips]
            state.put_pod_columns(
                PodColumns(uid, namespace, name, node, addresses, host, start, end, estimate, owners, template, branch)
            )
            count += len(rows)
        return count
