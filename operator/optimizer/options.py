"""What the optimizer is asked to do: the `optimization`/`serving` spec sections and CLI flags, validated.

Pure: no I/O. The Job passes the ModelDeployment's sections as JSON (camelCase keys, as in the CRD);
CLI flags given explicitly override the spec. Every refusal names the field, e.g. `optimization.quantization`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

from modeldeploy.optimizer.errors import OptimizerInputError

Quantization = Literal["auto", "int8-dynamic", "int8-static", "fp16", "none"]
CompileTarget = Literal["none", "onnxruntime", "tensorrt"]
CompilePrecision = Literal["fp32", "fp16", "int8"]
InstanceKind = Literal["KIND_AUTO", "KIND_GPU", "KIND_CPU"]

MAX_SPARSITY = 0.9
PRUNING_METHODS = ("magnitude",)


@dataclass(frozen=True)
class OptimizeOptions:
    quantization: Quantization = "auto"
    pruning_sparsity: float = 0.0
    compile_target: CompileTarget = "none"
    compile_precision: CompilePrecision = "fp16"
    # Bound on the accuracy drop of the shipped model versus the original (see accuracy.py).
    max_accuracy_drop: float = 0.01
    calibration_uri: str | None = None
    calibration_samples: int = 32
    max_batch_size: int = 8
    # Triton's dynamic batcher; from a spec, on only when `serving.dynamicBatching` is set (as in the CRD).
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] | None = None  # None: chosen from measured throughput
    max_queue_delay_microseconds: int = 100
    instance_kind: InstanceKind = "KIND_AUTO"
    instance_count: int = 1
    warmup: bool = False
    # Concrete shapes for dynamic input dimensions (CLI only), e.g. {"x": (1, 3, 48, 320)}.
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # Batch size at which latency (the objective) is measured.
    measure_batch_size: int = 1
    # Rough wall-clock budget for latency measurement of all candidates together.
    measure_seconds: float = 3.0
    # ONNX Runtime intra-op threads per session (0: the cores this process may use).
    threads: int = 0
    # Held-out inputs the accuracy gate compares on (with calibration data: at most half of it).
    gate_samples: int = 64


def _problem(path: str, message: str) -> OptimizerInputError:
    return OptimizerInputError(f"{path}: {message}")


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _problem(path, f"must be an object, got {type(value).__name__}")
    return value


def _number(value: Any, path: str, low: float, high: float, *, high_inclusive: bool = True) -> float:
    # Kubernetes users often write decimals as strings ("0.01"), so both forms are accepted.
    if isinstance(value, bool):
        raise _problem(path, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _problem(path, f"must be a number, got {value!r}") from None
    too_high = number > high if high_inclusive else number >= high
    if math.isnan(number) or number < low or too_high:
        bracket = "]" if high_inclusive else ")"
        raise _problem(path, f"must be in [{low}, {high}{bracket}, got {value!r}")
    return number


def _integer(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _problem(path, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise _problem(path, f"must be in [{low}, {high}], got {value}")
    return value


def _choice(value: Any, path: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _problem(path, f"must be one of {', '.join(allowed)}; got {value!r}")
    return cast(str, value)


def _instance_kind(value: Any, path: str) -> InstanceKind:
    # The CRD may spell it `gpu` or Triton's `KIND_GPU`; both mean the same.
    text = str(value).upper()
    kind = text if text.startswith("KIND_") else f"KIND_{text}"
    return cast(InstanceKind, _choice(kind, path, get_args(InstanceKind)))


def _batch_sizes(value: Any, path: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _problem(path, f"must be a non-empty list of integers, got {value!r}")
    return tuple(_integer(item, f"{path}[{index}]", 1, 1 << 20) for index, item in enumerate(value))


def options_from_spec(raw: Mapping[str, Any]) -> OptimizeOptions:
    """Options from `{"optimization": {...}, "serving": {...}}`; keys the optimizer does not use are ignored
    (image, resources, replicas, ...: they shape the Job and the Deployment, not the model)."""
    if not isinstance(raw, Mapping):
        raise _problem("spec", "must be a JSON object with `optimization` and `serving`")
    optimization = _mapping(raw.get("optimization"), "optimization")
    serving = _mapping(raw.get("serving"), "serving")
    options = OptimizeOptions()
    updates: dict[str, Any] = {}
    if "quantization" in optimization:
        updates["quantization"] = _choice(
            optimization["quantization"], "optimization.quantization", get_args(Quantization)
        )
    pruning = _mapping(optimization.get("pruning"), "optimization.pruning")
    if "sparsity" in pruning:
        updates["pruning_sparsity"] = _number(
            pruning["sparsity"], "optimization.pruning.sparsity", 0.0, MAX_SPARSITY
        )
    if "method" in pruning:
        _choice(pruning["method"], "optimization.pruning.method", PRUNING_METHODS)
    compile_section = _mapping(optimization.get("compile"), "optimization.compile")
    if "target" in compile_section:
        updates["compile_target"] = _choice(
            compile_section["target"], "optimization.compile.target", get_args(CompileTarget)
        )
    if "precision" in compile_section:
        updates["compile_precision"] = _choice(
            compile_section["precision"], "optimization.compile.precision", get_args(CompilePrecision)
        )
    if "maxAccuracyDrop" in optimization:
        updates["max_accuracy_drop"] = _number(
            optimization["maxAccuracyDrop"], "optimization.maxAccuracyDrop", 0.0, 1.0, high_inclusive=False
        )
    calibration = _mapping(optimization.get("calibration"), "optimization.calibration")
    if calibration.get("uri"):
        updates["calibration_uri"] = str(calibration["uri"])
    if "samples" in calibration:
        updates["calibration_samples"] = _integer(
            calibration["samples"], "optimization.calibration.samples", 1, 100_000
        )
    if "maxBatchSize" in serving:
        updates["max_batch_size"] = _integer(serving["maxBatchSize"], "serving.maxBatchSize", 0, 1 << 16)
    if "serving" in raw:
        updates["dynamic_batching"] = serving.get("dynamicBatching") is not None
    batching = _mapping(serving.get("dynamicBatching"), "serving.dynamicBatching")
    if batching.get("preferredBatchSizes"):
        updates["preferred_batch_sizes"] = _batch_sizes(
            batching["preferredBatchSizes"], "serving.dynamicBatching.preferredBatchSizes"
        )
    if "maxQueueDelayMicroseconds" in batching:
        updates["max_queue_delay_microseconds"] = _integer(
            batching["maxQueueDelayMicroseconds"],
            "serving.dynamicBatching.maxQueueDelayMicroseconds",
            0,
            60_000_000,
        )
    group = _mapping(serving.get("instanceGroup"), "serving.instanceGroup")
    if "kind" in group:
        updates["instance_kind"] = _instance_kind(group["kind"], "serving.instanceGroup.kind")
    if "count" in group:
        updates["instance_count"] = _integer(group["count"], "serving.instanceGroup.count", 1, 1024)
    if "warmup" in serving:
        if not isinstance(serving["warmup"], bool):
            raise _problem("serving.warmup", f"must be true or false, got {serving['warmup']!r}")
        updates["warmup"] = serving["warmup"]
    return check_options(replace(options, **updates))


def check_options(options: OptimizeOptions) -> OptimizeOptions:
    """Cross-field rules and ranges (CLI flags reach the options without passing through the spec parser)."""
    _choice(options.quantization, "--quantization", get_args(Quantization))
    _choice(options.compile_target, "--compile", get_args(CompileTarget))
    _number(options.pruning_sparsity, "--pruning-sparsity", 0.0, MAX_SPARSITY)
    _number(options.max_accuracy_drop, "--max-accuracy-drop", 0.0, 1.0, high_inclusive=False)
    _integer(options.max_batch_size, "--max-batch-size", 0, 1 << 16)
    _integer(options.measure_batch_size, "--batch-size", 1, 1 << 16)
    _integer(options.threads, "--threads", 0, 1024)
    if options.max_batch_size and options.measure_batch_size > options.max_batch_size:
        raise _problem(
            "--batch-size",
            f"{options.measure_batch_size} is larger than the max batch size {options.max_batch_size}",
        )
    if options.preferred_batch_sizes and options.max_batch_size:
        too_large = [size for size in options.preferred_batch_sizes if size > options.max_batch_size]
        if too_large:
            raise _problem(
                "serving.dynamicBatching.preferredBatchSizes",
                f"{too_large} exceed serving.maxBatchSize {options.max_batch_size}",
            )
    return options


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME=1,3,48,320` → ("NAME", (1, 3, 48, 320)) for `--input-shape`."""
    name, separator, dims = text.rpartition("=")
    try:
        shape = tuple(int(dim) for dim in dims.split(","))
    except ValueError:
        shape = ()
    if not separator or not name or not shape or any(dim < 1 for dim in shape):
        raise _problem("--input-shape", f"expected NAME=D1,D2,... with positive integers, got {text!r}")
    return name, shape
