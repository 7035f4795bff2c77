"""Athena: the reduction query means what natflow's readers mean, and the calls follow Athena's protocol.

* Meaning: `reduction_sql` (Trino) is transpiled by sqlglot to DuckDB and run over a DuckDB view that
  reads the flow-log objects as the Athena table of `table_ddl` does (text: single-space fields,
  header skipped, '-' as NULL, unparsable numbers as NULL, short lines padded with NULLs; Parquet:
  columns by name; partition columns and "$path" from the object key). `reduction_from_rows` must
  then give exactly the Reduction that the Python readers make of the same objects: every row key
  and value, every counter (the malformed examples' wording aside), first/last time and formats.
  Generated scenarios (several seeds, SNAT modes, all four key layouts, text and Parquet, windows
  that cut minutes and hours) plus hand-made records for each rule (IPv6, milliseconds, missing
  values and fields, formats without interface-id or packet addresses).
* Layout: the projection template expands to exactly the prefixes `flowsource.s3_prefixes` lists.
* Protocol, against moto in server mode: start -> poll with backoff -> paged results (canned through
  moto's /moto-api/static/athena/query-results) -> Reduction; DDL through Athena; a query that does not
  finish in time is stopped. moto never fails a query nor pages results, so a FAILED query and
  multi-page results use botocore's Stubber (offline; it checks requests and responses against
  the Athena API model).
"""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from botocore.stub import Stubber

from natflow.aws.athena import (
    COUNTED,
    AthenaQueryError,
    FlowLogTable,
    column_type,
    column_types,
    ensure_table,
    partition_times,
    reduction_from_rows,
    reduction_sql,
    run_reduction,
    table_ddl,
)
from natflow.aws.files import load_inventory
from natflow.aws.flowsource import s3_prefixes
from natflow.aws.inventory import FlowLog, FlowLogDestinationOptions
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import DEFAULT_FORMAT, RECOMMENDED_FORMAT, LogFormat, parse_log_format
from natflow.flowlogs.plausible import LATEST_TIME, MAX_RECORD_BYTES, MAX_RECORD_PACKETS
from natflow.flowlogs.readers import FormatChoices, read_all
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import discover
from natflow.net import CidrSet
from tests.harness.athena_engine import athena_engine, canned, duckdb_rows, post
from tests.harness.motoserver import REGION, MotoServer
from tests.scenario.generator import ACCOUNT, BASE_TIME, S3_FIELDS, FlowFormat, KeyLayout, SnatMode, build_scenario

MINUTE, HOUR = 60, 3600
DATABASE = "natflow"
DECOY_FLOW_LOG = "fl-0000000000000dec0"


# -- the Athena table on DuckDB ----------------------------------------------------------------------
def athena_reduction(
    engine: duckdb.DuckDBPyConnection, table: FlowLogTable, topology: NatTopology, window: tuple[int, int]
) -> Reduction:
    rows = duckdb_rows(engine, reduction_sql(table, topology, window))
    return reduction_from_rows(rows, topology, window, table.log_format)


def python_reduction(topology: NatTopology, window: tuple[int, int], files: Sequence[Path]) -> Reduction:
    reduction = Reduction(topology, window)
    diagnostics = Diagnostics()
    found, _ = discover([str(path) for path in files], Diagnostics())
    read_all(found, FormatChoices(), reduction, diagnostics)
    assert not diagnostics.items, [d.as_dict() for d in diagnostics.items]
    return reduction


def counters(reduction: Reduction) -> dict[str, int]:
    """Every counter; the malformed examples name a file line or the table, so their wording differs."""
    return {name: value for name, value in vars(reduction.stats).items() if name != "malformed_examples"}


def assert_same_reduction(athena: Reduction, python: Reduction) -> None:
    assert athena.rows == python.rows
    assert counters(athena) == counters(python)
    assert (athena.first_time, athena.last_time) == (python.first_time, python.last_time)
    assert set(athena.formats) == set(python.formats)


# -- generated scenarios -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    seed: int
    snat: SnatMode
    flow_format: FlowFormat
    layout: KeyLayout
    hourly: bool


SCENARIOS = {
    "text-default-daily": Setup(7, "off", "text", "default", hourly=False),
    "text-default-hourly": Setup(11, "on", "text", "default", hourly=True),
    "text-hive-hourly": Setup(23, "on-exclude", "text", "hive", hourly=True),
    "parquet-hive-daily": Setup(5, "absent", "parquet", "hive", hourly=False),
    "parquet-default-daily": Setup(31, "off", "parquet", "default", hourly=False),
}
WINDOWS = {
    "hour": (BASE_TIME, BASE_TIME + HOUR),
    "quarter": (BASE_TIME + 15 * MINUTE, BASE_TIME + 30 * MINUTE),
    "odd-seconds": (BASE_TIME + 61, BASE_TIME + 1234),
    "across-the-hour": (BASE_TIME + 40 * MINUTE, BASE_TIME + 70 * MINUTE),
    "next-hour": (BASE_TIME + HOUR, BASE_TIME + HOUR + 30 * MINUTE),  # no record starts then
}


class FlowLogObjects:
    """A scenario's S3 objects under their keys, the S3 flow log and the VPC as natflow sees them."""

    def __init__(self, root: Path, flow_log: FlowLog, topology: NatTopology) -> None:
        self.root = root
        self.flow_log = flow_log
        self.topology = topology
        self.table = FlowLogTable(flow_log, DATABASE, ACCOUNT, REGION)
        # Athena sees every object under the table's location; the query must select the window's own.
        self.engine = athena_engine(self.table, self.all_files())

    def all_files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def window_files(self, window: tuple[int, int]) -> list[Path]:
        """This flow log's objects under the window's prefixes: what natflow's S3 reader lists (it then
        also skips objects whose name time cannot hold the window's records; the records are the same)."""
        prefixes = list(s3_prefixes(self.flow_log, ACCOUNT, REGION, *window))
        return [
            path
            for path in self.all_files()
            if path.relative_to(self.root).as_posix().startswith(tuple(prefixes))
            and f"_{self.flow_log.FlowLogId}_" in path.name
        ]


def drop_lines_athena_parses_differently(root: Path, doomed: set[str]) -> None:
    """Remove the text records that a single-space, typed Athena table cannot read as natflow does.

    * the record with a run of two spaces (AWS's own example has one): Athena shifts every later field;
    * the record whose bytes is "NaN": Athena reads NULL, like '-', and counts it with 0 bytes;
    * the "bogus line" record: Athena reads it as a record without interface-id (no NAT ENI's).
    The readers count the last two as malformed and the first as a normal record. The truncated
    record stays: Athena pads it with NULLs and it becomes "untimed", reported as malformed as well.
    """
    removed = 0
    for path in root.rglob("*.log.gz"):
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        kept = [line for line in lines if line not in doomed]
        removed += len(lines) - len(kept)
        path.write_bytes(gzip.compress(("\n".join(kept) + "\n").encode(), mtime=0))
    assert removed == len(doomed)


def relayout(root: Path, hive: bool, hourly: bool) -> None:
    """Move objects to the daily or hourly variant of their layout (the generator writes default
    daily and Hive hourly): each object lies under the hour of the time in its name."""
    for path in sorted(root.rglob("*.log*")):
        day_dir = path.parent.parent if path.parent.name.startswith("hour=") else path.parent
        if hourly:
            hour = path.name.split("_")[-2][9:11]  # ..._20261120T1030Z_hash
            target = day_dir / (f"hour={hour}" if hive else hour)
        else:
            target = day_dir
        target.mkdir(parents=True, exist_ok=True)
        path.rename(target / path.name)


def add_decoy_object(root: Path, flow_log_id: str) -> None:
    """An object of another flow log in the same prefix, a copy of the 10:20 object (its records start
    in the quarter window): it must not be counted."""
    [original] = root.rglob(f"*_{flow_log_id}_20261120T1020Z_*")
    shutil.copy(original, original.with_name(original.name.replace(flow_log_id, DECOY_FLOW_LOG)))


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario_objects(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> FlowLogObjects:
    setup = SCENARIOS[request.param]
    scenario = build_scenario(
        tmp_path_factory.mktemp(request.param), seed=setup.seed, snat=setup.snat, flow_format=setup.flow_format,
        layout=setup.layout, straddle=setup.snat in ("off", "absent"),
    )  # fmt: skip
    root = scenario.flowlogs_dir
    if setup.flow_format == "text":
        doomed = {r.line(S3_FIELDS) for r in scenario.records if r.double_space or r.damage in ("bad-bytes", "bogus")}
        drop_lines_athena_parses_differently(root, doomed)
    relayout(root, hive=setup.layout == "hive", hourly=setup.hourly)
    add_decoy_object(root, scenario.vpc.s3_flow_log)
    inventory, _ = load_inventory([str(scenario.aws_dir)], Diagnostics())
    described = inventory.flow_logs[scenario.vpc.s3_flow_log]
    assert described.DestinationOptions is not None
    moved = described.DestinationOptions.model_copy(update={"PerHourPartition": setup.hourly})
    flow_log = described.model_copy(update={"DestinationOptions": moved})
    return FlowLogObjects(root, flow_log, inventory.topology(CidrSet(inventory.vpc_cidrs())))


@pytest.mark.parametrize("window_name", sorted(WINDOWS))
def test_athena_sql_gives_the_readers_reduction_on_generated_flow_logs(
    scenario_objects: FlowLogObjects, window_name: str
) -> None:
    window = WINDOWS[window_name]
    objects = scenario_objects
    python = python_reduction(objects.topology, window, objects.window_files(window))
    athena = athena_reduction(objects.engine, objects.table, objects.topology, window)
    assert_same_reduction(athena, python)
    stats = python.stats
    if window_name != "next-hour":
        assert python.rows and stats.records_counted and stats.internet_leg_records and stats.rejected_records
        assert stats.other_interface_records and stats.no_data_records and stats.malformed_records <= 1
        assert stats.outside_window_records or window_name == "hour"


def test_the_decoy_flow_log_and_other_partitions_would_change_the_answer(scenario_objects: FlowLogObjects) -> None:
    """The equality above is not vacuous: the decoy object holds records of the quarter, and in an
    hourly table the 10:00 objects, which the next hour's partitions exclude, hold records too."""
    objects = scenario_objects
    quarter, later = WINDOWS["quarter"], WINDOWS["next-hour"]
    decoy = [p for p in objects.all_files() if DECOY_FLOW_LOG in p.name]
    with_decoy = python_reduction(objects.topology, quarter, [*objects.window_files(quarter), *decoy])
    assert with_decoy.rows != python_reduction(objects.topology, quarter, objects.window_files(quarter)).rows
    own = [p for p in objects.all_files() if p not in decoy]
    assert python_reduction(objects.topology, later, own).stats.outside_window_records
    assert (objects.window_files(later) == []) == objects.table.hourly


# -- hand-made records, one rule each ------------------------------------------------------------------
FIRST = 1_795_255_200  # 2026-11-21T10:00:00Z
RULES_WINDOW = (FIRST + 60, FIRST + 3600)
NAT_ENIS = {"eni-0nat1": "nat-1", "eni-0nat2": "nat-2"}
NAT_IPS = {"10.0.1.10": "eni-0nat1", "10.0.1.11": "eni-0nat1", "10.0.2.10": "eni-0nat2"}
REGIONAL_NAT = "nat-0regional"
RULES_TOPOLOGY = NatTopology(NAT_ENIS, NAT_IPS, CidrSet(["10.0.0.0/16", "2600:1f18::/56"]), frozenset({REGIONAL_NAT}))
RULES_FLOW_LOG_ID = "fl-0rules"


def record(eni: str, src: str, dst: str, start: int | str, end: int | str, **more: str | int) -> dict[str, str]:
    values: dict[str, str | int] = {
        "version": 5, "account-id": ACCOUNT, "interface-id": eni, "srcaddr": src, "dstaddr": dst, "srcport": 40000,
        "dstport": 443, "protocol": 6, "packets": 10, "bytes": 1500, "start": start, "end": end, "action": "ACCEPT",
        "log-status": "OK", "vpc-id": "vpc-0a", "pkt-srcaddr": src, "pkt-dstaddr": dst, "pkt-src-aws-service": "-",
        "pkt-dst-aws-service": "-", "flow-direction": "ingress", "az-id": "use1-az1", "resource-id": "-",
    }  # fmt: skip
    values.update({name.replace("_", "-"): value for name, value in more.items()})
    return {name: str(value) for name, value in values.items()}


T = FIRST
RULE_RECORDS = [
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", T + 65, T + 90, pkt_dstaddr="52.1.2.3", pkt_dst_aws_service="S3"),
    # same key, later start, earlier end: the row keeps the first start and the last end
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", T + 70, T + 80, pkt_dstaddr="52.1.2.3", pkt_dst_aws_service="S3", bytes=7),
    record("eni-0nat1", "10.0.1.10", "10.0.32.5", T + 66, T + 95, pkt_srcaddr="52.1.2.3", pkt_src_aws_service="S3"),
    record("eni-0nat1", "10.0.32.6", "10.0.1.11", T + 130, T + 150, pkt_dstaddr="-"),  # no destination
    record("eni-0nat1", "10.0.32.6", "10.0.1.11", T + 131, T + 150),  # pkt-dstaddr = dstaddr: no destination
    record("eni-0nat2", "10.0.33.7", "10.0.2.10", (T + 185) * 1000 + 7, (T + 200) * 1000, pkt_dstaddr="3.3.3.3"),  # ms
    record("eni-0nat2", "10.0.33.7", "10.0.2.10", "-", T + 240, pkt_dstaddr="3.3.3.3"),  # start from end
    record("eni-0nat2", "10.0.33.7", "10.0.2.10", T + 241, "-", pkt_dstaddr="3.3.3.3"),  # end from start
    record("eni-0nat2", "10.0.2.10", "10.0.33.7", T + 300, T + 310, packets="-", bytes="-", pkt_srcaddr="3.3.3.3"),
    record("eni-0nat2", "10.0.2.10", "10.0.33.7", T + 301, T + 310, action="-", pkt_srcaddr="3.3.3.3"),
    record("eni-0nat1", "45.1.2.3", "10.0.1.10", T + 400, T + 401, action="REJECT", bytes=44),
    record("eni-0nat1", "10.0.1.10", "52.1.2.3", T + 410, T + 420, bytes=900),  # internet leg
    record("eni-0nat1", "10.0.1.10", "10.0.2.10", T + 411, T + 420, bytes=901),  # NAT to NAT: internet leg
    record("eni-0nat1", "010.0.32.5", "10.0.1.10", T + 412, T + 420, bytes=902),  # not an address: outside
    record("eni-0nat1", "-", "10.0.1.10", T + 413, T + 420, bytes=903),
    record("eni-0nat1", "10.0.32.5", "10.0.33.7", T + 414, T + 420, bytes=904),  # no NAT IP: unclassified
    record("eni-0nat1", "2600:1f18:0:0::5", "10.0.1.10", T + 500, T + 510, pkt_dstaddr="2a00:1450::1", bytes=11),
    record("eni-0nat1", "2600:1f18::5", "10.0.1.10", T + 501, T + 520, pkt_dstaddr="2a00:1450::1", bytes=13),
    record("eni-0nat1", "10.0.1.10", "2600:1f18::5", T + 502, T + 530, pkt_srcaddr="2a00:1450::1", bytes=17),
    record("eni-0nat1", "2a00:1450::1", "10.0.1.10", T + 503, T + 530, bytes=19),  # IPv6 outside: internet leg
    record("eni-0node", "10.0.32.5", "52.1.2.3", T + 600, T + 610),  # another ENI
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", T + 421, T + 430, bytes=MAX_RECORD_BYTES + 1),  # implausible
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", T + 422, T + 430, packets=MAX_RECORD_PACKETS + 1),
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", LATEST_TIME + 5, LATEST_TIME + 9),
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", FIRST + 59, T + 70),  # starts before the window
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", RULES_WINDOW[0], T + 70),  # first second of the window
    record("eni-0nat1", "10.0.32.5", "10.0.1.10", RULES_WINDOW[1], T + 3700),  # the window's end is excluded
    # a regional NAT Gateway's records: by resource-id, whatever interface-id; one end inside counts
    record("-", "10.0.32.5", "52.1.2.3", T + 700, T + 710, resource_id=REGIONAL_NAT, pkt_dst_aws_service="S3"),
    record("-", "52.1.2.3", "10.0.32.5", T + 701, T + 712, resource_id=REGIONAL_NAT, pkt_src_aws_service="S3"),
    record("eni-0nat1", "10.0.32.6", "52.1.2.4", T + 702, T + 713, resource_id=REGIONAL_NAT, bytes=21),
    record("eni-0node", "52.1.2.4", "10.0.32.6", T + 703, T + 713, resource_id=REGIONAL_NAT, bytes=23),
    record("-", "3.216.41.7", "52.1.2.3", T + 704, T + 714, resource_id=REGIONAL_NAT, bytes=25),  # internet side
    record("-", "10.0.32.5", "10.0.33.7", T + 705, T + 715, resource_id=REGIONAL_NAT, bytes=27),  # both inside
    record("-", "-", "52.1.2.3", T + 706, T + 716, resource_id=REGIONAL_NAT, bytes=29),  # no source: unclassified
    record("-", "010.0.32.5", "52.1.2.3", T + 707, T + 717, resource_id=REGIONAL_NAT, bytes=31),
    record("-", "10.0.32.5", "52.1.2.3", T + 708, T + 718, resource_id=REGIONAL_NAT, action="REJECT", bytes=33),
    record("-", "2600:1f18::5", "2a00:1450::1", T + 709, T + 719, resource_id=REGIONAL_NAT, bytes=35),
    record("-", "2a00:1450::1", "2600:1f18:0::5", T + 710, T + 719, resource_id=REGIONAL_NAT, pkt_src_aws_service="EC2"),
    record("-", "2600:1f18::5", "10.0.32.5", T + 711, T + 719, resource_id=REGIONAL_NAT, bytes=37),  # both inside
    record("-", "2a00:1450::1", "52.1.2.3", T + 712, T + 719, resource_id=REGIONAL_NAT, bytes=39),  # internet side
    record("-", "2600:1f18::5", "-", T + 713, T + 719, resource_id=REGIONAL_NAT, bytes=41),  # no destination
    record("-", "10.0.32.5", "52.1.2.3", T + 714, T + 719, resource_id="nat-0unknown", bytes=43),  # no gateway of ours
    record("eni-0node", "-", "-", T + 600, T + 659, srcport="-", dstport="-", protocol="-", packets="-", bytes="-", action="-", log_status="NODATA"),
    record("eni-0nat2", "-", "-", T + 660, T + 719, srcport="-", dstport="-", protocol="-", packets="-", bytes="-", action="-", log_status="SKIPDATA"),
    record("eni-0nat2", "-", "-", T + 3720, T + 3779, srcport="-", dstport="-", protocol="-", packets="-", bytes="-", action="-", log_status="SKIPDATA"),
]  # fmt: skip
RULE_FORMATS = {
    "recommended": parse_log_format(RECOMMENDED_FORMAT, "test"),
    "default": parse_log_format(DEFAULT_FORMAT, "test"),
    "no-interface-id": parse_log_format(RECOMMENDED_FORMAT.replace("${interface-id} ", ""), "test"),
}


def write_rule_records(
    root: Path, log_format: LogFormat, parquet: bool, records: Sequence[dict[str, str]] = RULE_RECORDS
) -> FlowLogTable:
    """`records` in `log_format` as one object of a daily default-layout flow log."""
    directory = root / "AWSLogs" / ACCOUNT / "vpcflowlogs" / REGION / "2026" / "11" / "21"
    directory.mkdir(parents=True)
    object_name = f"{ACCOUNT}_vpcflowlogs_{REGION}_{RULES_FLOW_LOG_ID}_20261121T1000Z_0001"
    if parquet:
        types = {"int": pa.int32(), "bigint": pa.int64(), "string": pa.string()}

        def typed(text: str, field: str) -> str | int | None:
            # '-' stays text in string columns (the readers and the SQL take it as missing), NULL in numbers
            if column_type(field) == "string":
                return text
            return None if text == "-" else int(text)

        schema = pa.schema([(column, types[kind]) for column, kind in column_types(log_format)])
        columns = {
            column: [typed(r[field], field) for r in records]
            for field, (column, _) in zip(log_format.fields, column_types(log_format), strict=True)
        }
        pq.write_table(pa.Table.from_pydict(columns, schema=schema), directory / f"{object_name}.log.parquet")
    else:
        lines = [" ".join(log_format.fields), *(" ".join(r[f] for f in log_format.fields) for r in records)]
        (directory / f"{object_name}.log.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    flow_log = FlowLog(
        FlowLogId=RULES_FLOW_LOG_ID,
        LogFormat=" ".join(f"${{{field}}}" for field in log_format.fields),
        LogDestinationType="s3",
        LogDestination="arn:aws:s3:::rules-bucket",
        DestinationOptions=FlowLogDestinationOptions(FileFormat="parquet" if parquet else "plain-text"),
    )
    return FlowLogTable(flow_log, DATABASE, ACCOUNT, REGION)


@pytest.mark.parametrize("file_format", ["text", "parquet"])
@pytest.mark.parametrize("format_name", sorted(RULE_FORMATS))
def test_athena_sql_follows_each_rule_of_the_readers(tmp_path: Path, format_name: str, file_format: str) -> None:
    table = write_rule_records(tmp_path, RULE_FORMATS[format_name], parquet=file_format == "parquet")
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    python = python_reduction(RULES_TOPOLOGY, RULES_WINDOW, files)
    athena = athena_reduction(athena_engine(table, files), table, RULES_TOPOLOGY, RULES_WINDOW)
    assert_same_reduction(athena, python)
    assert python.stats.internet_leg_records >= 4 and python.stats.skip_data_records == 1
    assert python.stats.malformed_records >= 3  # the implausible ones
    if format_name != "no-interface-id":  # without it, records with no NAT IP belong to no NAT ENI
        assert python.stats.unclassified_nat_records
    if format_name != "default":  # the v2 format has no packet addresses, nor resource-id
        assert ("eni-0nat1", "2600:1f18::5", 0, (FIRST + 500) // 60, "2a00:1450::1", "") in python.rows
        regional = {key: value[0] for key, value in python.rows.items() if key[0] == REGIONAL_NAT}
        minute = (FIRST + 700) // 60
        assert regional == {
            (REGIONAL_NAT, "10.0.32.5", 0, minute, "52.1.2.3", "S3"): 1500,
            (REGIONAL_NAT, "10.0.32.5", 1, minute, "52.1.2.3", "S3"): 1500,
            (REGIONAL_NAT, "10.0.32.6", 0, minute, "52.1.2.4", ""): 21,
            (REGIONAL_NAT, "10.0.32.6", 1, minute, "52.1.2.4", ""): 23,
            (REGIONAL_NAT, "2600:1f18::5", 0, minute, "2a00:1450::1", ""): 35,
            (REGIONAL_NAT, "2600:1f18::5", 1, minute, "2a00:1450::1", "EC2"): 1500,
        }
        assert python.stats.unclassified_by_key[REGIONAL_NAT] == [5, 27 + 29 + 31 + 37 + 41]


def test_a_record_without_any_time_is_malformed_for_athena_only(tmp_path: Path) -> None:
    """The one rule Athena cannot follow: the readers take the object's time (10:00 in its name)."""
    untimed = record("eni-0nat1", "10.0.32.5", "10.0.1.10", "-", "-", bytes=5)
    table = write_rule_records(tmp_path, RULE_FORMATS["recommended"], parquet=False, records=[*RULE_RECORDS, untimed])
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    window = (FIRST, FIRST + HOUR)
    python = python_reduction(RULES_TOPOLOGY, window, files)
    athena = athena_reduction(athena_engine(table, files), table, RULES_TOPOLOGY, window)
    assert (python.stats.malformed_records, athena.stats.malformed_records) == (3, 4)  # 3 implausible in both
    assert athena.stats.records_counted == python.stats.records_counted - 1
    assert any("neither start nor end" in example for example in athena.stats.malformed_examples)


# -- DDL and partitions ----------------------------------------------------------------------------------
LAYOUTS = {
    "default-daily": FlowLogDestinationOptions(HiveCompatiblePartitions=False, PerHourPartition=False),
    "default-hourly": FlowLogDestinationOptions(HiveCompatiblePartitions=False, PerHourPartition=True),
    "hive-daily": FlowLogDestinationOptions(HiveCompatiblePartitions=True, PerHourPartition=False),
    "hive-hourly": FlowLogDestinationOptions(HiveCompatiblePartitions=True, PerHourPartition=True),
}


def layout_flow_log(layout: str, file_format: str = "plain-text") -> FlowLog:
    options = LAYOUTS[layout].model_copy(update={"FileFormat": file_format})
    return FlowLog(
        FlowLogId="fl-0abc123",
        LogFormat=RECOMMENDED_FORMAT,
        LogDestinationType="s3",
        LogDestination="arn:aws:s3:::flow-bucket/team/vpc",
        DestinationOptions=options,
    )


def template_of(ddl: str) -> str:
    return ddl.split("'storage.location.template'='", 1)[1].split("'", 1)[0]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_projection_reaches_exactly_the_prefixes_natflow_lists(layout: str) -> None:
    """Across midnight: the partitions the query names, put through the table's location template,
    are the S3 prefixes that flowsource lists for the same window (slack for late objects included)."""
    table = FlowLogTable(layout_flow_log(layout), DATABASE, ACCOUNT, REGION)
    window = (BASE_TIME + 13 * HOUR + 30 * MINUTE, BASE_TIME + 14 * HOUR + 45 * MINUTE)  # 23:30 .. 00:45
    template = template_of(table_ddl(table))
    expanded = []
    for moment in partition_times(table, window):
        at = dt.datetime.fromtimestamp(moment, dt.UTC)
        values = {"year": f"{at.year}", "month": f"{at.month:02d}", "day": f"{at.day:02d}", "hour": f"{at.hour:02d}"}
        location = template
        for name in table.partition_columns:
            location = location.replace(f"${{{name}}}", values[name])
        expanded.append(location)
    listed = [f"s3://flow-bucket/{p}" for p in s3_prefixes(table.flow_log, ACCOUNT, REGION, *window)]
    assert expanded == listed and len(listed) == (3 if table.hourly else 2)
    sql = reduction_sql(table, RULES_TOPOLOGY, window)
    assert '"day" = 20' in sql and '"day" = 21' in sql


@pytest.mark.parametrize("file_format", ["plain-text", "parquet"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_ddl_follows_the_flow_logs_format_and_layout(layout: str, file_format: str) -> None:
    table = FlowLogTable(layout_flow_log(layout, file_format), "flows", ACCOUNT, REGION)
    ddl = table_ddl(table)
    columns = [line.strip().rstrip(",") for line in ddl.split("(\n", 1)[1].split("\n)", 1)[0].splitlines()]
    assert columns[:3] == ["`version` int", "`account_id` string", "`interface_id` string"]
    assert "`packets` bigint" in columns and "`end` bigint" in columns and "`protocol` int" in columns
    assert len(columns) == len(parse_log_format(RECOMMENDED_FORMAT, "test").fields)
    assert ddl.startswith(f"CREATE EXTERNAL TABLE IF NOT EXISTS `flows`.`{table.name}` (")
    hive, hourly = layout.startswith("hive"), layout.endswith("hourly")
    expected_location = (
        "s3://flow-bucket/team/vpc/AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/"
        if hive
        else "s3://flow-bucket/team/vpc/AWSLogs/123456789012/vpcflowlogs/us-east-1/"
    )
    assert f"LOCATION '{expected_location}'" in ddl
    dated = "year=${year}/month=${month}/day=${day}/" if hive else "${year}/${month}/${day}/"
    assert template_of(ddl) == expected_location + dated + (("hour=${hour}/" if hive else "${hour}/") if hourly else "")
    assert ("`hour` int" in ddl) == hourly and "'projection.enabled'='true'" in ddl
    if file_format == "parquet":
        assert "STORED AS PARQUET" in ddl and "skip.header.line.count" not in ddl
    else:
        assert "ROW FORMAT DELIMITED FIELDS TERMINATED BY ' '" in ddl
        assert "'skip.header.line.count'='1'" in ddl and "'serialization.null.format'='-'" in ddl
    parsed = sqlglot.parse_one(ddl, read="hive")
    assert [c.name for c in parsed.find_all(sqlglot.exp.ColumnDef)][:2] == ["version", "account_id"]


def test_table_name_follows_the_definition() -> None:
    daily = FlowLogTable(layout_flow_log("default-daily"), DATABASE, ACCOUNT, REGION)
    assert daily.name == FlowLogTable(layout_flow_log("default-daily"), DATABASE, ACCOUNT, REGION).name
    assert daily.name.startswith("natflow_fl_0abc123_")
    assert daily.name != FlowLogTable(layout_flow_log("hive-daily"), DATABASE, ACCOUNT, REGION).name
    with pytest.raises(ValueError, match="lowercase"):
        FlowLogTable(layout_flow_log("default-daily"), "Bad-Name", ACCOUNT, REGION)


# -- the call sequence against moto ------------------------------------------------------------------
OUTPUT = "s3://athena-results/natflow/"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")  # the server is on loopback
        with MotoServer() as server:
            yield server


@pytest.fixture
def athena(moto_server: MotoServer) -> Iterator[Any]:
    moto_server.reset()
    yield boto3.client(
        "athena", region_name=REGION, endpoint_url=moto_server.endpoint_url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    post(moto_server, "/moto-api/state-manager/unset-transition", {"model_name": "athena::execution"})


def hold_queries(server: MotoServer, polls: int) -> None:
    """Each query moves QUEUED -> RUNNING -> SUCCEEDED only every `polls` GetQueryExecution calls."""
    post(server, "/moto-api/state-manager/set-transition",
         {"model_name": "athena::execution", "transition": {"progression": "manual", "times": polls}})  # fmt: skip


def test_reduction_through_moto_gives_the_readers_reduction(
    athena: Any, moto_server: MotoServer, tmp_path: Path
) -> None:
    table = write_rule_records(tmp_path, RULE_FORMATS["recommended"], parquet=False)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    sql = reduction_sql(table, RULES_TOPOLOGY, RULES_WINDOW)
    post(
        moto_server,
        "/moto-api/static/athena/query-results",
        {"results": [canned(duckdb_rows(athena_engine(table, files), sql))]},
    )
    hold_queries(moto_server, polls=2)  # QUEUED, RUNNING, RUNNING, SUCCEEDED: the loop must keep polling

    result = run_reduction(athena, sql, "primary", OUTPUT, poll=0.01, timeout=10)

    execution = athena.get_query_execution(QueryExecutionId=result.query_id)["QueryExecution"]
    assert execution["Query"] == sql and execution["WorkGroup"] == "primary"
    assert execution["ResultConfiguration"]["OutputLocation"].startswith(OUTPUT)
    assert (result.data_scanned_bytes, result.total_execution_ms) == (0, 0)  # moto scans nothing
    reduction = reduction_from_rows(result.rows, RULES_TOPOLOGY, RULES_WINDOW, table.log_format)
    assert_same_reduction(reduction, python_reduction(RULES_TOPOLOGY, RULES_WINDOW, files))


def test_ensure_table_runs_the_ddl_through_athena(athena: Any) -> None:
    table = FlowLogTable(layout_flow_log("hive-hourly", "parquet"), "natflow_flows", ACCOUNT, REGION)
    ensure_table(athena, table, "primary", OUTPUT, poll=0.01)
    names = [d["Name"] for d in athena.list_databases(CatalogName="AwsDataCatalog")["DatabaseList"]]
    assert "natflow_flows" in names
    queries = [
        athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]
        for q in athena.list_query_executions()["QueryExecutionIds"]
    ]
    assert {q["Query"] for q in queries} == {"CREATE DATABASE IF NOT EXISTS `natflow_flows`", table_ddl(table)}
    assert {q["StatementType"] for q in queries} == {"DDL"}


def test_a_query_that_does_not_finish_in_time_is_stopped(athena: Any, moto_server: MotoServer) -> None:
    hold_queries(moto_server, polls=1_000_000)
    with pytest.raises(AthenaQueryError, match=r"TIMED_OUT: still QUEUED after 0\.2 s") as raised:
        run_reduction(athena, "SELECT 1", None, OUTPUT, poll=0.02, timeout=0.2)
    state = athena.get_query_execution(QueryExecutionId=raised.value.query_id)["QueryExecution"]["Status"]["State"]
    assert state == "CANCELLED" and raised.value.query_id in str(raised.value)


# -- what moto cannot do: FAILED queries, several result pages ----------------------------------------------
@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("athena", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def execution(state: str, **status: Any) -> dict[str, Any]:
    return {"QueryExecution": {"QueryExecutionId": "q-1", "Status": {"State": state, **status},
                               "Statistics": {"DataScannedInBytes": 123_456_789, "EngineExecutionTimeInMillis": 4200,
                                              "TotalExecutionTimeInMillis": 4800}}}  # fmt: skip


def test_a_failed_query_raises_with_its_id_and_reason(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    start = {"QueryString": "SELECT x", "WorkGroup": "natflow", "ResultConfiguration": {"OutputLocation": OUTPUT}}
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, start)
    stubber.add_response("get_query_execution", execution("RUNNING"), {"QueryExecutionId": "q-1"})
    reason = "COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved"
    stubber.add_response(
        "get_query_execution",
        execution("FAILED", StateChangeReason=reason, AthenaError={"ErrorCategory": 2, "ErrorType": 1006}),
        {"QueryExecutionId": "q-1"},
    )
    with pytest.raises(AthenaQueryError) as raised:
        run_reduction(client, "SELECT x", "natflow", OUTPUT, poll=0.001)
    assert str(raised.value) == f"Athena query q-1 FAILED: {reason}"
    assert (raised.value.query_id, raised.value.state) == ("q-1", "FAILED")


def test_results_are_read_page_by_page_with_statistics(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, {"QueryString": "SELECT x"})
    stubber.add_response("get_query_execution", execution("SUCCEEDED"), {"QueryExecutionId": "q-1"})
    first_rows = [[COUNTED, "eni-0nat1", "10.0.32.5", "0", "29920921", "", "", "1500", "10", "1", "2", "1"],
                  [COUNTED, "eni-0nat1", "10.0.32.6", "0", "29920921", "52.1.2.3", "S3", "7", "1", "3", "4", "1"]]  # fmt: skip
    second_rows = [["rejected", None, None, None, None, None, None, "44", "1", "5", "6", "1"]]
    first_page = canned(first_rows)["rows"]
    stubber.add_response(
        "get_query_results",
        {"ResultSet": {"Rows": first_page}, "NextToken": "page-2"},
        {"QueryExecutionId": "q-1", "MaxResults": 1000},
    )
    stubber.add_response(
        "get_query_results",
        {"ResultSet": {"Rows": canned(second_rows)["rows"][1:]}},  # later pages carry no header
        {"QueryExecutionId": "q-1", "MaxResults": 1000, "NextToken": "page-2"},
    )
    result = run_reduction(client, "SELECT x", None, None, poll=0.001)
    assert (result.query_id, result.data_scanned_bytes, result.engine_execution_ms, result.total_execution_ms) == (
        "q-1", 123_456_789, 4200, 4800,
    )  # fmt: skip
    assert list(result.rows) == [tuple(r) for r in first_rows + second_rows]
