"""Every child manifest: what a user (and the cluster) sees in it, validated against Kubernetes' schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import cel_rules
import pytest
import yaml

from modeldeploy.rendering import (
    Owner,
    RenderPlan,
    artifact_uri,
    render_all,
    render_autoscaler,
    render_http_route,
    render_optimization_job,
    render_pod_monitor,
    render_revision_deployment,
    render_services,
    yaml_value,
)
from modeldeploy.spec import ModelDeploymentSpec, parse_spec

OWNER = Owner(name="demo", namespace="ml", uid="0b9c6a2e-1111-2222-3333-444455556666")
PREVIEW = Owner(name="demo", namespace="ml")
REV, NEXT = "1a2b3c4d5e", "9f8e7d6c5b"


def spec_of(**sections: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "resnet", "uri": "s3://models/resnet.onnx"},
        "storage": {"uri": "pvc://store/repos"},
    }
    raw.update(sections)
    return parse_spec(raw)


def container(manifest: Mapping[str, Any]) -> dict[str, Any]:
    (only,) = manifest["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def assert_restricted(manifest: Mapping[str, Any]) -> None:
    """Pod Security Standards "restricted": what the admission controller checks."""
    pod = manifest["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(key.startswith("host") for key in pod)
    assert all("hostPath" not in volume for volume in pod.get("volumes", []))
    for each in pod["containers"]:
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("privileged", False) is False
        assert "runAsUser" not in context or context["runAsUser"] != 0


# --- the Triton Deployment ---


def test_deployment_serves_one_revision_with_track_on_the_object_only() -> None:
    deployment = render_revision_deployment(OWNER, spec_of(), REV, "canary", 2)
    cel_rules.validate_builtin(deployment)
    assert deployment["metadata"]["name"] == f"demo-{REV}"
    assert deployment["metadata"]["namespace"] == "ml"
    assert deployment["metadata"]["labels"] == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/managed-by": "modeldeploy",
        "modeldeploy.io/revision": REV,
        "modeldeploy.io/track": "canary",
    }
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "modeldeploy.io/track" not in pod_labels
    assert pod_labels["modeldeploy.io/revision"] == REV
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert deployment["spec"]["replicas"] == 2


def test_promotion_changes_only_the_deployment_labels_not_the_pods() -> None:
    canary = render_revision_deployment(OWNER, spec_of(), REV, "canary", 1)
    stable = render_revision_deployment(OWNER, spec_of(), REV, "stable", 1)
    assert canary["spec"]["template"] == stable["spec"]["template"]
    assert canary["metadata"]["labels"] != stable["metadata"]["labels"]


def test_replicas_left_out_when_an_autoscaler_owns_them() -> None:
    deployment = render_revision_deployment(OWNER, spec_of(), REV, "stable", None)
    cel_rules.validate_builtin(deployment)
    assert "replicas" not in deployment["spec"]


def test_owner_reference_makes_the_model_deployment_the_controller() -> None:
    deployment = render_revision_deployment(OWNER, spec_of(), REV, "stable", 1)
    assert deployment["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "name": "demo",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert (
        "ownerReferences" not in render_revision_deployment(PREVIEW, spec_of(), REV, "stable", 1)["metadata"]
    )


def test_triton_has_health_probes_metrics_port_and_p99_summaries() -> None:
    deployment = render_revision_deployment(OWNER, spec_of(), REV, "stable", 1)
    triton = container(deployment)
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert triton["command"] == ["tritonserver"]
    assert "--metrics-config=summary_latencies=true" in triton["args"]
    assert "--strict-readiness=true" in triton["args"]
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["startupProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert deployment["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert_restricted(deployment)


def test_warmup_gives_triton_longer_to_become_ready() -> None:
    cold = container(render_revision_deployment(OWNER, spec_of(), REV, "stable", 1))
    warm = container(render_revision_deployment(OWNER, spec_of(serving={"warmup": True}), REV, "stable", 1))
    assert warm["startupProbe"]["failureThreshold"] > cold["startupProbe"]["failureThreshold"]


def test_pvc_repository_is_mounted_read_only_at_the_revision_path() -> None:
    deployment = render_revision_deployment(OWNER, spec_of(), REV, "stable", 1)
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"] == {"claimName": "store", "readOnly": True}
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {
        "name": volume["name"],
        "mountPath": "/models",
        "subPath": f"repos/ml/demo/{REV}",
        "readOnly": True,
    }
    assert "--model-repository=/models" in container(deployment)["args"]


@pytest.mark.parametrize(
    ("storage", "repository"),
    [
        ({"uri": "s3://bucket/a/b"}, f"s3://bucket/a/b/ml/demo/{REV}"),
        ({"uri": "s3://bucket"}, f"s3://bucket/ml/demo/{REV}"),
        (
            {"uri": "s3://bucket/p", "endpoint": "http://minio.store:9000"},
            f"s3://minio.store:9000/bucket/p/ml/demo/{REV}",
        ),
        (
            {"uri": "s3://bucket/p", "endpoint": "https://minio.store"},
            f"s3://https://minio.store/bucket/p/ml/demo/{REV}",
        ),
    ],
)
def test_s3_repository_is_read_by_triton_directly(storage: dict[str, str], repository: str) -> None:
    deployment = render_revision_deployment(
        OWNER, spec_of(storage={**storage, "credentialsSecret": "s3-creds"}), REV, "stable", 1
    )
    cel_rules.validate_builtin(deployment)
    triton = container(deployment)
    assert f"--model-repository={repository}" in triton["args"]
    assert triton["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert all("persistentVolumeClaim" not in v for v in deployment["spec"]["template"]["spec"]["volumes"])


def test_user_settings_reach_the_triton_pod() -> None:
    spec = spec_of(
        serving={
            "image": "registry.local/triton:custom",
            "extraArgs": ["--log-verbose=1"],
            "instanceGroup": {"kind": "cpu"},
            "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": 2}},
            "nodeSelector": {"pool": "inference"},
            "tolerations": [],
        }
    )
    deployment = render_revision_deployment(OWNER, spec, REV, "stable", 1)
    cel_rules.validate_builtin(deployment)
    triton = container(deployment)
    assert triton["image"] == "registry.local/triton:custom"
    assert triton["args"][-1] == "--log-verbose=1"
    assert triton["resources"] == {"requests": {"cpu": "500m"}, "limits": {"cpu": 2}}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "inference"}
    assert "tolerations" not in pod


# --- the optimization Job ---


def test_job_runs_the_optimizer_with_the_documented_contract() -> None:
    spec = spec_of(optimization={"quantization": "int8-dynamic"})
    job = render_optimization_job(OWNER, spec, REV)
    cel_rules.validate_builtin(job)
    assert job["metadata"]["name"] == f"demo-optimize-{REV}"
    optimize = container(job)
    assert optimize["image"] == "ghcr.io/modeldeploy/optimizer:0.1.0"
    assert optimize["command"] == ["modeldeploy", "optimize"]
    assert optimize["args"] == [
        "--model", "s3://models/resnet.onnx",
        "--output", f"pvc://store/repos/ml/demo/{REV}",
        "--name", "resnet",
        "--spec", "env:MODELDEPLOY_SPEC",
        "--termination-message", "/dev/termination-log",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in optimize["env"]}
    # serving.replicas is applied in place, so the (immutable) Job of a revision does not carry it.
    expected = spec.section_json("optimization", "serving")
    del expected["serving"]["replicas"]
    assert json.loads(env["MODELDEPLOY_SPEC"]) == expected
    assert json.loads(env["MODELDEPLOY_SPEC"])["optimization"]["quantization"] == "int8-dynamic"
    assert optimize["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 0
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] != "triton"
    assert_restricted(job)


def test_job_lands_on_a_gpu_node_by_default() -> None:
    job = render_optimization_job(OWNER, spec_of(), REV)
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in job["spec"]["template"][
        "spec"
    ]["tolerations"]


def test_job_mounts_each_claim_once_and_only_the_output_writable() -> None:
    spec = spec_of(
        model={"name": "m", "uri": "pvc://uploads/m.onnx"},
        optimization={"quantization": "int8-static", "calibration": {"uri": "pvc://store/calibration"}},
    )
    job = render_optimization_job(OWNER, spec, REV)
    cel_rules.validate_builtin(job)
    pod = job["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert sorted(c["claimName"] for c in claims.values()) == ["store", "uploads"]
    mounts = {m["mountPath"]: m for m in container(job)["volumeMounts"] if m["name"] in claims}
    assert mounts["/mnt/pvc/store"]["readOnly"] is False
    assert mounts["/mnt/pvc/uploads"]["readOnly"] is True
    env = {e["name"]: e["value"] for e in container(job)["env"]}
    assert env["MODELDEPLOY_PVC_ROOT"] == "/mnt/pvc"


def test_job_gets_both_secrets_and_the_s3_endpoint() -> None:
    spec = spec_of(
        model={"name": "m", "uri": "s3://a/m.onnx", "credentialsSecret": "model-creds"},
        storage={"uri": "s3://bkt/p", "credentialsSecret": "store-creds", "endpoint": "http://minio:9000"},
    )
    optimize = container(render_optimization_job(OWNER, spec, REV))
    assert optimize["envFrom"] == [
        {"secretRef": {"name": "model-creds"}},
        {"secretRef": {"name": "store-creds"}},
    ]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"} in optimize["env"]
    assert optimize["args"][3] == artifact_uri(spec, OWNER, REV) == f"s3://bkt/p/ml/demo/{REV}"


# --- Services ---


def test_replica_routing_has_one_service_over_every_revision() -> None:
    (service,) = render_services(OWNER, spec_of(), REV, NEXT)
    cel_rules.validate_builtin(service)
    assert service["metadata"]["name"] == "demo"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/managed-by": "modeldeploy",
    }
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8000, "grpc": 8001}


GATEWAY = {"trafficRouting": {"type": "gatewayAPI", "gatewayAPI": {"parentRef": {"name": "gw"}}}}


def test_gateway_routing_adds_stable_and_canary_services_by_revision() -> None:
    services = render_services(OWNER, spec_of(rollout=GATEWAY), REV, NEXT)
    for service in services:
        cel_rules.validate_builtin(service)
    by_name = {s["metadata"]["name"]: s["spec"]["selector"].get("modeldeploy.io/revision") for s in services}
    assert by_name == {"demo": None, "demo-stable": REV, "demo-canary": NEXT}
    # Without a canary, the canary Service points at stable so the route never has an empty backend.
    without = render_services(OWNER, spec_of(rollout=GATEWAY), REV, None)
    assert {s["metadata"]["name"]: s["spec"]["selector"].get("modeldeploy.io/revision") for s in without}[
        "demo-canary"
    ] == REV


# --- autoscaling ---


def test_no_autoscaler_when_engine_is_none() -> None:
    assert render_autoscaler(OWNER, spec_of(), REV) is None


@pytest.mark.parametrize(
    ("metric", "target", "name", "value"),
    [
        ("queueTime", 20, "modeldeploy_queue_time_ms", "20"),
        ("p99Latency", 150, "modeldeploy_p99_latency_ms", "150"),
        ("inferenceRate", 40.5, "modeldeploy_inference_rate", "40500m"),
        ("gpuUtilization", 70, "modeldeploy_gpu_utilization_percent", "70"),
    ],
)
def test_hpa_scales_the_stable_deployment_on_the_chosen_metric(
    metric: str, target: float, name: str, value: str
) -> None:
    autoscaling = {"engine": "hpa", "metric": metric, "target": target, "minReplicas": 2, "maxReplicas": 7}
    hpa = render_autoscaler(OWNER, spec_of(autoscaling=autoscaling), REV)
    assert hpa is not None
    cel_rules.validate_builtin(hpa)
    assert (hpa["apiVersion"], hpa["kind"], hpa["metadata"]["name"]) == (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "demo",
    )
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"demo-{REV}",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 7)
    (pods_metric,) = hpa["spec"]["metrics"]
    assert pods_metric["pods"]["metric"]["name"] == name
    assert pods_metric["pods"]["target"] == {"type": "AverageValue", "averageValue": value}


@pytest.mark.parametrize(
    ("metric", "series", "metric_type"),
    [
        ("queueTime", "nv_inference_queue_duration_us", "Value"),
        ("p99Latency", "nv_inference_request_summary_us", "Value"),
        ("inferenceRate", "nv_inference_request_success", "AverageValue"),
        ("gpuUtilization", "nv_gpu_utilization", "Value"),
    ],
)
def test_keda_scaled_object_queries_the_stable_revisions_series(
    metric: str, series: str, metric_type: str
) -> None:
    autoscaling = {"engine": "keda", "metric": metric, "target": 25, "maxReplicas": 9}
    scaled = render_autoscaler(OWNER, spec_of(autoscaling=autoscaling), REV)
    assert scaled is not None
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"demo-{REV}"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 9)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == metric_type
    assert trigger["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert trigger["metadata"]["threshold"] == "25"
    query = trigger["metadata"]["query"]
    assert series in query
    for label in ('namespace="ml"', 'modeldeploy_name="demo"', f'modeldeploy_revision="{REV}"'):
        assert label in query
    # Every label the query selects on is one the PodMonitor adds (or Triton itself exports).
    monitor = render_pod_monitor(OWNER, spec_of())
    assert monitor is not None
    added = {r["targetLabel"] for r in monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert set(re.findall(r"(\w+)=\"", query)) <= added | {"model", "quantile"}


# --- PodMonitor and HTTPRoute ---


def test_pod_monitor_scrapes_every_triton_pod_with_revision_labels() -> None:
    monitor = render_pod_monitor(OWNER, spec_of())
    assert monitor is not None
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/managed-by": "modeldeploy",
    }
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel == {
        "namespace": ["__meta_kubernetes_namespace"],
        "pod": ["__meta_kubernetes_pod_name"],
        "modeldeploy_name": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
        "modeldeploy_revision": ["__meta_kubernetes_pod_label_modeldeploy_io_revision"],
    }
    assert render_pod_monitor(OWNER, spec_of(monitoring={"podMonitor": False})) is None


@pytest.mark.parametrize("weight", [0, 10, 55, 100])
def test_http_route_splits_traffic_by_weight(weight: int) -> None:
    routing = {
        "trafficRouting": {
            "type": "gatewayAPI",
            "gatewayAPI": {
                "parentRef": {"name": "gw", "namespace": "edge", "sectionName": "https"},
                "hostnames": ["models.example.com"],
            },
        }
    }
    route = render_http_route(OWNER, spec_of(rollout=routing), weight)
    assert route is not None
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "gw",
            "namespace": "edge",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["models.example.com"]
    (rule,) = route["spec"]["rules"]
    weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
    assert weights == {"demo-stable": 100 - weight, "demo-canary": weight}
    assert all(ref["port"] == 8000 for ref in rule["backendRefs"])


def test_http_route_only_with_gateway_routing_and_valid_weights() -> None:
    assert render_http_route(OWNER, spec_of(), 10) is None
    with pytest.raises(ValueError, match="canary_weight"):
        render_http_route(OWNER, spec_of(rollout=GATEWAY), 101)


# --- everything together ---


def test_render_all_during_a_canary() -> None:
    spec = spec_of(rollout=GATEWAY, autoscaling={"engine": "hpa", "target": 30})
    objects = render_all(
        OWNER,
        spec,
        RenderPlan(stable_revision=REV, canary_revision=NEXT, canary_weight=25, optimize_revision=NEXT),
    )
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds == [
        ("Job", f"demo-optimize-{NEXT}"),
        ("Deployment", f"demo-{REV}"),
        ("Deployment", f"demo-{NEXT}"),
        ("Service", "demo"),
        ("Service", "demo-stable"),
        ("Service", "demo-canary"),
        ("HorizontalPodAutoscaler", "demo"),
        ("PodMonitor", "demo"),
        ("HTTPRoute", "demo"),
    ]
    stable, canary = objects[1], objects[2]
    assert "replicas" not in stable["spec"]
    assert canary["spec"]["replicas"] >= 1
    assert canary["metadata"]["labels"]["modeldeploy.io/track"] == "canary"
    route_weights = [ref["weight"] for ref in objects[-1]["spec"]["rules"][0]["backendRefs"]]
    assert route_weights == [75, 25]
    for manifest in objects:
        if manifest["kind"] in cel_rules.BUILTIN_KINDS:
            cel_rules.validate_builtin(manifest)


# --- writing values into YAML ---

TRICKY = [
    "",
    "plain",
    "a\nb",
    "x\n---\nkind: Secret",
    "{{ 7 * 7 }}",
    "{% raw %}",
    "&anchor *alias",
    "!!python/object:os.system",
    "'single' \"double\" \\back\\slash",
    "tab\there",
    "null",
    "true",
    "0x10",
    "1e3",
    "~",
    "ü ✓ 漢字 😀",
    "\u2028line separator\u0085NEL\u2029",
    "\x00\x07\x1b[31m",
    "#comment",
    "- item",
    "key: value",
    "x" * 10_000,
]


@pytest.mark.parametrize("text", TRICKY)
def test_yaml_value_writes_exactly_the_string_on_one_printable_line(text: str) -> None:
    written = yaml_value(text)
    assert yaml.safe_load(written) == text
    assert re.fullmatch(r"[ -~]*", written)
    assert yaml_value({"k": [text, 1, 2.5, True, None]}) is not None
    assert yaml.safe_load(yaml_value({text: [text, 1, 2.5, True, None]})) == {
        text: [text, 1, 2.5, True, None]
    }


def test_yaml_value_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        yaml_value(float("nan"))
    with pytest.raises(TypeError):
        yaml_value(object())
