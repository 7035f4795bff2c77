"""natflow.aws.files: AWS CLI outputs read one listed item at a time."""

from __future__ import annotations

import json
from pathlib import Path

from natflow.aws.files import load_inventory
from natflow.diagnostics import Diagnostics


def test_items_are_validated_one_by_one_across_pages(tmp_path: Path) -> None:
    pages = [
        {"NetworkInterfaces": [{"NetworkInterfaceId": "eni-1"}, {"NetworkInterfaceId": 7}], "NextToken": "x"},
        {"NetworkInterfaces": [{"NetworkInterfaceId": "eni-3", "PrivateIpAddress": "10.0.0.3"}]},
    ]
    (tmp_path / "enis.json").write_text("\n".join(json.dumps(page, indent=4) for page in pages))
    (tmp_path / "nat.json").write_text(json.dumps({"NatGateways": []}))
    diagnostics = Diagnostics()
    inventory, files = load_inventory([str(tmp_path)], diagnostics)
    assert files == 2 and sorted(inventory.interfaces) == ["eni-1", "eni-3"]
    [warning] = diagnostics.items
    assert warning.reason == "AwsObjectSkipped"
    assert warning.message == f"{tmp_path / 'enis.json'}: NetworkInterfaces[1]: NetworkInterfaceId: Input should be a valid string"


def test_a_truncated_output_keeps_the_items_before_the_cut(tmp_path: Path) -> None:
    text = json.dumps({"NetworkInterfaces": [{"NetworkInterfaceId": f"eni-{i}"} for i in range(3)]})
    cut = text.index('"eni-2"')
    (tmp_path / "enis.json").write_text(text[:cut])
    diagnostics = Diagnostics()
    inventory, _ = load_inventory([str(tmp_path)], diagnostics)
    assert sorted(inventory.interfaces) == ["eni-0", "eni-1"]
    assert [d.message for d in diagnostics.items] == [
        f"{tmp_path / 'enis.json'}: truncated at byte {cut}: the input ends inside a value; the items before it are kept"
    ]
