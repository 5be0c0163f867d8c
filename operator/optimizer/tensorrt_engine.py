"""TensorRT: whether it can run here, and building a serialized engine (`model.plan`) from ONNX.

The only module that imports `tensorrt`. A TensorRT engine is gated and timed through ONNX Runtime's
TensorRT execution provider (same TensorRT, same precision flags); the plan shipped to Triton is built
with the TensorRT builder. Not verified on a GPU in this repository's CI (no GPU there).
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


def unavailable_reason() -> str | None:
    """Why a TensorRT candidate cannot be built and gated here, or None when it can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the Python package tensorrt is not installed (the GPU optimizer image adds it)"
    if TENSORRT_PROVIDER not in ort.get_available_providers():
        return (
            "ONNX Runtime has no TensorrtExecutionProvider (needs onnxruntime-gpu and a CUDA device), "
            "so the engine could not be gated for accuracy"
        )
    return None


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
