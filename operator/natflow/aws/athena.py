"""Reduce a window in Amazon Athena when it holds more flow-log data than one pod should read.

The query applies the rules of `natflow.flowlogs.reduce` and `natflow.flowlogs.readers` in SQL
and returns the reduced rows (NAT ENI, inside address, direction, minute, destination, service ->
bytes, packets, first start, last end, records) plus one row for each kind of record it did not
count, so that `reduction_from_rows` rebuilds the same `Reduction` (rows and stats) and the same
attribution step follows. One scan of the window's partitions gives both.

What the SQL cannot do as the Python readers do:

* A text table splits lines on single spaces and turns unparsable numbers into NULL: a line with a
  run of spaces is parsed shifted, a non-numeric ``bytes`` reads as ``-`` (0 bytes, counted) and a
  line with too few fields is padded with NULLs, where the readers split on whitespace runs and
  count such lines as malformed.
* A record with neither start nor end gets no time from its object's name: it is reported as
  malformed instead of being counted at the object's time (AWS writes start and end in every record).
* The bounds of `natflow.flowlogs.plausible` hold, but a record's start and end are held to the
  absolute range only (2015-2100), not to a day around its object's own time.
* The IPv6 CIDR test runs in Python on the returned rows (Athena's engine has IPADDRESS, other
  engines do not), so IPv6 legs on the NAT ENIs come back one row per address spelling and key;
  so do a regional NAT Gateway's records with an IPv6 end (both ends, both services), which Python
  classifies by `reduce.regional_leg`.

Regional NAT Gateways follow `natflow.flowlogs.reduce`: a record whose resource-id is one is that
gateway's (keyed by its id), counted when exactly one end is inside the VPC, the internet side when
both are outside, unclassified otherwise; unclassified rows carry their key, for the warning that
names the gateway.

Partition projection maps the window to the key prefixes that `natflow.aws.flowsource` would list,
for every layout (default or Hive, daily or per hour); no partitions are ever added by hand.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from natflow.aws.flowsource import S3Location, s3_prefixes
from natflow.aws.inventory import FlowLog
from natflow.flowlogs.fields import INTEGER_FIELDS, LogFormat, column_name, default_format
from natflow.flowlogs.plausible import EARLIEST_TIME, LATEST_TIME, MAX_RECORD_BYTES, MAX_RECORD_PACKETS
from natflow.flowlogs.reduce import IN, INTERNET, OUT, NatTopology, Reduction, RowKey, regional_leg
from natflow.flowlogs.reduce import UNCLASSIFIED as UNCLASSIFIED_ROLE
from natflow.flowlogs.sources import key_time
from natflow.net import cidr_range, normalize_address
from natflow.timeutil import MAX_SECONDS, format_time

# Result columns of `reduction_sql`, in order.
RESULT_COLUMNS = (
    "kind",
    "eni",
    "address",
    "direction",
    "minute",
    "peer",
    "service",
    "bytes",
    "packets",
    "first_start",
    "last_end",
    "records",
)

# Kinds of result rows: the reduced rows, and one row per kind of record that is only counted.
COUNTED = "counted"
COUNTED_IF_INSIDE = "counted-if-inside"  # an IPv6 client-side address: Python tests the CIDRs
REGIONAL_IF_INSIDE = "regional-if-inside"  # a regional gateway's record with an IPv6 end: Python classifies it
REJECTED = "rejected"
INTERNET_LEG = "internet-leg"
UNCLASSIFIED = "unclassified"
NO_DATA = "nodata"
SKIP_DATA = "skipdata"
OTHER_INTERFACE = "other-interface"
OUTSIDE_WINDOW = "outside-window"
UNTIMED = "untimed"
IMPLAUSIBLE = "implausible"

_BIGINT_FIELDS = frozenset({"packets", "bytes", "start", "end"})
_IDENTIFIER = re.compile(r"^[a-z0-9_]{1,255}$")
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
# What `ipaddress.ip_address` accepts as IPv4 text: four decimal octets, no leading zeros.
_IPV4_TEXT = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
_IPV4_SPACE = 1 << 32  # natflow.net puts IPv6 keys above the IPv4 space
# Projected partition years: AWS delivered the first flow logs in 2015.
_YEARS = "2015,2099"
RESULT_PAGE_ROWS = 1000  # get_query_results' largest page
MAX_POLL_SECONDS = 5.0


def column_type(field: str) -> str:
    """The Athena type of a flow-log field (the types of AWS's Parquet files)."""
    if field in _BIGINT_FIELDS:
        return "bigint"
    return "int" if field in INTEGER_FIELDS else "string"


def column_types(log_format: LogFormat) -> list[tuple[str, str]]:
    """(column, Athena type) in format order: text tables map columns by position."""
    return [(column_name(field), column_type(field)) for field in log_format.fields]


@dataclass(frozen=True)
class FlowLogTable:
    """The Athena table over one S3 flow log's objects."""

    flow_log: FlowLog
    database: str
    account_id: str
    region: str

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.database):
            raise ValueError(f"Athena database {self.database!r}: use lowercase letters, digits and underscores")

    @property
    def name(self) -> str:
        """natflow_<flow log id>_<digest of the definition>: a table of that name is this table, reusable as is."""
        definition = repr((self.log_format.fields, self.location, self.hive, self.hourly, self.parquet))
        digest = hashlib.sha256(definition.encode()).hexdigest()[:10]
        flow_log_part = re.sub(r"[^a-z0-9]+", "_", self.flow_log.FlowLogId.lower()).strip("_")
        return f"natflow_{flow_log_part}_{digest}"

    @property
    def log_format(self) -> LogFormat:
        return self.flow_log.log_format() or default_format()

    @property
    def parquet(self) -> bool:
        options = self.flow_log.DestinationOptions
        return bool(options and (options.FileFormat or "").lower() == "parquet")

    @property
    def hive(self) -> bool:
        options = self.flow_log.DestinationOptions
        return bool(options and options.HiveCompatiblePartitions)

    @property
    def hourly(self) -> bool:
        options = self.flow_log.DestinationOptions
        return bool(options and options.PerHourPartition)

    @property
    def location(self) -> str:
        """``s3://bucket/prefix/AWSLogs/...`` down to the region: the date parts are partitions."""
        arn = self.flow_log.LogDestination or ""
        destination = S3Location.from_destination(arn)
        if not destination.bucket or any(c in arn for c in "'\\`"):  # quoted in the DDL as is
            raise ValueError(f"flow log {self.flow_log.FlowLogId}: not an S3 destination for Athena")
        base = f"s3://{destination.bucket}/" + (f"{destination.prefix}/" if destination.prefix else "")
        if self.hive:
            return base + (
                f"AWSLogs/aws-account-id={self.account_id}/aws-service=vpcflowlogs/aws-region={self.region}/"
            )
        return base + f"AWSLogs/{self.account_id}/vpcflowlogs/{self.region}/"

    @property
    def partition_columns(self) -> tuple[str, ...]:
        return ("year", "month", "day", "hour") if self.hourly else ("year", "month", "day")

    @property
    def qualified_name(self) -> str:
        return f'"{self.database}"."{self.name}"'


def table_ddl(table: FlowLogTable) -> str:
    """CREATE EXTERNAL TABLE IF NOT EXISTS with partition projection over the flow log's key layout."""
    columns = ",\n".join(f"  `{name}` {kind}" for name, kind in column_types(table.log_format))
    partitions = ", ".join(f"`{name}` int" for name in table.partition_columns)
    template = "".join((f"{name}=${{{name}}}/" if table.hive else f"${{{name}}}/") for name in table.partition_columns)
    ranges = {"year": _YEARS, "month": "1,12", "day": "1,31", "hour": "0,23"}
    properties: dict[str, str] = {}
    if table.parquet:
        storage = "STORED AS PARQUET"
    else:
        storage = "ROW FORMAT DELIMITED FIELDS TERMINATED BY ' '"
        properties.update({"skip.header.line.count": "1", "serialization.null.format": "-"})
    properties["projection.enabled"] = "true"
    for name in table.partition_columns:
        properties[f"projection.{name}.type"] = "integer"
        properties[f"projection.{name}.range"] = ranges[name]
        if name != "year":
            properties[f"projection.{name}.digits"] = "2"
    properties["storage.location.template"] = table.location + template
    listed = ",\n".join(f"  '{key}'='{value}'" for key, value in properties.items())
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{table.database}`.`{table.name}` (\n{columns}\n)\n"
        f"PARTITIONED BY ({partitions})\n{storage}\nLOCATION '{table.location}'\nTBLPROPERTIES (\n{listed}\n)"
    )


# -- the reduction query ------------------------------------------------------------------------------
def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_in(expression: str, values: Iterable[str]) -> str:
    listed = ", ".join(_literal(v) for v in sorted(values))
    return f"COALESCE({expression} IN ({listed}), FALSE)" if listed else "FALSE"


def _integer_division(expression: str, divisor: int) -> str:
    # Typed operands keep Trino's truncating BIGINT division when the SQL is transpiled to other engines.
    return f"CAST({expression} AS BIGINT) / BIGINT '{divisor}'"


def _flow_seconds(expression: str) -> str:
    """`natflow.timeutil.flow_seconds` in SQL: values above `MAX_SECONDS` are milliseconds."""
    return f"CASE WHEN {expression} > {MAX_SECONDS} THEN {_integer_division(expression, 1000)} ELSE {expression} END"


def _ipv4_number(expression: str) -> str:
    """The dotted quad as an integer, NULL for anything else (the engines share no IP type)."""
    octets = [f"CAST(split_part({expression}, '.', {i}) AS BIGINT)" for i in range(1, 5)]
    number = f"{octets[0]} * 16777216 + {octets[1]} * 65536 + {octets[2]} * 256 + {octets[3]}"
    return f"CASE WHEN regexp_like({expression}, '{_IPV4_TEXT}') THEN {number} END"


def _within(expression: str, ranges: Sequence[tuple[int, int]]) -> str:
    if not ranges:
        return "FALSE"
    tests = " OR ".join(f"{expression} BETWEEN {first} AND {last}" for first, last in ranges)
    return f"COALESCE({tests}, FALSE)"


def partition_times(table: FlowLogTable, window: tuple[int, int]) -> list[int]:
    """Start of each day (or hour) partition that can hold records starting in the window.

    The same prefixes `flowsource.s3_prefixes` lists for the window (with its slack for late objects).
    """
    prefixes = s3_prefixes(table.flow_log, table.account_id, table.region, window[0], window[1])
    return [times[0] for prefix in prefixes if (times := key_time(prefix)) is not None]


def _partition_predicate(table: FlowLogTable, window: tuple[int, int]) -> str:
    hours_by_day: dict[tuple[int, int, int], list[int]] = {}
    for moment in partition_times(table, window):
        at = datetime.fromtimestamp(moment, UTC)
        hours_by_day.setdefault((at.year, at.month, at.day), []).append(at.hour)
    terms = []
    for (year, month, day), hours in hours_by_day.items():
        term = f'"year" = {year} AND "month" = {month} AND "day" = {day}'
        if table.hourly:
            term += f' AND "hour" IN ({", ".join(str(h) for h in hours)})'
        terms.append(f"({term})")
    return "(" + " OR ".join(terms) + ")"


def reduction_sql(table: FlowLogTable, topology: NatTopology, window: tuple[int, int]) -> str:
    """One Trino query: the window's reduced rows (kind `counted`) and one row per kind of other record.

    Restricted to the window's partitions and, when the flow log has an id, to its own objects (other
    flow logs may deliver to the same prefix). Columns: `RESULT_COLUMNS`.
    """
    fields = set(table.log_format.fields)

    def value(field: str) -> str:
        # A field the format lacks reads as NULL, as the readers read it as '-'.
        if field in fields:
            return f'"{column_name(field)}"'
        return "CAST(NULL AS VARCHAR)" if column_type(field) == "string" else "CAST(NULL AS BIGINT)"

    def text(field: str) -> str:
        # '-' is a missing value in any format (a text table without the null format keeps it as text).
        return f"NULLIF({value(field)}, '-')"

    nat_ips = topology.eni_by_nat_ip
    if "interface-id" in fields:
        eni = text("interface-id")
        on_nat_eni = _is_in("eni", topology.natgw_by_eni)
    elif nat_ips:  # as Reduction.add: a NAT private IP on either side marks the NAT ENI's records
        by_ip = " ".join(f"WHEN {_literal(ip)} THEN {_literal(e)}" for ip, e in sorted(nat_ips.items()))
        eni = f"COALESCE(CASE {text('srcaddr')} {by_ip} END, CASE {text('dstaddr')} {by_ip} END)"
        on_nat_eni = "eni IS NOT NULL"
    else:
        eni, on_nat_eni = "CAST(NULL AS VARCHAR)", "FALSE"
    regional = _is_in("resource", topology.regional) if "resource-id" in fields else "FALSE"
    ranges = sorted(cidr_range(cidr) for cidr in topology.inside.cidrs)
    ipv4_ranges = [r for r in ranges if r[1] < _IPV4_SPACE]
    window_start, window_end = window
    candidates = ""
    if any(first >= _IPV4_SPACE for first, _ in ranges):
        candidates = (
            f"\n      WHEN dst_is_nat AND NOT src_is_nat AND strpos(srcaddr, ':') > 0 THEN '{COUNTED_IF_INSIDE}'"
            f"\n      WHEN src_is_nat AND NOT dst_is_nat AND strpos(dstaddr, ':') > 0 THEN '{COUNTED_IF_INSIDE}'"
        )
    path_filter = ""
    if table.flow_log.names_objects:  # as flowsource: objects named after this flow log
        path_filter = f'\n    AND strpos("$path", {_literal("_" + table.flow_log.FlowLogId + "_")}) > 0'
    keyed = f"kind IN ('{COUNTED}', '{COUNTED_IF_INSIDE}', '{REGIONAL_IF_INSIDE}')"
    src_inside, dst_inside = _within("src_number", ipv4_ranges), _within("dst_number", ipv4_ranges)
    has_ipv6_end = "(strpos(COALESCE(srcaddr, ''), ':') > 0 OR strpos(COALESCE(dstaddr, ''), ':') > 0)"
    return f"""WITH records AS (
  SELECT
    {text("srcaddr")} AS srcaddr,
    {text("dstaddr")} AS dstaddr,
    {text("pkt-srcaddr")} AS pkt_srcaddr,
    {text("pkt-dstaddr")} AS pkt_dstaddr,
    {text("pkt-src-aws-service")} AS src_service,
    {text("pkt-dst-aws-service")} AS dst_service,
    COALESCE({value("packets")}, 0) AS packets,
    COALESCE({value("bytes")}, 0) AS bytes,
    COALESCE({value("start")}, {value("end")}) AS start_value,
    COALESCE({value("end")}, {value("start")}) AS end_value,
    {value("start")} AS status_start_value,
    {text("action")} AS action,
    {text("log-status")} AS log_status,
    {text("resource-id")} AS resource,
    {eni} AS eni
  FROM {table.qualified_name}
  WHERE {_partition_predicate(table, window)}{path_filter}
), timed AS (
  SELECT
    *,
    {regional} AS regional,
    {regional} OR {on_nat_eni} AS on_nat_eni,
    CASE WHEN {regional} THEN resource ELSE eni END AS nat_key,
    {_flow_seconds("start_value")} AS start_seconds,
    {_flow_seconds("end_value")} AS end_seconds,
    {_flow_seconds("status_start_value")} AS status_start_seconds,
    {_is_in("srcaddr", nat_ips)} AS src_is_nat,
    {_is_in("dstaddr", nat_ips)} AS dst_is_nat,
    {_ipv4_number("srcaddr")} AS src_number,
    {_ipv4_number("dstaddr")} AS dst_number
  FROM records
), classified AS (
  SELECT
    *,
    CASE
      WHEN log_status IN ('NODATA', 'SKIPDATA')
        AND (status_start_seconds < {window_start} OR status_start_seconds >= {window_end}) THEN '{OUTSIDE_WINDOW}'
      WHEN log_status = 'NODATA' THEN '{NO_DATA}'
      WHEN log_status = 'SKIPDATA' THEN '{SKIP_DATA}'
      WHEN NOT on_nat_eni THEN '{OTHER_INTERFACE}'
      WHEN packets > {MAX_RECORD_PACKETS} OR bytes > {MAX_RECORD_BYTES} THEN '{IMPLAUSIBLE}'
      WHEN start_seconds IS NULL THEN '{UNTIMED}'
      WHEN start_seconds NOT BETWEEN {EARLIEST_TIME} AND {LATEST_TIME}
        OR end_seconds NOT BETWEEN {EARLIEST_TIME} AND {LATEST_TIME} THEN '{IMPLAUSIBLE}'
      WHEN start_seconds < {window_start} OR start_seconds >= {window_end} THEN '{OUTSIDE_WINDOW}'
      WHEN COALESCE(action = 'REJECT', FALSE) THEN '{REJECTED}'
      WHEN regional AND {has_ipv6_end} THEN '{REGIONAL_IF_INSIDE}'
      WHEN regional AND (src_number IS NULL OR dst_number IS NULL) THEN '{UNCLASSIFIED}'
      WHEN regional AND {src_inside} AND NOT {dst_inside} THEN '{COUNTED}'
      WHEN regional AND {dst_inside} AND NOT {src_inside} THEN '{COUNTED}'
      WHEN regional AND NOT {src_inside} AND NOT {dst_inside} THEN '{INTERNET_LEG}'
      WHEN regional THEN '{UNCLASSIFIED}'
      WHEN dst_is_nat AND NOT src_is_nat AND {_within("src_number", ipv4_ranges)} THEN '{COUNTED}'
      WHEN src_is_nat AND NOT dst_is_nat AND {_within("dst_number", ipv4_ranges)} THEN '{COUNTED}'{candidates}
      WHEN src_is_nat OR dst_is_nat THEN '{INTERNET_LEG}'
      ELSE '{UNCLASSIFIED}'
    END AS kind,
    CASE WHEN regional THEN {src_inside} ELSE dst_is_nat AND NOT src_is_nat END AS outbound
  FROM timed
)
SELECT
  kind,
  CASE WHEN {keyed} OR kind = '{UNCLASSIFIED}' THEN nat_key END AS eni,
  CASE WHEN kind = '{REGIONAL_IF_INSIDE}' THEN srcaddr
    WHEN {keyed} THEN CASE WHEN outbound THEN srcaddr ELSE dstaddr END END AS address,
  CASE WHEN kind = '{REGIONAL_IF_INSIDE}' THEN NULL
    WHEN {keyed} THEN CASE WHEN outbound THEN {OUT} ELSE {IN} END END AS direction,
  CASE WHEN {keyed} THEN {_integer_division("start_seconds", 60)} END AS minute,
  CASE WHEN kind = '{REGIONAL_IF_INSIDE}' THEN dstaddr
    WHEN regional AND {keyed} THEN CASE WHEN outbound THEN dstaddr ELSE srcaddr END
    WHEN {keyed} THEN
    CASE WHEN outbound THEN
      CASE WHEN pkt_dstaddr = dstaddr THEN '' ELSE COALESCE(pkt_dstaddr, '') END
    ELSE
      CASE WHEN pkt_srcaddr = srcaddr THEN '' ELSE COALESCE(pkt_srcaddr, '') END
    END
  END AS peer,
  CASE WHEN kind = '{REGIONAL_IF_INSIDE}' THEN COALESCE(src_service, '-') || ' ' || COALESCE(dst_service, '-')
    WHEN {keyed} THEN COALESCE(CASE WHEN outbound THEN dst_service ELSE src_service END, '') END AS service,
  SUM(bytes) AS bytes,
  SUM(packets) AS packets,
  MIN(start_seconds) AS first_start,
  MAX(end_seconds) AS last_end,
  COUNT(*) AS records
FROM classified
GROUP BY 1, 2, 3, 4, 5, 6, 7"""


# -- rows -> Reduction --------------------------------------------------------------------------------
ResultRow = Sequence[str | None]


def reduction_from_rows(
    rows: Iterable[ResultRow], topology: NatTopology, window: tuple[int, int], log_format: LogFormat
) -> Reduction:
    """The `Reduction` the Python readers would have built from the same records (rows and stats)."""
    reduction = Reduction(topology, window)
    stats = reduction.stats
    for row in rows:
        if len(row) != len(RESULT_COLUMNS):
            raise ValueError(f"Athena result row has {len(row)} columns, expected {len(RESULT_COLUMNS)}: {row!r}")
        kind = row[0]
        nbytes, packets, first_start, last_end, records = (int(v) if v is not None else 0 for v in row[7:])
        stats.records_read += records
        if kind == REGIONAL_IF_INSIDE:
            _add_regional(reduction, row, (nbytes, packets, first_start, last_end, records))
        elif kind in (COUNTED, COUNTED_IF_INSIDE):
            eni, address, direction, minute, peer, service = row[1:7]
            if eni is None or address is None or direction is None or minute is None:
                raise ValueError(f"Athena result row without its key: {row!r}")
            address = normalize_address(address)
            if kind == COUNTED_IF_INSIDE and address not in topology.inside:
                stats.internet_leg_records += records
                stats.internet_leg_bytes += nbytes
                continue
            key: RowKey = (eni, address, int(direction), int(minute), peer or "", service or "")
            _add_counted(reduction, key, [nbytes, packets, first_start, last_end, records])
        elif kind == REJECTED:
            stats.rejected_records += records
            stats.rejected_bytes += nbytes
        elif kind == INTERNET_LEG:
            stats.internet_leg_records += records
            stats.internet_leg_bytes += nbytes
        elif kind == UNCLASSIFIED:
            stats.unclassified(row[1] or "", records, nbytes)
        elif kind == NO_DATA:
            stats.no_data_records += records
        elif kind == SKIP_DATA:
            stats.skip_data_records += records
        elif kind == OTHER_INTERFACE:
            stats.other_interface_records += records
        elif kind == OUTSIDE_WINDOW:
            stats.outside_window_records += records
        elif kind == UNTIMED:
            stats.malformed(log_format.origin, f"{records} NAT Gateway record(s) have neither start nor end")
            stats.malformed_records += records - 1
        elif kind == IMPLAUSIBLE:
            stats.malformed(
                log_format.origin,
                f"{records} NAT Gateway record(s) carry more than any interface can or a time outside "
                f"{format_time(EARLIEST_TIME)} .. {format_time(LATEST_TIME)}",
            )
            stats.malformed_records += records - 1
        else:
            raise ValueError(f"Athena result row of unknown kind {kind!r}")
    if stats.records_read:  # as the readers: the formats of the records read
        reduction.formats[log_format.fields] = log_format.origin
    return reduction


def _add_regional(reduction: Reduction, row: ResultRow, sums: tuple[int, int, int, int, int]) -> None:
    """Rows of a regional gateway's records with an IPv6 end, classified as `Reduction.add` does."""
    nbytes, packets, first_start, last_end, records = sums
    eni, srcaddr, _, minute, dstaddr, services = row[1:7]
    if eni is None or minute is None or services is None:
        raise ValueError(f"Athena result row without its key: {row!r}")
    src_service, dst_service = (None if s == "-" else s for s in services.split(" ", 1))
    role, address, peer, service = regional_leg(
        reduction.topology.inside, normalize_address(srcaddr or "-"), normalize_address(dstaddr or "-"),
        src_service, dst_service,
    )  # fmt: skip
    if role == INTERNET:
        reduction.stats.internet_leg_records += records
        reduction.stats.internet_leg_bytes += nbytes
    elif role == UNCLASSIFIED_ROLE or address is None:
        reduction.stats.unclassified(eni, records, nbytes)
    else:
        key: RowKey = (eni, address, role, int(minute), peer or "", service or "")
        _add_counted(reduction, key, [nbytes, packets, first_start, last_end, records])


def _add_counted(reduction: Reduction, key: RowKey, value: list[int]) -> None:
    _add_row(reduction, key, value)
    reduction.stats.records_counted += value[4]
    first_start, last_end = value[2], value[3]
    if reduction.first_time is None or first_start < reduction.first_time:
        reduction.first_time = first_start
    if reduction.last_time is None or last_end > reduction.last_time:
        reduction.last_time = last_end


def _add_row(reduction: Reduction, key: RowKey, value: list[int]) -> None:
    existing = reduction.rows.get(key)
    if existing is None:
        reduction.rows[key] = value
    else:  # two spellings of one IPv6 address: fold as Reduction.merge folds rows
        folded = Reduction(reduction.topology)
        folded.rows[key] = value
        reduction.merge(folded)


# -- running queries ----------------------------------------------------------------------------------
class AthenaQueryError(Exception):
    """A query that failed, was cancelled or did not finish in time; names the query and why."""

    def __init__(self, query_id: str, state: str, reason: str) -> None:
        super().__init__(f"Athena query {query_id} {state}: {reason}")
        self.query_id = query_id
        self.state = state
        self.reason = reason


@dataclass
class QueryResult:
    """A finished query: what it cost, and its rows (fetched page by page while iterated)."""

    query_id: str
    data_scanned_bytes: int
    engine_execution_ms: int
    total_execution_ms: int
    rows: Iterator[tuple[str | None, ...]]


def _execute(
    athena: Any, sql: str, workgroup: str | None, output_location: str | None, poll: float, timeout: float
) -> tuple[str, Mapping[str, Any]]:
    """Start a query and wait for SUCCEEDED; returns its id and its QueryExecution."""
    request: dict[str, Any] = {"QueryString": sql}
    if workgroup:
        request["WorkGroup"] = workgroup
    if output_location:
        request["ResultConfiguration"] = {"OutputLocation": output_location}
    query_id = str(athena.start_query_execution(**request)["QueryExecutionId"])
    deadline = time.monotonic() + timeout
    delay = poll
    while True:
        execution: Mapping[str, Any] = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        status = execution["Status"]
        state = str(status["State"])
        if state == "SUCCEEDED":
            return query_id, execution
        if state in ("FAILED", "CANCELLED"):
            error = status.get("AthenaError", {})
            reason = status.get("StateChangeReason") or error.get("ErrorMessage") or "no reason given"
            raise AthenaQueryError(query_id, state, str(reason))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            athena.stop_query_execution(QueryExecutionId=query_id)
            raise AthenaQueryError(query_id, "TIMED_OUT", f"still {state} after {timeout:g} s; natflow stopped it")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_POLL_SECONDS)


def _result_rows(athena: Any, query_id: str) -> Iterator[tuple[str | None, ...]]:
    pages = athena.get_paginator("get_query_results").paginate(
        QueryExecutionId=query_id, PaginationConfig={"PageSize": RESULT_PAGE_ROWS}
    )
    for number, page in enumerate(pages):
        rows = page["ResultSet"]["Rows"]
        for row in rows[1:] if number == 0 else rows:  # the first page starts with the column names
            yield tuple(datum.get("VarCharValue") for datum in row["Data"])


def run_reduction(
    athena: Any,
    sql: str,
    workgroup: str | None,
    output_location: str | None,
    poll: float = 0.5,
    timeout: float = 900.0,
) -> QueryResult:
    """Run a query to the end (polling with backoff from `poll` seconds); AthenaQueryError unless SUCCEEDED."""
    query_id, execution = _execute(athena, sql, workgroup, output_location, poll, timeout)
    statistics = execution.get("Statistics", {})
    return QueryResult(
        query_id=query_id,
        data_scanned_bytes=int(statistics.get("DataScannedInBytes", 0)),
        engine_execution_ms=int(statistics.get("EngineExecutionTimeInMillis", 0)),
        total_execution_ms=int(statistics.get("TotalExecutionTimeInMillis", 0)),
        rows=_result_rows(athena, query_id),
    )


def ensure_table(
    athena: Any,
    table: FlowLogTable,
    workgroup: str | None,
    output_location: str | None,
    poll: float = 0.5,
    timeout: float = 300.0,
) -> None:
    """Create the database and the table unless they exist (DDL scans nothing; an existing table is reused)."""
    for statement in (f"CREATE DATABASE IF NOT EXISTS `{table.database}`", table_ddl(table)):
        _execute(athena, statement, workgroup, output_location, poll, timeout)
