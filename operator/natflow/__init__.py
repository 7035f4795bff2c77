"""natflow: attribute AWS NAT Gateway bytes to Kubernetes workloads from VPC Flow Logs."""

__version__ = "0.1.0"
