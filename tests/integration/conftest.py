"""Fixtures for integration tests: a real kube-apiserver/etcd/controller-manager and a moto server.

Missing binaries make these fixtures FAIL, never skip: CI runs scripts/ensure-kube-binaries.sh
first, and a silently skipped integration suite would look green while proving nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.harness.kubeapi import KubeAPI, KubeAPIError
from tests.harness.motoserver import MotoServer


def pytest_configure(config: pytest.Config) -> None:
    # The kubeconfigs skip TLS verification of the API server's self-signed cert on purpose;
    # urllib3 would otherwise warn on every request.
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="session")
def kubeapi() -> Iterator[KubeAPI]:
    """etcd + kube-apiserver v1.20.2 + kube-controller-manager (GC, namespaces, service accounts)."""
    harness = KubeAPI(with_controller_manager=True)
    try:
        harness.start()
    except KubeAPIError as error:
        pytest.fail(f"cannot start the Kubernetes test harness: {error}", pytrace=False)
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def _api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    api_client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api_client


@pytest.fixture
def kube_client(kubeapi: KubeAPI) -> Iterator[kubernetes.client.ApiClient]:
    """An ApiClient authenticated as the admin (system:masters)."""
    with _api_client(kubeapi.kubeconfig) as api_client:
        yield api_client


@pytest.fixture
def natflow_kube_client(kubeapi: KubeAPI) -> Iterator[kubernetes.client.ApiClient]:
    """An ApiClient authenticated as user `natflow` (no groups): it can do only what RBAC grants."""
    with _api_client(kubeapi.user_kubeconfig()) as api_client:
        yield api_client
