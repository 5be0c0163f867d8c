"""End-to-end: the real operator image, installed by the chart, on a kind cluster (started by e2e/run.sh).

One scenario, in order, as a user lives it: apply → Ready; change the serving section → a canary of the new
revision → promote → the new revision is stable; change it again → canary → abort → rolled back, the
previous stable keeps serving; delete → every child is garbage-collected. At every stage the Argo CD health
script is run on the live object too, so the Lua and the operator agree about real statuses.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import toolbin
import yaml
from e2e_manifest import chart_defaults, e2e_manifest
from realparts import missing

from modeldeploy.revision import compute_revision
from modeldeploy.spec import parse_spec

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent
HEALTH_LUA = (
    REPO_ROOT / "argocd" / "resource_customizations" / "modeldeploy.io" / "ModelDeployment" / "health.lua"
)
NAME = "cnn"
# Optimizing a small model and pulling Triton on a fresh node take minutes; a canary step does not.
FIRST_READY_TIMEOUT_S = 1500.0
STEP_TIMEOUT_S = 600.0
POLL_S = 5.0


def namespace() -> str:
    return os.environ.get("E2E_NAMESPACE", "modeldeploy-e2e")


def kubectl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(toolbin.kubectl_path()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def live_object() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl("-n", namespace(), "get", "modeldeployment", NAME, "-o", "json"))
    return obj


def revision_deployments() -> dict[str, str]:
    """revision → track of every Triton Deployment of the ModelDeployment."""
    listing = json.loads(
        kubectl(
            "-n", namespace(), "get", "deployments", "-l", f"app.kubernetes.io/instance={NAME}", "-o", "json"
        )
    )
    return {
        item["metadata"]["labels"]["modeldeploy.io/revision"]: item["metadata"]["labels"][
            "modeldeploy.io/track"
        ]
        for item in listing["items"]
    }


def argocd_health(obj: dict[str, Any]) -> str:
    from lupa import lua51  # noqa: PLC0415 - only the e2e run needs it

    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(HEALTH_LUA.read_text())
    return str(result["status"])


def wait_for(what: str, condition: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
    """Poll the live object until `condition` holds; on timeout fail with its last status."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = live_object()
        if condition(last):
            return last
        time.sleep(POLL_S)
    pytest.fail(
        f"timed out after {timeout_s:.0f}s waiting for {what}; last status:\n"
        f"{json.dumps(last.get('status'), indent=2)}"
    )


def manifest_with(serving_changes: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(e2e_manifest())
    changed["spec"]["serving"].update(serving_changes)
    return changed


def revision_of(manifest: dict[str, Any]) -> str:
    # What the operator computes: the spec with the chart's defaults (optimizer image, accelerator cpu).
    return compute_revision(parse_spec(manifest["spec"], chart_defaults()))


def apply(manifest: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))


def annotate(key: str) -> None:
    kubectl("-n", namespace(), "annotate", "modeldeployment", NAME, f"{key}=true", "--overwrite")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in obj.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return {}


def current(obj: dict[str, Any]) -> bool:
    return bool(obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"])


def phase(obj: dict[str, Any]) -> str | None:
    value = obj.get("status", {}).get("phase")
    return None if value is None else str(value)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    if "KUBECONFIG" not in os.environ:
        missing("kind cluster", "run e2e/run.sh (it creates the cluster and sets KUBECONFIG)")
    kubectl("get", "crd", "modeldeployments.modeldeploy.io")
    yield
    kubectl(
        "-n",
        namespace(),
        "delete",
        "modeldeployment",
        NAME,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=180s",
    )


def test_rollout_promotion_rollback_and_cleanup(cluster: None) -> None:
    first = manifest_with({})
    second = manifest_with({"maxBatchSize": 4})
    third = manifest_with({"maxBatchSize": 2})
    first_rev, second_rev, third_rev = revision_of(first), revision_of(second), revision_of(third)
    assert len({first_rev, second_rev, third_rev}) == 3

    # 1. The first revision is optimized and goes straight to stable.
    apply(first)
    ready = wait_for(
        "the first revision to be Ready",
        lambda obj: (
            current(obj) and phase(obj) == "Ready" and condition(obj, "Ready").get("status") == "True"
        ),
        FIRST_READY_TIMEOUT_S,
    )
    assert ready["status"]["stableRevision"] == first_rev
    assert condition(ready, "Optimized").get("status") == "True"
    assert revision_deployments() == {first_rev: "stable"}
    assert argocd_health(ready) == "Healthy"

    # 2. A serving change is a new revision: it runs as a canary next to the stable one.
    apply(second)
    canary = wait_for(
        "the second revision to run as a canary",
        lambda obj: (
            current(obj) and phase(obj) == "Canary" and obj["status"].get("canaryRevision") == second_rev
        ),
        STEP_TIMEOUT_S,
    )
    assert canary["status"]["stableRevision"] == first_rev
    assert revision_deployments() == {first_rev: "stable", second_rev: "canary"}
    assert argocd_health(canary) == "Progressing"

    # 3. Promote by annotation: the canary becomes stable and the old stable is removed.
    annotate("modeldeploy.io/promote")
    promoted = wait_for(
        "the promoted canary to be stable",
        lambda obj: phase(obj) == "Ready" and obj["status"].get("stableRevision") == second_rev,
        STEP_TIMEOUT_S,
    )
    assert not promoted["status"].get("canaryRevision")
    assert "modeldeploy.io/promote" not in promoted["metadata"].get("annotations", {})
    wait_for(
        "the old stable Deployment to go",
        lambda _: revision_deployments() == {second_rev: "stable"},
        STEP_TIMEOUT_S,
    )
    assert argocd_health(promoted) == "Healthy"

    # 4. Another revision, aborted while in canary: rolled back, the stable keeps serving.
    apply(third)
    wait_for(
        "the third revision to run as a canary",
        lambda obj: (
            current(obj) and phase(obj) == "Canary" and obj["status"].get("canaryRevision") == third_rev
        ),
        STEP_TIMEOUT_S,
    )
    annotate("modeldeploy.io/abort")
    rolled_back = wait_for(
        "the rollback",
        lambda obj: phase(obj) == "Degraded" and condition(obj, "Degraded").get("reason") == "RolledBack",
        STEP_TIMEOUT_S,
    )
    assert rolled_back["status"]["stableRevision"] == second_rev
    assert rolled_back["status"]["lastRollback"]["revision"] == third_rev
    degraded = condition(rolled_back, "Degraded")
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "RolledBack")
    wait_for(
        "the canary Deployment to go",
        lambda _: revision_deployments() == {second_rev: "stable"},
        STEP_TIMEOUT_S,
    )
    assert argocd_health(rolled_back) == "Degraded"

    # 5. Deleting the ModelDeployment removes every child (owner references).
    kubectl("-n", namespace(), "delete", "modeldeployment", NAME, "--wait=true", "--timeout=180s")
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while revision_deployments() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert revision_deployments() == {}
