"""Fixtures for integration tests: a real kube-apiserver/etcd/controller-manager and a moto server.

Missing binaries make these fixtures FAIL, never skip: CI runs scripts/ensure-kube-binaries.sh
first, and a silently skipped integration suite would look green while proving nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.harness.kubeapi import KubeAPI, KubeAPIError
from tests.harness.motoserver import MotoServer

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def pytest_configure(config: pytest.Config) -> None:
    # The kubeconfigs skip TLS verification of the API server's self-signed cert on purpose;
    # urllib3 would otherwise warn on every request.
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")
    # The servers are on loopback: a developer's HTTP(S)_PROXY must not catch the kubernetes client,
    # boto3, or the operator subprocesses (which inherit this environment).
    for variable in ("NO_PROXY", "no_proxy"):
        entries = [entry for entry in os.environ.get(variable, "").split(",") if entry]
        os.environ[variable] = ",".join([*entries, *(h for h in _LOOPBACK_HOSTS if h not in entries)])


@pytest.fixture(scope="session")
def kubeapi() -> Iterator[KubeAPI]:
    """etcd + kube-apiserver v1.20.2 + kube-controller-manager (GC, namespaces, service accounts)."""
    harness = KubeAPI(with_controller_manager=True)
    startup_error: KubeAPIError | None = None
    try:
        harness.start()
    except KubeAPIError as error:
        startup_error = error
    if startup_error is not None:
        # Outside the `except`: pytest would otherwise print the message twice (cause + context).
        pytest.fail(f"cannot start the Kubernetes test harness: {startup_error}", pytrace=False)
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
