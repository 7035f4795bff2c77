"""Leg matching: what each record is on the path, and which records make one conversation.

A connection through a zonal NAT gateway leaves up to six records (AWS's NAT example): on the
inside's ENI the packet out (`source-eni`) and the reply (`destination-eni`); on the NAT ENI the
inside legs (inside -> NAT private IP out, NAT private IP -> inside back, `nat-inside`) and the
internet legs (NAT private IP -> remote out, remote -> NAT private IP back, `nat-internet`). A
regional gateway's records name it in `resource-id` (`interface-id` is '-'): its inside legs go
from the inside address straight to the remote, its internet legs from one of its public IPs.

The internet legs do not name the inside address, and the NAT changes the inside port: they are
matched to inside legs one connection to one connection (the client port's records on one side,
the NAT port's on the other), on the same gateway, remote, remote port and protocol, overlapping
in time, closest first in packets, then bytes, then start.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from natflow.trace.network import NAT_GATEWAY, OTHER, REGIONAL_NAT_GATEWAY, Gateway, Interface, Network
from natflow.trace.records import FlowRecord

SOURCE_ENI, NAT_INSIDE, NAT_INTERNET, DESTINATION_ENI = "source-eni", "nat-inside", "nat-internet", "destination-eni"
OUT, BACK = "out", "back"
# Where a leg lies on the way out and back, for the order of legs that start in the same second.
PATH_ORDER = {
    (SOURCE_ENI, OUT): 0,
    (NAT_INSIDE, OUT): 1,
    (NAT_INTERNET, OUT): 2,
    (DESTINATION_ENI, OUT): 3,
    (SOURCE_ENI, BACK): 4,
    (NAT_INTERNET, BACK): 5,
    (NAT_INSIDE, BACK): 6,
    (DESTINATION_ENI, BACK): 7,
}
# Internet legs may start this long before or after their connection's inside legs: records are
# aggregated over up to 10 minutes, and the two sides of the gateway are cut separately.
MATCH_TOLERANCE_SECONDS = 600

# (inside address, remote address, remote port, protocol)
ConversationKey = tuple[str, str | None, int | None, int | None]


@dataclass(frozen=True, slots=True)
class Leg:
    record: FlowRecord
    interface_id: str | None
    interface_kind: str
    role: str
    direction: str
    inside: str | None  # None on internet legs: their inside address is what matching finds
    remote: str | None  # None when the format does not show it (no pkt-*addr on a NAT ENI)
    remote_port: int | None
    local_port: int | None  # the inside's port; on internet legs the NAT's port
    nat_address: str | None  # the NAT private IP (zonal), or the public IP of a regional internet leg
    gateway_id: str | None

    @property
    def conversation(self) -> ConversationKey:
        assert self.inside is not None
        return (self.inside, self.remote, self.remote_port, self.record.protocol)

    def sort_key(self) -> tuple[int, int, int, str]:
        return (self.record.start, PATH_ORDER[(self.role, self.direction)], self.record.end, self.record.where)


def classify(record: FlowRecord, network: Network, subject: frozenset[str]) -> Leg | None:
    """The leg a record is, or None when it is on no path of the subject's (or no NAT internet leg)."""
    resource = record.resource_id
    if resource and resource in network.gateways and network.gateways[resource].regional:
        return _regional_leg(record, network, network.gateways[resource])
    interface_id = record.interface_id
    if interface_id is None:  # a format without interface-id: a NAT private IP on either side names the ENI
        interface_id = network.nat_ips.get(record.srcaddr or "") or network.nat_ips.get(record.dstaddr or "")
    interface = network.interface(interface_id) if interface_id else Interface("", OTHER, None, None)
    if interface.gateway_id is not None:
        gateway = network.gateways[interface.gateway_id]
        if gateway.regional:
            return _regional_leg(record, network, gateway)
        return _zonal_leg(record, network, interface, gateway)
    return _interface_leg(record, network, interface, subject)


def _leg(
    record: FlowRecord,
    interface: str | None,
    kind: str,
    role: str,
    direction: str,
    inside: str | None,
    remote: str | None,
    nat_address: str | None,
    gateway: str | None,
) -> Leg:
    out = direction == OUT
    remote_port, local_port = (record.dstport, record.srcport) if out else (record.srcport, record.dstport)
    return Leg(record, interface, kind, role, direction, inside, remote, remote_port, local_port, nat_address, gateway)


def _zonal_leg(record: FlowRecord, network: Network, interface: Interface, gateway: Gateway) -> Leg | None:
    src, dst = record.srcaddr, record.dstaddr
    src_nat, dst_nat = src in network.nat_ips, dst in network.nat_ips
    eni, kind = interface.id, NAT_GATEWAY
    if dst_nat and not src_nat and network.is_inside(src):
        remote = record.pkt_dstaddr if record.pkt_dstaddr != dst else None
        return _leg(record, eni, kind, NAT_INSIDE, OUT, src, remote, dst, gateway.id)
    if src_nat and not dst_nat and network.is_inside(dst):
        remote = record.pkt_srcaddr if record.pkt_srcaddr != src else None
        return _leg(record, eni, kind, NAT_INSIDE, BACK, dst, remote, src, gateway.id)
    if src_nat and not dst_nat:
        return _leg(record, eni, kind, NAT_INTERNET, OUT, None, dst, src, gateway.id)
    if dst_nat and not src_nat:
        return _leg(record, eni, kind, NAT_INTERNET, BACK, None, src, dst, gateway.id)
    return None


def _regional_leg(record: FlowRecord, network: Network, gateway: Gateway) -> Leg | None:
    """issue 12's contract: exactly one end inside the VPC is an inside leg; both ends outside, one
    of them the gateway's public IP, an internet leg."""
    src, dst = record.srcaddr, record.dstaddr
    src_in, dst_in = network.is_inside(src), network.is_inside(dst)
    interface, kind = record.interface_id or gateway.id, REGIONAL_NAT_GATEWAY
    if src_in and not dst_in:
        return _leg(record, interface, kind, NAT_INSIDE, OUT, src, dst, None, gateway.id)
    if dst_in and not src_in:
        return _leg(record, interface, kind, NAT_INSIDE, BACK, dst, src, None, gateway.id)
    if not src_in and not dst_in:
        if src in gateway.public_ips:
            return _leg(record, interface, kind, NAT_INTERNET, OUT, None, dst, src, gateway.id)
        if dst in gateway.public_ips:
            return _leg(record, interface, kind, NAT_INTERNET, BACK, None, src, dst, gateway.id)
    return None


def _interface_leg(record: FlowRecord, network: Network, interface: Interface, subject: frozenset[str]) -> Leg | None:
    """A record on an ENI that is no NAT gateway's: out when the packet comes from a subject address."""
    source, destination = record.packet_source, record.packet_destination
    if source in subject or record.srcaddr in subject:
        direction, inside = OUT, source if source in subject else record.srcaddr
        remote = destination
    elif destination in subject or record.dstaddr in subject:
        direction, inside = BACK, destination if destination in subject else record.dstaddr
        remote = source
    else:
        return None
    eni = interface.id or None
    owns_source = eni is not None and eni in (
        network.eni_of_address(source or ""),
        network.eni_of_address(record.srcaddr or ""),
    )
    owns_destination = eni is not None and eni in (
        network.eni_of_address(destination or ""),
        network.eni_of_address(record.dstaddr or ""),
    )
    if owns_source != owns_destination:
        role = SOURCE_ENI if owns_source else DESTINATION_ENI
    elif record.flow_direction in ("egress", "ingress"):
        role = SOURCE_ENI if record.flow_direction == "egress" else DESTINATION_ENI
    else:  # an ENI natflow knows nothing of: the subject's own
        role = SOURCE_ENI if direction == OUT else DESTINATION_ENI
    return _leg(record, eni, interface.kind, role, direction, inside, remote, None, None)


# -- internet legs to inside legs ------------------------------------------------------------------
# An inside connection: (gateway, interface, inside, client port, remote, remote port, protocol, NAT IP)
InsideKey = tuple[str | None, str | None, str | None, int | None, str | None, int | None, int | None, str | None]
# An internet connection: (gateway, interface, NAT address, NAT port, remote, remote port, protocol)
InternetKey = tuple[str | None, str | None, str | None, int | None, str | None, int | None, int | None]


def inside_key(leg: Leg) -> InsideKey:
    nat = leg.nat_address if leg.interface_kind == NAT_GATEWAY else None
    return (
        leg.gateway_id,
        leg.interface_id,
        leg.inside,
        leg.local_port,
        leg.remote,
        leg.remote_port,
        leg.record.protocol,
        nat,
    )


def internet_key(leg: Leg) -> InternetKey:
    return (
        leg.gateway_id,
        leg.interface_id,
        leg.nat_address,
        leg.local_port,
        leg.remote,
        leg.remote_port,
        leg.record.protocol,
    )


@dataclass
class _Connection:
    legs: list[Leg]
    packets: dict[str, int]
    bytes: dict[str, int]
    first: int
    last: int
    zones: set[str]


K = TypeVar("K", InsideKey, InternetKey)
# (gateway, remote, remote port, protocol): what both sides of a connection share
Route = tuple[str | None, str | None, int | None, int | None]
# A route and the packets and bytes out and back: both sides of one connection look alike
Signature = tuple[str | None, str | None, int | None, int | None, int, int, int, int]


def _connections(legs: Iterable[Leg], key_of: Callable[[Leg], K]) -> dict[K, _Connection]:
    found: dict[K, _Connection] = {}
    for leg in legs:
        key = key_of(leg)
        connection = found.get(key)
        if connection is None:
            connection = found[key] = _Connection(
                [], {OUT: 0, BACK: 0}, {OUT: 0, BACK: 0}, leg.record.start, leg.record.end, set()
            )
        connection.legs.append(leg)
        connection.packets[leg.direction] += leg.record.packets or 0
        connection.bytes[leg.direction] += leg.record.bytes or 0
        connection.first = min(connection.first, leg.record.start)
        connection.last = max(connection.last, leg.record.end)
        if leg.record.az_id:
            connection.zones.add(leg.record.az_id)
    return found


def _route(key: InsideKey | InternetKey) -> Route:
    return (key[0], key[4], key[5], key[6])


def _signature(route: Route, connection: _Connection) -> Signature:
    packets, nbytes = connection.packets, connection.bytes
    return (*route, packets[OUT], packets[BACK], nbytes[OUT], nbytes[BACK])


def _may_pair(
    inside: InsideKey, internet: InternetKey, other: _Connection, connection: _Connection, network: Network
) -> bool:
    """Whether an internet connection can be an inside connection's: the same gateway, remote, port
    and protocol (the route), the NAT address the inside legs name (zonal) or a public IP of their
    zone (regional), as many packets each way (within PACKETS_APART), overlapping in time within
    MATCH_TOLERANCE_SECONDS."""
    gateway, interface, _, _, remote, _, _, nat = inside
    if remote is None or gateway is None or _route(inside) != _route(internet):
        return False
    for direction in (OUT, BACK):  # the gateway rewrites addresses and ports, never the packet count
        mine, theirs = connection.packets[direction], other.packets[direction]
        if mine and theirs and abs(mine - theirs) > max(mine, theirs) * PACKETS_APART // 100:
            return False
    if (
        other.first > connection.last + MATCH_TOLERANCE_SECONDS
        or other.last < connection.first - MATCH_TOLERANCE_SECONDS
    ):
        return False
    if network.gateways[gateway].regional:
        zone = network.gateways[gateway].public_zone_ids.get(internet[2] or "")
        return zone is None or not connection.zones or zone in connection.zones
    return interface == internet[1] and (nat is None or nat == internet[2])


# The two sides of a connection may count packets apart by this much (percent): their records are cut
# at other moments, and a window may hold the end of one side's record and not of the other's.
PACKETS_APART = 10
# Of the internet connections of a route, at most this many nearest in time are weighed against each
# inside connection that none matched exactly.
NEAREST_CANDIDATES = 32


def match_internet_legs(inside_legs: Sequence[Leg], internet_legs: Sequence[Leg], network: Network) -> dict[int, Leg]:
    """The internet legs that belong to the inside legs' connections: index into `internet_legs` ->
    an inside leg of the connection it was matched to. One internet connection per inside connection:
    first those with the same packets and bytes each way (the same packets, rewritten), nearest in
    time; then, of the rest, the closest in packets, bytes and start among the nearest in time."""
    inside = _connections(inside_legs, inside_key)
    internet = _connections(internet_legs, internet_key)
    by_route: dict[Route, list[InternetKey]] = defaultdict(list)
    exact: dict[Signature, list[InternetKey]] = defaultdict(list)
    for seen in sorted(internet, key=lambda k: internet[k].first):
        by_route[_route(seen)].append(seen)
        exact[_signature(_route(seen), internet[seen])].append(seen)
    starts = {route: [internet[seen].first for seen in keys] for route, keys in by_route.items()}
    taken: set[InternetKey] = set()
    pairs: dict[InternetKey, Leg] = {}
    rest: list[tuple[int, InsideKey, _Connection]] = []
    for order, (key, connection) in enumerate(inside.items()):
        same = [
            other for other in exact.get(_signature(_route(key), connection), ())
            if other not in taken and _may_pair(key, other, internet[other], connection, network)
        ]  # fmt: skip
        if same:
            best = min(same, key=lambda other: abs(internet[other].first - connection.first))
            taken.add(best)
            pairs[best] = connection.legs[0]
        else:
            rest.append((order, key, connection))
    candidates: list[tuple[int, int, int, int, int, InsideKey, InternetKey]] = []
    for order, key, connection in rest:
        keys, times = by_route.get(_route(key), []), starts.get(_route(key), [])
        middle = bisect.bisect_left(times, connection.first)
        nearest = sorted(
            range(max(0, middle - NEAREST_CANDIDATES), min(len(keys), middle + NEAREST_CANDIDATES)),
            key=lambda i: abs(times[i] - connection.first),
        )[:NEAREST_CANDIDATES]
        for index in nearest:
            other_key = keys[index]
            other = internet[other_key]
            if other_key in taken or not _may_pair(key, other_key, other, connection, network):
                continue
            packets = sum(abs(connection.packets[d] - other.packets[d]) for d in (OUT, BACK))
            nbytes = sum(abs(connection.bytes[d] - other.bytes[d]) for d in (OUT, BACK))
            candidates.append((packets, nbytes, abs(connection.first - other.first), order, index, key, other_key))
    candidates.sort(key=lambda c: c[:5])
    done: set[InsideKey] = set()
    for *_, key, other_key in candidates:
        if key in done or other_key in taken:
            continue
        done.add(key)
        taken.add(other_key)
        pairs[other_key] = inside[key].legs[0]
    return {index: pairs[internet_key(leg)] for index, leg in enumerate(internet_legs) if internet_key(leg) in pairs}


# -- conversations -----------------------------------------------------------------------------------
@dataclass
class Conversation:
    key: ConversationKey
    legs: list[Leg]

    @property
    def inside(self) -> str:
        return self.key[0]

    def of(self, role: str | None = None, direction: str | None = None) -> list[Leg]:
        return [
            leg
            for leg in self.legs
            if (role is None or leg.role == role) and (direction is None or leg.direction == direction)
        ]


def conversations(legs: Iterable[Leg], internet_legs: Sequence[Leg], network: Network) -> list[Conversation]:
    """Group legs by conversation (the internet legs by the inside leg they were matched to), legs in
    time order, conversations by their first leg."""
    grouped: dict[ConversationKey, list[Leg]] = defaultdict(list)
    inside_legs: list[Leg] = []
    for leg in legs:
        grouped[leg.conversation].append(leg)
        if leg.role == NAT_INSIDE:
            inside_legs.append(leg)
    for index, owner in match_internet_legs(inside_legs, internet_legs, network).items():
        grouped[owner.conversation].append(internet_legs[index])
    found = [Conversation(key, sorted(group, key=Leg.sort_key)) for key, group in grouped.items()]
    return sorted(found, key=lambda c: (c.legs[0].sort_key(), repr(c.key)))
