"""natflow: attribute AWS NAT Gateway bytes to Kubernetes workloads from VPC Flow Logs."""

import os

__version__ = "0.1.0"

# natflow does no linear algebra; OpenBLAS's idle threads (numpy starts one per core) would spin on
# the cores that the flow-log readers use.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
