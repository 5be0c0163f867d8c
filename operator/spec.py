"""The typed `ModelDeployment` spec: the same defaults and rules as the CRD, checked again in the operator.

`parse_spec` is the only way in: it applies the defaults, checks every field and every cross-field rule
(the CRD's CEL rules, same field paths and messages), and raises `SpecError` listing each problem as
`spec.path: reason`. A bad field hides only the cross-field rules that read its own section: the other
sections are validated on their own so their rules still report.
Nothing downstream (rendering, rollout) sees a spec that did not pass here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from modeldeploy import __version__
from modeldeploy.durations import format_duration, parse_duration
from modeldeploy.quantities import parse_quantity

# Patterns shared with crds/modeldeployment.yaml (Go RE2 there; anchored full matches in both places).
# URIs and arguments use `[!-~]` (printable ASCII) rather than `\S`: engines disagree on Unicode spaces.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# metadata.name becomes Service names (DNS-1035 labels) and `NAME-optimize-REV` (<= 63 characters).
RESOURCE_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
RESOURCE_NAME_MAX = 43
MODEL_NAME = r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$"
MODEL_URI = r"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/[!-~]+|(s3|gs|https|file)://[!-~]+)$"
STORAGE_URI = (
    r"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])"
    r"(/[A-Za-z0-9_][A-Za-z0-9._-]*)*/?$"
)
HTTP_URL = r"^https?://[!-~]+$"
# An S3 endpoint is a host and port only: Triton's s3:// syntax has no room for a path.
S3_ENDPOINT = r"^https?://[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?/?$"
IMAGE = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
EXTRA_ARG = r"^--[a-z][a-z0-9_-]*(=[ -~]*)?$"
RESERVED_ARG = r"^--(model-repository|model-store|http-port|grpc-port|metrics-port)(=|$)"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.08-py3"
DEFAULT_OPTIMIZER_IMAGE = f"ghcr.io/modeldeploy/optimizer:{__version__}"
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
DEFAULT_STEPS = (10, 25, 50, 100)
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class SpecProblem:
    path: str  # e.g. `spec.rollout.steps[2]`, as the API server would name it
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """The spec is invalid; `.problems` names every bad field and why."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def _matching(pattern: str, what: str, max_length: int | None = None) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if max_length is not None and len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if compiled.fullmatch(value) is None:
            raise ValueError(f"must be {what}")
        return value

    return check


QUANTITY_MAX_LENGTH = 64  # the CRD's bound (it keeps the API server's cost estimate of its rule in budget)


def _quantity(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a quantity such as 500m, 2 or 4Gi")
    if isinstance(value, str) and len(value) > QUANTITY_MAX_LENGTH:
        raise ValueError(f"must be at most {QUANTITY_MAX_LENGTH} characters")
    try:
        parse_quantity(value)
    except ValueError:
        raise ValueError("must be a non-negative quantity such as 500m, 2 or 4Gi") from None
    return value


def _number(value: Any) -> Any:
    # JSON numbers only: pydantic would otherwise accept "0.5" and True where the CRD refuses them.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a duration string such as 30s, 5m or 1h30m")
    if len(value) > 32:
        raise ValueError("must be at most 32 characters")
    return parse_duration(value)


Dns1123Label = Annotated[str, AfterValidator(_matching(DNS1123_LABEL, "a DNS-1123 label", 63))]
Dns1123Subdomain = Annotated[str, AfterValidator(_matching(DNS1123_SUBDOMAIN, "a DNS-1123 subdomain", 253))]
ModelName = Annotated[
    str,
    AfterValidator(_matching(MODEL_NAME, "letters, digits, '_', '.', '-' (alphanumeric at both ends)", 63)),
]
ModelUri = Annotated[
    str,
    AfterValidator(
        _matching(MODEL_URI, "a URI with scheme s3://, gs://, https://, file:// or pvc://CLAIM/PATH", 2048)
    ),
]
StorageUri = Annotated[
    str, AfterValidator(_matching(STORAGE_URI, "pvc://CLAIM[/PREFIX] or s3://BUCKET[/PREFIX]", 1024))
]
HttpUrl = Annotated[str, AfterValidator(_matching(HTTP_URL, "an http:// or https:// URL", 2048))]
S3Endpoint = Annotated[
    str,
    AfterValidator(_matching(S3_ENDPOINT, "an http:// or https:// URL of a host and optional port", 2048)),
]
Image = Annotated[str, AfterValidator(_matching(IMAGE, "a container image reference", 512))]
LabelValue = Annotated[str, AfterValidator(_matching(LABEL_VALUE, "a label value", 63))]
Hostname = Annotated[str, AfterValidator(_matching(HOSTNAME, "a hostname (optionally *.prefixed)", 253))]
Quantity = Annotated[int | str, PlainValidator(_quantity)]
Number = Annotated[float, BeforeValidator(_number)]
Duration = Annotated[
    timedelta,
    PlainValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]


ExtraArg = Annotated[
    str,
    AfterValidator(_matching(EXTRA_ARG, "a Triton flag such as --log-verbose=1 (printable ASCII)", 1024)),
]


class _Section(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, validate_default=True
    )


class ModelSpec(_Section):
    name: ModelName
    uri: ModelUri
    format: Literal["onnx", "pytorch", "tensorrt", "savedmodel"] = "onnx"
    credentials_secret: Dns1123Subdomain | None = None


class PruningSpec(_Section):
    sparsity: Number = Field(default=0.0, ge=0.0, le=0.9)
    # Only what the optimizer implements; structured (channel) pruning would be added here.
    method: Literal["magnitude"] = "magnitude"


class CompileSpec(_Section):
    target: Literal["none", "tensorrt", "onnxruntime"] = "none"
    precision: Literal["fp32", "fp16", "int8"] = "fp16"


class CalibrationSpec(_Section):
    uri: ModelUri
    samples: StrictInt = Field(default=256, ge=1, le=100_000)


class ResourceRequirements(_Section):
    requests: dict[str, Quantity] | None = Field(default=None, max_length=16)
    limits: dict[str, Quantity] | None = Field(default=None, max_length=16)


class Toleration(_Section):
    key: Annotated[str, AfterValidator(_matching(LABEL_KEY, "a label key", 316))] | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: StrictInt | None = Field(default=None, ge=0)


def _gpu_toleration() -> list[Toleration]:
    return [Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")]


def _optimizer_resources() -> ResourceRequirements:
    return ResourceRequirements(
        requests={"cpu": "2", "memory": "8Gi"}, limits={"memory": "16Gi", GPU_RESOURCE: "1"}
    )


def _serving_resources() -> ResourceRequirements:
    return ResourceRequirements(
        requests={"cpu": "2", "memory": "8Gi"}, limits={"memory": "8Gi", GPU_RESOURCE: "1"}
    )


class OptimizationSpec(_Section):
    quantization: Literal["auto", "int8-dynamic", "int8-static", "fp16", "none"] = "auto"
    pruning: PruningSpec = Field(default_factory=PruningSpec)
    compile: CompileSpec = Field(default_factory=CompileSpec)
    max_accuracy_drop: Number = Field(default=0.01, ge=0.0, lt=1.0)
    calibration: CalibrationSpec | None = None
    image: Image = DEFAULT_OPTIMIZER_IMAGE
    resources: ResourceRequirements = Field(default_factory=_optimizer_resources)
    node_selector: dict[str, LabelValue] = Field(default_factory=dict, max_length=32)
    tolerations: list[Toleration] = Field(default_factory=_gpu_toleration, max_length=32)


class DynamicBatchingSpec(_Section):
    preferred_batch_sizes: list[Annotated[StrictInt, Field(ge=1, le=4096)]] = Field(
        default_factory=list, max_length=16
    )
    max_queue_delay_microseconds: StrictInt = Field(default=100, ge=0, le=10_000_000)


class InstanceGroupSpec(_Section):
    kind: Literal["gpu", "cpu", "auto"] = "gpu"
    count: StrictInt = Field(default=1, ge=1, le=16)


class ServingSpec(_Section):
    image: Image = DEFAULT_TRITON_IMAGE
    replicas: StrictInt = Field(default=1, ge=0, le=1000)
    resources: ResourceRequirements = Field(default_factory=_serving_resources)
    max_batch_size: StrictInt = Field(default=8, ge=0, le=4096)
    dynamic_batching: DynamicBatchingSpec | None = None
    instance_group: InstanceGroupSpec = Field(default_factory=InstanceGroupSpec)
    warmup: StrictBool = False
    extra_args: list[ExtraArg] = Field(default_factory=list, max_length=32)
    node_selector: dict[str, LabelValue] = Field(default_factory=dict, max_length=32)
    tolerations: list[Toleration] = Field(default_factory=_gpu_toleration, max_length=32)


class StorageSpec(_Section):
    uri: StorageUri
    credentials_secret: Dns1123Subdomain | None = None
    endpoint: S3Endpoint | None = None


class AutoscalingSpec(_Section):
    engine: Literal["none", "hpa", "keda"] = "none"
    min_replicas: StrictInt = Field(default=1, ge=1, le=1000)
    max_replicas: StrictInt = Field(default=4, ge=1, le=1000)
    metric: Literal["queueTime", "p99Latency", "inferenceRate", "gpuUtilization"] = "queueTime"
    # Units by metric: queueTime and p99Latency in ms, inferenceRate in requests/s per pod,
    # gpuUtilization in percent.
    target: Number | None = Field(default=None, gt=0.0, le=1_000_000.0)


class ParentRef(_Section):
    name: Dns1123Subdomain
    namespace: Dns1123Label | None = None
    section_name: Dns1123Subdomain | None = None


class GatewayAPIRouting(_Section):
    parent_ref: ParentRef
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)


class TrafficRoutingSpec(_Section):
    type: Literal["replicas", "gatewayAPI"] = "replicas"
    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")


class AnalysisSpec(_Section):
    max_error_rate: Number = Field(default=0.01, ge=0.0, le=1.0)
    max_p99_latency_ms: Number | None = Field(default=None, gt=0.0)
    max_latency_ratio: Number = Field(default=1.2, ge=1.0, le=100.0)
    min_requests: StrictInt = Field(default=50, ge=0)
    failure_threshold: StrictInt = Field(default=2, ge=1, le=100)
    max_consecutive_errors: StrictInt = Field(default=3, ge=1, le=100)


class RolloutSpec(_Section):
    strategy: Literal["canary", "immediate"] = "canary"
    steps: list[Annotated[StrictInt, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: list(DEFAULT_STEPS), min_length=1, max_length=20
    )
    interval: Duration = timedelta(minutes=1)
    progress_deadline: Duration = timedelta(minutes=30)
    traffic_routing: TrafficRoutingSpec = Field(default_factory=TrafficRoutingSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)


class MonitoringSpec(_Section):
    prometheus_url: HttpUrl = DEFAULT_PROMETHEUS_URL
    pod_monitor: StrictBool = True


class ModelDeploymentSpec(_Section):
    model: ModelSpec
    optimization: OptimizationSpec = Field(default_factory=OptimizationSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    storage: StorageSpec
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)

    def section_json(self, *sections: str) -> dict[str, Any]:
        """The named sections as the CRD writes them: camelCase keys, defaults applied, unset omitted."""
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {name: dumped[name] for name in sections}


# Cross-field rules: each mirrors one `x-kubernetes-validations` rule of the CRD (same path, same message).


def _requests_within_limits(resources: ResourceRequirements, path: str) -> Iterator[SpecProblem]:
    for name, request in (resources.requests or {}).items():
        limit = (resources.limits or {}).get(name)
        if limit is not None and parse_quantity(request) > parse_quantity(limit):
            yield SpecProblem(f"{path}.requests", "every request must be at most its limit")
            return


def _resource_names(resources: ResourceRequirements, path: str) -> Iterator[SpecProblem]:
    for field, resource_list in (("requests", resources.requests), ("limits", resources.limits)):
        if any(re.fullmatch(LABEL_KEY, key) is None or len(key) > 316 for key in resource_list or {}):
            yield SpecProblem(f"{path}.{field}", "resource names look like cpu, memory or nvidia.com/gpu")


def _node_selector_keys(node_selector: Mapping[str, str], path: str) -> Iterator[SpecProblem]:
    if any(re.fullmatch(LABEL_KEY, key) is None or len(key) > 316 for key in node_selector):
        yield SpecProblem(path, "keys must be label keys such as nvidia.com/gpu.present")


def _tolerations(tolerations: list[Toleration], path: str) -> Iterator[SpecProblem]:
    for index, toleration in enumerate(tolerations):
        if toleration.operator == "Exists" and toleration.value is not None:
            yield SpecProblem(f"{path}[{index}].value", "must be unset when operator is Exists")


@dataclass(frozen=True)
class _Sections:
    """The sections the cross-field rules read; `None` where the section itself did not validate."""

    optimization: OptimizationSpec | None
    serving: ServingSpec | None
    storage: StorageSpec | None
    autoscaling: AutoscalingSpec | None
    rollout: RolloutSpec | None


def _cross_field_problems(sections: _Sections) -> Iterator[SpecProblem]:
    """Every rule whose inputs all validated (a rule reading an invalid section is skipped)."""
    optimization, serving = sections.optimization, sections.serving
    if optimization is not None:
        yield from _optimization_problems(optimization)
    if serving is not None:
        yield from _serving_problems(serving)
    if (
        optimization is not None
        and serving is not None
        and optimization.compile.target == "tensorrt"
        and serving.instance_group.kind != "gpu"
    ):
        yield SpecProblem(
            "spec.serving.instanceGroup.kind", "a TensorRT engine runs only on GPUs: kind must be gpu"
        )
    if sections.storage is not None:
        yield from _storage_problems(sections.storage)
    if sections.autoscaling is not None:
        yield from _autoscaling_problems(sections.autoscaling)
    if sections.rollout is not None:
        yield from _rollout_problems(sections.rollout)


def _pod_placement_problems(section: OptimizationSpec | ServingSpec, path: str) -> Iterator[SpecProblem]:
    yield from _resource_names(section.resources, f"{path}.resources")
    yield from _requests_within_limits(section.resources, f"{path}.resources")
    yield from _node_selector_keys(section.node_selector, f"{path}.nodeSelector")
    yield from _tolerations(section.tolerations, f"{path}.tolerations")


def _optimization_problems(optimization: OptimizationSpec) -> Iterator[SpecProblem]:
    if optimization.quantization == "int8-static" and optimization.calibration is None:
        yield SpecProblem(
            "spec.optimization.calibration", "int8-static quantization needs calibration data (uri)"
        )
    yield from _pod_placement_problems(optimization, "spec.optimization")


def _serving_problems(serving: ServingSpec) -> Iterator[SpecProblem]:
    yield from _pod_placement_problems(serving, "spec.serving")
    if serving.dynamic_batching is not None:
        if serving.max_batch_size == 0:
            yield SpecProblem("spec.serving.maxBatchSize", "dynamicBatching needs maxBatchSize > 0")
        elif any(size > serving.max_batch_size for size in serving.dynamic_batching.preferred_batch_sizes):
            yield SpecProblem(
                "spec.serving.dynamicBatching.preferredBatchSizes", "every size must be at most maxBatchSize"
            )
    if serving.instance_group.kind == "gpu" and GPU_RESOURCE not in (serving.resources.limits or {}):
        yield SpecProblem(
            "spec.serving.resources.limits", "instanceGroup.kind gpu needs an nvidia.com/gpu limit"
        )
    if any(re.match(RESERVED_ARG, arg) for arg in serving.extra_args):
        yield SpecProblem(
            "spec.serving.extraArgs",
            "must not set --model-repository, --model-store, --http-port, --grpc-port or --metrics-port",
        )


def _storage_problems(storage: StorageSpec) -> Iterator[SpecProblem]:
    if not storage.uri.startswith("s3://") and (
        storage.credentials_secret is not None or storage.endpoint is not None
    ):
        yield SpecProblem("spec.storage", "credentialsSecret and endpoint apply only to s3:// storage")


def _autoscaling_problems(autoscaling: AutoscalingSpec) -> Iterator[SpecProblem]:
    if autoscaling.min_replicas > autoscaling.max_replicas:
        yield SpecProblem("spec.autoscaling.minReplicas", "must be at most maxReplicas")
    if autoscaling.engine != "none" and autoscaling.target is None:
        yield SpecProblem("spec.autoscaling.target", "required when engine is hpa or keda")
    if autoscaling.metric == "gpuUtilization" and autoscaling.target is not None and autoscaling.target > 100:
        yield SpecProblem("spec.autoscaling.target", "gpuUtilization is a percentage: at most 100")


def _rollout_problems(rollout: RolloutSpec) -> Iterator[SpecProblem]:
    if any(later <= earlier for earlier, later in zip(rollout.steps, rollout.steps[1:], strict=False)):
        yield SpecProblem("spec.rollout.steps", "must be strictly increasing")
    if rollout.interval < timedelta(seconds=10):
        yield SpecProblem("spec.rollout.interval", "must be at least 10s")
    if rollout.progress_deadline <= rollout.interval:
        yield SpecProblem("spec.rollout.progressDeadline", "must be longer than interval")
    routing = rollout.traffic_routing
    if routing.type == "gatewayAPI" and routing.gateway_api is None:
        yield SpecProblem("spec.rollout.trafficRouting.gatewayAPI", "required when type is gatewayAPI")
    if routing.type != "gatewayAPI" and routing.gateway_api is not None:
        yield SpecProblem("spec.rollout.trafficRouting.gatewayAPI", "set only when type is gatewayAPI")


_MAPS = {"requests", "limits", "nodeSelector"}


def _path(location: tuple[int | str, ...]) -> str:
    # The API server's field path syntax: `.field`, `[index]`, and `[key]` for map entries.
    path, parent = "spec", ""
    for part in location:
        if isinstance(part, int) or parent in _MAPS:
            path += f"[{part}]"
        else:
            path += f".{part}"
        parent = str(part)
    return path


_PYDANTIC_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
}


def _problems(error: ValidationError) -> list[SpecProblem]:
    problems = []
    for detail in error.errors(include_url=False):
        message = _PYDANTIC_MESSAGES.get(detail["type"], detail["msg"])
        message = message.removeprefix("Value error, ")
        problems.append(SpecProblem(_path(tuple(detail["loc"])), message))
    return problems


_SectionT = TypeVar("_SectionT", bound=_Section)


def _valid_section(raw: Mapping[str, Any], name: str, model: type[_SectionT]) -> _SectionT | None:
    """Section `name` of `raw` validated on its own (its default when absent), or None when it is invalid."""
    field = ModelDeploymentSpec.model_fields[name]
    key = field.alias or name
    if key not in raw:
        return None if field.is_required() else model.model_validate({})
    try:
        return model.model_validate(raw[key], by_alias=True, by_name=False)
    except ValidationError:
        return None


def parse_spec(raw: Mapping[str, Any]) -> ModelDeploymentSpec:
    """Validate `raw` (a ModelDeployment's `spec`, camelCase keys) and apply the CRD's defaults."""
    if not isinstance(raw, Mapping):
        raise SpecError([SpecProblem("spec", "must be an object")])
    try:
        # Input keys are the CRD's camelCase only (the API server refuses snake_case); Python code may still
        # construct sections by attribute name.
        spec = ModelDeploymentSpec.model_validate(dict(raw), by_alias=True, by_name=False)
    except ValidationError as error:
        # Report the cross-field problems of the sections that did validate too, so one run shows them all.
        sections = _Sections(
            optimization=_valid_section(raw, "optimization", OptimizationSpec),
            serving=_valid_section(raw, "serving", ServingSpec),
            storage=_valid_section(raw, "storage", StorageSpec),
            autoscaling=_valid_section(raw, "autoscaling", AutoscalingSpec),
            rollout=_valid_section(raw, "rollout", RolloutSpec),
        )
        raise SpecError([*_problems(error), *_cross_field_problems(sections)]) from None
    problems = list(
        _cross_field_problems(
            _Sections(spec.optimization, spec.serving, spec.storage, spec.autoscaling, spec.rollout)
        )
    )
    if problems:
        raise SpecError(problems)
    return spec


def check_name(name: object) -> None:
    """`metadata.name`: it prefixes every child's name, so it must be a short DNS-1035 label."""
    if not isinstance(name, str) or not name:
        raise SpecError([SpecProblem("metadata.name", "required")])
    if len(name) > RESOURCE_NAME_MAX:
        raise SpecError(
            [
                SpecProblem(
                    "metadata.name", f"must be at most {RESOURCE_NAME_MAX} characters (children add suffixes)"
                )
            ]
        )
    if re.fullmatch(RESOURCE_NAME, name) is None:
        raise SpecError(
            [
                SpecProblem(
                    "metadata.name",
                    "must be a DNS-1035 label (lowercase letters, digits, '-'; starts with a letter)",
                )
            ]
        )


__all__ = [
    "DEFAULT_OPTIMIZER_IMAGE",
    "DEFAULT_TRITON_IMAGE",
    "ModelDeploymentSpec",
    "SpecError",
    "SpecProblem",
    "check_name",
    "parse_spec",
]
