"""Regional NAT Gateways: their records cost the fast readers what zonal gateways' records cost.

Two seeded files of the recommended format are read by `vectorised.read_file_vectorised`, as gzip
text and as Parquet (GZIP): one where the NAT records are a zonal gateway's (on its ENI, client and
internet legs), one where they are a regional gateway's (interface-id '-', resource-id the gateway,
client and internet side), with the same share of other interfaces' records. The zonal file, read
with the same topology (which knows both gateways), is the baseline of the same run. Each figure is
the best of five reads.

The target is 90% of the baseline's rate, for text and for Parquet.
"""

from __future__ import annotations

import gzip
import random
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import RECOMMENDED_FORMAT, parse_log_format
from natflow.flowlogs.readers import FormatChoices
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import FileKind, describe
from natflow.flowlogs.vectorised import read_file_vectorised
from natflow.net import CidrSet

FIELDS = parse_log_format(RECOMMENDED_FORMAT, "bench").fields
NAT_ENI, NAT_IP, REGIONAL = "eni-0natgw0000000001", "10.0.1.10", "nat-0regional00000001"
TOPOLOGY = NatTopology(
    {NAT_ENI: "nat-0zonal000000001"}, {NAT_IP: NAT_ENI}, CidrSet(["10.0.0.0/16"]), frozenset({REGIONAL})
)
FIRST = 1_795_255_200
NAME = "123456789012_vpcflowlogs_us-east-1_fl-0bench_20261121T1000Z_{}"
Row = tuple[str, float, float, float, str]
TARGET_SHARE = 0.9  # of the zonal file's rate in the same run


def _record(rng: random.Random, regional: bool) -> dict[str, str]:
    pod = f"10.0.{rng.randint(32, 51)}.{rng.randint(10, 35)}"
    peer = f"52.{rng.randint(1, 20)}.{rng.randint(0, 249)}.{rng.randint(1, 250)}"
    kind = rng.randrange(10)
    eni, resource = (("-", REGIONAL) if regional else (NAT_ENI, NAT_ENI)) if kind < 5 else (f"eni-0node{kind}", "-")
    middle = "3.80.0.1" if regional else NAT_IP  # the public IP of the internet side, the NAT IP of the legs
    # (srcaddr, dstaddr, pkt-srcaddr, pkt-dstaddr): a zonal client leg's far end is in its pkt- field
    if kind in (0, 1):  # out
        src, dst, pkt_src, pkt_dst = pod, peer if regional else NAT_IP, pod, peer
    elif kind == 2:  # in
        src, dst, pkt_src, pkt_dst = peer if regional else NAT_IP, pod, peer, pod
    elif kind in (3, 4):  # the internet side
        src, dst, pkt_src, pkt_dst = middle, peer, middle, peer
    else:  # another interface
        src, dst, pkt_src, pkt_dst = pod, peer, pod, peer
    start = FIRST + rng.randrange(300)
    values = dict.fromkeys(FIELDS, "-") | {
        "version": "11", "account-id": "123456789012", "interface-id": eni, "srcaddr": src, "dstaddr": dst,
        "srcport": "40000", "dstport": "443", "protocol": "6", "packets": str(rng.randint(1, 200)),
        "bytes": str(rng.randint(60, 200_000)), "start": str(start), "end": str(start + 30), "action": "ACCEPT",
        "log-status": "OK", "pkt-srcaddr": pkt_src, "pkt-dstaddr": pkt_dst, "az-id": "use1-az1",
        "resource-id": resource,
    }  # fmt: skip
    return values


def _files(directory: Path, records: int, regional: bool) -> dict[str, Path]:
    rng = random.Random(f"bench-regional-{regional}")
    rows = [_record(rng, regional) for _ in range(records)]
    text = directory / (NAME.format(f"{int(regional)}t") + ".log.gz")
    body = "\n".join([" ".join(FIELDS), *(" ".join(r[f] for f in FIELDS) for r in rows)]) + "\n"
    text.write_bytes(gzip.compress(body.encode(), compresslevel=6))
    parquet = directory / (NAME.format(f"{int(regional)}p") + ".log.parquet")
    numbers = ("packets", "bytes", "start", "end")
    columns = {
        f.replace("-", "_"): pa.array([None if r[f] == "-" else int(r[f]) for r in rows], pa.int64())
        if f in numbers
        else pa.array([None if r[f] == "-" else r[f] for r in rows], pa.string())
        for f in FIELDS
    }
    pq.write_table(pa.table(columns), parquet, compression="gzip", row_group_size=1 << 17)
    return {"text": text, "parquet": parquet}


def _rate(path: Path, kind: FileKind, records: int) -> float:
    """Records per second, the best of five reads."""
    best = float("inf")
    for _ in range(5):
        reduction = Reduction(TOPOLOGY)
        started = time.perf_counter()
        read_file_vectorised(describe(str(path), kind), FormatChoices(), reduction, Diagnostics())
        best = min(best, time.perf_counter() - started)
        assert reduction.stats.records_counted > records // 5 and reduction.stats.malformed_records == 0
    return records / best


def run(quick: bool) -> list[Row]:
    records = 100_000 if quick else 1_000_000
    found: list[Row] = []
    with tempfile.TemporaryDirectory() as work:
        zonal, regional = _files(Path(work), records, False), _files(Path(work), records, True)
        for label, kind in (("text", FileKind.TEXT), ("parquet", FileKind.PARQUET)):
            baseline = _rate(zonal[label], kind, records) / 1e6
            value = _rate(regional[label], kind, records) / 1e6
            figure = f"regional NAT records, {label} (vs zonal), M records/s"
            found.append((figure, value, baseline, TARGET_SHARE * baseline, "M/s"))
    return found
