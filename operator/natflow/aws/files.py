"""Load AWS CLI JSON outputs, recognised by their top-level key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from natflow.aws.inventory import FlowLog, Inventory, NatGateway, NetworkInterface, Vpc
from natflow.diagnostics import Diagnostics
from natflow.jsonstream import JsonStreamError, Value, iter_stream
from natflow.paths import os_reason, walk_files

_MODELS: dict[str, tuple[type[BaseModel], Callable[[Inventory, list[Any]], None]]] = {
    "NatGateways": (NatGateway, Inventory.add_nat_gateways),
    "Vpcs": (Vpc, Inventory.add_vpcs),
    "NetworkInterfaces": (NetworkInterface, Inventory.add_interfaces),
    "FlowLogs": (FlowLog, Inventory.add_flow_logs),
}


def load_inventory(paths: list[str], diagnostics: Diagnostics) -> tuple[Inventory, int]:
    """Read describe-nat-gateways / describe-vpcs / describe-network-interfaces / describe-flow-logs.

    Each listed item is read and validated on its own: one bad item is skipped with a warning,
    and a large output is never held whole.
    """
    inventory = Inventory()
    files_read = 0

    def skip(path: str, problem: str) -> None:
        diagnostics.warn("AwsFileUnreadable", f"{path}: {problem}; skipped", file=path)

    for path, _ in walk_files(paths, skip):
        files_read += 1
        recognised = False
        try:
            with open(path, "rb") as handle:  # paginated output may hold several pages
                for found in iter_stream(handle, _MODELS):
                    if isinstance(found, Value):
                        recognised = recognised or bool(found.streamed)
                        continue
                    if found.member is None:
                        continue  # a top-level array: not AWS CLI output
                    model, add = _MODELS[found.member]
                    try:
                        add(inventory, [model.model_validate(found.value)])
                    except ValidationError as error:
                        first = error.errors()[0]
                        where = ".".join(str(p) for p in first["loc"])
                        diagnostics.warn(
                            "AwsObjectSkipped",
                            f"{path}: {found.member}[{found.position}]: {where}: {first['msg']}",
                            file=path,
                        )
        except JsonStreamError as error:
            what = "" if error.truncated else "not AWS CLI JSON: "
            diagnostics.warn("AwsFileUnreadable", f"{path}: {what}{error}; the items before it are kept", file=path)
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
