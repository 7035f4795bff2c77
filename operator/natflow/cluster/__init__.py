"""The cluster side: slim records of Kubernetes objects, owners, the CNI's SNAT setting, the IP map."""
