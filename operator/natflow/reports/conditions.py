"""A FlowReport's status conditions, as pure functions of what a pass found.

Each warning-backed condition is True while the window's result carries a warning of its reason
(with that warning's message) and False otherwise; the pass's outcome (an AWS problem or not) sets
Ready and AWSAccessDenied; the spec sets InvalidSpec. `merged` writes them into the status's list,
keeping lastTransitionTime when a status did not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from natflow.diagnostics import Diagnostics
from natflow.timeutil import format_time

MAX_MESSAGE = 2000
Status = Literal["True", "False"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


@dataclass(frozen=True)
class WarningCondition:
    """A condition that mirrors one warning: True with its message while the warning is there."""

    type: str
    warning: str
    clear_reason: str
    clear_message: str

    def of(self, diagnostics: Diagnostics) -> Condition:
        found = next((d for d in diagnostics.items if d.reason == self.warning), None)
        if found is None:
            return Condition(self.type, "False", self.clear_reason, self.clear_message)
        return Condition(self.type, "True", self.warning, found.message)


WARNING_CONDITIONS = (
    WarningCondition("SNATHidesPodIPs", "NodeSNATHidesPodIPs", "PodIPsVisible", "no bytes hidden by node SNAT"),
    WarningCondition("FlowLogsMissing", "FlowLogsMissing", "FlowLogsFound", "every NAT ENI has a flow log"),
    WarningCondition(
        "FormatLacksFields", "FormatLacksFields", "FormatComplete", "the flow-log format has what attribution needs"
    ),
)


@dataclass(frozen=True)
class PassProblem:
    """Why a pass stopped (its window is retried at the next pass)."""

    reason: str  # AWSAccessDenied, AWSError, AthenaFailed, VPCUnknown, NoNatGateways, ...
    message: str


def window_conditions(diagnostics: Diagnostics, athena_queried: bool) -> list[Condition]:
    """What one processed window says: its warnings, and whether Athena answered."""
    conditions = [rule.of(diagnostics) for rule in WARNING_CONDITIONS]
    if athena_queried:
        conditions.append(Condition("AthenaFailed", "False", "AthenaSucceeded", "the last Athena query succeeded"))
    return conditions


def pass_conditions(problem: PassProblem | None, processed_until: str) -> list[Condition]:
    """Ready and AWSAccessDenied after a pass (and AthenaFailed when Athena was the problem)."""
    if problem is None:
        return [
            Condition("AWSAccessDenied", "False", "AccessOK", "AWS calls succeeded"),
            Condition("Ready", "True", "WindowsProcessed", f"processed until {processed_until}"),
        ]
    denied = problem.reason == "AWSAccessDenied"
    conditions = []
    if problem.reason == "AthenaFailed":
        conditions.append(Condition("AthenaFailed", "True", "AthenaFailed", problem.message))
    conditions += [
        Condition(
            "AWSAccessDenied",
            "True" if denied else "False",
            problem.reason,
            problem.message if denied else "no access problem",
        ),
        Condition("Ready", "False", problem.reason, problem.message),
    ]
    return conditions


def spec_conditions(invalid: str | None) -> list[Condition]:
    """InvalidSpec (and Ready False when the spec cannot run)."""
    if invalid is None:
        return [Condition("InvalidSpec", "False", "Valid", "spec is valid")]
    return [
        Condition("InvalidSpec", "True", "InvalidSpec", invalid),
        Condition("Ready", "False", "InvalidSpec", invalid),
    ]


def merged(
    existing: Sequence[dict[str, Any]], new: Iterable[Condition], now: int, generation: int
) -> list[dict[str, Any]]:
    """The status's conditions with `new` set; lastTransitionTime moves only when a status changes."""
    conditions = [dict(c) for c in existing]
    by_type = {c["type"]: c for c in conditions}
    for condition in new:
        fields = {
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message[:MAX_MESSAGE],
            "observedGeneration": generation,
        }
        current = by_type.get(condition.type)
        if current is None:
            current = {"type": condition.type, **fields, "lastTransitionTime": format_time(now)}
            conditions.append(current)
            by_type[condition.type] = current
            continue
        if current.get("status") != condition.status:
            current["lastTransitionTime"] = format_time(now)
        current.update(fields)
    return conditions
