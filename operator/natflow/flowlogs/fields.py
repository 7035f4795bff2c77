"""The VPC Flow Logs field catalogue and log-format strings.

Field names are kept in AWS's hyphenated spelling; Parquet and Athena use underscores.
Unknown fields (newer than this catalogue) are accepted and carried as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# name -> version that introduced it. Integer-typed fields are listed in INTEGER_FIELDS.
FIELD_VERSIONS: dict[str, int] = {
    "version": 2,
    "account-id": 2,
    "interface-id": 2,
    "srcaddr": 2,
    "dstaddr": 2,
    "srcport": 2,
    "dstport": 2,
    "protocol": 2,
    "packets": 2,
    "bytes": 2,
    "start": 2,
    "end": 2,
    "action": 2,
    "log-status": 2,
    "vpc-id": 3,
    "subnet-id": 3,
    "instance-id": 3,
    "tcp-flags": 3,
    "type": 3,
    "pkt-srcaddr": 3,
    "pkt-dstaddr": 3,
    "region": 4,
    "az-id": 4,
    "sublocation-type": 4,
    "sublocation-id": 4,
    "pkt-src-aws-service": 5,
    "pkt-dst-aws-service": 5,
    "flow-direction": 5,
    "traffic-path": 5,
    "ecs-cluster-arn": 7,
    "ecs-cluster-name": 7,
    "ecs-container-instance-arn": 7,
    "ecs-container-instance-id": 7,
    "ecs-container-id": 7,
    "ecs-second-container-id": 7,
    "ecs-service-name": 7,
    "ecs-task-definition-arn": 7,
    "ecs-task-arn": 7,
    "ecs-task-id": 7,
    "reject-reason": 8,
    # A regional NAT Gateway's records name it here (their interface-id is '-').
    "resource-id": 9,
    "encryption-status": 10,
    "interface-type": 11,
    "next-hop-interface-id": 11,
    "next-hop-subnet-id": 11,
    "next-hop-az-id": 11,
    "next-hop-vpc-id": 11,
    "next-hop-interface-type": 11,
    # Tag values of the keys in the flow log's TagFieldSpecifications, percent-encoded (my%2Dapp).
    "instance-tag": 11,
    "instance-tag-2": 11,
    "interface-tag": 11,
    "interface-tag-2": 11,
    "asg-tag": 11,
    "asg-tag-2": 11,
}

INTEGER_FIELDS = frozenset(
    {
        "version",
        "srcport",
        "dstport",
        "protocol",
        "packets",
        "bytes",
        "start",
        "end",
        "tcp-flags",
        "traffic-path",
        "encryption-status",
    }
)

DEFAULT_FORMAT = (
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} "
    "${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}"
)

# The longest value a field holds: an ARN (ecs-*-arn), up to 2,048 characters; ids, addresses, numbers
# and tags (128-character key, 256-character value) are shorter.
MAX_FIELD_BYTES = 2048
# The longest record line: every field of the catalogue at its longest, each with a separator. A longer
# line is no record, whatever it holds: it is one malformed record, read past without being kept.
MAX_LINE_BYTES = len(FIELD_VERSIONS) * (MAX_FIELD_BYTES + 1)

# The fields attribution reads; everything else is parsed only for validation and stats.
USED_FIELDS = (
    "interface-id",
    "srcaddr",
    "dstaddr",
    "pkt-srcaddr",
    "pkt-dstaddr",
    "pkt-src-aws-service",
    "pkt-dst-aws-service",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
    "resource-id",
)

# The custom format natflow recommends when a flow log lacks what attribution needs.
RECOMMENDED_FORMAT = (
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} "
    "${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} "
    "${pkt-srcaddr} ${pkt-dstaddr} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${flow-direction} "
    "${az-id} ${resource-id}"
)

_TOKEN = re.compile(r"\$\{([A-Za-z0-9_-]+)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class FormatError(ValueError):
    """A log-format string or header that natflow cannot use."""


@dataclass(frozen=True, slots=True)
class LogFormat:
    """An ordered list of hyphenated field names and where it came from (for messages)."""

    fields: tuple[str, ...]
    origin: str

    def index(self, name: str) -> int | None:
        try:
            return self.fields.index(name)
        except ValueError:
            return None

    def missing(self, *names: str) -> list[str]:
        return [n for n in names if n not in self.fields]


def canonical_name(name: str) -> str:
    """``pkt_srcaddr`` (Parquet/Athena) and ``pkt-srcaddr`` are the same field."""
    return name.strip().lower().replace("_", "-")


def column_name(name: str) -> str:
    """The Parquet/Athena column of a hyphenated field."""
    return name.replace("-", "_")


def parse_log_format(text: str, origin: str) -> LogFormat:
    """Parse ``${a} ${b} ...`` (an AWS LogFormat); also accept bare names separated by spaces."""
    tokens = _TOKEN.findall(text)
    if not tokens:
        tokens = text.split()
    names = tuple(canonical_name(t) for t in tokens)
    if not names:
        raise FormatError(f"{origin}: empty log format")
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise FormatError(f"{origin}: not a field name: {bad[0]!r}")
    if len(set(names)) != len(names):
        raise FormatError(f"{origin}: a field appears twice in the log format")
    return LogFormat(names, origin)


def header_format(line: str, origin: str) -> LogFormat | None:
    """The format given by an S3 text file's header line, or None when the line is a record."""
    names = line.split()
    if not names or not all(_NAME.match(canonical_name(n)) for n in names):
        return None
    canonical = [canonical_name(n) for n in names]
    # A header names at least one known field; a record line always has numbers or addresses.
    if not any(n in FIELD_VERSIONS for n in canonical):
        return None
    return parse_log_format(" ".join(canonical), origin)


def default_format() -> LogFormat:
    return parse_log_format(DEFAULT_FORMAT, "the AWS default format (v2)")
