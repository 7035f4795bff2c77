"""The leg-matching rules: what each record of AWS's NAT example is, and which internet legs belong
to which inside legs (hypothesis: generated connections through one gateway, shuffled)."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from natflow.aws.inventory import Inventory, NatGateway, NatGatewayAddress, NetworkInterface
from natflow.net import CidrSet
from natflow.trace.legs import (
    BACK,
    DESTINATION_ENI,
    NAT_INSIDE,
    NAT_INTERNET,
    OUT,
    SOURCE_ENI,
    Leg,
    classify,
    conversations,
    match_internet_legs,
)
from natflow.trace.network import build_network
from natflow.trace.records import FlowRecord

POD, NODE_ENI, NAT_ENI, NAT_IP, PUBLIC, REMOTE = (
    "10.0.17.42",
    "eni-0node",
    "eni-0nat",
    "10.0.0.77",
    "3.216.41.7",
    "140.82.112.4",
)
REGIONAL, REGIONAL_PUBLIC = "nat-0regional", "35.170.0.10"


def network():  # type: ignore[no-untyped-def]
    inventory = Inventory()
    inventory.add_nat_gateways(
        [
            NatGateway(
                NatGatewayId="nat-0a",
                SubnetId="subnet-a",
                NatGatewayAddresses=[NatGatewayAddress(NetworkInterfaceId=NAT_ENI, PrivateIp=NAT_IP, PublicIp=PUBLIC)],
            ),
            NatGateway(
                NatGatewayId=REGIONAL,
                AvailabilityMode="regional",
                NatGatewayAddresses=[NatGatewayAddress(NetworkInterfaceId="eni-0reg", PublicIp=REGIONAL_PUBLIC)],
            ),
        ]
    )
    inventory.add_interfaces(
        [
            NetworkInterface(
                NetworkInterfaceId=NODE_ENI,
                PrivateIpAddress="10.0.17.23",
                PrivateIpAddresses=[{"PrivateIpAddress": POD}],
                AvailabilityZone="us-east-1a",
            )
        ]
    )
    return build_network(inventory, CidrSet(["10.0.0.0/16"]), [])


def record(
    interface: str | None,
    src: str,
    dst: str,
    sport: int,
    dport: int,
    pkt_src: str | None = None,
    pkt_dst: str | None = None,
    start: int = 1000,
    packets: int = 10,
    nbytes: int = 5000,
    resource: str | None = None,
) -> FlowRecord:
    return FlowRecord(
        interface,
        resource,
        src,
        dst,
        pkt_src or src,
        pkt_dst or dst,
        sport,
        dport,
        6,
        packets,
        nbytes,
        start,
        start + 30,
        "ACCEPT",
        "OK",
        None,
        None,
        None,
        None,
        f"test:{start}:{sport}:{dport}",
    )


def test_the_six_records_of_awss_nat_example() -> None:
    net, subject = network(), frozenset({POD})
    cases = [
        (record(NODE_ENI, POD, REMOTE, 40001, 443), SOURCE_ENI, OUT, POD, REMOTE, 443, 40001),
        (record(NAT_ENI, POD, NAT_IP, 40001, 443, pkt_dst=REMOTE), NAT_INSIDE, OUT, POD, REMOTE, 443, 40001),
        (record(NAT_ENI, NAT_IP, REMOTE, 20001, 443), NAT_INTERNET, OUT, None, REMOTE, 443, 20001),
        (record(NAT_ENI, REMOTE, NAT_IP, 443, 20001), NAT_INTERNET, BACK, None, REMOTE, 443, 20001),
        (record(NAT_ENI, NAT_IP, POD, 443, 40001, pkt_src=REMOTE), NAT_INSIDE, BACK, POD, REMOTE, 443, 40001),
        (record(NODE_ENI, REMOTE, POD, 443, 40001), DESTINATION_ENI, BACK, POD, REMOTE, 443, 40001),
    ]
    for flow, role, direction, inside, remote, remote_port, local_port in cases:
        leg = classify(flow, net, subject)
        assert leg is not None
        assert (leg.role, leg.direction, leg.inside, leg.remote, leg.remote_port, leg.local_port) == (
            role,
            direction,
            inside,
            remote,
            remote_port,
            local_port,
        )


def test_a_format_without_pkt_fields_leaves_the_remote_unknown_never_guessed() -> None:
    flow = dataclasses.replace(record(NAT_ENI, POD, NAT_IP, 40001, 443), pkt_srcaddr=None, pkt_dstaddr=None)
    leg = classify(flow, network(), frozenset({POD}))
    assert leg is not None and (leg.role, leg.remote) == (NAT_INSIDE, None)


def test_a_format_without_interface_id_finds_the_nat_eni_by_its_private_ip() -> None:
    leg = classify(record(None, POD, NAT_IP, 40001, 443, pkt_dst=REMOTE), network(), frozenset({POD}))
    assert leg is not None and (leg.interface_id, leg.role) == (NAT_ENI, NAT_INSIDE)


def test_regional_records_are_the_gateways_by_resource_id() -> None:
    net, subject = network(), frozenset({POD})
    inside = classify(record(None, POD, REMOTE, 40001, 443, resource=REGIONAL), net, subject)
    internet = classify(record(None, REGIONAL_PUBLIC, REMOTE, 30001, 443, resource=REGIONAL), net, subject)
    reply = classify(record(None, REMOTE, POD, 443, 40001, resource=REGIONAL), net, subject)
    stray = classify(record(None, "8.8.8.8", REMOTE, 1, 443, resource=REGIONAL), net, subject)
    assert inside is not None and (inside.role, inside.direction, inside.interface_kind) == (
        NAT_INSIDE,
        OUT,
        "regional-nat-gateway",
    )
    assert internet is not None and (internet.role, internet.nat_address) == (NAT_INTERNET, REGIONAL_PUBLIC)
    assert reply is not None and (reply.role, reply.direction, reply.remote) == (NAT_INSIDE, BACK, REMOTE)
    assert stray is None  # fits neither rule: not guessed


def test_records_of_other_addresses_are_no_legs() -> None:
    assert classify(record(NODE_ENI, "10.0.17.99", REMOTE, 1, 443), network(), frozenset({POD})) is None


connection_sets = st.lists(
    st.tuples(
        st.integers(0, 3), st.integers(1, 5000), st.integers(0, 3000), st.integers(1, 10**7), st.integers(1, 10**7)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(connection_sets, st.randoms(use_true_random=False))
def test_internet_legs_go_to_their_own_connections(
    draws: list[tuple[int, int, int, int, int]], rng: random.Random
) -> None:
    """Each connection (remote, packets, start, bytes out, bytes in) leaves its inside and internet
    legs; whatever their order, each internet leg is matched to an inside leg of the same route,
    one connection to one; and where no two connections of a route look alike, to its own."""
    net, subject = network(), frozenset({POD})
    remotes = ["140.82.112.4", "151.101.0.223", "104.16.132.229", "52.216.141.99"]
    inside: list[Leg] = []
    internet: list[Leg] = []
    truth: dict[int, int] = {}  # internet leg index -> client port of its connection
    for number, (remote_index, packets, offset, out_bytes, in_bytes) in enumerate(draws):
        remote, client, nat = remotes[remote_index], 32768 + number, 1024 + number
        start = 1_800_000_000 + offset
        for flow in (
            record(NAT_ENI, POD, NAT_IP, client, 443, pkt_dst=remote, start=start, packets=packets, nbytes=out_bytes),
            record(NAT_ENI, NAT_IP, POD, 443, client, pkt_src=remote, start=start, packets=packets, nbytes=in_bytes),
        ):
            leg = classify(flow, net, subject)
            assert leg is not None
            inside.append(leg)
        for flow in (
            record(NAT_ENI, NAT_IP, remote, nat, 443, start=start + 1, packets=packets, nbytes=out_bytes),
            record(NAT_ENI, remote, NAT_IP, 443, nat, start=start + 1, packets=packets, nbytes=in_bytes),
        ):
            leg = classify(flow, net, subject)
            assert leg is not None
            truth[len(internet)] = client
            internet.append(leg)
    order = list(range(len(internet)))
    rng.shuffle(order)
    shuffled = [internet[i] for i in order]
    rng.shuffle(inside)
    matched = match_internet_legs(inside, shuffled, net)
    assert len(matched) == len(shuffled)  # every connection has its counterpart here
    owner_of_nat_port: dict[int | None, int | None] = {}
    for index, owner in matched.items():
        leg = shuffled[index]
        assert (owner.gateway_id, owner.remote, owner.remote_port) == (leg.gateway_id, leg.remote, leg.remote_port)
        # one connection to one: both legs of a NAT port go to one client port, and no other port shares it
        assert owner_of_nat_port.setdefault(leg.local_port, owner.local_port) == owner.local_port
    assert len(set(owner_of_nat_port.values())) == len(owner_of_nat_port)
    looks = [(remotes[r], p, o, b) for r, p, _, o, b in draws]
    if len(set(looks)) == len(looks):
        for index, owner in matched.items():
            assert owner.local_port == truth[order[index]]
    # grouped, every conversation's internet bytes are its inside bytes
    for conversation in conversations(inside, shuffled, net):
        for direction in (OUT, BACK):
            assert sum(leg.record.bytes or 0 for leg in conversation.of(NAT_INSIDE, direction)) == sum(
                leg.record.bytes or 0 for leg in conversation.of(NAT_INTERNET, direction)
            )
