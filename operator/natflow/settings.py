"""Every setting natflow takes from its environment, typed and checked once at start.

`Settings.load()` is the only reader of ``NATFLOW_*`` variables; the command line and the operator
pass the object (or the values they need) down. A bad value stops the start with one line naming
the variable (`SettingsError`).
"""

from __future__ import annotations

from typing import Literal, get_args, get_origin

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ENV_PREFIX = "NATFLOW_"


class SettingsError(ValueError):
    """An environment variable natflow cannot use; the message is one line naming it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    namespace: str = Field(
        default="natflow-system",
        min_length=1,
        description="Namespace of the operator: FlowAttributions of nodes and unattributed addresses go here "
        "(the manifests set it from the pod's namespace).",
    )
    store: str = Field(
        default="/var/lib/natflow/state.sqlite",
        min_length=1,
        description="SQLite file that keeps the cluster's pod, node and owner history across restarts.",
    )
    retention_seconds: int = Field(
        default=48 * 3600,
        gt=0,
        description="Seconds: pods gone longer than this are forgotten (a FlowReport's spec.retention can only "
        "lengthen it).",
    )
    timer_seconds: float = Field(
        default=60.0, gt=0, description="Seconds between two looks of each FlowReport for due windows."
    )
    liveness: str = Field(
        default="http://0.0.0.0:8080/healthz",
        pattern=r"^http://[^/]+(/.*)?$",
        description="Where kopf serves the liveness probe (the Deployment's livenessProbe asks port 8080).",
    )
    log_level: LogLevel = Field(
        default="INFO", description="Log level of the operator (DEBUG also shows kopf's per-event lines)."
    )
    aws_max_attempts: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Attempts per AWS call, 1-100 (adaptive retry with backoff on throttling).",
    )
    vpc_id: str | None = Field(
        default=None,
        pattern=r"^vpc-[0-9a-f]+$",
        description="The cluster's VPC when natflow cannot find it from the nodes' network interfaces.",
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_REGION"),
        description="AWS region when the SDK's configuration names none (not NATFLOW_: the SDKs' own variable).",
    )
    event_queue_limit: int = Field(
        default=10_000,
        ge=100,
        description="Watch events queued for the applier at most (at least 100); beyond it they are dropped and "
        "the cluster is listed again (a resync), so memory stays bounded under overload.",
    )
    applier_stall_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Seconds: the liveness probe fails when the event applier has died, or made no progress for "
        "this long.",
    )
    debug: bool = Field(default=False, description="`natflow` prints the traceback of an internal error.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def load(cls) -> Settings:
        """The settings from the process's environment; SettingsError names the first bad variable."""
        try:
            return cls()
        except ValidationError as error:
            first = error.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            raise SettingsError(f"{variable_of(name)}={first.get('input')!r}: {first['msg']}") from None


def variable_of(field_name: str) -> str:
    """The environment variable of a field (aws_region is the SDKs' own AWS_REGION)."""
    if field_name in ("aws_region", "AWS_REGION"):
        return "AWS_REGION"
    return ENV_PREFIX + field_name.upper()


def _type_name(annotation: object) -> str:
    """How the table names a field's type: Literal values spelt out, optional values as their type."""
    if get_origin(annotation) is Literal:
        return " / ".join(str(value) for value in get_args(annotation))
    kinds = [kind for kind in get_args(annotation) if kind is not type(None)] or [annotation]
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(kinds[0], str(kinds[0]))


def settings_table() -> str:
    """The README's table of settings, from the model (so the two cannot drift apart)."""
    lines = ["| Variable | Type | Default | What it does |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = "unset" if info.default is None else f"`{info.default}`"
        lines.append(f"| `{variable_of(name)}` | {_type_name(info.annotation)} | {default} | {info.description} |")
    return "\n".join(lines)
