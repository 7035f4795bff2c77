"""The IP map's history on disk (SQLite), so that it survives restarts and moves.

Flow logs arrive 5-15 minutes late and reports re-read past windows, so the leases of pods that
are already gone must outlive the process. Every pod/node/owner/SNAT change is written here and
the cluster state is rebuilt from it on start; rows older than the retention are pruned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from natflow.cluster.objects import NodeRecord, OwnerRef, PodRecord, SnatSetting
from natflow.cluster.state import ClusterState

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
"""


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

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
        owner = pod.owner
        self._db.execute(
            "INSERT OR REPLACE INTO pods VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
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
            ),
        )

    def save_node(self, node: NodeRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?,?)",
            (node.name, node.uid, json.dumps(node.internal_ips), node.instance_id, node.start, node.end),
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
                }
            )
        self._db.execute("INSERT OR REPLACE INTO snat VALUES (?,?)", (since, encoded))

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
                setting = SnatSetting(data["externalSnat"], tuple(data["exclude"]), data["podSgMode"])
            state.snat.set(since, setting)
        for row in self._db.execute("SELECT * FROM nodes"):
            name, uid, ips, instance_id, start, end = row
            state.put_node(NodeRecord(uid, name, tuple(json.loads(ips)), instance_id, start, end))
        count = 0
        for row in self._db.execute("SELECT * FROM pods"):
            (
                uid,
                namespace,
                name,
                node,
                ips,
                host,
                start,
                end,
                estimate,
                owner_kind,
                owner_name,
                template_hash,
                branch,
            ) = row
            state.put_pod(
                PodRecord(
                    uid,
                    namespace,
                    name,
                    node,
                    tuple(json.loads(ips)),
                    bool(host),
                    start,
                    end,
                    bool(estimate),
                    OwnerRef(owner_kind, owner_name) if owner_kind else None,
                    template_hash,
                    bool(branch),
                )
            )
            count += 1
        return count
