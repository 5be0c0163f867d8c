"""The world an operator scenario runs in, on the real control plane: one namespace of the shared
cluster, the user's writes (as admin, through the API), what `kubectl get` would show, and the node agent's
script for the optimization Jobs. Creations are counted from the API server's audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cluster import Cluster

from modeldeploy.cluster.node_agent import DEFAULT_JOB_MESSAGE, REVISION_LABEL, Termination
from modeldeploy.cluster.rest import MERGE_PATCH

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"
DEPLOYMENTS = "apps/v1/deployments"
JOBS = "batch/v1/jobs"


def collection_path(resource: str, namespace: str) -> str:
    """`apps/v1/deployments` → `/apis/apps/v1/namespaces/NS/deployments` (core `v1/...` under /api)."""
    group_version, plural = resource.rsplit("/", 1)
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


@dataclass
class World:
    cluster: Cluster
    namespace: str

    # --- what kubectl get shows ---------------------------------------------------------------------
    def stored(self, resource: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(f"{collection_path(resource, self.namespace)}/{name}")

    def live(self, resource: str) -> dict[str, dict[str, Any]]:
        """The objects of one kind in the namespace by name, leaving out those being deleted."""
        listing = self.cluster.request("GET", collection_path(resource, self.namespace))
        return {
            item["metadata"]["name"]: item
            for item in listing.get("items", [])
            if not item["metadata"].get("deletionTimestamp")
        }

    def mdep(self, name: str = "ocr") -> dict[str, Any]:
        found = self.stored(MDEPS, name)
        assert found is not None, f"ModelDeployment {name} not found"
        return found

    def status(self, name: str = "ocr") -> dict[str, Any]:
        return dict(self.mdep(name).get("status") or {})

    def phase(self, name: str = "ocr") -> str | None:
        return self.status(name).get("phase")

    def condition(self, kind: str, name: str = "ocr") -> dict[str, Any]:
        return next(c for c in self.status(name).get("conditions", []) if c["type"] == kind)

    def deployments(self) -> dict[str, dict[str, Any]]:
        return self.live(DEPLOYMENTS)

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.live(JOBS)

    def events(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.live("v1/events").values()]

    def creations(self, plural: str) -> list[str]:
        """Names of `plural` created in this namespace (a POST, or an apply that created), in order."""
        names = []
        marker = f'"namespace":"{self.namespace}"'
        for line in self.cluster.plane.audit_log.read_text().splitlines():
            if marker not in line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef", {})
            if (
                ref.get("resource") == plural
                and not ref.get("subresource")
                and event.get("verb") in ("create", "patch", "update")
                and event.get("responseStatus", {}).get("code") == 201
            ):
                names.append(ref.get("name", ""))
        return names

    @staticmethod
    def owners_of(obj: dict[str, Any], *path: str) -> set[str]:
        """The field managers that own the field at `path` (e.g. "spec", "replicas") of `obj`."""
        owners = set()
        for entry in obj["metadata"].get("managedFields", []):
            node = entry.get("fieldsV1", {})
            for key in path:
                node = node.get(f"f:{key}")
                if node is None:
                    break
            else:
                owners.add(entry["manager"])
        return owners

    # --- what the user does ---------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> None:
        self.cluster.request("POST", collection_path(MDEPS, self.namespace), body)

    def change_spec(self, spec_patch: dict[str, Any], name: str = "ocr") -> None:
        self._patch(MDEPS, name, {"spec": spec_patch})

    def annotate(self, key: str, value: str | None, name: str = "ocr") -> None:
        self._patch(MDEPS, name, {"metadata": {"annotations": {key: value}}})

    def delete(self, resource: str, name: str) -> None:
        self.cluster.request("DELETE", f"{collection_path(resource, self.namespace)}/{name}")

    def _patch(self, resource: str, name: str, patch: dict[str, Any]) -> None:
        path = f"{collection_path(resource, self.namespace)}/{name}"
        self.cluster.request("PATCH", path, patch, content_type=MERGE_PATCH)

    # --- what the cluster's nodes do ------------------------------------------------------------------
    def fail_optimization(self, revision: str, message: str) -> None:
        """The optimization Job of `revision` fails with `message` as its termination message."""

        def script(pod: Any) -> Termination:
            if pod["metadata"].get("labels", {}).get(REVISION_LABEL) == revision:
                return Termination(1, message)
            return Termination(0, DEFAULT_JOB_MESSAGE)

        self.cluster.agent.job_message(self.namespace, script)
