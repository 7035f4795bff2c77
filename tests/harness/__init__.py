"""Test harness: a real kube-apiserver/etcd/controller-manager and a moto server on loopback."""
