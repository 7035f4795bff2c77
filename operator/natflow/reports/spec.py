"""The FlowReport spec as natflow reads it, with the CRD's defaults and checks the schema cannot make."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from natflow.attribution import GroupBy
from natflow.flowlogs.fields import FormatError, parse_log_format

_DURATION = re.compile(r"^([0-9]+)(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


class SpecError(ValueError):
    """A FlowReport spec natflow cannot run; the message is shown in the InvalidSpec condition."""


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration like 15m, 1h or 90s: {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class S3Source(_Spec):
    bucket: str
    prefix: str = ""
    layout: Literal["default", "hive"] = "default"
    perHour: bool = False
    fileFormat: Literal["plain-text", "parquet"] = "plain-text"


class CloudWatchSource(_Spec):
    logGroupName: str


class FlowLogSource(_Spec):
    source: Literal["discovered", "s3", "cloudwatch"] = "discovered"
    s3: S3Source | None = None
    cloudwatch: CloudWatchSource | None = None


class AthenaSpec(_Spec):
    thresholdBytes: int = Field(default=20 * 1024**3, ge=0)
    workgroup: str | None = None
    database: str | None = None
    outputLocation: str | None = None


class FlowReportSpec(_Spec):
    natGatewayIds: list[str] = Field(default_factory=list)
    flowLogs: FlowLogSource = Field(default_factory=FlowLogSource)
    logFormat: str | None = None
    interval: str = "15m"
    deliveryDelay: str = "15m"
    period: Literal["Hourly", "Daily", "Monthly"] = "Daily"
    groupBy: GroupBy = "workload"
    pricePerGB: float | None = Field(default=None, ge=0)
    athena: AthenaSpec | None = None  # absent: never Athena (it costs money and needs extra IAM)
    retention: str = "48h"

    @field_validator("interval", "retention")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("deliveryDelay")
    @classmethod
    def _delay(cls, value: str) -> str:
        parse_duration(value)  # 0s is allowed: CloudWatch Logs or tests with logs already in place
        return value

    @field_validator("logFormat")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value:
            try:
                parse_log_format(value, "logFormat")
            except FormatError as error:
                raise ValueError(str(error)) from None
        return value

    @property
    def interval_seconds(self) -> int:
        return parse_duration(self.interval)

    @property
    def delay_seconds(self) -> int:
        return parse_duration(self.deliveryDelay)

    @property
    def retention_seconds(self) -> int:
        return parse_duration(self.retention)


def read_spec(raw: object, name: str) -> FlowReportSpec:
    """Validate a FlowReport's spec; SpecError names the report and the first problem in one line."""
    try:
        spec = FlowReportSpec.model_validate(raw or {})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise SpecError(f"FlowReport {name}: spec.{where}: {first['msg']}") from None
    if spec.flowLogs.source == "s3" and spec.flowLogs.s3 is None:
        raise SpecError(f"FlowReport {name}: spec.flowLogs.s3 is required when source is s3")
    if spec.flowLogs.source == "cloudwatch" and spec.flowLogs.cloudwatch is None:
        raise SpecError(f"FlowReport {name}: spec.flowLogs.cloudwatch is required when source is cloudwatch")
    if 3600 % spec.interval_seconds and spec.interval_seconds % 3600:
        raise SpecError(f"FlowReport {name}: spec.interval must divide an hour or be whole hours: {spec.interval}")
    return spec
