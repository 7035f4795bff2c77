"""The time-indexed IP map: pod leases, node-owned addresses and prefixes, overlap rules.

Property tests check that lookups tile the asked interval exactly and agree, second by second,
with a brute-force reading of non-overlapping leases; example tests pin the overlap rules.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from natflow.cluster.ipmap import IpMap, NodeAddress
from natflow.cluster.objects import PodRecord
from tests.unit.held import held

BASE = PodRecord(
    uid="u",
    namespace="ns",
    name="p",
    node="n1",
    ips=("10.0.1.5",),
    host_network=False,
    start=0,
    end=None,
    end_is_estimate=False,
    owner=None,
    template_hash=None,
    branch_eni=False,
)


def pod(uid: str, start: int, end: int | None, ip: str = "10.0.1.5", **changes: object) -> PodRecord:
    return replace(BASE, uid=uid, name=uid, ips=(ip,), start=start, end=end, **changes)  # type: ignore[arg-type]


def holders(ipmap: IpMap, address: str, first: int, last: int) -> list[tuple[int, int, str]]:
    found = []
    for start, end, pod, node in held(ipmap, address, first, last):
        who = pod.uid if pod else (f"node:{node.node}" if node else "-")
        found.append((start, end, who))
    return found


@st.composite
def disjoint_leases(draw: st.DrawFn) -> list[tuple[int, int]]:
    cuts = sorted(draw(st.sets(st.integers(0, 1000), min_size=2, max_size=12)))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    return [(a, b) for a, b in pairs if b > a]


@settings(max_examples=200, deadline=None)
@given(disjoint_leases(), st.integers(-50, 1050), st.integers(0, 300), st.randoms())
def test_lookup_tiles_the_interval_and_matches_brute_force(
    leases: list[tuple[int, int]], first: int, length: int, rnd: object
) -> None:
    ipmap = IpMap()
    order = list(range(len(leases)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for index in order:  # insertion order must not matter
        start, end = leases[index]
        ipmap.put_pod(pod(f"p{index}", start, end))
    last = first + length
    segments = holders(ipmap, "10.0.1.5", first, last)
    assert segments[0][0] == first and segments[-1][1] == last + 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(segments))
    for start, end, who in segments:
        for second in {start, end - 1, (start + end) // 2}:
            expected = next((f"p{i}" for i, (a, b) in enumerate(leases) if a <= second < b), "-")
            assert who == expected


def test_a_lease_without_end_ends_when_the_next_holder_starts() -> None:
    ipmap = IpMap()
    ipmap.put_pod(pod("old", 100, None))
    ipmap.put_pod(pod("new", 200, None))
    assert holders(ipmap, "10.0.1.5", 150, 249) == [(150, 200, "old"), (200, 250, "new")]


def test_a_later_holder_starts_no_earlier_than_the_previous_end() -> None:
    ipmap = IpMap()
    ipmap.put_pod(pod("job", 100, 300))  # completed Job pod: IP freed at its finishedAt
    ipmap.put_pod(pod("web", 250, None))  # clock skew: claims the IP before the job finished
    assert holders(ipmap, "10.0.1.5", 200, 399) == [(200, 300, "job"), (300, 400, "web")]


def test_a_lease_wholly_inside_another_is_a_conflict() -> None:
    ipmap = IpMap()
    ipmap.put_pod(pod("a", 100, 400))
    ipmap.put_pod(pod("b", 150, 200))
    assert holders(ipmap, "10.0.1.5", 100, 399) == [(100, 400, "a")]
    assert ipmap.lease_conflicts == 1


def test_updates_replace_a_pods_lease() -> None:
    ipmap = IpMap()
    ipmap.put_pod(pod("a", 100, None))
    ipmap.put_pod(pod("a", 100, 150))  # the pod finished
    assert holders(ipmap, "10.0.1.5", 100, 199) == [(100, 150, "a"), (150, 200, "-")]


def test_host_network_pods_hold_no_address() -> None:
    ipmap = IpMap()
    ipmap.put_pod(pod("h", 0, None, ip="10.0.0.10", host_network=True))
    assert holders(ipmap, "10.0.0.10", 0, 9) == [(0, 10, "-")]


def test_node_owns_secondary_ips_and_prefixes_when_no_pod_holds_them() -> None:
    ipmap = IpMap()
    ipmap.put_node_addresses(
        "n1",
        [
            ("10.0.0.10", NodeAddress("n1", "eni-a", True)),
            ("10.0.0.11", NodeAddress("n1", "eni-a", False)),
            ("10.0.2.16/28", NodeAddress("n1", "eni-b", False)),
        ],
        start=0,
        end=1000,
    )
    ipmap.put_pod(pod("p", 100, 200, ip="10.0.2.20"))
    assert holders(ipmap, "10.0.2.20", 50, 249) == [(50, 100, "node:n1"), (100, 200, "p"), (200, 250, "node:n1")]
    ((_, _, _, node),) = held(ipmap, "10.0.0.10", 0, 0)
    assert node is not None and node.primary
    assert holders(ipmap, "10.0.2.32", 0, 0) == [(0, 1, "-")]  # outside the /28
    assert holders(ipmap, "10.0.0.11", 990, 1009) == [(990, 1000, "node:n1"), (1000, 1010, "-")]


def test_prune_forgets_leases_that_ended_before_the_cutoff() -> None:
    ipmap = IpMap()
    ipmap.put_pod(pod("old", 0, 100))
    ipmap.put_pod(pod("live", 200, None, ip="10.0.1.6"))
    assert ipmap.prune(before=150) == 1
    assert holders(ipmap, "10.0.1.5", 50, 50) == [(50, 51, "-")]
    assert [p.uid for p in ipmap.pods()] == ["live"]


def test_ipv6_addresses_are_matched_in_canonical_form() -> None:
    ipmap = IpMap()
    ipmap.put_pod(pod("v6", 0, None, ip="2001:db8::1"))
    assert holders(ipmap, "2001:0db8:0000::0001", 5, 5) == [(5, 6, "v6")]
