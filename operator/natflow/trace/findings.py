"""The path check of one conversation: gateways per direction, translations, findings, verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from natflow.attribution.report import human_bytes
from natflow.timeutil import format_time
from natflow.trace.legs import BACK, DESTINATION_ENI, NAT_INSIDE, NAT_INTERNET, OUT, SOURCE_ENI, Conversation, Leg
from natflow.trace.network import Network

# Flow-log bytes count whole IP packets. The inside and internet legs of one direction carry the same
# packets with rewritten addresses and ports; they may differ by a few header bytes a packet (options,
# fragmentation) but not by payload. Beyond this many bytes a packet (an IPv4 + TCP header with
# options), the two sides did not carry the same traffic.
HEADER_ALLOWANCE_PER_PACKET = 60


@dataclass(frozen=True)
class NodeTranslation:
    """The CNI rewrote a pod's address to its node's (node SNAT) for traffic leaving the VPC."""

    pod_address: str
    node_address: str


@dataclass
class PathCheck:
    gateways: dict[str, list[str]]  # direction -> NAT gateway ids
    totals: dict[str, tuple[int, int]]  # direction -> (bytes, packets)
    translations: list[dict[str, str]]
    findings: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = ""


def _accepted(legs: Sequence[Leg]) -> list[Leg]:
    return [leg for leg in legs if leg.record.action != "REJECT"]


def _sums(legs: Sequence[Leg]) -> tuple[int, int]:
    return sum(leg.record.bytes or 0 for leg in legs), sum(leg.record.packets or 0 for leg in legs)


def _gateways(legs: Sequence[Leg]) -> list[str]:
    return sorted({leg.gateway_id for leg in legs if leg.gateway_id})


def check(conversation: Conversation, network: Network, node_translations: Sequence[NodeTranslation]) -> PathCheck:
    """Everything said about one conversation besides its legs."""
    gateways, totals = {}, {}
    for direction, near in ((OUT, SOURCE_ENI), (BACK, DESTINATION_ENI)):
        nat = _accepted(conversation.of(NAT_INSIDE, direction))
        gateways[direction] = _gateways(conversation.of(direction=direction))
        # What the gateway processed, as attribution counts it; without NAT legs, the inside ENI's.
        totals[direction] = _sums(nat or _accepted(conversation.of(near, direction)))
    result = PathCheck(gateways, totals, _translations(conversation, network, node_translations))
    _asymmetric(conversation, result)
    _cross_zone(conversation, network, result)
    _rejected(conversation, result)
    out = conversation.of(direction=OUT)
    if out and not conversation.of(direction=BACK):
        last = format_time(max(leg.record.end for leg in out))
        result.findings.append(
            {
                "reason": "NoReturnTraffic",
                "message": f"{len(out)} leg(s) out, the last ending {last}, and no leg back within the window",
            }
        )
    _missing(conversation, network, result)
    _bytes_differ(conversation, result)
    result.verdict = _verdict(conversation, network, result)
    return result


def _translations(
    conversation: Conversation, network: Network, node_translations: Sequence[NodeTranslation]
) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    remote = conversation.key[1]
    if remote is None or not network.is_inside(remote):
        for translation in node_translations:
            if translation.node_address == conversation.inside:
                found.append({"where": "node", "from": translation.pod_address, "to": translation.node_address})
    seen: set[tuple[str, str]] = set()
    for leg in conversation.legs:
        if leg.gateway_id is None or leg.role not in (NAT_INSIDE, NAT_INTERNET):
            continue
        gateway = network.gateways[leg.gateway_id]
        if gateway.regional:
            if leg.role == NAT_INTERNET and leg.nat_address:
                pair = (conversation.inside, leg.nat_address)
            else:
                continue
        elif leg.nat_address and leg.nat_address in gateway.public_of_private:
            pair = (leg.nat_address, gateway.public_of_private[leg.nat_address])
        else:
            continue
        if pair not in seen:
            seen.add(pair)
            found.append({"where": "natGateway", "from": pair[0], "to": pair[1]})
    return found


def _asymmetric(conversation: Conversation, result: PathCheck) -> None:
    out, back = result.gateways[OUT], result.gateways[BACK]
    if out and back and out != back:
        result.findings.append(
            {
                "reason": "AsymmetricReturnPath",
                "message": f"out via {', '.join(out)}, replies back via {', '.join(back)}",
                "out": out,
                "back": back,
            }
        )
        return
    out_enis = {leg.interface_id for leg in conversation.of(SOURCE_ENI, OUT) if leg.interface_id}
    back_enis = {leg.interface_id for leg in conversation.of(DESTINATION_ENI, BACK) if leg.interface_id}
    if out_enis and back_enis and out_enis != back_enis:
        result.findings.append(
            {
                "reason": "AsymmetricReturnPath",
                "message": f"out from {', '.join(sorted(out_enis))}, replies back to {', '.join(sorted(back_enis))}",
                "out": sorted(out_enis),
                "back": sorted(back_enis),
            }
        )


def _zone_of_inside(conversation: Conversation, network: Network) -> tuple[str | None, str | None]:
    """(zone name, az-id) of the inside address's ENI: its records' az-id, else the inventory's zone."""
    for leg in conversation.legs:
        on_inside_eni = leg.interface_id and network.eni_of_address(conversation.inside) in (leg.interface_id, None)
        if leg.role in (SOURCE_ENI, DESTINATION_ENI) and leg.record.az_id and on_inside_eni:
            return network.interface(leg.interface_id or "").zone, leg.record.az_id
    eni = network.eni_of_address(conversation.inside)
    zone = network.interface(eni).zone if eni else None
    return zone, network.zone_id(zone)


def _cross_zone(conversation: Conversation, network: Network, result: PathCheck) -> None:
    zone, zone_id = _zone_of_inside(conversation, network)
    if zone is None and zone_id is None:
        return
    reported: set[str] = set()
    for leg in conversation.of(NAT_INSIDE):
        assert leg.gateway_id is not None
        gateway = network.gateways[leg.gateway_id]
        if gateway.regional:  # its zone is the record's
            gateway_zone, gateway_zone_id = None, leg.record.az_id
        else:
            interface = network.interface(leg.interface_id or "")
            gateway_zone = interface.zone or gateway.zone
            gateway_zone_id = leg.record.az_id or gateway.zone_id or network.zone_id(gateway_zone)
        if zone_id and gateway_zone_id:
            differ, shown = zone_id != gateway_zone_id, (zone_id, gateway_zone_id)
        elif zone and gateway_zone:
            differ, shown = zone != gateway_zone, (zone, gateway_zone)
        else:
            continue
        if differ and leg.gateway_id + shown[1] not in reported:
            reported.add(leg.gateway_id + shown[1])
            result.findings.append(
                {
                    "reason": "CrossZoneNAT",
                    "message": f"the inside address {conversation.inside} is in {shown[0]}, NAT gateway "
                    f"{leg.gateway_id} carried it in {shown[1]} (cross-zone data transfer on top of NAT processing)",
                    "insideZone": shown[0],
                    "natGatewayZone": shown[1],
                    "natGatewayId": leg.gateway_id,
                }
            )


def _rejected(conversation: Conversation, result: PathCheck) -> None:
    for leg in conversation.legs:
        if leg.record.action == "REJECT":
            reason = leg.record.reject_reason or "security group or network ACL (no reject-reason in the record)"
            result.findings.append(
                {
                    "reason": "Rejected",
                    "message": f"REJECT on {leg.interface_id or 'an unknown interface'} ({leg.interface_kind}, "
                    f"{leg.role}, {leg.direction}) at {leg.record.where}: {leg.record.packets or 0} packets, "
                    f"reason: {reason}",
                    "interfaceId": leg.interface_id,
                    "direction": leg.direction,
                    "rejectReason": leg.record.reject_reason,
                }
            )


def _missing(conversation: Conversation, network: Network, result: PathCheck) -> None:
    """Interfaces on the path that no flow log covers (or, without describe-flow-logs, that left no leg)."""
    on_path: list[tuple[str, str]] = []
    eni = network.eni_of_address(conversation.inside)
    if eni is not None:
        on_path.append((eni, f"the inside address's ENI ({network.interface(eni).kind})"))
    remote = conversation.key[1]
    if remote is not None and not network.is_inside(remote) and network.gateways:
        used = result.gateways[OUT] + result.gateways[BACK]
        if used:
            for gateway_id in dict.fromkeys(used):
                gateway = network.gateways[gateway_id]
                resources = [gateway.id] if gateway.regional else list(gateway.enis)
                on_path += [(resource, f"NAT gateway {gateway.id}") for resource in resources]
        else:  # no NAT leg at all: any gateway of the VPC may be the one
            for gateway in network.gateways.values():
                resources = [gateway.id] if gateway.regional else list(gateway.enis)
                on_path += [(resource, f"NAT gateway {gateway.id} (no NAT leg was found)") for resource in resources]
    logged = {leg.interface_id for leg in conversation.legs} | {leg.gateway_id for leg in conversation.legs}
    for resource, what in on_path:
        if network.flow_logs_known:
            missing = not network.covered(resource)
        else:
            missing = resource not in logged and bool(conversation.legs)
        if missing:
            why = (
                "no flow log covers it"
                if network.flow_logs_known
                else "no record from it (describe-flow-logs not given)"
            )
            result.findings.append(
                {
                    "reason": "MissingLeg",
                    "message": f"{resource}, {what}, is on the path and {why}; to see its legs: "
                    f"{network.create_command(resource)}",
                    "interfaceId": resource,
                    "command": network.create_command(resource),
                }
            )


def _bytes_differ(conversation: Conversation, result: PathCheck) -> None:
    for direction in (OUT, BACK):
        inside = _accepted(conversation.of(NAT_INSIDE, direction))
        internet = _accepted(conversation.of(NAT_INTERNET, direction))
        if not inside or not internet:
            continue
        (inside_bytes, inside_packets), (internet_bytes, internet_packets) = _sums(inside), _sums(internet)
        allowance = HEADER_ALLOWANCE_PER_PACKET * max(inside_packets, internet_packets)
        difference = abs(inside_bytes - internet_bytes)
        if difference > allowance:
            result.findings.append(
                {
                    "reason": "BytesDiffer",
                    "message": f"{direction}: the NAT gateway's inside legs carried {inside_bytes} bytes in "
                    f"{inside_packets} packets, its internet legs {internet_bytes} bytes in {internet_packets} "
                    "packets: "
                    f"{difference} bytes apart, more than the {allowance} bytes of headers allowed "
                    f"({HEADER_ALLOWANCE_PER_PACKET} bytes x {max(inside_packets, internet_packets)} packets)",
                    "direction": direction,
                    "insideBytes": inside_bytes,
                    "insidePackets": inside_packets,
                    "internetBytes": internet_bytes,
                    "internetPackets": internet_packets,
                    "allowanceBytes": allowance,
                }
            )


def _via(gateway_ids: list[str], network: Network, conversation: Conversation, direction: str) -> str:
    if not gateway_ids:
        return "no NAT gateway"
    shown = []
    for gateway_id in gateway_ids:
        gateway = network.gateways[gateway_id]
        zones = sorted(
            {
                leg.record.az_id
                for leg in conversation.of(NAT_INSIDE, direction)
                if leg.gateway_id == gateway_id and leg.record.az_id
            }
        )
        zone = gateway.zone if not gateway.regional else ", ".join(zones) or None
        shown.append(f"{gateway_id} ({zone})" if zone and direction == OUT else gateway_id)
    return " + ".join(shown)


def _verdict(conversation: Conversation, network: Network, result: PathCheck) -> str:
    reasons = list(dict.fromkeys(f["reason"] for f in result.findings))
    head = ", ".join(reasons) if reasons else "ok"
    total = result.totals[OUT][0] + result.totals[BACK][0]
    parts = [f"out via {_via(result.gateways[OUT], network, conversation, OUT)}"]
    if conversation.of(direction=BACK):
        parts.append(f"back via {_via(result.gateways[BACK], network, conversation, BACK)}")
    else:
        parts.append("nothing back")
    return f"{head}: {', '.join(parts)}, {human_bytes(total)}"
