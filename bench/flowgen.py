"""Seeded generator of realistic flow-log objects and the matching --aws / --cluster JSON.

Records follow natflow's recommended 20-field format (~170 bytes a line). The mix: about 1%
NODATA, 0.2% SKIPDATA, 20% on the NAT Gateways' ENIs (client legs out and in, internet legs out
and in, a few REJECTs) and the rest on the nodes' ENIs; each pod leaves through its zone's NAT
Gateway to a few peers of its own. Columns are built with polars from hashes of the record index
(about 1 s per million records; gzip -6 takes about 5 s more), so the same seed always gives the
same objects. Text objects carry the header line AWS writes and are named as AWS names them.
"""

from __future__ import annotations

import gzip
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

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


def _ip(a: int, b: pl.Expr, c: pl.Expr, d: pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit(str(a)), b.cast(pl.String), c.cast(pl.String), d.cast(pl.String), separator=".")


def records(seed: int, first_index: int, count: int, slot: int) -> pl.DataFrame:
    """`count` records (index `first_index` on) of five-minute slot `slot`, as typed columns (None = '-')."""
    index = pl.int_range(first_index, first_index + count, dtype=pl.UInt64)
    # Staged with_columns so that each hash and address is computed once, not once per use.
    base = (
        pl.select(shape=index.hash(seed), sizes=(index + (1 << 40)).hash(seed + 1))
        .with_columns(
            kind=pl.col("shape") % 1000,
            leg=(pl.col("shape") // 1000) % 100,
            pod=(pl.col("shape") // 1_000_000) % (NODES * PODS_PER_NODE),
            packets=pl.col("sizes") % 200 + 1,
            start=FIRST_START + slot * SECONDS_PER_FILE + (pl.col("sizes") // 1000) % SECONDS_PER_FILE,
        )
        .with_columns(
            # A pod's traffic leaves through its node's zone's NAT Gateway, to a few peers of its own.
            nat=(pl.col("pod") // PODS_PER_NODE) % len(NAT_GATEWAYS),
            peer=(pl.col("pod") * 7 + (pl.col("shape") // 1_000_000_000) % 4) % PEERS,
        )
    )
    kind, leg, pod, peer = pl.col("kind"), pl.col("leg"), pl.col("pod"), pl.col("peer")
    flags = (
        base.with_columns(
            nodata=kind < 10,
            skip=(kind >= 10) & (kind < 12),
            is_nat=(kind >= 12) & (kind < 212),
            nat_eni=pl.when(pl.col("nat") == 0).then(pl.lit(NAT_GATEWAYS[0][1])).otherwise(pl.lit(NAT_GATEWAYS[1][1])),
            nat_ip=pl.when(pl.col("nat") == 0).then(pl.lit(NAT_GATEWAYS[0][2])).otherwise(pl.lit(NAT_GATEWAYS[1][2])),
            node_eni=pl.concat_str(pl.lit("eni-0node"), (pod // PODS_PER_NODE).cast(pl.String).str.zfill(12)),
            pod_ip=_ip(10, pl.lit(0), pod // PODS_PER_NODE + 32, pod % PODS_PER_NODE + 10),
            peer_ip=_ip(52, peer // 250 + 1, peer % 250, (peer * 7) % 250 + 1),
            service=pl.when(peer < 250).then(pl.lit("AMAZON")),
            port=(pl.col("shape") % 60000 + 1024).cast(pl.Int32),
        )
        .with_columns(
            client_out=pl.col("is_nat") & (leg < 30),
            client_in=pl.col("is_nat") & (leg >= 30) & (leg < 50),
            internet_out=pl.col("is_nat") & (leg >= 50) & (leg < 80),
            internet_in=pl.col("is_nat") & (leg >= 80),
            rejected=pl.col("is_nat") & (leg == 99),
        )
        .with_columns(outbound=pl.col("client_out") | pl.col("internet_out") | ~pl.col("is_nat"))
    )
    client_out, client_in = pl.col("client_out"), pl.col("client_in")
    internet_out, internet_in = pl.col("internet_out"), pl.col("internet_in")
    nat_ip, pod_ip, peer_ip = pl.col("nat_ip"), pl.col("pod_ip"), pl.col("peer_ip")
    outbound, start, port = pl.col("outbound"), pl.col("start"), pl.col("port")
    # Node ENIs: pods talking to the internet directly; NAT ENIs: client legs and internet legs.
    addressed = flags.with_columns(
        src=pl.when(client_in | internet_out).then(nat_ip).when(internet_in).then(peer_ip).otherwise(pod_ip),
        dst=pl.when(client_out | internet_in).then(nat_ip).when(client_in).then(pod_ip).otherwise(peer_ip),
    )
    columns = {
        "version": pl.lit(5, pl.Int32),
        "account-id": pl.lit(ACCOUNT),
        "interface-id": pl.when(pl.col("is_nat")).then(pl.col("nat_eni")).otherwise(pl.col("node_eni")),
        "srcaddr": pl.col("src"),
        "dstaddr": pl.col("dst"),
        "srcport": pl.when(outbound).then(port).otherwise(pl.lit(443, pl.Int32)),
        "dstport": pl.when(outbound).then(pl.lit(443, pl.Int32)).otherwise(port),
        "protocol": pl.lit(6, pl.Int32),
        "packets": pl.col("packets").cast(pl.Int64),
        "bytes": (pl.col("packets") * ((pl.col("sizes") // 200) % 1400 + 60)).cast(pl.Int64),
        "start": start.cast(pl.Int64),
        "end": (start + (pl.col("sizes") // 1_000_000) % 60).cast(pl.Int64),
        "action": pl.when(pl.col("rejected")).then(pl.lit("REJECT")).otherwise(pl.lit("ACCEPT")),
        "log-status": pl.when(pl.col("nodata"))
        .then(pl.lit("NODATA"))
        .when(pl.col("skip"))
        .then(pl.lit("SKIPDATA"))
        .otherwise(pl.lit("OK")),
        "vpc-id": pl.lit(VPC),
        "pkt-srcaddr": pl.when(client_in).then(peer_ip).otherwise(pl.col("src")),
        "pkt-dstaddr": pl.when(client_out).then(peer_ip).otherwise(pl.col("dst")),
        "pkt-src-aws-service": pl.when(client_in).then(pl.col("service")),
        "pkt-dst-aws-service": pl.when(client_out).then(pl.col("service")),
        "flow-direction": pl.when(outbound).then(pl.lit("egress")).otherwise(pl.lit("ingress")),
        "az-id": pl.lit("use1-az1"),
        # Zonal gateways' and nodes' records: the flow log's resource, their ENI
        "resource-id": pl.when(pl.col("is_nat")).then(pl.col("nat_eni")).otherwise(pl.col("node_eni")),
    }
    # NODATA/SKIPDATA records carry only the ENI, times and status, as AWS writes them.
    kept_on_no_data = {"version", "account-id", "interface-id", "start", "end", "log-status", "vpc-id", "resource-id"}
    data = ~(pl.col("nodata") | pl.col("skip"))
    return addressed.select(
        (expr if name in kept_on_no_data else pl.when(data).then(expr)).alias(name) for name, expr in columns.items()
    )


def _write_text(seed: int, file_index: int, records_per_file: int, slot: int, path: Path) -> None:
    frame = records(seed, file_index * records_per_file, records_per_file, slot)
    body = frame.write_csv(separator=" ", include_header=False, null_value="-", quote_style="never")
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
        out.write((" ".join(FIELDS) + "\n").encode())  # the header line AWS writes
        out.write(body.encode())
    os.replace(partial, path)


def _write_parquet(seed: int, file_index: int, records_per_file: int, slot: int, path: Path) -> None:
    frame = records(seed, file_index * records_per_file, records_per_file, slot)
    partial = path.with_name(path.name + ".partial")
    # GZIP, as AWS writes flow logs in Parquet ("Parquet format with Gzip compression").
    frame.rename({name: name.replace("-", "_") for name in FIELDS}).write_parquet(
        partial, compression="gzip", row_group_size=131_072
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
    With `distinct` (a multiple of `slots`), object i from `distinct` on is a hard link to object
    i % `distinct`, of the same slot: a large data set at no cost in time or disk.
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
    with ThreadPoolExecutor(threads) as pool:  # polars and zlib release the GIL
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
        if not path.exists():
            os.link(originals[(path.parent, index % (distinct or 1))], path)
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
