"""The CRD: its shape, and one table proving that it (schema + CEL) and the spec model agree.

Every case goes through both `cel_rules.admit` (defaults, structural schema with jsonschema, CEL rules with
cel-python: what the API server does) and `modeldeploy.spec.parse_spec` (what the operator does); both must
accept, or both must refuse naming the same field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import cel_rules
import pytest

from modeldeploy import __version__
from modeldeploy.defaults import SpecDefaults, apply_defaults
from modeldeploy.rollout import RolloutStatus
from modeldeploy.spec import SpecError, check_name, parse_spec


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    # A change of None deletes the key, so a case can leave out a required field.
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def document(spec_changes: Mapping[str, Any] | None = None, name: str = "demo") -> dict[str, Any]:
    spec = {
        "model": {"name": "resnet", "uri": "s3://models/resnet.onnx"},
        "storage": {"uri": "pvc://store/prefix"},
    }
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": _merge(spec, spec_changes or {}),
    }


def operator_messages(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = []
    try:
        check_name(doc["metadata"]["name"])
    except SpecError as error:
        found += [(problem.path, problem.message) for problem in error.problems]
    try:
        parse_spec(doc["spec"])
    except SpecError as error:
        found += [(problem.path, problem.message) for problem in error.problems]
    return found


def operator_problems(doc: Mapping[str, Any]) -> list[str]:
    return [path for path, _ in operator_messages(doc)]


def api_server_problems(doc: Mapping[str, Any]) -> list[str]:
    return [path for path, _ in cel_rules.admit(doc)[1]]


GPU_LIMITS = {"limits": {"nvidia.com/gpu": "1"}}
GATEWAY = {"parentRef": {"name": "gw"}}

# (case id, spec changes, the field refused or None when accepted)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("minimal", {}, None),
    (
        "gpu accelerator without a GPU limit",
        {"accelerator": "gpu", "serving": {"resources": {"limits": {"memory": "8Gi"}}}},
        "spec.serving.resources.limits",
    ),
    (
        "cpu accelerator needs no GPU limit",
        {"accelerator": "cpu", "serving": {"resources": {"limits": {"memory": "8Gi"}}}},
        None,
    ),
    ("every model format", {"model": {"format": "savedmodel"}}, None),
    ("pvc model", {"model": {"uri": "pvc://models/a/b.onnx"}}, None),
    ("model credentials", {"model": {"credentialsSecret": "s3-creds"}}, None),
    ("missing model", {"model": None}, "spec.model"),
    ("missing model uri", {"model": {"name": "m", "uri": None}}, "spec.model.uri"),
    ("unknown spec field", {"replicas": 3}, "spec.replicas"),
    ("unknown model field", {"model": {"version": 2}}, "spec.model.version"),
    ("snake_case key", {"autoscaling": {"max_replicas": 9}}, "spec.autoscaling.max_replicas"),
    ("model name with space", {"model": {"name": "my model"}}, "spec.model.name"),
    ("model name too long", {"model": {"name": "m" * 64}}, "spec.model.name"),
    ("model name with newline", {"model": {"name": "m\n"}}, "spec.model.name"),
    ("model uri scheme", {"model": {"uri": "ftp://host/m.onnx"}}, "spec.model.uri"),
    ("model uri space", {"model": {"uri": "s3://b/my model.onnx"}}, "spec.model.uri"),
    ("model uri trailing newline", {"model": {"uri": "s3://b/m.onnx\n"}}, "spec.model.uri"),
    ("pvc model without path", {"model": {"uri": "pvc://claim"}}, "spec.model.uri"),
    ("model format", {"model": {"format": "keras"}}, "spec.model.format"),
    ("model secret name", {"model": {"credentialsSecret": "Bad_Secret"}}, "spec.model.credentialsSecret"),
    ("quantization", {"optimization": {"quantization": "int4"}}, "spec.optimization.quantization"),
    (
        "sparsity high",
        {"optimization": {"pruning": {"sparsity": 0.99}}},
        "spec.optimization.pruning.sparsity",
    ),
    (
        "sparsity string",
        {"optimization": {"pruning": {"sparsity": "0.5"}}},
        "spec.optimization.pruning.sparsity",
    ),
    ("pruning", {"optimization": {"pruning": {"sparsity": 0.9, "method": "magnitude"}}}, None),
    ("accuracy drop", {"optimization": {"maxAccuracyDrop": -0.1}}, "spec.optimization.maxAccuracyDrop"),
    ("accuracy drop of 1", {"optimization": {"maxAccuracyDrop": 1}}, "spec.optimization.maxAccuracyDrop"),
    (
        "pruning method the optimizer lacks",
        {"optimization": {"pruning": {"method": "structured"}}},
        "spec.optimization.pruning.method",
    ),
    ("compile", {"optimization": {"compile": {"target": "onnxruntime", "precision": "fp32"}}}, None),
    ("compile target", {"optimization": {"compile": {"target": "xla"}}}, "spec.optimization.compile.target"),
    (
        "int8-static without calibration",
        {"optimization": {"quantization": "int8-static"}},
        "spec.optimization.calibration",
    ),
    (
        "int8-static with calibration",
        {"optimization": {"quantization": "int8-static", "calibration": {"uri": "pvc://data/cal"}}},
        None,
    ),
    (
        "calibration samples",
        {"optimization": {"calibration": {"uri": "s3://b/c", "samples": 0}}},
        "spec.optimization.calibration.samples",
    ),
    ("optimizer image", {"optimization": {"image": "registry:5000/opt@sha256:abc"}}, None),
    ("optimizer image injection", {"optimization": {"image": "img\nkind: Pod"}}, "spec.optimization.image"),
    (
        "request over limit",
        {
            "serving": {
                "resources": {"requests": {"memory": "9Gi"}, "limits": {"memory": "8Gi", "nvidia.com/gpu": 1}}
            }
        },
        "spec.serving.resources.requests",
    ),
    (
        "request equals limit",
        {"serving": {"resources": {"requests": {"cpu": "1000m"}, "limits": {"cpu": 1, "nvidia.com/gpu": 1}}}},
        None,
    ),
    (
        "bad quantity",
        {"serving": {"resources": {"limits": {"memory": "lots", "nvidia.com/gpu": 1}}}},
        "spec.serving.resources.limits[memory]",
    ),
    (
        "negative quantity",
        {"optimization": {"resources": {"requests": {"cpu": "-1"}}}},
        "spec.optimization.resources.requests[cpu]",
    ),
    (
        "bool quantity",
        {"optimization": {"resources": {"requests": {"cpu": True}}}},
        "spec.optimization.resources.requests[cpu]",
    ),
    (
        "too many resources",
        {"optimization": {"resources": {"requests": {f"r{i}": 1 for i in range(17)}}}},
        "spec.optimization.resources.requests",
    ),
    ("node selector", {"serving": {"nodeSelector": {"nvidia.com/gpu.product": "H100-SXM"}}}, None),
    (
        "node selector value",
        {"serving": {"nodeSelector": {"pool": "gpu pool"}}},
        "spec.serving.nodeSelector[pool]",
    ),
    (
        "toleration",
        {
            "serving": {
                "tolerations": [
                    {"key": "dedicated", "value": "ml", "effect": "NoExecute", "tolerationSeconds": 60}
                ]
            }
        },
        None,
    ),
    (
        "toleration Exists with value",
        {"serving": {"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]}},
        "spec.serving.tolerations[0].value",
    ),
    (
        "toleration effect",
        {"optimization": {"tolerations": [{"key": "a", "effect": "Sometimes"}]}},
        "spec.optimization.tolerations[0].effect",
    ),
    ("no tolerations", {"optimization": {"tolerations": []}}, None),
    ("replicas negative", {"serving": {"replicas": -1}}, "spec.serving.replicas"),
    ("replicas string", {"serving": {"replicas": "2"}}, "spec.serving.replicas"),
    ("replicas bool", {"serving": {"replicas": True}}, "spec.serving.replicas"),
    (
        "dynamic batching",
        {"serving": {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [4, 8]}}},
        None,
    ),
    ("dynamic batching defaults", {"serving": {"dynamicBatching": {}}}, None),
    (
        "batching without batch",
        {"serving": {"maxBatchSize": 0, "dynamicBatching": {}}},
        "spec.serving.maxBatchSize",
    ),
    (
        "preferred over max",
        {"serving": {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [16]}}},
        "spec.serving.dynamicBatching.preferredBatchSizes",
    ),
    (
        "gpu without gpu limit",
        {"serving": {"instanceGroup": {"kind": "gpu"}, "resources": {"limits": {"memory": "8Gi"}}}},
        "spec.serving.resources.limits",
    ),
    (
        "cpu accelerator defaults",
        {"accelerator": "cpu", "serving": {"instanceGroup": {"count": 2}}},
        None,
    ),
    ("unknown accelerator", {"accelerator": "tpu"}, "spec.accelerator"),
    (
        "tensorrt on cpu accelerator",
        {"accelerator": "cpu", "optimization": {"compile": {"target": "tensorrt"}}},
        "spec.optimization.compile.target",
    ),
    (
        "model uri with password",
        {"model": {"name": "m", "uri": "https://user:secret@models.example/m.onnx"}},
        "spec.model.uri",
    ),
    (
        "model uri with token user",
        {"model": {"name": "m", "uri": "s3://AKIA0000@bucket/m.onnx"}},
        "spec.model.uri",
    ),
    ("model uri with @ in its path", {"model": {"name": "m", "uri": "https://h/a@b.onnx"}}, None),
    (
        "calibration uri with password",
        {
            "optimization": {
                "quantization": "int8-static",
                "calibration": {"uri": "https://u:p@data.example/c"},
            }
        },
        "spec.optimization.calibration.uri",
    ),
    (
        "cpu without gpu limit",
        {"serving": {"instanceGroup": {"kind": "cpu"}, "resources": {"limits": {"cpu": 2}}}},
        None,
    ),
    ("instance count", {"serving": {"instanceGroup": {"count": 17}}}, "spec.serving.instanceGroup.count"),
    (
        "extra args",
        {
            "serving": {
                "extraArgs": ["--log-verbose=1", "--model-control-mode=none", "--exit-timeout-secs=30"]
            }
        },
        None,
    ),
    ("extra arg sets a port", {"serving": {"extraArgs": ["--http-port=9000"]}}, "spec.serving.extraArgs"),
    (
        "extra arg sets the repository",
        {"serving": {"extraArgs": ["--model-repository"]}},
        "spec.serving.extraArgs",
    ),
    ("extra arg short flag", {"serving": {"extraArgs": ["-v"]}}, "spec.serving.extraArgs[0]"),
    (
        "extra arg newline",
        {"serving": {"extraArgs": ["--log-verbose=1\n--http-port=1"]}},
        "spec.serving.extraArgs[0]",
    ),
    ("warmup string", {"serving": {"warmup": "yes"}}, "spec.serving.warmup"),
    ("tensorrt on gpu", {"optimization": {"compile": {"target": "tensorrt"}}}, None),
    (
        "tensorrt on cpu",
        {"optimization": {"compile": {"target": "tensorrt"}}, "serving": {"instanceGroup": {"kind": "cpu"}}},
        "spec.serving.instanceGroup.kind",
    ),
    ("missing storage", {"storage": None}, "spec.storage"),
    (
        "s3 storage",
        {
            "storage": {
                "uri": "s3://bucket/a/b/",
                "credentialsSecret": "creds",
                "endpoint": "https://minio:9000",
            }
        },
        None,
    ),
    ("pvc storage without prefix", {"storage": {"uri": "pvc://store"}}, None),
    ("gcs storage", {"storage": {"uri": "gs://bucket/a"}}, "spec.storage.uri"),
    ("storage dot-dot", {"storage": {"uri": "pvc://store/../etc"}}, "spec.storage.uri"),
    ("storage claim upper case", {"storage": {"uri": "pvc://Store/a"}}, "spec.storage.uri"),
    (
        "pvc storage with secret",
        {"storage": {"uri": "pvc://store", "credentialsSecret": "creds"}},
        "spec.storage",
    ),
    (
        "pvc storage with endpoint",
        {"storage": {"uri": "pvc://store", "endpoint": "http://minio:9000"}},
        "spec.storage",
    ),
    (
        "storage endpoint with path",
        {"storage": {"uri": "s3://bucket", "endpoint": "http://minio:9000/x"}},
        "spec.storage.endpoint",
    ),
    (
        "storage endpoint scheme",
        {"storage": {"uri": "s3://bucket", "endpoint": "minio:9000"}},
        "spec.storage.endpoint",
    ),
    ("hpa", {"autoscaling": {"engine": "hpa", "target": 20, "minReplicas": 2, "maxReplicas": 2}}, None),
    ("min over max", {"autoscaling": {"minReplicas": 5, "maxReplicas": 4}}, "spec.autoscaling.minReplicas"),
    ("engine without target", {"autoscaling": {"engine": "keda"}}, "spec.autoscaling.target"),
    (
        "gpu utilization 100",
        {"autoscaling": {"engine": "hpa", "metric": "gpuUtilization", "target": 100}},
        None,
    ),
    (
        "gpu utilization over 100",
        {"autoscaling": {"engine": "hpa", "metric": "gpuUtilization", "target": 150}},
        "spec.autoscaling.target",
    ),
    ("zero target", {"autoscaling": {"engine": "hpa", "target": 0}}, "spec.autoscaling.target"),
    ("engine", {"autoscaling": {"engine": "knative"}}, "spec.autoscaling.engine"),
    ("metric", {"autoscaling": {"metric": "cpu"}}, "spec.autoscaling.metric"),
    ("zero min replicas", {"autoscaling": {"minReplicas": 0}}, "spec.autoscaling.minReplicas"),
    ("single step", {"rollout": {"steps": [100]}}, None),
    ("immediate", {"rollout": {"strategy": "immediate"}}, None),
    ("strategy", {"rollout": {"strategy": "bluegreen"}}, "spec.rollout.strategy"),
    ("no steps", {"rollout": {"steps": []}}, "spec.rollout.steps"),
    ("repeated step", {"rollout": {"steps": [10, 10, 100]}}, "spec.rollout.steps"),
    ("decreasing steps", {"rollout": {"steps": [50, 25]}}, "spec.rollout.steps"),
    ("step zero", {"rollout": {"steps": [0, 100]}}, "spec.rollout.steps[0]"),
    ("step over 100", {"rollout": {"steps": [50, 101]}}, "spec.rollout.steps[1]"),
    ("too many steps", {"rollout": {"steps": list(range(1, 22))}}, "spec.rollout.steps"),
    ("interval words", {"rollout": {"interval": "1 minute"}}, "spec.rollout.interval"),
    ("interval too short", {"rollout": {"interval": "5s"}}, "spec.rollout.interval"),
    ("interval 10s", {"rollout": {"interval": "10s", "progressDeadline": "11s"}}, None),
    ("compound durations", {"rollout": {"interval": "1m30s", "progressDeadline": "1.5h"}}, None),
    (
        "deadline not after interval",
        {"rollout": {"interval": "2m", "progressDeadline": "120s"}},
        "spec.rollout.progressDeadline",
    ),
    (
        "gateway routing",
        {
            "rollout": {
                "trafficRouting": {
                    "type": "gatewayAPI",
                    "gatewayAPI": GATEWAY | {"hostnames": ["*.example.com"]},
                }
            }
        },
        None,
    ),
    (
        "gateway without parentRef config",
        {"rollout": {"trafficRouting": {"type": "gatewayAPI"}}},
        "spec.rollout.trafficRouting.gatewayAPI",
    ),
    (
        "gateway config with replicas",
        {"rollout": {"trafficRouting": {"gatewayAPI": GATEWAY}}},
        "spec.rollout.trafficRouting.gatewayAPI",
    ),
    (
        "gateway without parentRef",
        {"rollout": {"trafficRouting": {"type": "gatewayAPI", "gatewayAPI": {}}}},
        "spec.rollout.trafficRouting.gatewayAPI.parentRef",
    ),
    (
        "gateway namespace",
        {
            "rollout": {
                "trafficRouting": {
                    "type": "gatewayAPI",
                    "gatewayAPI": {"parentRef": {"name": "gw", "namespace": "a.b"}},
                }
            }
        },
        "spec.rollout.trafficRouting.gatewayAPI.parentRef.namespace",
    ),
    (
        "hostname",
        {
            "rollout": {
                "trafficRouting": {
                    "type": "gatewayAPI",
                    "gatewayAPI": GATEWAY | {"hostnames": ["Models.Example.com"]},
                }
            }
        },
        "spec.rollout.trafficRouting.gatewayAPI.hostnames[0]",
    ),
    ("routing type", {"rollout": {"trafficRouting": {"type": "istio"}}}, "spec.rollout.trafficRouting.type"),
    (
        "analysis",
        {"rollout": {"analysis": {"maxP99LatencyMs": 250, "maxLatencyRatio": 1, "minRequests": 0}}},
        None,
    ),
    (
        "latency ratio under 1",
        {"rollout": {"analysis": {"maxLatencyRatio": 0.9}}},
        "spec.rollout.analysis.maxLatencyRatio",
    ),
    (
        "error rate over 1",
        {"rollout": {"analysis": {"maxErrorRate": 2}}},
        "spec.rollout.analysis.maxErrorRate",
    ),
    ("p99 zero", {"rollout": {"analysis": {"maxP99LatencyMs": 0}}}, "spec.rollout.analysis.maxP99LatencyMs"),
    (
        "failure threshold",
        {"rollout": {"analysis": {"failureThreshold": 0}}},
        "spec.rollout.analysis.failureThreshold",
    ),
    (
        "consecutive errors",
        {"rollout": {"analysis": {"maxConsecutiveErrors": 101}}},
        "spec.rollout.analysis.maxConsecutiveErrors",
    ),
    ("prometheus url", {"monitoring": {"prometheusUrl": "prometheus:9090"}}, "spec.monitoring.prometheusUrl"),
    (
        "prometheus url with password",
        {"monitoring": {"prometheusUrl": "https://admin:hunter2@prom.example:9090"}},
        "spec.monitoring.prometheusUrl",
    ),
    (
        "prometheus auth",
        {"monitoring": {"prometheusAuth": {"secretName": "prom", "type": "basicAuth"}}},
        None,
    ),
    (
        "prometheus auth type",
        {"monitoring": {"prometheusAuth": {"secretName": "prom", "type": "mtls"}}},
        "spec.monitoring.prometheusAuth.type",
    ),
    (
        "prometheus auth without secret",
        {"monitoring": {"prometheusAuth": {}}},
        "spec.monitoring.prometheusAuth.secretName",
    ),
    ("pod monitor labels", {"monitoring": {"podMonitorLabels": {"release": "kube-prometheus-stack"}}}, None),
    (
        "pod monitor label value",
        {"monitoring": {"podMonitorLabels": {"release": "a b"}}},
        "spec.monitoring.podMonitorLabels[release]",
    ),
    ("pod monitor string", {"monitoring": {"podMonitor": "true"}}, "spec.monitoring.podMonitor"),
    ("pod monitor off", {"monitoring": {"podMonitor": False}}, None),
]
# fmt: on

NAME_CASES: list[tuple[str, str | None]] = [
    ("a", None),
    ("model-" + "x" * 37, None),
    ("model-" + "x" * 38, "metadata.name"),
    ("9model", "metadata.name"),
    ("model.v2", "metadata.name"),
]


def _cases() -> Iterator[Any]:
    for case_id, changes, refused in CASES:
        yield pytest.param(document(changes), refused, id=case_id)


@pytest.mark.parametrize(("doc", "refused"), _cases())
def test_crd_and_spec_model_accept_and_refuse_the_same_inputs(
    doc: dict[str, Any], refused: str | None
) -> None:
    api_server, operator = api_server_problems(doc), operator_problems(doc)
    if refused is None:
        assert api_server == [], api_server
        assert operator == [], operator
    else:
        assert refused in api_server, api_server
        assert refused in operator, operator
        # Where a CEL rule refused it, the operator says the very same thing.
        cel_messages = {rule["message"] for _, rule in cel_rules.all_rules()}
        for path, message in cel_rules.admit(doc)[1]:
            if message in cel_messages and not path.startswith("metadata"):
                assert (path, message) in operator_messages(doc)


@pytest.mark.parametrize(("name", "refused"), NAME_CASES)
def test_metadata_name_rules_agree(name: str, refused: str | None) -> None:
    doc = document(name=name)
    if refused is None:
        assert api_server_problems(doc) == operator_problems(doc) == []
    else:
        assert refused in api_server_problems(doc)
        assert refused in operator_problems(doc)


def test_with_a_bad_field_the_operator_still_names_every_rule_broken_elsewhere() -> None:
    """One bad field does not hide the CEL-rule problems of other sections: the operator reports what the
    API server reports for each part on its own (the stand-in skips CEL after any schema error, so the two
    parts are admitted separately here)."""
    bad_field = {"model": {"uri": "ftp://models/m.onnx"}}
    broken_rules = {
        "rollout": {"steps": [50, 20], "interval": "5s"},
        "autoscaling": {"minReplicas": 5, "maxReplicas": 2},
    }
    expected = cel_rules.admit(document(bad_field))[1] + cel_rules.admit(document(broken_rules))[1]
    operator = operator_messages(document(_merge(bad_field, broken_rules)))
    assert sorted(path for path, _ in operator) == sorted(path for path, _ in expected)
    cel_messages = {rule["message"] for _, rule in cel_rules.all_rules()}
    rule_problems = {pair for pair in expected if pair[1] in cel_messages}
    assert rule_problems == {
        ("spec.rollout.steps", "must be strictly increasing"),
        ("spec.rollout.interval", "must be at least 10s"),
        ("spec.autoscaling.minReplicas", "must be at most maxReplicas"),
    }
    assert rule_problems <= set(operator)


# The two places the operator is stricter, on purpose: map *keys* cannot be checked by a CRD rule whose
# cost the API server accepts (a key's length is unbounded), so they are refused by the operator, before
# any manifest is written.
OPERATOR_ONLY = [
    ({"serving": {"nodeSelector": {"bad key!": "x"}}}, "spec.serving.nodeSelector"),
    ({"monitoring": {"podMonitorLabels": {"bad key!": "x"}}}, "spec.monitoring.podMonitorLabels"),
    # instanceGroup.kind defaults to the operator's accelerator (gpu unless the chart says cpu), which the
    # API server cannot know: the operator refuses the missing GPU limit.
    ({"serving": {"resources": {"limits": {"memory": "8Gi"}}}}, "spec.serving.resources.limits"),
    (
        {"serving": {"resources": {"limits": {"GPU count": 1, "nvidia.com/gpu": 1}}}},
        "spec.serving.resources.limits",
    ),
]


@pytest.mark.parametrize(("changes", "refused"), OPERATOR_ONLY)
def test_map_keys_are_checked_by_the_operator(changes: dict[str, Any], refused: str) -> None:
    doc = document(changes)
    assert api_server_problems(doc) == []
    assert operator_problems(doc) == [refused]


def test_every_cel_rule_is_exercised_by_the_table() -> None:
    """Each CEL rule's message must show up for at least one refused case, so no rule goes untested."""
    seen: set[str] = set()
    docs = [document(changes) for _, changes, _ in CASES]
    docs += [document(name=name) for name, _ in NAME_CASES]
    for doc in docs:
        seen.update(message for _, message in cel_rules.admit(doc)[1])
    messages = {rule["message"] for _, rule in cel_rules.all_rules()}
    assert messages - seen == set()


def test_crd_defaults_equal_the_spec_models_defaults() -> None:
    """What the API server stores, with the operator-wide defaults applied, is what the spec model reads:
    the CRD defaults every field except the operator-wide ones (modeldeploy.defaults)."""
    variants: list[dict[str, Any]] = [
        {},
        {"serving": {"dynamicBatching": {}}, "optimization": {"calibration": {"uri": "s3://b/c"}}},
        {"rollout": {"trafficRouting": {"type": "gatewayAPI", "gatewayAPI": {"parentRef": {"name": "gw"}}}}},
        {"serving": {"tolerations": [{"key": "a"}]}},
        {"accelerator": "cpu"},
    ]
    for changes in variants:
        doc = document(changes)
        stored = apply_defaults(cel_rules.admit(doc)[0]["spec"])
        assert stored == parse_spec(doc["spec"]).section_json(*stored)


def test_operator_wide_fields_have_no_crd_default() -> None:
    """Images, accelerator-dependent resources and the Prometheus URL come from the chart (through
    `modeldeploy run`), so a private registry or a CPU cluster is one Helm value, not an edit per object."""
    stored = cel_rules.admit(document())[0]["spec"]
    for section, key in [
        ("optimization", "image"),
        ("optimization", "resources"),
        ("optimization", "tolerations"),
        ("serving", "image"),
        ("serving", "resources"),
        ("serving", "tolerations"),
        ("monitoring", "prometheusUrl"),
    ]:
        assert key not in stored[section], (section, key)
    assert "kind" not in stored["serving"]["instanceGroup"]
    assert "accelerator" not in stored
    spec = parse_spec(stored)
    assert spec.optimization.image == f"ghcr.io/modeldeploy/optimizer:{__version__}"
    assert spec.serving.image == "nvcr.io/nvidia/tritonserver:24.08-py3"
    chart = SpecDefaults(optimizer_image="registry.local/md/optimizer:1", accelerator="cpu")
    on_cpu = parse_spec(stored, chart)
    assert on_cpu.optimization.image == "registry.local/md/optimizer:1"
    assert on_cpu.serving.instance_group.kind == "cpu"
    assert "nvidia.com/gpu" not in (on_cpu.serving.resources.limits or {})
    assert "nvidia.com/gpu" not in (on_cpu.optimization.resources.limits or {})
    assert on_cpu.serving.tolerations == [] and on_cpu.optimization.tolerations == []


# --- the CRD object itself ---


def test_crd_is_a_valid_custom_resource_definition() -> None:
    cel_rules.validate_builtin(cel_rules.crd())


def test_crd_names_scope_and_version() -> None:
    crd = cel_rules.crd()
    assert crd["metadata"]["name"] == "modeldeployments.modeldeploy.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "ModelDeployment",
        "modeldeployments",
        ["mdep"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {
        c["name"]: c["jsonPath"] for c in cel_rules.crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns == {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Phase": ".status.phase",
        "Stable": ".status.stableRevision",
        "Canary": ".status.canaryRevision",
        "Weight": ".status.canaryWeight",
        "Age": ".metadata.creationTimestamp",
    }


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = cel_rules.schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def _fields(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from _fields(child, f"{path}.{name}")
    if "items" in node:
        yield from _fields(node["items"], f"{path}[]")


def test_every_spec_and_status_field_has_a_description() -> None:
    properties = cel_rules.schema()["properties"]
    fields = [*_fields(properties["spec"], "spec"), *_fields(properties["status"], "status")]
    assert len(fields) > 100
    assert [path for path, field in fields if not field.get("description")] == []


def test_schema_is_structural_every_node_has_a_type() -> None:
    def untyped(node: Mapping[str, Any], path: str) -> Iterator[str]:
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            yield path
        for name, child in node.get("properties", {}).items():
            yield from untyped(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from untyped(node[key], f"{path}.{key}")

    assert list(untyped(cel_rules.schema()["properties"]["spec"], "spec")) == []


def test_the_status_the_operator_writes_fits_the_status_schema() -> None:
    """A structural schema prunes status fields it does not declare (kopf issue 321): check the writer."""

    written = {
        "observedGeneration": 3,
        "phase": "Canary",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "message": "stable revision 1a2b3c4d5e serves",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "stableRevision": "1a2b3c4d5e",
        "canaryRevision": "9f8e7d6c5b",
        "canaryWeight": 25,
        "canaryStep": 1,
        "canaryStepStartTime": "2026-01-01T00:01:00Z",
        "optimization": {"revision": "9f8e7d6c5b", "job": "demo-optimize-9f8e7d6c5b", "state": "Succeeded"},
        "analysis": {
            "time": "2026-01-01T00:02:00Z",
            "verdict": "pass",
            "reason": "canary within limits",
            "failedChecks": 0,
            "errors": 0,
            "checks": [],
            "stable": {"requests": 120.0, "errorRate": 0.0, "meanMs": 4.1, "p99Ms": None},
            "canary": {"requests": 80.0, "errorRate": 0.0, "meanMs": 4.3, "p99Ms": 9.5},
        },
        "lastRollback": {
            "revision": "0000000000",
            "reason": "AnalysisFailed",
            "cause": "error rate",
            "time": "2026-01-01T00:00:00Z",
        },
    }
    status = RolloutStatus.from_dict(written).to_dict()
    # None deletes a key under a merge patch: it is never stored.
    stored = {key: value for key, value in status.items() if value is not None}
    assert set(stored) >= {
        "phase",
        "conditions",
        "stableRevision",
        "canaryRevision",
        "analysis",
        "lastRollback",
    }
    problems = cel_rules.admit({**document(), "status": stored})[1]
    assert problems == []
