"""VPC Flow Logs: field catalogue, format resolution, readers and the reduction to per-minute sums."""
