"""Read a window of flow logs from where AWS delivers them (S3 or CloudWatch Logs) into a Reduction.

Only the key prefixes of the window's days (or hours) are listed, only objects whose name time can
hold records that start in the window are fetched, and each object is streamed through the same
readers as the offline command, from a temporary file, so memory does not grow with the window.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from natflow.aws.inventory import FlowLog
from natflow.diagnostics import Diagnostics
from natflow.flowlogs.readers import FormatChoices, add_events
from natflow.flowlogs.reduce import Reduction
from natflow.flowlogs.sources import FlowLogFile, describe, kind_by_suffix
from natflow.flowlogs.vectorised import read_file_vectorised

# A record's start may precede its object's name time by up to the aggregation interval (10 min)
# plus delivery batching (5 min); objects named up to this long after the window can hold it.
OBJECT_SLACK_SECONDS = 20 * 60


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def from_destination(cls, destination: str) -> S3Location:
        """``arn:aws:s3:::bucket/optional/prefix`` -> bucket and prefix."""
        rest = destination.split(":::", 1)[-1]
        bucket, _, prefix = rest.partition("/")
        return cls(bucket, prefix.strip("/"))


def s3_prefixes(flow_log: FlowLog, account_id: str, region: str, start: int, end: int) -> Iterator[str]:
    """Key prefixes that hold objects for [start, end) in the flow log's layout."""
    location = S3Location.from_destination(flow_log.LogDestination or "")
    options = flow_log.DestinationOptions
    hive = bool(options and options.HiveCompatiblePartitions)
    hourly = bool(options and options.PerHourPartition)
    base = f"{location.prefix}/" if location.prefix else ""
    if hive:
        base += f"AWSLogs/aws-account-id={account_id}/aws-service=vpcflowlogs/aws-region={region}/"
    else:
        base += f"AWSLogs/{account_id}/vpcflowlogs/{region}/"
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    cursor = datetime.fromtimestamp(start, UTC).replace(minute=0, second=0, microsecond=0)
    if not hourly:
        cursor = cursor.replace(hour=0)
    stop = datetime.fromtimestamp(end + OBJECT_SLACK_SECONDS, UTC)
    while cursor < stop:
        if hive:
            part = f"year={cursor:%Y}/month={cursor:%m}/day={cursor:%d}/"
            part += f"hour={cursor:%H}/" if hourly else ""
        else:
            part = f"{cursor:%Y/%m/%d}/" + (f"{cursor:%H}/" if hourly else "")
        yield base + part
        cursor += step


@dataclass(frozen=True)
class WindowObject:
    key: str
    size: int
    file: FlowLogFile


def window_objects(
    s3: Any, flow_log: FlowLog, account_id: str, region: str, window: tuple[int, int]
) -> list[WindowObject]:
    """The flow log's objects that can hold records starting in the window (listing only)."""
    location = S3Location.from_destination(flow_log.LogDestination or "")
    start, end = window
    found: list[WindowObject] = []
    listed: set[str] = set()  # a key listed again (overlapping prefixes, a repeated page) is read once
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in s3_prefixes(flow_log, account_id, region, start, end):
        for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                key = str(entry["Key"])
                if key in listed:
                    continue
                listed.add(key)
                kind = kind_by_suffix(key)
                if kind is None or (flow_log.names_objects and f"_{flow_log.FlowLogId}_" not in os.path.basename(key)):
                    continue
                described = describe(key, kind)
                if described.key_time is not None:
                    first, last = described.key_time
                    if last < start or first > end + OBJECT_SLACK_SECONDS:
                        continue
                found.append(WindowObject(key, int(entry.get("Size", 0)), described))
    return found


def read_s3_objects(
    s3: Any,
    flow_log: FlowLog,
    objects: list[WindowObject],
    choices: FormatChoices,
    reduction: Reduction,
    diagnostics: Diagnostics,
) -> int:
    """Fetch and reduce objects one at a time through a temporary file; returns objects read.

    The temporary file has the object's own name, so that messages name the object and its suffix
    (.log.gz, .log, .parquet) tells the readers what its bytes must be.
    """
    bucket = S3Location.from_destination(flow_log.LogDestination or "").bucket
    for item in objects:
        with tempfile.TemporaryDirectory(prefix="natflow-") as directory:
            path = os.path.join(directory, local_name(item.key))
            with open(path, "wb") as local:
                s3.download_fileobj(bucket, item.key, local)
            # Keep the key's time and flow-log id: the key says them, the local path may not.
            read_file_vectorised(dataclasses.replace(item.file, path=path), choices, reduction, diagnostics)
    return len(objects)


# A file name's longest, in bytes, on the file systems a pod's /tmp is on.
_NAME_BYTES = 255


def local_name(key: str) -> str:
    """A safe local file name for an S3 key: its last part, never '.', '..' or hidden, at most 255
    bytes with the suffix kept (the middle is cut)."""
    name = key.rsplit("/", 1)[-1].replace("\x00", "_").lstrip(".") or "object"
    encoded = name.encode()
    if len(encoded) <= _NAME_BYTES:
        return name
    suffix = next((s for s in (".log.parquet", ".parquet", ".log.gz", ".gz", ".log", ".txt") if name.endswith(s)), "")
    head = encoded[: _NAME_BYTES - len(suffix)].decode(errors="ignore")
    return head + suffix


def read_cloudwatch_window(
    logs: Any,
    log_group: str,
    eni_ids: list[str],
    window: tuple[int, int],
    choices: FormatChoices,
    reduction: Reduction,
) -> int:
    """``filter_log_events`` on each NAT ENI's log streams for the window; returns events read."""
    start, end = window
    count = 0
    paginator = logs.get_paginator("filter_log_events")
    for eni in eni_ids:
        pages = paginator.paginate(
            logGroupName=log_group, logStreamNamePrefix=eni, startTime=start * 1000, endTime=end * 1000 - 1
        )

        def events(pages: Any = pages) -> Iterator[dict[str, Any]]:
            nonlocal count
            for page in pages:
                for event in page.get("events", []):
                    count += 1
                    yield event

        add_events(events(), f"CloudWatch Logs {log_group}/{eni}", choices, reduction)
    return count
