"""Every NATFLOW_* variable in one typed settings object, read once at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from natflow.cli import main
from natflow.runtime import OperatorConfig
from natflow.settings import Settings, SettingsError, settings_table

ROOT = Path(__file__).resolve().parents[2]
NATFLOW = str(Path(sys.executable).with_name("natflow"))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("NATFLOW_") or n == "AWS_REGION"]:
        monkeypatch.delenv(name)


def test_defaults_and_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings.load()
    assert (defaults.namespace, defaults.store, defaults.timer_seconds) == (
        "natflow-system", "/var/lib/natflow/state.sqlite", 60.0)  # fmt: skip
    assert defaults.vpc_id is None and defaults.debug is False
    monkeypatch.setenv("NATFLOW_TIMER_SECONDS", "3")
    monkeypatch.setenv("NATFLOW_VPC_ID", "vpc-0abc")
    monkeypatch.setenv("NATFLOW_DEBUG", "1")
    monkeypatch.setenv("NATFLOW_EVENT_QUEUE_LIMIT", "5000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("NATFLOW_LOG_LEVEL", "warning")
    given = Settings.load()
    assert given.log_level == "WARNING"
    assert (given.timer_seconds, given.vpc_id, given.debug, given.aws_region) == (3.0, "vpc-0abc", True, "eu-west-1")
    config = OperatorConfig.of(given)
    assert (config.queue_limit, config.vpc_id, config.aws_region) == (5000, "vpc-0abc", "eu-west-1")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("NATFLOW_TIMER_SECONDS", "soon", "NATFLOW_TIMER_SECONDS='soon': Input should be a valid number"),
        ("NATFLOW_RETENTION_SECONDS", "0", "NATFLOW_RETENTION_SECONDS='0': Input should be greater than 0"),
        ("NATFLOW_LOG_LEVEL", "LOUD", "NATFLOW_LOG_LEVEL='LOUD': Input should be 'DEBUG', 'INFO'"),
        ("NATFLOW_VPC_ID", "my-vpc", "NATFLOW_VPC_ID='my-vpc': String should match pattern"),
        ("NATFLOW_AWS_MAX_ATTEMPTS", "-1", "NATFLOW_AWS_MAX_ATTEMPTS='-1': Input should be greater than or equal to 1"),
        ("NATFLOW_LIVENESS", "port 8080", "NATFLOW_LIVENESS='port 8080': String should match pattern"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        Settings.load()
    assert str(error.value).startswith(says) and "\n" not in str(error.value)
    assert main(["run", "--once", "--window", "2026-11-21T10:00:00Z/2026-11-21T11:00:00Z"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"natflow: error: {says}")


def test_the_operator_stops_at_start_on_a_bad_setting() -> None:
    """`natflow run` (the operator) exits before it connects anywhere, with the one line."""
    done = subprocess.run([NATFLOW, "run"], env={"NATFLOW_TIMER_SECONDS": "-5", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "natflow: error: NATFLOW_TIMER_SECONDS='-5': Input should be greater than 0"


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = []
    for path in sorted((ROOT / "operator" / "natflow").rglob("*.py")):
        text = path.read_text()
        if re.search(r"os\.environ|os\.getenv|getenv\(", text) and path.name not in ("settings.py", "__init__.py"):
            readers.append(path.name)
    assert readers == []


def test_the_readme_lists_every_setting() -> None:
    assert settings_table() in (ROOT / "README.md").read_text()
