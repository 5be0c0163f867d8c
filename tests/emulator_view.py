"""The emulator side of tests/test_operator_killwalk.py: what `kubectl get` would show, read from the emulated
API server, and the writes a user makes. The emulator stays for the kill walk because it can stop the
operator's writes at an exact count (`crash_operator_after`), which no real kube-apiserver offers; every
other operator test runs on the real control plane (tests/operator_world.py is the same view there)."""

from __future__ import annotations

import contextlib
import copy
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kube_emulator import ApiServerEmulator, ClusterControllers
from operator_harness import ManualClock, Operator, ScriptedProbes, scripted_operator

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"
DEPLOYMENTS = "apps/v1/deployments"
JOBS = "batch/v1/jobs"
NS = "ml"


class View:
    """What `kubectl get` would show, read from the emulator."""

    def __init__(self, api: ApiServerEmulator) -> None:
        self.api = api

    def mdep(self, name: str = "ocr") -> dict[str, Any]:
        found = self.api.stored(MDEPS, NS, name)
        assert found is not None
        return found

    def status(self, name: str = "ocr") -> dict[str, Any]:
        return dict(self.mdep(name).get("status") or {})

    def phase(self, name: str = "ocr") -> str | None:
        return self.status(name).get("phase")

    def condition(self, kind: str, name: str = "ocr") -> dict[str, Any]:
        return next(c for c in self.status(name).get("conditions", []) if c["type"] == kind)

    def deployments(self) -> dict[str, dict[str, Any]]:
        return self.api.live(DEPLOYMENTS, NS)

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.api.live(JOBS, NS)

    def events(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.api.live("v1/events", NS).values()]

    def creations(self, plural: str) -> list[str]:
        """Names created through the API (POST, or an apply that created), in order."""
        names = []
        for (resource, namespace, name), obj in self.api.objects.items():
            if namespace == NS and resource.plural == plural:
                names += [name] * sum(
                    1
                    for version in obj.history
                    if version is not None
                    and version.get("metadata", {}).get("generation") == 1
                    and "status" not in version
                )
        return names


async def create(api: ApiServerEmulator, body: dict[str, Any]) -> None:
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = NS
    await api.write_as_controller(MDEPS, NS, body["metadata"]["name"], body)


async def change_spec(api: ApiServerEmulator, spec_patch: dict[str, Any], name: str = "ocr") -> None:
    await api.write_as_controller(MDEPS, NS, name, {"spec": spec_patch})


async def annotate(api: ApiServerEmulator, key: str, value: str | None, name: str = "ocr") -> None:
    await api.write_as_controller(MDEPS, NS, name, {"metadata": {"annotations": {key: value}}})


def operator(
    config: pathlib.Path, clock: ManualClock, probes: ScriptedProbes, kill: bool = False
) -> contextlib.AbstractAsyncContextManager[Operator]:
    return scripted_operator(str(config), NS, clock, probes, kill, clusterwide=True)


@pytest.fixture
async def cluster(emulator: ApiServerEmulator) -> AsyncIterator[ClusterControllers]:
    controllers = ClusterControllers(emulator)
    async with controllers.running():
        yield controllers
