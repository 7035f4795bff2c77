"""Readers and the reduction: the AWS documentation's records, every delivery format, bad input.

Aspects: NAT client legs counted once (internet legs not), direction, REJECT kept apart,
NODATA/SKIPDATA counted, malformed lines counted with file:line while reading goes on,
whitespace runs, ms timestamps, time from the CloudWatch event or the S3 key, format precedence,
truncated gzip keeps what came before, Parquet, CloudWatch exports, the --start/--end window.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from natflow.diagnostics import Diagnostics
from natflow.flowlogs.fields import parse_log_format
from natflow.flowlogs.readers import FormatChoices, read_all
from natflow.flowlogs.reduce import IN, OUT, NatTopology, Reduction
from natflow.flowlogs.sources import discover, key_time
from natflow.net import CidrSet
from natflow.timeutil import parse_time

NAT_ENI = "eni-1235b8ca123456789"
TOPOLOGY = NatTopology({NAT_ENI: "nat-0abc"}, {"10.0.0.220": NAT_ENI}, CidrSet(["10.0.0.0/16"]))
KEY_NAME = "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20251121T1020Z_fe123456"  # the records' time

# The AWS documentation's NAT Gateway example (format: instance-id interface-id srcaddr dstaddr
# pkt-srcaddr pkt-dstaddr), with packets/bytes/start/end added so that there are bytes to count.
NAT_FORMAT = (
    "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr packets bytes start end action log-status"
)
NAT_RECORDS = [
    f"- {NAT_ENI} 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5 10 1000 1763720400 1763720459 ACCEPT OK",
    f"- {NAT_ENI} 10.0.0.220 203.0.113.5 10.0.0.220 203.0.113.5 10 1000 1763720400 1763720459 ACCEPT OK",
    f"- {NAT_ENI} 203.0.113.5 10.0.0.220 203.0.113.5 10.0.0.220 20 5000 1763720400 1763720459 ACCEPT OK",
    f"- {NAT_ENI} 10.0.0.220 10.0.1.5 203.0.113.5 10.0.1.5 20 5000 1763720400 1763720459 ACCEPT OK",
]


def run(paths: list[Path], choices: FormatChoices | None = None, window: tuple[int, int] | None = None):
    files, _ = discover([str(p) for p in paths], Diagnostics())
    reduction = Reduction(TOPOLOGY, window)
    diagnostics = Diagnostics()
    read_all(files, choices or FormatChoices(), reduction, diagnostics)
    return reduction, diagnostics


def write_gz(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def by_direction(reduction: Reduction) -> dict[tuple[str, int], int]:
    found: dict[tuple[str, int], int] = {}
    for (_, address, direction, *_), value in reduction.rows.items():
        found[(address, direction)] = found.get((address, direction), 0) + value[0]
    return found


def test_nat_example_counts_client_legs_once(tmp_path: Path) -> None:
    reduction, _ = run([write_gz(tmp_path / f"{KEY_NAME}.log.gz", [NAT_FORMAT, *NAT_RECORDS])])
    assert by_direction(reduction) == {("10.0.1.5", OUT): 1000, ("10.0.1.5", IN): 5000}
    stats = reduction.stats
    assert (stats.records_read, stats.records_counted, stats.internet_leg_records) == (4, 2, 2)
    assert stats.internet_leg_bytes == 6000
    (key_out,) = [k for k in reduction.rows if k[2] == OUT]
    assert key_out[4] == "203.0.113.5"  # destination from pkt-dstaddr


def test_default_v2_format_without_pkt_fields_still_finds_client_legs(tmp_path: Path) -> None:
    lines = [
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
        f"2 123456789010 {NAT_ENI} 10.0.1.5 10.0.0.220 40000 443 6 10 840 1763720400 1763720460 ACCEPT OK",
        f"2 123456789010 {NAT_ENI} 10.0.0.220 10.0.1.5 443 40000 6 12 9000 1763720400 1763720460 ACCEPT OK",
        f"2 123456789010 {NAT_ENI} 10.0.0.220 198.51.100.7 1024 443 6 10 840 1763720400 1763720460 ACCEPT OK",
        f"2 123456789010 {NAT_ENI} 10.0.1.9 10.0.0.220 40001 443 6 1 60 1763720400 1763720460 REJECT OK",
        "2 123456789010 eni-0other 10.0.1.5 198.51.100.7 40000 443 6 10 840 1763720400 1763720460 ACCEPT OK",
        f"2 123456789010 {NAT_ENI} - - - - - - - 1763720400 1763720460 - NODATA",
        "2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA",
    ]
    reduction, _ = run([write_gz(tmp_path / f"{KEY_NAME}.log.gz", lines)])
    assert by_direction(reduction) == {("10.0.1.5", OUT): 840, ("10.0.1.5", IN): 9000}
    stats = reduction.stats
    assert stats.rejected_bytes == 60 and stats.rejected_records == 1
    assert stats.other_interface_records == 1
    assert (stats.no_data_records, stats.skip_data_records) == (1, 1)
    assert all(key[4] == "" for key in reduction.rows)  # no destinations without pkt-dstaddr


def test_malformed_lines_are_counted_with_file_and_line_and_reading_goes_on(tmp_path: Path) -> None:
    lines = [
        NAT_FORMAT,
        NAT_RECORDS[0],
        "this line is junk",
        NAT_RECORDS[0].replace(" 1000 ", " 1k "),
        NAT_RECORDS[3]
        .replace(" 10.0.1.5 10.0.0.220", "  10.0.1.5   10.0.0.220")
        .replace("10.0.0.220 10.0.1.5 203", "10.0.0.220 10.0.1.5  203"),
    ]
    path = write_gz(tmp_path / f"{KEY_NAME}.log.gz", lines)
    reduction, _ = run([path])
    assert reduction.stats.malformed_records == 2
    assert reduction.stats.malformed_examples[0] == f"{path}:3: 4 fields, the format has 12"
    assert f"{path}:4: packets/bytes is not a number" in reduction.stats.malformed_examples
    assert by_direction(reduction) == {("10.0.1.5", OUT): 1000, ("10.0.1.5", IN): 5000}


def test_millisecond_timestamps_are_read_as_seconds(tmp_path: Path) -> None:
    record = NAT_RECORDS[0].replace("1763720400 1763720459", "1763720400000 1763720459000")
    reduction, _ = run([write_gz(tmp_path / f"{KEY_NAME}.log.gz", [NAT_FORMAT, record])])
    (value,) = reduction.rows.values()
    assert (value[2], value[3]) == (1763720400, 1763720459)


def test_format_without_times_takes_the_s3_key_time(tmp_path: Path) -> None:
    fmt = "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr packets bytes"
    record = f"- {NAT_ENI} 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5 1 100"
    reduction, _ = run([write_gz(tmp_path / f"{KEY_NAME}.log.gz", [fmt, record])])
    (value,) = reduction.rows.values()
    assert value[2] == parse_time("2025-11-21T10:20:00Z")
    assert value[3] == parse_time("2025-11-21T10:24:59Z")


def test_key_time_in_every_layout() -> None:
    hourly = "AWSLogs/aws-account-id=1/aws-service=vpcflowlogs/aws-region=us-east-1/year=2026/month=11/day=21/hour=07/x.log.gz"
    assert key_time(hourly) == (parse_time("2026-11-21T07:00:00Z"), parse_time("2026-11-21T07:59:59Z"))
    daily = "AWSLogs/1/vpcflowlogs/us-east-1/2026/11/21/x.log.gz"
    assert key_time(daily) == (parse_time("2026-11-21T00:00:00Z"), parse_time("2026-11-21T23:59:59Z"))
    assert key_time(f"a/b/{KEY_NAME}.log.gz") == (
        parse_time("2025-11-21T10:20:00Z"),
        parse_time("2025-11-21T10:24:59Z"),
    )


def test_log_format_option_overrides_the_header(tmp_path: Path) -> None:
    # Header says the default order, but the data is the NAT format: --log-format wins.
    path = write_gz(tmp_path / f"{KEY_NAME}.log.gz", [NAT_FORMAT, *NAT_RECORDS])
    reduction, _ = run([path], FormatChoices(override=parse_log_format(NAT_FORMAT, "--log-format")))
    assert by_direction(reduction) == {("10.0.1.5", OUT): 1000, ("10.0.1.5", IN): 5000}
    headerless = write_gz(tmp_path / "plain" / f"{KEY_NAME}.log.gz", NAT_RECORDS)
    from_describe = FormatChoices(by_flow_log_id={"fl-1234abcd": parse_log_format(NAT_FORMAT, "describe")})
    reduction, _ = run([headerless], from_describe)
    assert reduction.stats.records_counted == 2 and reduction.stats.malformed_records == 0


def test_truncated_gzip_keeps_records_before_the_damage_and_warns(tmp_path: Path) -> None:
    many = [NAT_FORMAT] + [NAT_RECORDS[0]] * 20000
    path = write_gz(tmp_path / f"{KEY_NAME}.log.gz", many)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    reduction, diagnostics = run([path])
    assert 0 < reduction.stats.records_counted < 20000
    (warning,) = [d for d in diagnostics.items if d.reason == "DamagedFlowLog"]
    assert str(path) in warning.message and "kept" in warning.message


def test_plain_text_log_without_gzip(tmp_path: Path) -> None:
    path = tmp_path / f"{KEY_NAME}.log"
    path.write_text("\n".join([NAT_FORMAT, *NAT_RECORDS]) + "\n")
    reduction, _ = run([path])
    assert reduction.stats.records_counted == 2


def test_parquet_objects_read_like_text(tmp_path: Path) -> None:
    columns = [c.replace("-", "_") for c in NAT_FORMAT.split()]
    rows = [r.split() for r in NAT_RECORDS]
    table_data: dict[str, list[object]] = {}
    for index, column in enumerate(columns):
        values = [row[index] for row in rows]
        if column in ("packets", "bytes", "start", "end"):
            table_data[column] = [int(v) for v in values]
        else:
            table_data[column] = [None if v == "-" else v for v in values]
    path = tmp_path / f"{KEY_NAME}.log.parquet"
    pq.write_table(pa.table(table_data), path)
    reduction, _ = run([path])
    assert by_direction(reduction) == {("10.0.1.5", OUT): 1000, ("10.0.1.5", IN): 5000}


def test_cloudwatch_export_uses_event_timestamps_and_describe_format(tmp_path: Path) -> None:
    fmt = "interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr packets bytes action"
    events = [
        {
            "logStreamName": f"{NAT_ENI}-all",
            "timestamp": 1763720400000,
            "message": f"{NAT_ENI} 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5 1 100 ACCEPT",
        },
        {
            "logStreamName": f"{NAT_ENI}-all",
            "timestamp": 1763720460000,
            "message": f"{NAT_ENI} 10.0.0.220 10.0.1.5 203.0.113.5 10.0.1.5 2 700 ACCEPT",
        },
        {"logStreamName": f"{NAT_ENI}-all", "timestamp": 1763720460000},
    ]
    path = tmp_path / "page1.json"
    # Two pages written one after another, as paginated CLI output is.
    path.write_text(json.dumps({"events": events[:1], "nextToken": "x"}) + "\n" + json.dumps({"events": events[1:]}))
    choices = FormatChoices(cloudwatch=[parse_log_format(fmt, "flow log fl-1 LogFormat")])
    reduction, _ = run([path], choices)
    assert by_direction(reduction) == {("10.0.1.5", OUT): 100, ("10.0.1.5", IN): 700}
    starts = sorted(value[2] for value in reduction.rows.values())
    assert starts == [1763720400, 1763720460]
    assert reduction.stats.malformed_records == 1


def test_window_keeps_records_whose_start_is_inside(tmp_path: Path) -> None:
    later = [r.replace("1763720400 1763720459", "1763724000 1763724059") for r in NAT_RECORDS]
    path = write_gz(tmp_path / f"{KEY_NAME}.log.gz", [NAT_FORMAT, *NAT_RECORDS, *later])
    reduction, _ = run([path], window=(1763720400, 1763724000))
    assert reduction.stats.outside_window_records == 4
    assert by_direction(reduction) == {("10.0.1.5", OUT): 1000, ("10.0.1.5", IN): 5000}


def test_records_without_interface_id_are_found_by_nat_private_ip(tmp_path: Path) -> None:
    fmt = "srcaddr dstaddr packets bytes start end action"
    lines = [
        fmt,
        "10.0.1.5 10.0.0.220 1 100 1763720400 1763720459 ACCEPT",
        "10.0.1.5 198.51.100.1 1 100 1763720400 1763720459 ACCEPT",
    ]
    reduction, _ = run([write_gz(tmp_path / f"{KEY_NAME}.log.gz", lines)])
    assert by_direction(reduction) == {("10.0.1.5", OUT): 100}
    assert reduction.stats.other_interface_records == 1


def test_directories_are_read_recursively_and_other_files_listed(tmp_path: Path) -> None:
    write_gz(tmp_path / "AWSLogs/1/vpcflowlogs/us-east-1/2026/11/21" / f"{KEY_NAME}.log.gz", [NAT_FORMAT, *NAT_RECORDS])
    (tmp_path / "notes.md").write_text("hello")
    files, passed_over = discover([str(tmp_path)], Diagnostics())
    assert len(files) == 1 and files[0].flow_log_id == "fl-1234abcd" and files[0].region == "us-east-1"
    assert passed_over == [str(tmp_path / "notes.md")]


def test_unicode_digits_are_malformed_not_a_crash(tmp_path: Path) -> None:
    record = NAT_RECORDS[0].replace(" 1000 ", " 1²00 ")
    reduction, _ = run([write_gz(tmp_path / f"{KEY_NAME}.log.gz", [NAT_FORMAT, record, NAT_RECORDS[3]])])
    assert reduction.stats.malformed_records == 1 and by_direction(reduction) == {("10.0.1.5", IN): 5000}


def test_the_seed_articles_format_without_start_end_works_end_to_end(tmp_path: Path) -> None:
    """${region} ${vpc-id} ${az-id} ... ${packets} ${bytes} ${action}: no start, end, version or log-status."""
    fmt = ("region vpc-id az-id subnet-id instance-id interface-id flow-direction srcaddr dstaddr srcport dstport "
           "pkt-srcaddr pkt-dstaddr pkt-src-aws-service pkt-dst-aws-service traffic-path packets bytes action")  # fmt: skip
    lines = [
        fmt,
        f"us-east-1 vpc-1 use1-az1 subnet-1 - {NAT_ENI} ingress 10.0.1.5 10.0.0.220 40000 443 10.0.1.5 52.95.1.1 - S3 - 3 700 ACCEPT",
        f"us-east-1 vpc-1 use1-az1 subnet-1 - {NAT_ENI} egress 10.0.0.220 52.95.1.1 1024 443 10.0.0.220 52.95.1.1 - S3 8 3 700 ACCEPT",
        f"us-east-1 vpc-1 use1-az1 subnet-1 - {NAT_ENI} ingress 52.95.1.1 10.0.0.220 443 1024 52.95.1.1 10.0.0.220 S3 - - 5 9000 ACCEPT",
        f"us-east-1 vpc-1 use1-az1 subnet-1 - {NAT_ENI} egress 10.0.0.220 10.0.1.5 443 40000 52.95.1.1 10.0.1.5 S3 - 1 5 9000 ACCEPT",
    ]
    reduction, _ = run([write_gz(tmp_path / f"{KEY_NAME}.log.gz", lines)])
    assert by_direction(reduction) == {("10.0.1.5", OUT): 700, ("10.0.1.5", IN): 9000}
    assert {key[5] for key in reduction.rows} == {"S3"}  # the AWS service is the destination
    assert {(v[2], v[3]) for v in reduction.rows.values()} == {(parse_time("2025-11-21T10:20:00Z"), parse_time("2025-11-21T10:24:59Z"))}
