"""The join: reduced NAT Gateway rows x the time-indexed IP map -> bytes per workload, node or address."""

from typing import Literal

# How the engine groups attributed bytes (`natflow attribute --group-by`). Here, not in the engine,
# so that the CLI builds its parser without importing the engine.
GroupBy = Literal["workload", "pod", "namespace"]
GROUP_BY_CHOICES: tuple[GroupBy, ...] = ("workload", "pod", "namespace")
