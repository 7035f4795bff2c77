"""The join: reduced NAT Gateway rows x the time-indexed IP map -> bytes per workload, node or address."""
