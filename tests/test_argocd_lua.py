"""Argo CD health check and actions for ModelDeployment, run in a real Lua 5.1 (lupa) as Argo CD runs them.

Argo CD evaluates these scripts in gopher-lua (Lua 5.1) with the live object as the global `obj`, without
`os`, `io` or module loading; the runtime here is stripped the same way, so a script that leans on a
library Argo CD does not offer fails here too.
"""

from __future__ import annotations

import copy
import functools
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from realparts import missing

from modeldeploy.conditions import Phase

REPO_ROOT = Path(__file__).resolve().parent.parent
ARGOCD_DIR = REPO_ROOT / "argocd"
LUA_DIR = ARGOCD_DIR / "resource_customizations" / "modeldeploy.io" / "ModelDeployment"
ACTIONS = ("promote", "abort", "pause", "resume")
# What Argo CD does not give a resource script (its sandbox); none of ours may depend on them.
SANDBOXED_GLOBALS = ("os", "io", "require", "dofile", "loadfile", "load", "loadstring", "package", "debug")


def run_lua(script: Path, obj: dict[str, Any]) -> Any:
    """Run `script` with `obj` as the global `obj`; return what the script returns, as Python values."""
    try:
        from lupa import lua51  # noqa: PLC0415 - a missing real part must skip, not break collection
    except ImportError as error:
        missing("lupa (Lua 5.1)", str(error))
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    assert runtime.eval("_VERSION") == "Lua 5.1"
    lua_globals = runtime.globals()
    for name in SANDBOXED_GLOBALS:
        lua_globals[name] = None
    lua_globals.obj = runtime.table_from(obj, recursive=True)
    return lua_to_python(runtime.execute(script.read_text()))


def lua_to_python(value: Any) -> Any:
    """Lua tables → dicts (or lists when keyed 1..n); scalars as they are. An empty table becomes `[]`,
    as Argo CD's gopher-lua JSON encoding (layeh.com/gopher-json) writes it: Lua cannot tell an empty
    object from an empty array, so a script must never leave an object emptied."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    items = dict(value.items())
    if not items:
        return []
    converted = {key: lua_to_python(item) for key, item in items.items()}
    if (
        converted
        and all(isinstance(key, int) for key in converted)
        and sorted(converted) == list(range(1, len(converted) + 1))
    ):
        return [converted[index] for index in range(1, len(converted) + 1)]
    return converted


def condition(kind: str, status: str, reason: str, message: str, generation: int = 3) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": generation,
    }


def model_deployment(
    status: dict[str, Any] | None, generation: int = 3, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "ocr", "namespace": "ml", "generation": generation},
        "spec": {"model": {"name": "det", "uri": "s3://models/det.onnx", "format": "onnx"}},
    }
    if annotations:
        obj["metadata"]["annotations"] = dict(annotations)
    if status is not None:
        obj["status"] = status
    return obj


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused (as kubectl's strict field validation does)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        result.setdefault("additionalProperties", False)
    return result


@functools.cache
def status_validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 (CRD schemas) uses draft-4 style keywords such as a boolean exclusiveMinimum.
    crd = yaml.safe_load((REPO_ROOT / "crds" / "modeldeployment.yaml").read_text())
    (version,) = (v for v in crd["spec"]["versions"] if v["storage"])
    return jsonschema.Draft4Validator(strict(version["schema"]["openAPIV3Schema"]["properties"]["status"]))


def status_for(phase: str, *conditions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A status as the operator writes it; checked against the CRD so fixtures cannot drift from the API."""
    status = {"observedGeneration": 3, "phase": phase, "conditions": list(conditions), **fields}
    status_validator().validate(status)
    return status


def health(obj: dict[str, Any]) -> tuple[str, str]:
    result = run_lua(LUA_DIR / "health.lua", obj)
    assert set(result) == {"status", "message"}, result
    return result["status"], result["message"]


READY_TRUE = condition("Ready", "True", "Available", "Revision a1b2c3d4e5 serves")


# --- health ---------------------------------------------------------------------------------------------


def test_healthy_when_ready_for_the_current_generation() -> None:
    status, message = health(model_deployment(status_for("Ready", READY_TRUE, stableRevision="a1b2c3d4e5")))
    assert status == "Healthy"
    assert "a1b2c3d4e5" in message


def test_no_status_yet_is_progressing() -> None:
    status, message = health(model_deployment(None))
    assert status == "Progressing"
    assert "operator" in message


def test_status_of_an_older_generation_is_progressing_not_healthy() -> None:
    # The user just changed the spec (generation 4); a Ready status written for generation 3 means nothing.
    obj = model_deployment(status_for("Ready", READY_TRUE, stableRevision="a1b2c3d4e5"), generation=4)
    status, message = health(obj)
    assert status == "Progressing"
    assert "generation 4" in message


def test_ready_condition_of_an_older_generation_is_not_healthy() -> None:
    stale_ready = condition("Ready", "True", "Available", "old", generation=2)
    status, _ = health(model_deployment(status_for("Ready", stale_ready, stableRevision="a1b2c3d4e5")))
    assert status == "Progressing"


def test_ready_phase_with_ready_false_is_progressing() -> None:
    not_ready = condition("Ready", "False", "Unavailable", "0/2 replicas of a1b2c3d4e5 available")
    status, message = health(model_deployment(status_for("Ready", not_ready)))
    assert (status, message) == ("Progressing", "0/2 replicas of a1b2c3d4e5 available")


@pytest.mark.parametrize(
    ("phase", "fields", "expected_in_message"),
    [
        ("Pending", {}, "Pending"),
        ("Deploying", {}, "Deploying"),
        (
            "Optimizing",
            {"optimization": {"revision": "ffee001122", "job": "ocr-optimize-ffee001122"}},
            "ffee001122",
        ),
        (
            "Canary",
            {"stableRevision": "a1b2c3d4e5", "canaryRevision": "ffee001122", "canaryWeight": 25},
            "25%",
        ),
    ],
)
def test_work_in_progress_is_progressing(
    phase: str, fields: dict[str, Any], expected_in_message: str
) -> None:
    status, message = health(model_deployment(status_for(phase, **fields)))
    assert status == "Progressing"
    assert expected_in_message in message


def test_progressing_condition_message_is_shown_while_deploying() -> None:
    progressing = condition("Progressing", "True", "Deploying", "Waiting for 1/1 replicas of a1b2c3d4e5")
    _, message = health(model_deployment(status_for("Deploying", progressing)))
    assert message == "Waiting for 1/1 replicas of a1b2c3d4e5"


def test_paused_canary_is_suspended() -> None:
    obj = model_deployment(
        status_for("Paused", canaryRevision="ffee001122", canaryWeight=50),
        annotations={"modeldeploy.io/pause": "true"},
    )
    status, message = health(obj)
    assert status == "Suspended"
    assert "ffee001122" in message
    assert "50%" in message


def test_rolled_back_revision_is_degraded_with_the_reason() -> None:
    rolled_back = condition(
        "Degraded", "True", "RolledBack", "Revision ffee001122 rolled back: p99 240ms > 200ms"
    )
    obj = model_deployment(status_for("Degraded", READY_TRUE, rolled_back, stableRevision="a1b2c3d4e5"))
    assert health(obj) == ("Degraded", "Revision ffee001122 rolled back: p99 240ms > 200ms")


def test_degraded_without_condition_message_falls_back_to_last_rollback() -> None:
    obj = model_deployment(
        status_for(
            "Degraded",
            stableRevision="a1b2c3d4e5",
            lastRollback={
                "revision": "ffee001122",
                "reason": "error rate 0.2 > 0.01",
                "time": "2026-01-01T00:00:00Z",
            },
        )
    )
    status, message = health(obj)
    assert status == "Degraded"
    assert "ffee001122" in message
    assert "error rate 0.2 > 0.01" in message


def test_failed_is_degraded() -> None:
    invalid = condition("Ready", "False", "InvalidSpec", "spec.rollout.steps[2]: must be between 1 and 100")
    assert health(model_deployment(status_for("Failed", invalid))) == (
        "Degraded",
        "spec.rollout.steps[2]: must be between 1 and 100",
    )


def test_old_degraded_condition_does_not_hide_a_new_canary() -> None:
    # A rollback left Degraded=True; the user fixed the spec and the new revision is in canary now.
    old = condition("Degraded", "True", "RolledBack", "Revision ffee001122 rolled back")
    obj = model_deployment(status_for("Canary", old, canaryRevision="0123456789", canaryWeight=10))
    assert health(obj)[0] == "Progressing"


def test_degraded_condition_in_ready_phase_is_degraded() -> None:
    degraded = condition("Degraded", "True", "OptimizationFailed", "Revision ffee001122 failed to optimize")
    obj = model_deployment(status_for("Ready", READY_TRUE, degraded, stableRevision="a1b2c3d4e5"))
    assert health(obj) == ("Degraded", "Revision ffee001122 failed to optimize")


def test_unknown_phase_is_unknown() -> None:
    # A phase from a newer operator than this script (not in the CRD's enum here, hence built by hand).
    status = {"observedGeneration": 3, "phase": "Frobnicating", "conditions": []}
    assert health(model_deployment(status))[0] == "Unknown"


@pytest.mark.parametrize("phase", [str(phase) for phase in Phase])
def test_every_operator_phase_has_a_known_health(phase: str) -> None:
    # Fails when the operator grows a phase the health check does not know yet.
    status, message = health(model_deployment(status_for(phase, READY_TRUE)))
    assert status in {"Healthy", "Progressing", "Degraded", "Suspended"}, (phase, status, message)


# --- actions --------------------------------------------------------------------------------------------


def discovered(obj: dict[str, Any]) -> dict[str, bool]:
    actions = run_lua(LUA_DIR / "actions" / "discovery.lua", obj)
    assert set(actions) == set(ACTIONS)
    return {name: bool(action["disabled"]) for name, action in actions.items()}


def enabled(obj: dict[str, Any]) -> set[str]:
    return {name for name, disabled in discovered(obj).items() if not disabled}


def test_canary_offers_promote_abort_pause() -> None:
    obj = model_deployment(status_for("Canary", canaryRevision="ffee001122", canaryWeight=10))
    assert enabled(obj) == {"promote", "abort", "pause"}


def test_paused_canary_offers_resume_promote_abort() -> None:
    obj = model_deployment(
        status_for("Paused", canaryRevision="ffee001122"), annotations={"modeldeploy.io/pause": "true"}
    )
    assert enabled(obj) == {"promote", "abort", "resume"}


@pytest.mark.parametrize("phase", ["Pending", "Optimizing", "Deploying", "Ready", "Degraded", "Failed"])
def test_no_canary_no_actions(phase: str) -> None:
    assert enabled(model_deployment(status_for(phase))) == set()


def test_no_status_no_actions() -> None:
    assert enabled(model_deployment(None)) == set()


@pytest.mark.parametrize("action", ["promote", "abort", "pause"])
def test_action_sets_its_annotation_and_keeps_the_rest(action: str) -> None:
    # Non-empty lists only: an empty Lua table is neither list nor map (Argo CD restores those).
    obj = model_deployment(status_for("Canary", READY_TRUE), annotations={"team": "vision"})
    result = run_lua(LUA_DIR / "actions" / action / "action.lua", copy.deepcopy(obj))
    assert result["metadata"]["annotations"] == {"team": "vision", f"modeldeploy.io/{action}": "true"}
    assert result["spec"] == obj["spec"]
    assert result["status"] == obj["status"]


@pytest.mark.parametrize("action", ["promote", "abort", "pause"])
def test_action_works_without_any_annotations(action: str) -> None:
    result = run_lua(LUA_DIR / "actions" / action / "action.lua", model_deployment(status_for("Canary")))
    assert result["metadata"]["annotations"] == {f"modeldeploy.io/{action}": "true"}


def test_resume_removes_the_pause_annotation_only() -> None:
    obj = model_deployment(
        status_for("Paused"), annotations={"modeldeploy.io/pause": "true", "team": "vision"}
    )
    result = run_lua(LUA_DIR / "actions" / "resume" / "action.lua", obj)
    assert result["metadata"]["annotations"] == {"team": "vision"}


def test_resume_when_pause_is_the_only_annotation_leaves_no_empty_table() -> None:
    # Emptied, the annotations table would come back as `[]`: not a map, so Argo CD's patch fails and
    # the canary stays paused. The action drops the emptied table instead (the patch removes the key).
    obj = model_deployment(status_for("Paused"), annotations={"modeldeploy.io/pause": "true"})
    result = run_lua(LUA_DIR / "actions" / "resume" / "action.lua", obj)
    assert "annotations" not in result["metadata"], result["metadata"]
    assert result["spec"] == obj["spec"]


def test_resume_without_annotations_changes_nothing() -> None:
    obj = model_deployment(status_for("Canary", READY_TRUE))
    assert run_lua(LUA_DIR / "actions" / "resume" / "action.lua", copy.deepcopy(obj)) == obj


# --- the argocd-cm patch users apply ----------------------------------------------------------------------


def argocd_cm_data() -> dict[str, str]:
    config_map = yaml.safe_load((ARGOCD_DIR / "argocd-cm.yaml").read_text())
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"]["name"] == "argocd-cm"
    data: dict[str, str] = config_map["data"]
    return data


def test_argocd_cm_carries_the_health_script_verbatim() -> None:
    data = argocd_cm_data()
    assert (
        data["resource.customizations.health.modeldeploy.io_ModelDeployment"]
        == (LUA_DIR / "health.lua").read_text()
    ), "argocd-cm.yaml is stale: run argocd/render-argocd-cm.sh"


def test_argocd_cm_carries_every_action_verbatim() -> None:
    actions = yaml.safe_load(
        argocd_cm_data()["resource.customizations.actions.modeldeploy.io_ModelDeployment"]
    )
    stale = "argocd-cm.yaml is stale: run argocd/render-argocd-cm.sh"
    assert actions["discovery.lua"] == (LUA_DIR / "actions" / "discovery.lua").read_text(), stale
    scripts = {item["name"]: item["action.lua"] for item in actions["definitions"]}
    assert scripts == {name: (LUA_DIR / "actions" / name / "action.lua").read_text() for name in ACTIONS}, (
        stale
    )


def test_render_script_reproduces_argocd_cm(tmp_path: Path) -> None:
    # The generator and the committed file agree, so "edit the Lua, run the script" is the whole workflow.
    copy_dir = tmp_path / "argocd"
    copy_dir.mkdir()
    (copy_dir / "render-argocd-cm.sh").write_bytes((ARGOCD_DIR / "render-argocd-cm.sh").read_bytes())
    (copy_dir / "resource_customizations").symlink_to(ARGOCD_DIR / "resource_customizations")
    subprocess.run(["bash", str(copy_dir / "render-argocd-cm.sh")], check=True, timeout=30)
    assert (copy_dir / "argocd-cm.yaml").read_text() == (ARGOCD_DIR / "argocd-cm.yaml").read_text()
