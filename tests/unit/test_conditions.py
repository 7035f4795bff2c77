"""FlowReport status conditions as pure functions of what a pass found."""

from __future__ import annotations

from natflow.diagnostics import Diagnostics
from natflow.reports.conditions import (
    MAX_MESSAGE,
    Condition,
    PassProblem,
    merged,
    pass_conditions,
    spec_conditions,
    window_conditions,
)
from natflow.timeutil import format_time

NOW, LATER = 1_795_000_000, 1_795_000_600


def by_type(conditions: list[Condition]) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in conditions}


def test_a_clean_window_clears_every_warning_condition() -> None:
    assert by_type(window_conditions(Diagnostics(), athena_queried=False)) == {
        "SNATHidesPodIPs": ("False", "PodIPsVisible", "no bytes hidden by node SNAT"),
        "FlowLogsMissing": ("False", "FlowLogsFound", "every NAT ENI has a flow log"),
        "FormatLacksFields": ("False", "FormatComplete", "the flow-log format has what attribution needs"),
    }


def test_each_warning_sets_its_condition_with_the_warnings_message() -> None:
    found = Diagnostics()
    found.warn("MalformedRecords", "3 malformed record(s)")  # no condition of its own
    found.warn("NodeSNATHidesPodIPs", "node-level SNAT hides pod IPs: 1.0 KiB")
    found.warn("FlowLogsMissing", "no active flow log covers NAT Gateway ENI(s) eni-1")
    conditions = by_type(window_conditions(found, athena_queried=True))
    assert conditions["SNATHidesPodIPs"] == ("True", "NodeSNATHidesPodIPs", "node-level SNAT hides pod IPs: 1.0 KiB")
    assert conditions["FlowLogsMissing"] == ("True", "FlowLogsMissing", "no active flow log covers NAT Gateway ENI(s) eni-1")
    assert conditions["FormatLacksFields"][0] == "False"
    assert conditions["AthenaFailed"] == ("False", "AthenaSucceeded", "the last Athena query succeeded")
    assert len(conditions) == 4


def test_a_pass_is_ready_unless_a_problem_stopped_it() -> None:
    assert by_type(pass_conditions(None, "2026-11-21T10:00:00Z")) == {
        "AWSAccessDenied": ("False", "AccessOK", "AWS calls succeeded"),
        "Ready": ("True", "WindowsProcessed", "processed until 2026-11-21T10:00:00Z"),
    }
    denied = by_type(pass_conditions(PassProblem("AWSAccessDenied", "s3:GetObject: AccessDenied: no"), "now"))
    assert denied == {
        "AWSAccessDenied": ("True", "AWSAccessDenied", "s3:GetObject: AccessDenied: no"),
        "Ready": ("False", "AWSAccessDenied", "s3:GetObject: AccessDenied: no"),
    }
    athena = by_type(pass_conditions(PassProblem("AthenaFailed", "query q-1 FAILED"), "now"))
    assert athena == {
        "AthenaFailed": ("True", "AthenaFailed", "query q-1 FAILED"),
        "AWSAccessDenied": ("False", "AthenaFailed", "no access problem"),
        "Ready": ("False", "AthenaFailed", "query q-1 FAILED"),
    }


def test_an_invalid_spec_is_not_ready() -> None:
    assert by_type(spec_conditions(None)) == {"InvalidSpec": ("False", "Valid", "spec is valid")}
    assert by_type(spec_conditions("FlowReport r: spec.interval: bad")) == {
        "InvalidSpec": ("True", "InvalidSpec", "FlowReport r: spec.interval: bad"),
        "Ready": ("False", "InvalidSpec", "FlowReport r: spec.interval: bad"),
    }


def test_merging_moves_the_transition_time_only_when_a_status_changes() -> None:
    first = merged([], [Condition("Ready", "True", "WindowsProcessed", "ok"), Condition("X", "False", "r", "m")],
                   NOW, generation=1)  # fmt: skip
    assert first == [
        {"type": "Ready", "status": "True", "reason": "WindowsProcessed", "message": "ok",
         "observedGeneration": 1, "lastTransitionTime": format_time(NOW)},
        {"type": "X", "status": "False", "reason": "r", "message": "m",
         "observedGeneration": 1, "lastTransitionTime": format_time(NOW)},
    ]  # fmt: skip
    long = "x" * (MAX_MESSAGE + 10)
    second = merged(first, [Condition("Ready", "True", "WindowsProcessed", "later"), Condition("X", "True", "r", long)],
                    LATER, generation=2)  # fmt: skip
    ready, other = second
    assert (ready["message"], ready["lastTransitionTime"], ready["observedGeneration"]) == ("later", format_time(NOW), 2)
    assert (other["status"], other["lastTransitionTime"], len(other["message"])) == ("True", format_time(LATER), MAX_MESSAGE)
    assert first[0]["message"] == "ok"  # the input is not changed
    # The same type twice in one merge (two windows in a pass): the last one stands.
    twice = merged([], [Condition("X", "True", "a", "1"), Condition("X", "False", "b", "2")], NOW, generation=1)
    assert [(c["status"], c["reason"]) for c in twice] == [("False", "b")]
