"""`natflow attribute` starts its Parquet decoders first: `natflow.cli` loads nothing of the engine to
parse the arguments, and the decoders are warmed before the settings (pydantic-settings) or the
engine are imported. Each check runs in a fresh interpreter, whose `sys.modules` is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.parquet_damage import ROWS, table, write

# What natflow imports to run a command: none of it is needed before the decoders start.
ENGINE = (
    "pyarrow",
    "numpy",
    "pydantic",
    "pydantic_settings",
    "boto3",
    "natflow.settings",
    "natflow.pipeline",
    "natflow.attribution.engine",
    "natflow.attribution.report",
    "natflow.flowlogs.vectorised",
    "natflow.doctor",
    "natflow.trace.command",
)
ROOT = Path(__file__).resolve().parents[1]

PARSE_EVERY_COMMAND = f"""
import json, sys
from natflow.cli import _parser

for argv in (["attribute", "--cluster", "c", "--aws", "a", "--flow-logs", "f"], ["trace", "--pod", "ns/pod"],
             ["doctor", "--vpc-id", "vpc-1"], ["run", "--once"]):
    _parser().parse_args(argv)
print(json.dumps(sorted(name for name in {ENGINE!r} if name in sys.modules)))
"""

# Records, each time decoders are warmed, which of ENGINE is loaded already; then runs the command.
ATTRIBUTE_RECORDING_WARMS = f"""
import json, sys
from natflow.flowlogs import decoders

warm = decoders.DecoderPool.warm
loaded_when_warmed = []

def recording_warm(self, count, preload):
    loaded_when_warmed.append(sorted(name for name in {ENGINE!r} if name in sys.modules))
    warm(self, count, preload)

decoders.DecoderPool.warm = recording_warm
from natflow.cli import main

code = main(sys.argv[2:])
with open(sys.argv[1], "w") as record:
    json.dump({{"code": code, "loaded when warmed": loaded_when_warmed}}, record)
"""


def run_python(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_parsing_any_command_imports_nothing_of_the_engine() -> None:
    done = run_python(PARSE_EVERY_COMMAND)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_attribute_warms_the_parquet_decoders_before_the_settings_and_the_engine_are_imported(tmp_path: Path) -> None:
    aws = {
        "NatGateways": [{"NatGatewayId": "nat-1", "VpcId": "vpc-1",
                         "NatGatewayAddresses": [{"NetworkInterfaceId": "eni-nat1", "PrivateIp": "10.0.0.221"}]}],
        "Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}],
    }  # fmt: skip
    node = {"kind": "Node", "metadata": {"name": "node-1", "uid": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.255.254"}]}}  # fmt: skip
    (tmp_path / "aws.json").write_text(json.dumps(aws))
    (tmp_path / "cluster.json").write_text(json.dumps({"kind": "List", "items": [node]}))
    flows = write(table("eni-nat1", "10.0.0.221", "10.0.1"), tmp_path / "flows.log.parquet")
    record = tmp_path / "record.json"
    done = run_python(ATTRIBUTE_RECORDING_WARMS, str(record), "attribute", "--cluster", str(tmp_path / "cluster.json"),
                      "--aws", str(tmp_path / "aws.json"), "--flow-logs", str(flows), "-o", "json")  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert json.loads(record.read_text()) == {"code": 0, "loaded when warmed": [[]]}
    document = json.loads(done.stdout)
    assert document["stats"]["recordsRead"] == ROWS
    assert document["natGateways"][0]["bytesOut"] == sum(1000 + index for index in range(ROWS))
