"""Damaged Parquet objects beside a good one, through `natflow attribute` (the default reader):
the run ends well (rc 0), the good object's totals are unchanged, the damaged object is named in a
`DamagedFlowLog` warning, its intact row groups are kept and what it lost is counted; and the
decoder processes that read them: a decoder that aborts, overruns its time or its memory is
replaced and the run goes on; natflow trace reads the same objects in its own decoders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from natflow.cli import main
from natflow.flowlogs import decoders, vectorised
from natflow.trace import scan
from tests.conftest import UNDER_ASAN
from tests.parquet_damage import DAMAGES, ROWS, damaged, table, write

NAME = "123456789012_vpcflowlogs_us-east-1_fl-0abc_20261121T1000Z_{}.log.parquet"
AWS = {
    "NatGateways": [
        {"NatGatewayId": f"nat-{n}", "VpcId": "vpc-1",
         "NatGatewayAddresses": [{"NetworkInterfaceId": f"eni-nat{n}", "PrivateIp": f"10.0.0.22{n}"}]}
        for n in (1, 2)
    ],
    "Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}],
}  # fmt: skip
GOOD_BYTES = sum(1000 + index for index in range(ROWS))  # each object's bytesOut, undamaged
# Records each damage leaves readable: the row groups (of 100 rows) before and after the damage.
KEPT = {
    "v2 page claims -1 values": 500,
    "page claims more values than it holds": 500,
    "page type changed": 500,
    "footer num_rows 0": 600,
    "gzip page altered, CRC mismatch": 500,
    "page checksum mismatch": 500,
    "repetition_type 3": 0,
    "non-UTF-8 column name": 0,
    "16M schema entries": 0,
    "footer length claims 2 GB": 0,
    "truncated in the middle": 0,
    "row group's pages overwritten": 500,
}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "aws.json").write_text(json.dumps(AWS))
    # One node nobody's records name: a cluster input needs a usable object; the totals are the gateway's.
    node = {"kind": "Node", "metadata": {"name": "idle", "uid": "n-idle", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.255.254"}]}}  # fmt: skip
    (tmp_path / "cluster.json").write_text(json.dumps({"kind": "List", "items": [node]}))
    flows = tmp_path / "flows"
    flows.mkdir()
    write(table("eni-nat1", "10.0.0.221", "10.0.1"), flows / NAME.format("good"))
    return {"aws": tmp_path / "aws.json", "cluster": tmp_path / "cluster.json", "flows": flows}


def run(command: list[str], inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`natflow COMMAND` on the inputs: exit 0, no traceback, its JSON document."""
    argv = [*command, "--cluster", str(inputs["cluster"]), "--aws", str(inputs["aws"]),
            "--flow-logs", str(inputs["flows"]), "-o", "json"]  # fmt: skip
    assert main(argv) == 0
    output = capsys.readouterr()
    assert "Traceback" not in output.err
    document: dict[str, Any] = json.loads(output.out)
    return document


def attribute(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return run(["attribute"], inputs, capsys)


def totals(document: dict[str, Any]) -> dict[str, int]:
    return {gateway["natGatewayId"]: gateway["bytesOut"] for gateway in document["natGateways"]}


def damage_warnings(document: dict[str, Any], path: Path) -> list[str]:
    return [w["message"] for w in document["warnings"] if w["reason"] == "DamagedFlowLog" and w.get("file") == str(path)]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_object_beside_a_good_one(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    alone = attribute(inputs, capsys)
    assert totals(alone) == {"nat-1": GOOD_BYTES, "nat-2": 0}
    source = write(table("eni-nat2", "10.0.0.222", "10.0.2"), tmp_path / NAME.format("source"))
    bad = damaged(damage, source, inputs["flows"] / NAME.format("bad"))
    document = attribute(inputs, capsys)
    found = totals(document)
    assert found["nat-1"] == GOOD_BYTES  # the good object's totals, unchanged
    assert 0 <= found["nat-2"] <= GOOD_BYTES
    messages = damage_warnings(document, bad)
    assert messages and all(message.startswith(f"{bad}: ") for message in messages), document["warnings"]
    if damage == "repetition_type 3":  # pyarrow aborts the process on it (an uncaught C++ exception)
        assert "decoder process killed by SIGABRT: terminate called after throwing" in " ".join(messages)
    else:
        assert len(messages) == 1 and messages[0].startswith(f"{bad}: damaged Parquet: ")
    stats = document["stats"]
    assert stats["recordsRead"] == ROWS + KEPT[damage] and stats["recordsCounted"] == ROWS + KEPT[damage]
    assert stats["damagedFiles"] == 1
    if damage not in ("non-UTF-8 column name", "16M schema entries", "footer length claims 2 GB",
                      "truncated in the middle", "repetition_type 3"):  # fmt: skip  (no claim to count)
        assert stats["lostRecords"] == ROWS - KEPT[damage]


def test_a_decoder_that_aborts_loses_nothing_the_reference_reader_can_read(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    second = write(table("eni-nat2", "10.0.0.222", "10.0.2"), inputs["flows"] / NAME.format("second"))
    abort = "tests.parquet_damage:abort_decoder"  # runs in the decoder
    monkeypatch.setattr(vectorised, "PARQUET_READERS", (abort, vectorised.PARQUET_READERS[1]))
    document = attribute(inputs, capsys)
    assert totals(document) == {"nat-1": GOOD_BYTES, "nat-2": GOOD_BYTES}  # read again by the reference reader
    assert damage_warnings(document, second) == [
        f"{second}: decoder process killed by SIGABRT; read again by the reference reader"
    ]
    assert document["stats"]["damagedFiles"] == 2  # both objects: each killed its decoder
    monkeypatch.setattr(vectorised, "PARQUET_READERS", (abort, abort))
    document = attribute(inputs, capsys)
    assert totals(document) == {"nat-1": 0, "nat-2": 0} and document["stats"]["recordsRead"] == 0
    assert damage_warnings(document, second) == [
        f"{second}: decoder process killed by SIGABRT; then decoder process killed by SIGABRT; "
        "none of its records are counted"
    ]


def test_a_decoder_that_overruns_its_time_is_stopped(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectorised, "PARQUET_READERS", ("tests.parquet_damage:sleeping_decoder",) * 2)
    monkeypatch.setattr(decoders, "TIME_LIMIT_SECONDS", 0.5)
    monkeypatch.setattr(decoders, "TIME_LIMIT_SECONDS_PER_MB", 0.0)
    document = attribute(inputs, capsys)
    good = inputs["flows"] / NAME.format("good")
    assert damage_warnings(document, good) == [
        f"{good}: decoding took more than 0.5 s; decoder process stopped; none of its records are counted"
    ]  # not read again: the reference would take as long


@pytest.mark.skipif(UNDER_ASAN, reason="AddressSanitizer's shadow memory does not fit a capped address space")
def test_the_pool_replaces_dead_decoders() -> None:
    pool = decoders.DecoderPool(address_space=1 << 30)
    try:
        assert pool.call("os:getpid", (), 30) != os.getpid()
        with pytest.raises(decoders.DecoderFailed, match="killed by SIGABRT"):
            pool.call("os:abort", (), 30)
        with pytest.raises(decoders.DecoderFailed, match="killed by SIGKILL"):
            pool.call("tests.parquet_damage:killed_decoder", (), 30)
        with pytest.raises(decoders.DecoderFailed, match=r"decoder failed \(MemoryError"):
            pool.call("builtins:bytearray", (2 << 30,), 30)  # above the decoder's address space
        with pytest.raises(decoders.DecoderFailed, match="exited with status 3"):
            pool.call("os:_exit", (3,), 30)
        assert pool.call("builtins:sum", ([1, 2, 3],), 30) == 6  # a fresh decoder
    finally:
        pool.close()


def trace(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], address: str) -> dict[str, Any]:
    return run(["trace", "--address", address], inputs, capsys)


@pytest.mark.parametrize("damage", DAMAGES)
def test_trace_reads_a_damaged_object_beside_a_good_one(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    """natflow trace reads Parquet in decoder processes with natflow attribute's checks: every record
    of the good object and of the damaged one's intact row groups, the damaged one named in one
    one-line warning (a page whose checksum fails is refused, not read)."""
    source = write(table("eni-nat2", "10.0.0.222", "10.0.2"), tmp_path / NAME.format("source"))
    write(table("eni-nat2", "10.0.0.222", "10.0.2"), inputs["flows"] / NAME.format("good"))
    bad = damaged(damage, source, inputs["flows"] / NAME.format("bad"))
    document = trace(inputs, capsys, "10.0.2.10")  # the source of rows 0, 50, 100, ...: two a row group
    messages = damage_warnings(document, bad)
    assert len(messages) == 1 and messages[0].startswith(f"{bad}: ") and "\n" not in messages[0], messages
    stats = document["stats"]
    assert stats["recordsRead"] == ROWS + KEPT[damage]
    assert stats["recordsMatched"] == (ROWS + KEPT[damage]) // 50


def test_trace_survives_a_decoder_that_aborts(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "PARQUET_READER", "tests.parquet_damage:abort_decoder")
    document = trace(inputs, capsys, "10.0.1.10")
    good = inputs["flows"] / NAME.format("good")
    assert damage_warnings(document, good) == [
        f"{good}: decoder process killed by SIGABRT; none of its records are counted"
    ]
    assert document["stats"]["recordsRead"] == 0
