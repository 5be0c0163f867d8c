"""Rendering rules that mutation testing (benchmarks/mutation.py) showed unguarded: exact YAML spellings,
the preview's replica split, which revision each Service selects, where the user's pod settings land."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from modeldeploy.rendering import (
    Owner,
    RenderPlan,
    render_all,
    render_http_route,
    render_optimization_job,
    render_revision_deployment,
    yaml_value,
)
from modeldeploy.spec import ModelDeploymentSpec, parse_spec

OWNER = Owner(name="demo", namespace="ml", uid="uid-1")
REV, NEXT = "1a2b3c4d5e", "9f8e7d6c5b"
GATEWAY = {"trafficRouting": {"type": "gatewayAPI", "gatewayAPI": {"parentRef": {"name": "gw"}}}}


def spec_of(**sections: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "resnet", "uri": "s3://models/resnet.onnx"},
        "storage": {"uri": "pvc://store/repos"},
    }
    raw.update(sections)
    return parse_spec(raw)


# Exact spellings: printable ASCII as is (space included), everything else escaped by its code point.
SPELLINGS = [
    (None, "null"),
    (True, "true"),
    (False, "false"),
    (" ", '" "'),
    ("~", '"~"'),
    ('"', '"\\""'),
    ("\\", '"\\\\"'),
    ("X", '"X"'),
    ("\x1f", '"\\x1f"'),
    ("\x7f", '"\\x7f"'),
    ("\x85", '"\\x85"'),  # NEL: a YAML line break
    ("\xff", '"\\xff"'),
    ("\u2028", '"\\u2028"'),  # line separator
    ("\u0100", '"\\u0100"'),
    ("\ufffe", '"\\ufffe"'),
    ("\uffff", '"\\uffff"'),
    ("\U00010000", '"\\U00010000"'),
]


@pytest.mark.parametrize(("value", "written"), SPELLINGS, ids=[repr(v) for v, _ in SPELLINGS])
def test_yaml_value_spells_each_character_exactly(value: Any, written: str) -> None:
    assert yaml_value(value) == written
    assert yaml.safe_load(written) == value


def test_yaml_value_errors_name_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match=r"cannot render the number inf"):
        yaml_value(float("inf"))
    with pytest.raises(TypeError, match=r"cannot render a complex into YAML"):
        yaml_value(1j)


def replicas_by_track(objects: list[dict[str, Any]]) -> dict[str, int | None]:
    return {
        o["metadata"]["labels"]["modeldeploy.io/track"]: o["spec"].get("replicas")
        for o in objects
        if o["kind"] == "Deployment"
    }


@pytest.mark.parametrize(
    ("sections", "weight", "expected"),
    [
        ({"serving": {"replicas": 4}}, 25, {"stable": 4, "canary": 1}),
        ({"serving": {"replicas": 4}}, 50, {"stable": 4, "canary": 2}),
        ({"serving": {"replicas": 10}}, 1, {"stable": 10, "canary": 1}),
        ({"serving": {"replicas": 10}}, 100, {"stable": 10, "canary": 10}),
        ({"serving": {"replicas": 3}}, 50, {"stable": 3, "canary": 2}),  # 1.5 pods: rounded up
        (
            {"serving": {"replicas": 9}, "autoscaling": {"engine": "hpa", "target": 30, "minReplicas": 3}},
            50,
            {"stable": None, "canary": 2},  # the autoscaler owns the stable size; minReplicas 3 x 50 %
        ),
    ],
)
def test_preview_splits_replicas_by_the_canary_weight(
    sections: dict[str, Any], weight: int, expected: dict[str, int | None]
) -> None:
    plan = RenderPlan(stable_revision=REV, canary_revision=NEXT, canary_weight=weight)
    assert replicas_by_track(render_all(OWNER, spec_of(**sections), plan)) == expected


def test_preview_without_a_canary_keeps_the_route_on_stable_and_each_service_on_its_revision() -> None:
    spec = spec_of(rollout=GATEWAY)
    quiet = render_all(OWNER, spec, RenderPlan(stable_revision=REV, canary_weight=30))
    route = next(o for o in quiet if o["kind"] == "HTTPRoute")
    assert [ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    during = render_all(OWNER, spec, RenderPlan(stable_revision=REV, canary_revision=NEXT, canary_weight=30))
    selectors = {o["metadata"]["name"]: o["spec"]["selector"] for o in during if o["kind"] == "Service"}
    assert selectors["demo-stable"]["modeldeploy.io/revision"] == REV
    assert selectors["demo-canary"]["modeldeploy.io/revision"] == NEXT
    assert "modeldeploy.io/revision" not in selectors["demo"]


def test_no_route_with_replica_routing() -> None:
    assert render_http_route(OWNER, spec_of(), 50) is None


def test_tolerations_keep_their_api_field_names() -> None:
    toleration = {"key": "dedicated", "value": "ml", "effect": "NoExecute", "tolerationSeconds": 60}
    spec = spec_of(
        serving={"tolerations": [toleration]},
        optimization={"tolerations": [toleration], "nodeSelector": {"pool": "gpu"}},
    )
    for manifest in (
        render_revision_deployment(OWNER, spec, REV, "stable", 1),
        render_optimization_job(OWNER, spec, REV),
    ):
        assert manifest["spec"]["template"]["spec"]["tolerations"] == [{**toleration, "operator": "Equal"}]
    job_pod = render_optimization_job(OWNER, spec, REV)["spec"]["template"]["spec"]
    assert job_pod["nodeSelector"] == {"pool": "gpu"}


def test_the_calibration_claim_is_mounted_read_only_for_the_job() -> None:
    spec = spec_of(
        optimization={"quantization": "int8-static", "calibration": {"uri": "pvc://samples/imagenet"}}
    )
    pod = render_optimization_job(OWNER, spec, REV)["spec"]["template"]["spec"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]: v for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims["samples"]["persistentVolumeClaim"]["readOnly"] is True
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": claims["samples"]["name"], "mountPath": "/mnt/pvc/samples", "readOnly": True} in mounts


def test_a_storage_prefix_keeps_its_own_letters() -> None:
    spec = spec_of(storage={"uri": "pvc://store/XRAY/"})
    pod = render_revision_deployment(OWNER, spec, REV, "stable", 1)["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/models")
    assert mount["subPath"] == f"XRAY/ml/demo/{REV}"


def test_warmup_allows_twenty_minutes_to_start() -> None:
    spec = spec_of(serving={"warmup": True})
    probe = render_revision_deployment(OWNER, spec, REV, "stable", 1)["spec"]["template"]["spec"]
    assert probe["containers"][0]["startupProbe"]["failureThreshold"] == 120
