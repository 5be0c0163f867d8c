"""Faults the real API server cannot produce on demand: a 500 or 503 on chosen requests, a 409 on the
status write, and every watch dropped at once. kmock's emulator injects them (this is the one place the
operator's lifecycle still runs against it); the same lifecycle on the real control plane is
tests/test_operator.py."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

from kube_emulator import ApiServerEmulator, ClusterControllers
from operator_harness import (
    ManualClock,
    ScriptedProbes,
    canary_at_step,
    manifest,
    ready_with_stable,
    scripted_operator,
)

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"
NS = "ml"


class EmulatedView:
    def __init__(self, api: ApiServerEmulator) -> None:
        self.api = api

    def status(self, name: str = "ocr") -> dict[str, Any]:
        found = self.api.stored(MDEPS, NS, name)
        assert found is not None
        return dict(found.get("status") or {})

    def phase(self, name: str = "ocr") -> str | None:
        return self.status(name).get("phase")

    def created(self, plural: str, name: str) -> int:
        """How often `name` was created (a POST, or an apply that created)."""
        return sum(
            1
            for (resource, namespace, stored_name), obj in self.api.objects.items()
            if (namespace, resource.plural, stored_name) == (NS, plural, name)
            for version in obj.history
            if version is not None
            and version.get("metadata", {}).get("generation") == 1
            and "status" not in version
        )


async def test_converges_through_api_errors_and_dropped_watches(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    controllers = ClusterControllers(emulator)
    view = EmulatedView(emulator)
    emulator.fail("PATCH", r"/deployments/ocr-[0-9a-f]+$", 500, times=2)
    emulator.fail("PATCH", r"/modeldeployments/ocr/status$", 409, times=2)
    emulator.fail("PATCH", r"/jobs/ocr-optimize-[0-9a-f]+$", 503, times=1)
    async with (
        controllers.running(),
        scripted_operator(str(kubeconfig), NS, ManualClock(), ScriptedProbes(), clusterwide=True),
    ):
        body = manifest()
        body["metadata"]["namespace"] = NS
        await emulator.write_as_controller(MDEPS, NS, "ocr", copy.deepcopy(body))
        old = await ready_with_stable(view)
        assert {status for _, _, status in emulator.served_faults} == {500, 409, 503}
        await emulator.drop_watches()
        emulator.fail("PATCH", r"/deployments/ocr-[0-9a-f]+$", 500, times=3)
        await emulator.write_as_controller(
            MDEPS, NS, "ocr", {"spec": {"model": {"uri": "s3://models/v2.onnx"}}}
        )
        new = await canary_at_step(view, 0)
        assert new != old
        assert view.created("deployments", f"ocr-{new}") == 1
