"""Seeded generator of realistic flow-log objects and the matching --aws / --cluster JSON.

Records follow natflow's recommended 20-field format (~170 bytes a line). The mix: about 1%
NODATA, 0.2% SKIPDATA, 20% on the NAT Gateways' ENIs (client legs out and in, internet legs out
and in, a few REJECTs) and the rest on the nodes' ENIs; each pod leaves through its zone's NAT
Gateway to a few peers of its own. Columns are built with numpy from hashes of the record index and
written by pyarrow (Parquet: GZIP pages with page checksums, as parquet-mr writes them by default;
text: pyarrow's CSV writer, gzip -6), so the same seed always gives the same objects. Text objects
carry the header line AWS writes and are named as AWS names them.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from natflow.flowlogs.fields import RECOMMENDED_FORMAT, parse_log_format
from natflow.timeutil import format_time

ACCOUNT = "123456789012"
REGION = "us-east-1"
VPC = "vpc-0bench00000000001"
FLOW_LOG = "fl-0bench00000000001"
VPC_CIDR = "10.0.0.0/16"
NAT_GATEWAYS = (
    ("nat-0bench00000000001", "eni-0natgw0000000001", "10.0.1.10", "3.80.0.1"),
    ("nat-0bench00000000002", "eni-0natgw0000000002", "10.0.2.10", "3.80.0.2"),
)
NODES = 20
PODS_PER_NODE = 25
PEERS = 5000
FIRST_START = 1_795_255_200  # 2026-11-21T10:00:00Z
SECONDS_PER_FILE = 300  # each object holds five minutes of records, as AWS delivers them
FIELDS = parse_log_format(RECOMMENDED_FORMAT, "bench").fields
ROW_GROUP_ROWS = 131_072

PODS = NODES * PODS_PER_NODE
# Every address a record holds, by code: pods, then peers, then the NAT Gateways' private IPs.
ADDRESSES = (
    [f"10.0.{pod // PODS_PER_NODE + 32}.{pod % PODS_PER_NODE + 10}" for pod in range(PODS)]
    + [f"52.{peer // 250 + 1}.{peer % 250}.{(peer * 7) % 250 + 1}" for peer in range(PEERS)]
    + [ip for _, _, ip, _ in NAT_GATEWAYS]
)
_PEER_CODE, _NAT_CODE = PODS, PODS + PEERS
# The ENIs, by code: the NAT Gateways', then the nodes'.
ENIS = [eni for _, eni, _, _ in NAT_GATEWAYS] + [f"eni-0node{node:012d}" for node in range(NODES)]


@dataclass(frozen=True)
class Dataset:
    """Generated objects (the first `files` of a seeded series) and the --aws/--cluster JSON beside them."""

    records: int
    text: list[Path]
    parquet: list[Path]
    aws: Path
    cluster: Path


def _object_name(index: int, slot: int, suffix: str) -> str:
    """``<account>_vpcflowlogs_<region>_<flow-log>_<YYYYMMDDTHHmmZ>_<hash>`` for the object's five minutes."""
    stamp = format_time(FIRST_START + slot * SECONDS_PER_FILE).replace("-", "").replace(":", "")[:-3] + "Z"
    return f"{ACCOUNT}_vpcflowlogs_{REGION}_{FLOW_LOG}_{stamp}_{index:08x}{suffix}"


def _hash(values: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of each value (uint64, wrapping), a different series for each seed."""
    z = values + np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _text(codes: np.ndarray, table: list[str], present: np.ndarray | None = None) -> pa.Array:
    """The strings `table[code]`, null where not `present`."""
    indices = pa.array(codes.astype(np.int32), mask=None if present is None else ~present)
    return pc.take(pa.array(table, pa.string()), indices)


def _integers(values: np.ndarray, kind: pa.DataType, present: np.ndarray | None = None) -> pa.Array:
    return pa.array(values, kind, mask=None if present is None else ~present)


def records(seed: int, first_index: int, count: int, slot: int) -> pa.Table:
    """`count` records (index `first_index` on) of five-minute slot `slot`, as typed columns (null = '-'),
    named by field."""
    index = np.arange(first_index, first_index + count, dtype=np.uint64)
    shape, sizes = _hash(index, seed), _hash(index + np.uint64(1 << 40), seed + 1)
    kind, leg = shape % 1000, (shape // 1000) % 100
    pod = ((shape // 1_000_000) % PODS).astype(np.int64)
    packets = (sizes % 200 + 1).astype(np.int64)
    start = (FIRST_START + slot * SECONDS_PER_FILE + (sizes // 1000) % SECONDS_PER_FILE).astype(np.int64)
    # A pod's traffic leaves through its node's zone's NAT Gateway, to a few peers of its own.
    nat = (pod // PODS_PER_NODE) % len(NAT_GATEWAYS)
    peer = (pod * 7 + ((shape // 1_000_000_000) % 4).astype(np.int64)) % PEERS
    nodata, skip = kind < 10, (kind >= 10) & (kind < 12)
    is_nat = (kind >= 12) & (kind < 212)
    client_out, client_in = is_nat & (leg < 30), is_nat & (leg >= 30) & (leg < 50)
    internet_out, internet_in = is_nat & (leg >= 50) & (leg < 80), is_nat & (leg >= 80)
    rejected = is_nat & (leg == 99)
    outbound = client_out | internet_out | ~is_nat
    port = (shape % 60000 + 1024).astype(np.int32)
    # Node ENIs: pods talking to the internet directly; NAT ENIs: client legs and internet legs.
    nat_ip, peer_ip = _NAT_CODE + nat, _PEER_CODE + peer
    src = np.select([client_in | internet_out, internet_in], [nat_ip, peer_ip], pod)
    dst = np.select([client_out | internet_in, client_in], [nat_ip, pod], peer_ip)
    data = ~(nodata | skip)  # NODATA/SKIPDATA records carry only the ENI, times and status, as AWS writes them
    service = data & (peer < 250)
    columns = {
        "version": _integers(np.full(count, 5), pa.int32()),
        "account-id": _text(np.zeros(count), [ACCOUNT]),
        "interface-id": _text(np.where(is_nat, nat, len(NAT_GATEWAYS) + pod // PODS_PER_NODE), ENIS),
        "srcaddr": _text(src, ADDRESSES, data),
        "dstaddr": _text(dst, ADDRESSES, data),
        "srcport": _integers(np.where(outbound, port, 443), pa.int32(), data),
        "dstport": _integers(np.where(outbound, 443, port), pa.int32(), data),
        "protocol": _integers(np.full(count, 6), pa.int32(), data),
        "packets": _integers(packets, pa.int64(), data),
        "bytes": _integers(packets * ((sizes // 200) % 1400 + 60).astype(np.int64), pa.int64(), data),
        "start": _integers(start, pa.int64()),
        "end": _integers(start + ((sizes // 1_000_000) % 60).astype(np.int64), pa.int64()),
        "action": _text(rejected, ["ACCEPT", "REJECT"], data),
        "log-status": _text(np.select([nodata, skip], [1, 2], 0), ["OK", "NODATA", "SKIPDATA"]),
        "vpc-id": _text(np.zeros(count), [VPC]),
        "pkt-srcaddr": _text(np.where(client_in, peer_ip, src), ADDRESSES, data),
        "pkt-dstaddr": _text(np.where(client_out, peer_ip, dst), ADDRESSES, data),
        "pkt-src-aws-service": _text(np.zeros(count), ["AMAZON"], service & client_in),
        "pkt-dst-aws-service": _text(np.zeros(count), ["AMAZON"], service & client_out),
        "flow-direction": _text(outbound, ["ingress", "egress"], data),
        "az-id": _text(np.zeros(count), ["use1-az1"]),
        # Zonal gateways' and nodes' records: the flow log's resource, their ENI
        "resource-id": _text(np.where(is_nat, nat, len(NAT_GATEWAYS) + pod // PODS_PER_NODE), ENIS),
    }
    return pa.table(columns)


def _write_text(seed: int, file_index: int, records_per_file: int, slot: int, path: Path) -> None:
    table = records(seed, file_index * records_per_file, records_per_file, slot)
    as_text = pa.table({name: pc.fill_null(column.cast(pa.string()), "-") for name, column in zip(
        table.column_names, table.columns, strict=True)})  # fmt: skip
    body = pa.BufferOutputStream()
    pacsv.write_csv(as_text, body, pacsv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none"))
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
        out.write((" ".join(FIELDS) + "\n").encode())  # the header line AWS writes
        out.write(body.getvalue())
    os.replace(partial, path)


def _write_parquet(seed: int, file_index: int, records_per_file: int, slot: int, path: Path) -> None:
    table = records(seed, file_index * records_per_file, records_per_file, slot)
    partial = path.with_name(path.name + ".partial")
    # GZIP, as AWS writes flow logs in Parquet ("Parquet format with Gzip compression").
    pq.write_table(
        table.rename_columns([name.replace("-", "_") for name in FIELDS]),
        partial,
        compression="gzip",
        row_group_size=ROW_GROUP_ROWS,
        write_page_checksum=True,
    )
    os.replace(partial, path)


def generate(
    root: Path,
    files: int,
    records_per_file: int,
    slots: int,
    parquet: bool,
    seed: int = 1,
    threads: int = 2,
    distinct: int | None = None,
) -> Dataset:
    """The first `files` objects of the series under `root`, writing those not there yet.

    Object i holds five-minute slot i % `slots`: beyond `slots` objects, more objects cover the
    same time (as a busy flow log delivers several per slot), so the reduced rows stay the same.
    With `distinct` (a multiple of `slots`), object i from `distinct` on is a copy of object
    i % `distinct`, of the same slot: a large data set at the cost of a copy, not of generating it
    (a copy, not a hard link: natflow reads each file once, and a link is the same file).
    An object appears under its final name only once complete, so an interrupted run resumes.
    """
    series = root / f"seed{seed}-{records_per_file}x{slots}"
    jobs = []
    for kind, write, suffix in (("text", _write_text, ".log.gz"), ("parquet-gzip", _write_parquet, ".log.parquet")):
        if kind == "text" or parquet:
            jobs += [
                (write, index, series / kind / _object_name(index, index % slots, suffix)) for index in range(files)
            ]
    for _, _, path in jobs:
        path.parent.mkdir(parents=True, exist_ok=True)
    if distinct is not None and distinct % slots:
        raise ValueError(f"distinct ({distinct}) must be a multiple of slots ({slots})")
    copies = [(index, path) for _, index, path in jobs if distinct is not None and index >= distinct]
    with ThreadPoolExecutor(threads) as pool:  # numpy, pyarrow and zlib release the GIL
        missing = [
            (write, index, path)
            for write, index, path in jobs
            if not path.exists() and (distinct is None or index < distinct)
        ]
        pending = [
            pool.submit(write, seed, index, records_per_file, index % slots, path) for write, index, path in missing
        ]
        for future in pending:
            future.result()
    originals = {(path.parent, index): path for _, index, path in jobs if distinct is not None and index < distinct}
    for index, path in copies:
        original = originals[(path.parent, index % (distinct or 1))]
        if path.exists() and os.path.samefile(path, original):  # a hard link of an earlier bench
            path.unlink()
        if not path.exists():
            partial = path.with_name(path.name + ".partial")
            shutil.copyfile(original, partial)
            partial.rename(path)
    text = [path for write, _, path in jobs if write is _write_text]
    parquets = [path for write, _, path in jobs if write is _write_parquet]
    dataset = Dataset(files * records_per_file, text, parquets, series / "aws.json", series / "cluster.json")
    write_inventory(dataset)
    return dataset


def write_inventory(dataset: Dataset) -> None:
    """describe-nat-gateways/-vpcs/-flow-logs and a kubectl List of nodes, pods and the aws-node DaemonSet."""
    aws = {
        "NatGateways": [
            {"NatGatewayId": gateway, "VpcId": VPC, "State": "available", "ConnectivityType": "public",
             "NatGatewayAddresses": [{"NetworkInterfaceId": eni, "PrivateIp": ip, "PublicIp": public,
                                      "IsPrimary": True}]}
            for gateway, eni, ip, public in NAT_GATEWAYS
        ],
        "Vpcs": [{"VpcId": VPC, "CidrBlock": VPC_CIDR}],
        "FlowLogs": [{"FlowLogId": FLOW_LOG, "ResourceId": VPC, "LogFormat": RECOMMENDED_FORMAT,
                      "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::bench-flow-logs"}],
    }  # fmt: skip
    created = format_time(FIRST_START - 86400)
    items: list[dict[str, object]] = []
    for node in range(NODES):
        name = f"ip-10-0-16-{node + 10}.ec2.internal"
        items.append({
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "uid": f"node-{node}", "creationTimestamp": created},
            "spec": {"providerID": f"aws:///{REGION}a/i-0bench{node:011d}"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.16.{node + 10}"}]},
        })  # fmt: skip
        for slot in range(PODS_PER_NODE):
            app = f"app{(node * PODS_PER_NODE + slot) % 40}"
            items.append({
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": f"{app}-5d8f7c9b4-{node:02d}{slot:02d}", "namespace": "shop",
                             "uid": f"pod-{node}-{slot}", "creationTimestamp": created,
                             "labels": {"pod-template-hash": "5d8f7c9b4"},
                             "ownerReferences": [{"kind": "ReplicaSet", "name": f"{app}-5d8f7c9b4",
                                                  "controller": True}]},
                "spec": {"nodeName": name},
                "status": {"phase": "Running", "podIP": f"10.0.{node + 32}.{slot + 10}",
                           "conditions": [{"type": "PodReadyToStartContainers", "status": "True",
                                           "lastTransitionTime": created}]},
            })  # fmt: skip
    items.append({
        "kind": "DaemonSet", "apiVersion": "apps/v1",
        "metadata": {"name": "aws-node", "namespace": "kube-system", "uid": "aws-node"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "aws-node", "env": [{"name": "AWS_VPC_K8S_CNI_EXTERNALSNAT", "value": "true"}]}]}}},
    })  # fmt: skip
    dataset.aws.write_text(json.dumps(aws, indent=1))
    dataset.cluster.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": items}))
