"""Warnings collected along the way and reported with the result (never raised, never lost)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Diagnostic:
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message, **self.details}


class Diagnostics:
    """An ordered list of warnings; repeated (reason, message) pairs are kept once."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._seen: set[tuple[str, str]] = set()

    def warn(self, reason: str, message: str, **details: Any) -> None:
        key = (reason, message)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(Diagnostic(reason, message, dict(details)))

    def extend(self, other: Diagnostics) -> None:
        for item in other.items:
            self.warn(item.reason, item.message, **item.details)
