"""Fixtures shared by the tests that run the operator against the emulated Kubernetes API server."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
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
