"""TensorRT: whether a plan may ship from here, and building a serialized engine (`model.plan`) from ONNX.

The only module that imports `tensorrt`. The artifact that ships must be the artifact that was gated, and
a plan only loads in the TensorRT version it was built with. So a plan ships only when (1) this TensorRT is
the serving image's (SERVING_TENSORRT, checked here and recorded in the report), and (2) the plan itself was
loaded and run through the TensorRT runtime for its gate. (2) is not implemented yet (it needs a GPU session
to write and verify; docs/optimizer.md, "TensorRT"), so today every TensorRT candidate is `skipped` with the
reason and the gated ONNX model ships: a clear refusal rather than an ungated plan.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnxruntime as ort

TENSORRT_PROVIDER = "TensorrtExecutionProvider"
WORKSPACE_BYTES = 2 << 30
# The TensorRT inside the serving image (operator/spec.py DEFAULT_TRITON_IMAGE, tritonserver:24.08-py3).
SERVING_TENSORRT = "10.3"
PLAN_NOT_GATED = (
    "a TensorRT plan is not yet loaded and run through the TensorRT runtime for its own gate (ONNX Runtime's "
    "TensorRT provider builds a different engine), so no plan ships: the gated ONNX model does"
)


def version_problem(installed: str, serving: str = SERVING_TENSORRT) -> str | None:
    """Why a plan built with TensorRT `installed` would not load in the serving image, or None."""
    if installed == serving or installed.startswith(f"{serving}."):
        return None
    return (
        f"TensorRT {installed} is installed here but the serving image runs TensorRT {serving}: "
        "a plan only loads in the version that built it"
    )


def unavailable_reason() -> str | None:
    """Why a TensorRT candidate cannot ship from here, or None when it can (today: never None)."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the Python package tensorrt is not installed (the GPU optimizer image adds it)"
    problem = version_problem(str(getattr(importlib.import_module("tensorrt"), "__version__", "unknown")))
    if problem is not None:
        return problem
    if TENSORRT_PROVIDER not in ort.get_available_providers():
        return (
            "ONNX Runtime has no TensorrtExecutionProvider (needs onnxruntime-gpu and a CUDA device), "
            "so the engine could not be gated for accuracy"
        )
    return PLAN_NOT_GATED


class TensorRTUnavailableError(RuntimeError):
    """TensorRT is not installed here: nothing can be built."""


Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def optimization_profiles(
    shapes: Mapping[str, tuple[int, ...]], optimal_batch: int, max_batch: int
) -> dict[str, Profile]:
    """(min, opt, max) shapes per input: batch 1 to `max_batch`, other dimensions as calibrated; a model
    that does not batch (`max_batch` 0) gets exactly its calibrated shapes."""
    if max_batch <= 0:
        return {name: (shape, shape, shape) for name, shape in shapes.items()}
    top = max_batch
    return {
        name: ((1, *shape[1:]), (min(max(optimal_batch, 1), top), *shape[1:]), (top, *shape[1:]))
        for name, shape in shapes.items()
    }


def provider_options(precision: str) -> list[tuple[str, dict[str, Any]]]:
    """ONNX Runtime providers that run a model through TensorRT at `precision` (fp32/fp16/int8 with QDQ)."""
    options: dict[str, Any] = {"trt_fp16_enable": precision in ("fp16", "int8")}
    if precision == "int8":
        options["trt_int8_enable"] = True
    return [(TENSORRT_PROVIDER, options), ("CUDAExecutionProvider", {})]


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    profiles: Mapping[str, Profile],
    precision: str,
) -> str:
    """Build and serialize an engine; `profiles` maps each input to its (min, opt, max) shapes.

    int8 expects an explicitly quantized (QDQ) ONNX model, so no calibrator is needed here. Without the
    `tensorrt` package it raises `TensorRTUnavailableError` saying so, and writes nothing.
    """
    if importlib.util.find_spec("tensorrt") is None:
        raise TensorRTUnavailableError(
            "cannot build a TensorRT engine: the Python package tensorrt is not installed"
            " (the GPU optimizer image adds it)"
        )
    trt: Any = importlib.import_module("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for name, (smallest, optimal, largest) in profiles.items():
        profile.set_shape(name, smallest, optimal, largest)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError("TensorRT failed to build the engine (see the Job log for TensorRT's messages)")
    plan_path.write_bytes(bytes(engine))
    return f"TensorRT {trt.__version__} engine, {precision}, profile {dict(profiles)}"
