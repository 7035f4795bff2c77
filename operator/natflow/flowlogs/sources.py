"""Find flow-log files under the paths a user gives and learn what each key/name says.

AWS delivers S3 objects as ``..._vpcflowlogs_<region>_<flow-log-id>_<YYYYMMDDTHHmmZ>_<hash>.log.gz``
(or ``.log.parquet``) under a default, Hive-style (``year=2026/``) or per-hour key layout;
CloudWatch Logs exports are JSON pages of ``events``.
"""

from __future__ import annotations

import os
import re
from calendar import timegm
from dataclasses import dataclass
from enum import Enum

from natflow.diagnostics import Diagnostics
from natflow.paths import walk_files


class FileKind(Enum):
    TEXT = "text"
    PARQUET = "parquet"
    CLOUDWATCH = "cloudwatch"


@dataclass(frozen=True, slots=True)
class FlowLogFile:
    path: str
    kind: FileKind
    flow_log_id: str | None
    region: str | None
    # [first, last] Unix seconds that the key says the records end in, when it says so.
    key_time: tuple[int, int] | None


_NAME_TIME = re.compile(r"_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})Z(?:_|\.)")
_FLOW_LOG_ID = re.compile(r"_(fl-[0-9a-zA-Z]+)_")
_NAME_REGION = re.compile(r"_vpcflowlogs_([a-z]{2}(?:-[a-z]+)+-\d+)_")
_PATH_REGION = re.compile(r"(?:^|/)(?:aws-region=)?([a-z]{2}(?:-[a-z]+)+-\d)(?:/|$)")
_PATH_DATE = re.compile(r"(?:^|/)(?:year=)?(\d{4})/(?:month=)?(\d{2})/(?:day=)?(\d{2})(?:/(?:hour=)?(\d{2}))?(?:/|$)")
_TEXT_SUFFIXES = (".log.gz", ".log", ".gz", ".txt")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


def key_time(path: str) -> tuple[int, int] | None:
    """The end-time range a delivered object's name or key promises, in Unix seconds."""
    name_match = _NAME_TIME.search(os.path.basename(path))
    if name_match:
        y, mo, d, h, mi = (int(g) for g in name_match.groups())
        first = timegm((y, mo, d, h, mi, 0))
        return first, first + 299  # "records with an end time between 16:20:00 and 16:24:59"
    matches = list(_PATH_DATE.finditer(path.replace(os.sep, "/")))
    if matches:
        date_match = matches[-1]
        y, mo, d = (int(g) for g in date_match.groups()[:3])
        hour = date_match.group(4)
        if hour is not None:
            first = timegm((y, mo, d, int(hour), 0, 0))
            return first, first + 3599
        first = timegm((y, mo, d, 0, 0, 0))
        return first, first + 86399
    return None


def describe(path: str, kind: FileKind) -> FlowLogFile:
    name = os.path.basename(path)
    flow_log = _FLOW_LOG_ID.search(name)
    region = _NAME_REGION.search(name) or _PATH_REGION.search(path.replace(os.sep, "/"))
    return FlowLogFile(
        path=path,
        kind=kind,
        flow_log_id=flow_log.group(1) if flow_log else None,
        region=region.group(1) if region else None,
        key_time=key_time(path),
    )


def kind_by_suffix(path: str) -> FileKind | None:
    lower = path.lower()
    if lower.endswith(".parquet"):
        return FileKind.PARQUET
    if lower.endswith(".json"):
        return FileKind.CLOUDWATCH
    if lower.endswith(_TEXT_SUFFIXES):
        return FileKind.TEXT
    return None


def sniff_kind(path: str) -> FileKind:
    """Kind of a file the user named explicitly, from its suffix or else its first bytes."""
    by_suffix = kind_by_suffix(path)
    if by_suffix is not None:
        return by_suffix
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(_PARQUET_MAGIC):
        return FileKind.PARQUET
    if head.startswith(_GZIP_MAGIC):
        return FileKind.TEXT
    if head.lstrip()[:1] in (b"{", b"["):
        return FileKind.CLOUDWATCH
    return FileKind.TEXT


def discover(paths: list[str], diagnostics: Diagnostics) -> tuple[list[FlowLogFile], list[str]]:
    """Files to read under `paths` (directories recursively, sorted) and files passed over, each with a
    warning: names that are no flow-log file's, what is not a regular file (never opened: a FIFO would
    block), and a file met again (the same path twice, overlapping folders, a link to a file already
    found: the same device and inode), so that each object is read once.

    Raises FileNotFoundError for a path that does not exist.
    """
    found: list[FlowLogFile] = []
    passed_over: list[str] = []
    first_path: dict[tuple[int, int], str] = {}

    def skip(path: str, problem: str) -> None:
        passed_over.append(path)
        diagnostics.warn("FileSkipped", f"{path}: {problem}; skipped")

    for path, explicit in walk_files(paths, skip):
        status = os.stat(path)
        identity = (status.st_dev, status.st_ino)
        if identity in first_path:
            passed_over.append(path)
            diagnostics.warn("DuplicateFlowLog", f"{path}: the same file as {first_path[identity]}; read once")
            continue
        first_path[identity] = path
        kind = sniff_kind(path) if explicit else kind_by_suffix(path)
        if kind is None:
            passed_over.append(path)
            diagnostics.warn("FileSkipped", f"{path}: not a flow-log file name (.log.gz, .log, .parquet, .json)")
        else:
            found.append(describe(path, kind))
    return found, passed_over
