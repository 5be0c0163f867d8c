"""The spec model: defaults, every field's check with its path, revisions, durations and quantities."""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from modeldeploy import __version__
from modeldeploy.durations import format_duration, parse_duration
from modeldeploy.quantities import format_quantity, parse_quantity
from modeldeploy.revision import compute_revision
from modeldeploy.spec import SpecError, check_name, parse_spec


def minimal() -> dict[str, Any]:
    return {"model": {"name": "resnet", "uri": "s3://models/resnet.onnx"}, "storage": {"uri": "pvc://store"}}


def problems(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    return [(problem.path, problem.message) for problem in caught.value.problems]


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(minimal())
    assert spec.model.format == "onnx"
    assert spec.optimization.quantization == "auto"
    assert spec.optimization.max_accuracy_drop == 0.01
    assert spec.optimization.image == f"ghcr.io/modeldeploy/optimizer:{__version__}"
    assert spec.optimization.resources.limits == {"memory": "16Gi", "nvidia.com/gpu": "1"}
    assert [t.key for t in spec.optimization.tolerations] == ["nvidia.com/gpu"]
    assert spec.serving.image == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert spec.serving.instance_group.kind == "gpu"
    assert spec.autoscaling.engine == "none"
    assert spec.rollout.strategy == "canary"
    assert spec.rollout.steps == [10, 25, 50, 100]
    assert spec.rollout.interval == timedelta(minutes=1)
    assert spec.rollout.progress_deadline == timedelta(minutes=30)
    analysis = spec.rollout.analysis
    assert (analysis.max_error_rate, analysis.max_latency_ratio, analysis.min_requests) == (0.01, 1.2, 50)
    assert (analysis.failure_threshold, analysis.max_consecutive_errors) == (2, 3)
    assert analysis.max_p99_latency_ms is None
    assert spec.monitoring.pod_monitor is True


def test_keys_are_the_crds_camel_case_only() -> None:
    spec = parse_spec(minimal() | {"rollout": {"progressDeadline": "1h"}})
    assert spec.rollout.progress_deadline == timedelta(hours=1)
    assert problems(minimal() | {"autoscaling": {"max_replicas": 9}}) == [
        ("spec.autoscaling.max_replicas", "unknown field")
    ]


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    raw = minimal() | {
        "model": {"name": "bad name", "uri": "ftp://x", "colour": "red"},
        "rollout": {"steps": [10, 200]},
        "serving": {"resources": {"limits": {"memory": "lots"}}},
    }
    found = dict(problems(raw))
    assert set(found) == {
        "spec.model.name",
        "spec.model.uri",
        "spec.model.colour",
        "spec.rollout.steps[1]",
        "spec.serving.resources.limits[memory]",
    }
    assert found["spec.model.colour"] == "unknown field"
    assert "s3://" in found["spec.model.uri"]


def test_cross_field_problems_are_reported_alongside_field_problems() -> None:
    raw = minimal() | {
        "model": {"name": "resnet", "uri": "ftp://x"},
        "rollout": {"steps": [50, 20], "interval": "5s"},
        "autoscaling": {"minReplicas": 5, "maxReplicas": 2},
    }
    assert problems(raw) == [
        (
            "spec.model.uri",
            "must be a URI with scheme s3://, gs://, https://, file:// or pvc://CLAIM/PATH",
        ),
        ("spec.autoscaling.minReplicas", "must be at most maxReplicas"),
        ("spec.rollout.steps", "must be strictly increasing"),
        ("spec.rollout.interval", "must be at least 10s"),
    ]


def test_rules_spanning_two_sections_run_when_both_sections_are_valid() -> None:
    raw = minimal() | {
        "storage": {"uri": "pvc://store", "endpoint": "http://minio:9000"},
        "optimization": {
            "compile": {"target": "tensorrt"},
            "quantization": "int8-static",
            "image": "bad image",
        },
        "serving": {"instanceGroup": {"kind": "cpu"}, "maxBatchSize": 0, "dynamicBatching": {}},
    }
    # optimization is invalid (its image), so neither its own rules nor the TensorRT rule can be judged;
    # serving's and storage's rules still are.
    assert problems(raw) == [
        ("spec.optimization.image", "must be a container image reference"),
        ("spec.serving.maxBatchSize", "dynamicBatching needs maxBatchSize > 0"),
        ("spec.storage", "credentialsSecret and endpoint apply only to s3:// storage"),
    ]
    del raw["optimization"]["image"]
    assert problems(raw | {"model": {"name": "bad name", "uri": "s3://m/m.onnx"}}) == [
        ("spec.model.name", "must be letters, digits, '_', '.', '-' (alphanumeric at both ends)"),
        ("spec.optimization.calibration", "int8-static quantization needs calibration data (uri)"),
        ("spec.serving.maxBatchSize", "dynamicBatching needs maxBatchSize > 0"),
        ("spec.serving.instanceGroup.kind", "a TensorRT engine runs only on GPUs: kind must be gpu"),
        ("spec.storage", "credentialsSecret and endpoint apply only to s3:// storage"),
    ]


def test_a_section_with_a_bad_field_skips_only_its_own_cross_field_rules() -> None:
    raw = minimal() | {"rollout": {"steps": [50, 20], "strategy": "slow"}}
    # steps are not judged while rollout itself is invalid: fixing `strategy` is what reveals them.
    assert problems(raw) == [
        ("spec.rollout.strategy", "Input should be 'canary' or 'immediate'"),
    ]
    assert problems(minimal() | {"rollout": {"steps": [50, 20]}, "autoscaling": {"minReplicas": 9}}) == [
        ("spec.autoscaling.minReplicas", "must be at most maxReplicas"),
        ("spec.rollout.steps", "must be strictly increasing"),
    ]


def test_error_text_lists_one_problem_per_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"model": {"name": "m", "uri": "s3://b/m"}})
    assert str(caught.value) == "spec.storage: required"


def test_spec_that_is_not_a_mapping_is_refused() -> None:
    assert problems(["a"]) == [("spec", "must be an object")]
    assert problems({**minimal(), "serving": "big"}) == [("spec.serving", "must be an object")]


@pytest.mark.parametrize(
    ("section", "value", "path"),
    [
        ("serving", {"replicas": True}, "spec.serving.replicas"),
        ("serving", {"replicas": "2"}, "spec.serving.replicas"),
        ("serving", {"warmup": "yes"}, "spec.serving.warmup"),
        ("optimization", {"maxAccuracyDrop": "0.1"}, "spec.optimization.maxAccuracyDrop"),
        ("optimization", {"maxAccuracyDrop": True}, "spec.optimization.maxAccuracyDrop"),
        ("serving", {"resources": {"limits": {"cpu": True}}}, "spec.serving.resources.limits[cpu]"),
        ("serving", {"resources": {"limits": {"cpu": 1.5}}}, "spec.serving.resources.limits[cpu]"),
        ("rollout", {"interval": 60}, "spec.rollout.interval"),
    ],
)
def test_types_are_checked_strictly_like_the_api_server(section: str, value: Any, path: str) -> None:
    assert path in dict(problems(minimal() | {section: value}))


def test_check_name_accepts_short_dns_1035_labels() -> None:
    check_name("a")
    check_name("bert-sentiment-" + "x" * 28)


@pytest.mark.parametrize("name", ["", None, "9lives", "Upper", "has.dot", "trailing-", "x" * 44])
def test_check_name_refuses_what_cannot_prefix_child_names(name: object) -> None:
    with pytest.raises(SpecError) as caught:
        check_name(name)
    assert caught.value.problems[0].path == "metadata.name"


# --- revisions ---


def test_revision_is_10_hex_characters_and_stable_across_calls() -> None:
    revision = compute_revision(parse_spec(minimal()))
    assert len(revision) == 10
    assert int(revision, 16) >= 0
    assert revision == compute_revision(parse_spec(copy.deepcopy(minimal())))


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"name": "resnet", "uri": "s3://models/resnet-v2.onnx"}},
        {"optimization": {"quantization": "fp16"}},
        {"serving": {"maxBatchSize": 16}},
        {"serving": {"image": "nvcr.io/nvidia/tritonserver:24.09-py3"}},
        # The artifacts live under the store: a new store needs the Job to write there first (issue 10).
        {"storage": {"uri": "pvc://other-store"}},
        {"storage": {"uri": "s3://artifacts/modeldeploy", "endpoint": "https://minio.local:9000"}},
    ],
)
def test_changing_model_optimization_serving_or_storage_starts_a_new_revision(change: dict[str, Any]) -> None:
    assert compute_revision(parse_spec(minimal() | change)) != compute_revision(parse_spec(minimal()))


@pytest.mark.parametrize(
    "change",
    [
        {"autoscaling": {"engine": "keda", "target": 20}},
        {"rollout": {"steps": [50, 100], "interval": "5m"}},
        {"monitoring": {"podMonitor": False}},
        # More pods serve the same bytes: scaling needs no optimization and no canary (issue 10).
        {"serving": {"replicas": 5}},
        # Writing a default explicitly is the same spec.
        {"optimization": {"quantization": "auto", "maxAccuracyDrop": 0.01}},
        {"model": {"uri": "s3://models/resnet.onnx", "format": "onnx", "name": "resnet"}},
    ],
)
def test_changes_applied_in_place_keep_the_revision(change: dict[str, Any]) -> None:
    assert compute_revision(parse_spec(minimal() | change)) == compute_revision(parse_spec(minimal()))


# --- durations and quantities ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("1m30s", timedelta(seconds=90)),
    ],
)
def test_go_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "-5m", "5 m", "1d", "m5", "1.m", "5m\n"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=90), "1h30m"),
        (timedelta(seconds=10), "10s"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(0), "0s"),
    ],
)
def test_durations_format_back_in_go_syntax(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_spec_dumps_durations_as_the_crd_writes_them() -> None:
    spec = parse_spec(minimal() | {"rollout": {"interval": "90s", "progressDeadline": "1h"}})
    assert spec.section_json("rollout")["rollout"]["interval"] == "1m30s"
    assert spec.section_json("rollout")["rollout"]["progressDeadline"] == "1h"


@pytest.mark.parametrize(
    ("quantity", "amount"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (3, Decimal(3)),
        ("4Gi", Decimal(4 * 2**30)),
        ("1.5k", Decimal(1500)),
        ("1e3", Decimal(1000)),
        (".5", Decimal("0.5")),
        ("100n", Decimal("1e-7")),
    ],
)
def test_quantities_parse_exactly(quantity: str | int, amount: Decimal) -> None:
    assert parse_quantity(quantity) == amount


@pytest.mark.parametrize("quantity", ["", "-1", -1, "1GB", "Gi", "1.2.3", " 1", "1 Gi", "0x10"])
def test_bad_quantities_are_refused(quantity: str | int) -> None:
    with pytest.raises(ValueError):
        parse_quantity(quantity)


def test_request_equal_to_limit_in_other_units_is_accepted() -> None:
    resources = {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}
    spec = parse_spec(minimal() | {"serving": {"resources": resources, "instanceGroup": {"kind": "cpu"}}})
    assert spec.serving.resources.requests == {"cpu": "1000m", "memory": "1024Mi"}


@pytest.mark.parametrize(("amount", "text"), [(70.0, "70"), (0.5, "500m"), (20, "20"), (1.25, "1250m")])
def test_format_quantity(amount: float, text: str) -> None:
    assert format_quantity(amount) == text
    assert parse_quantity(text) == Decimal(str(amount))
