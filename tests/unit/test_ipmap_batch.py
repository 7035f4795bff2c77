"""The IP map's batched lookup answers exactly as its rule loop does, and bulk loads build the same map.

Random histories mix pod leases that reuse addresses (open ends, ends before starts, overlaps,
several IPs, IPv6 in any spelling, hostNetwork flips, renames, drops), node addresses (/32s, /28
and wider prefixes, IPv6) and prunes, with the rebuild threshold tiny (bulk rebuilds all the time)
or huge (every address resolved one by one); queries include addresses nobody ever held.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass, replace
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natflow.cluster import ipmap as ipmap_module
from natflow.cluster.ipmap import IpMap, NodeAddress, PodColumns
from natflow.cluster.objects import OwnerRef, PodRecord
from natflow.cluster.state import ClusterState
from natflow.store import Store
from tests.unit.held import held, held_by_rules, held_many

POD_ADDRESSES = ["10.0.2.17", "10.0.2.18", "10.0.2.30", "10.0.3.5", "10.0.0.10", "2001:db8::1", "2001:db8::a"]
QUERY_ADDRESSES = [
    *POD_ADDRESSES,
    "10.0.2.20",  # inside the /28, never a pod's
    "10.0.9.9",  # inside the /16 only
    "192.168.1.1",  # nobody's
    "2001:0db8:0::0001",  # another spelling of 2001:db8::1
    "2001:db8::ff",  # inside the IPv6 prefix
    "010.0.2.17",  # not an address (leading zero)
    "junk",
    "",
]
ODD_IPS = ["[x", 'a"b', "a\\b", "é", "2001:0DB8::1", " 10.0.2.17"]  # as the store must keep them
NODE_CIDRS = [
    "10.0.0.10",
    "10.0.2.17",
    "10.0.2.18/32",
    "10.0.2.16/28",
    "10.0.2.0/24",
    "10.0.0.0/16",
    "2001:db8::/120",
    "2001:db8::a",
]
NODES = ["n1", "n2", "n3"]
BASE = PodRecord("u", "ns", "p", "n1", ("10.0.0.1",), False, 0, None, False, None, None, False)
times = st.integers(0, 120)

pods = st.builds(
    PodRecord,
    uid=st.sampled_from("abcdefghij"),
    namespace=st.sampled_from(["shop", "ops"]),
    name=st.sampled_from(["web", "job"]),
    node=st.sampled_from(NODES),
    ips=st.lists(st.sampled_from(POD_ADDRESSES), min_size=1, max_size=2).map(tuple),
    host_network=st.sampled_from([False, False, False, True]),
    start=times,
    end=st.none() | times,
    end_is_estimate=st.booleans(),
    owner=st.none() | st.sampled_from([OwnerRef("ReplicaSet", "web-7d"), OwnerRef("Job", "nightly")]),
    template_hash=st.none() | st.just("7d"),
    branch_eni=st.booleans(),
)
node_puts = st.tuples(
    st.sampled_from(NODES),
    st.dictionaries(st.sampled_from(NODE_CIDRS), st.booleans(), max_size=4),
    times,
    st.none() | times,
)
operations = st.one_of(
    st.tuples(st.just("put"), pods),
    st.tuples(st.just("put_pods"), st.lists(pods, max_size=6)),
    st.tuples(st.just("drop"), st.sampled_from("abcdefghij")),
    st.tuples(st.just("node"), node_puts),
    st.tuples(st.just("drop_node"), st.sampled_from(NODES)),
    st.tuples(st.just("prune"), times),
)
queries = st.lists(st.tuples(st.sampled_from(QUERY_ADDRESSES), st.integers(-10, 130), st.integers(0, 60)), max_size=10)
thresholds = st.sampled_from([1, 3, 1_000_000])


@dataclass
class Queries:
    addresses: list[str]
    firsts: list[int]
    lasts: list[int]


def apply(ipmap: IpMap, operation: tuple[str, object]) -> None:
    kind, argument = operation
    if kind == "put":
        assert isinstance(argument, PodRecord)
        ipmap.put_pod(argument)
    elif kind == "put_pods":
        assert isinstance(argument, list)
        ipmap.put_pods(argument)
    elif kind == "drop":
        assert isinstance(argument, str)
        ipmap.drop_pod(argument)
    elif kind == "node":
        node, cidrs, start, end = argument  # type: ignore[misc]
        ipmap.put_node_addresses(node, [(c, NodeAddress(node, "eni-1", p)) for c, p in cidrs.items()], start, end)
    elif kind == "drop_node":
        assert isinstance(argument, str)
        ipmap.drop_node(argument)
    else:
        assert isinstance(argument, int)
        ipmap.prune(argument)


def split(rows: list[tuple[str, int, int]]) -> Queries:
    return Queries([a for a, _, _ in rows], [f for _, f, _ in rows], [f + length for _, f, length in rows])


def assert_batch_answers_as_the_rules(ipmap: IpMap, asked: Queries) -> None:
    expected = [held_by_rules(ipmap, *query) for query in zip(asked.addresses, asked.firsts, asked.lasts, strict=True)]
    assert held_many(ipmap, asked.addresses, asked.firsts, asked.lasts) == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(operations, queries), max_size=10), thresholds, st.sampled_from([2, 1 << 17]))
def test_lookup_columns_answers_as_the_rules(
    steps: list[tuple[tuple[str, object], list]], threshold: int, parallel: int
) -> None:
    """Also with batches split over two threads from two queries up."""
    with (
        mock.patch.object(ipmap_module, "REBUILD_MIN_CHANGES", threshold),
        mock.patch.object(ipmap_module, "PARALLEL_QUERIES", parallel),
    ):
        ipmap = IpMap()
        for operation, rows in steps:
            apply(ipmap, operation)
            assert_batch_answers_as_the_rules(ipmap, split(rows))


@settings(max_examples=300, deadline=None)
@given(st.lists(pods, max_size=25), st.lists(node_puts, max_size=3), queries)
def test_bulk_rebuild_resolves_as_the_rules_do_one_address_at_a_time(
    leases: list[PodRecord], nodes: list[tuple[str, dict[str, bool], int, int | None]], rows: list
) -> None:
    """The vectorised rebuild (tiny threshold) against the rule loop per address (huge threshold)."""
    maps = []
    for threshold in (1, 1_000_000):
        with mock.patch.object(ipmap_module, "REBUILD_MIN_CHANGES", threshold):
            ipmap = IpMap()
            for node, cidrs, start, end in nodes:
                ipmap.put_node_addresses(node, [(c, NodeAddress(node, None, p)) for c, p in cidrs.items()], start, end)
            for pod in leases:
                ipmap.put_pod(pod)
            if threshold == 1:
                ipmap.pod_address_count()  # rebuilds whatever is left
            maps.append(ipmap)
    bulk, one_by_one = maps
    asked = split(rows)
    queries = list(zip(asked.addresses, asked.firsts, asked.lasts, strict=True))
    assert [held_by_rules(bulk, *query) for query in queries] == [
        held_by_rules(one_by_one, *query) for query in queries
    ]
    assert bulk.lease_conflicts == one_by_one.lease_conflicts
    assert bulk.pod_address_count() == one_by_one.pod_address_count()


@settings(max_examples=300, deadline=None)
@given(st.lists(pods, max_size=12), st.lists(pods, max_size=30), queries)
def test_put_pods_builds_the_map_put_pod_builds(before: list[PodRecord], batch: list[PodRecord], rows: list) -> None:
    """Bulk loads (new, existing and repeated uids, hostNetwork pods) end as one-by-one puts do."""
    bulk, one_by_one = IpMap(), IpMap()
    for pod in before:
        bulk.put_pod(pod)
        one_by_one.put_pod(pod)
    bulk.put_pods(batch)
    for pod in batch:
        one_by_one.put_pod(pod)
    assert dict(bulk.pod_records) == dict(one_by_one.pod_records)
    expected = {pod.uid: pod for pod in [*before, *batch]}
    assert dict(bulk.pod_records) == {uid: pod for uid, pod in expected.items() if not pod.host_network}
    asked = split(rows)
    assert held_many(bulk, asked.addresses, asked.firsts, asked.lasts) == held_many(
        one_by_one, asked.addresses, asked.firsts, asked.lasts
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(pods, max_size=20), st.lists(pods, max_size=20), times, times)
def test_cluster_state_bulk_load_matches_one_by_one(
    before: list[PodRecord], batch: list[PodRecord], start: int, length: int
) -> None:
    bulk, one_by_one = ClusterState(), ClusterState()
    for pod in before:
        bulk.put_pod(pod)
        one_by_one.put_pod(pod)
    bulk.put_pod_columns(PodColumns.of(batch))
    for pod in batch:
        one_by_one.put_pod(pod)
    assert bulk.pods == one_by_one.pods and bulk.host_network_pods == one_by_one.host_network_pods
    latest = {pod.uid: pod for pod in [*before, *batch]}
    for node in NODES:
        expected = sorted(
            (
                p
                for p in latest.values()
                if p.node == node and p.start < start + length and (p.end is None or p.end > start)
            ),
            key=lambda p: p.key,
        )
        assert sorted(bulk.pods_on_node(node, start, start + length), key=lambda p: (p.key, p.uid)) == sorted(
            expected, key=lambda p: (p.key, p.uid)
        )
    assert sorted(p.uid for p in bulk.estimated_ends()) == sorted(u for u, p in latest.items() if p.end_is_estimate)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.builds(replace, pods, ips=st.lists(st.sampled_from([*POD_ADDRESSES, *ODD_IPS]), max_size=2).map(tuple)))
)
def test_store_reload_builds_the_state_put_pod_builds(saved: list[PodRecord]) -> None:
    """A restart's bulk load (odd IP texts too) ends as the same pods put one by one."""
    expected = ClusterState()
    for pod in saved:
        expected.put_pod(pod)
    with tempfile.TemporaryDirectory() as directory:
        store = Store(os.path.join(directory, "state.sqlite"))
        with store.batch():
            store.save_pods(saved)
        loaded = ClusterState()
        assert store.load(loaded) == len({pod.uid for pod in saved})
        store.close()
    assert loaded.pods == expected.pods and loaded.host_network_pods == expected.host_network_pods
    asked = split([(address, 0, 120) for address in QUERY_ADDRESSES])
    assert held_many(loaded.ipmap, asked.addresses, asked.firsts, asked.lasts) == [
        held_by_rules(expected.ipmap, *query) for query in zip(asked.addresses, asked.firsts, asked.lasts, strict=True)
    ]


def test_many_pods_survive_table_growth_updates_and_drops() -> None:
    """Thousands of uids through bulk and single puts: the uid table grows, keeps replacements and
    forgets dropped pods; every pod is still found by uid and by address."""
    ipmap = IpMap()
    records = [
        replace(
            BASE,
            uid=f"uid-{i:05d}",
            name=f"p{i}",
            node=f"n{i % 7}",
            ips=(f"10.{i // 250}.{i % 250}.{i % 7}",),
            start=i,
            end=i + 100,
        )
        for i in range(6000)
    ]
    ipmap.put_pods(records[:4000])
    for pod in records[4000:]:
        ipmap.put_pod(pod)
    expected = {pod.uid: pod for pod in records}
    for pod in records[:3000:3]:
        expected[pod.uid] = replace(pod, end=pod.start + 50)
        ipmap.put_pod(expected[pod.uid])
    for pod in records[1::5]:
        del expected[pod.uid]
        ipmap.drop_pod(pod.uid)
    assert len(ipmap.pod_records) == len(expected) and dict(ipmap.pod_records) == expected
    for uid, pod in list(expected.items())[::97]:
        ((_, _, holder, _),) = held(ipmap, pod.ips[0], pod.start, pod.start)
        assert holder == pod and ipmap.pod_records[uid] == pod


octets = st.integers(0, 300).map(str) | st.text("0123456789", max_size=4)
address_texts = (
    st.lists(octets, min_size=1, max_size=6).map(".".join) | st.text("0123456789.:ab\x00 ", max_size=18) | st.text()
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(address_texts, min_size=1, max_size=20))
def test_addresses_are_read_in_bulk_as_ipaddress_reads_them(texts: list[str]) -> None:
    """The vectorised reading of unknown addresses (for prefix matches) agrees with ipaddress."""
    _, _, short, data = ipmap_module._text_keys(texts)
    expected = []
    for text in texts:
        try:
            expected.append(int(ipaddress.IPv4Address(text)))
        except ValueError:
            expected.append(-1)
    if data is None:  # a text that is not ASCII: every text is read alone
        assert [ipmap_module._ipv4_int(text) for text in texts] == expected
    else:
        assert ipmap_module._ipv4_values(data, short).tolist() == expected


def test_a_batch_about_many_changed_addresses_rebuilds_instead_of_answering_one_by_one() -> None:
    """Pods put one by one (a cluster dump, watch events) leave their addresses changed since the
    last rebuild; a large batch about them must not fall back to the rule loop row by row."""
    ipmap = IpMap()
    records = [replace(BASE, uid=f"u{i}", name=f"p{i}", ips=(f"10.1.0.{i}",), start=i) for i in range(200)]
    for pod in records:
        ipmap.put_pod(pod)
    asked = [pod.ips[0] for pod in records] * 25
    with mock.patch.object(IpMap, "_pieces", side_effect=AssertionError("answered one by one")):
        columns = ipmap.lookup_columns(asked, [500] * len(asked), [560] * len(asked))
    assert [ipmap.pod_at(holder) for holder in columns.holders[:200].tolist()] == records
