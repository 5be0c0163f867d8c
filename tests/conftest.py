"""Fixtures shared by the tests: the real control plane (`control_plane`, `cluster_namespace`,
`real_kubeconfig`) and the emulated API server, kept for injected faults (`emulator`, `kubeconfig`)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
from cluster import Cluster, running_cluster, use_cluster_kubeconfig
from kube_emulator import ApiServerEmulator, running_emulator, use_kubeconfig


@pytest.fixture
async def emulator() -> AsyncIterator[ApiServerEmulator]:
    async with running_emulator() as api:
        yield api


@pytest.fixture
def kubeconfig(
    emulator: ApiServerEmulator, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> pathlib.Path:
    """A kubeconfig pointing at the emulator, made current for the Kubernetes client and kopf."""
    return use_kubeconfig(emulator, tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real control plane and node agent, one per test session (tests share it, each in its own
    namespace: see `cluster_namespace`)."""
    with running_cluster(tmp_path_factory.mktemp("controlplane")) as cluster:
        yield cluster


@pytest.fixture
def cluster_namespace(control_plane: Cluster) -> Iterator[str]:
    name = control_plane.create_namespace()
    yield name
    control_plane.delete_namespace(name)


@pytest.fixture
def real_kubeconfig(control_plane: Cluster, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The control plane's admin kubeconfig, made current for kopf and the Kubernetes client."""
    return use_cluster_kubeconfig(control_plane.kubeconfig, monkeypatch)
