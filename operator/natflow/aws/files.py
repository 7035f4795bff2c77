"""Load AWS CLI JSON outputs, recognised by their top-level key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from natflow.aws.inventory import FlowLog, Inventory, NatGateway, NetworkInterface, Vpc
from natflow.diagnostics import Diagnostics
from natflow.jsonstream import JsonStreamError, iter_values
from natflow.paths import os_reason, walk_files

_MODELS: dict[str, tuple[type[BaseModel], Callable[[Inventory, list[Any]], None]]] = {
    "NatGateways": (NatGateway, Inventory.add_nat_gateways),
    "Vpcs": (Vpc, Inventory.add_vpcs),
    "NetworkInterfaces": (NetworkInterface, Inventory.add_interfaces),
    "FlowLogs": (FlowLog, Inventory.add_flow_logs),
}


def load_inventory(paths: list[str], diagnostics: Diagnostics) -> tuple[Inventory, int]:
    """Read describe-nat-gateways / describe-vpcs / describe-network-interfaces / describe-flow-logs."""
    inventory = Inventory()
    files_read = 0

    def skip(path: str, problem: str) -> None:
        diagnostics.warn("AwsFileUnreadable", f"{path}: {problem}; skipped", file=path)

    for path, _ in walk_files(paths, skip):
        files_read += 1
        recognised = False
        try:
            with open(path, encoding="utf-8") as handle:
                for value in iter_values(handle):  # paginated output may hold several pages
                    if not isinstance(value, dict):
                        continue
                    for key, (model, add) in _MODELS.items():
                        items = value.get(key)
                        if not isinstance(items, list):
                            continue
                        recognised = True
                        parsed = []
                        for index, item in enumerate(items):
                            try:
                                parsed.append(model.model_validate(item))
                            except ValidationError as error:
                                first = error.errors()[0]
                                where = ".".join(str(p) for p in first["loc"])
                                diagnostics.warn(
                                    "AwsObjectSkipped",
                                    f"{path}: {key}[{index}]: {where}: {first['msg']}",
                                    file=path,
                                )
                        add(inventory, parsed)
        except (JsonStreamError, UnicodeDecodeError) as error:
            diagnostics.warn("AwsFileUnreadable", f"{path}: not AWS CLI JSON ({error})", file=path)
            continue
        except OSError as error:
            diagnostics.warn("AwsFileUnreadable", f"{path}: {os_reason(error)}", file=path)
            continue
        if not recognised:
            diagnostics.warn(
                "AwsFileUnrecognised",
                f"{path}: no NatGateways, Vpcs, NetworkInterfaces or FlowLogs key; file ignored",
                file=path,
            )
    return inventory, files_read
