"""The TensorRT path: a clear refusal where TensorRT cannot run, a real engine where it can.

This repository's CI has no GPU, so there the refusal is what runs. `benchmarks/tensorrt_device.sh` runs
this file on a GPU machine with `tensorrt` and `onnxruntime-gpu` installed (the optimizer image's
GPU_PACKAGES), where the engine test builds a plan, loads it with TensorRT's runtime and runs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx_graphs
import pytest

from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.pipeline import OptimizeRequest, optimize
from modeldeploy.optimizer.tensorrt_engine import (
    TensorRTUnavailableError,
    build_engine,
    optimization_profiles,
    unavailable_reason,
)

QUICK = OptimizeOptions(measure_seconds=0.2, calibration_samples=8, gate_samples=4)
HAS_TENSORRT_PACKAGE = importlib.util.find_spec("tensorrt") is not None


def _tensorrt_run(tmp_path: Path) -> dict[str, Any]:
    model = onnx_graphs.conv_net(tmp_path / "cnn.onnx")
    options = replace(QUICK, quantization="none", compile_target="tensorrt", compile_precision="fp16")
    optimize(OptimizeRequest(str(model), str(tmp_path / "out"), "m", options), log=lambda line: None)
    report: dict[str, Any] = json.loads((tmp_path / "out" / "report.json").read_text())
    return report


def _candidate(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["candidates"] if c["name"] == name)
    return found


@pytest.mark.skipif(unavailable_reason() is None, reason="TensorRT is usable here: the engine test runs")
def test_without_tensorrt_the_candidate_is_skipped_with_the_reason_and_onnx_ships(tmp_path: Path) -> None:
    reason = unavailable_reason()
    assert reason is not None
    assert "tensorrt" in reason.lower() or "TensorrtExecutionProvider" in reason
    report = _tensorrt_run(tmp_path)
    trt = _candidate(report, "tensorrt-fp16")
    assert (trt["status"], trt["reason"]) == ("skipped", reason)
    assert report["chosen"] != "tensorrt-fp16"
    assert (tmp_path / "out" / "m" / "1" / "model.onnx").is_file()
    assert not (tmp_path / "out" / "m" / "1" / "model.plan").exists()
    assert 'platform: "onnxruntime_onnx"' in (tmp_path / "out" / "m" / "config.pbtxt").read_text()


@pytest.mark.skipif(HAS_TENSORRT_PACKAGE, reason="the tensorrt package is installed here")
def test_building_an_engine_without_tensorrt_is_refused_clearly(tmp_path: Path) -> None:
    model = onnx_graphs.conv_net(tmp_path / "cnn.onnx")
    plan = tmp_path / "model.plan"
    with pytest.raises(TensorRTUnavailableError, match="the Python package tensorrt is not installed"):
        build_engine(model, plan, optimization_profiles({"image": (1, 3, 32, 32)}, 1, 8), "fp16")
    assert not plan.exists()


@pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"TensorRT is not usable: {unavailable_reason()}"
)
def test_tensorrt_engine_is_built_gated_and_runs(tmp_path: Path) -> None:
    report = _tensorrt_run(tmp_path)
    trt = _candidate(report, "tensorrt-fp16")
    assert trt["status"] == "kept", trt
    assert trt["accuracy"]["drop"] <= QUICK.max_accuracy_drop
    plan = tmp_path / "out" / "m" / "1" / "model.plan"
    if report["chosen"] == "tensorrt-fp16":
        assert plan.is_file()
        assert 'platform: "tensorrt_plan"' in (tmp_path / "out" / "m" / "config.pbtxt").read_text()
    # Build the plan directly too, and run it with TensorRT's own runtime (not ONNX Runtime's provider).
    model = onnx_graphs.conv_net(tmp_path / "direct.onnx")
    direct = tmp_path / "direct.plan"
    build_engine(model, direct, optimization_profiles({"image": (1, 3, 32, 32)}, 1, 8), "fp32")
    trt_module: Any = importlib.import_module("tensorrt")
    runtime = trt_module.Runtime(trt_module.Logger(trt_module.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(direct.read_bytes())
    assert engine is not None
    names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
    assert "image" in names
    torch: Any = pytest.importorskip("torch")  # device buffers for the run
    context = engine.create_execution_context()
    context.set_input_shape("image", (2, 3, 32, 32))
    feed = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)).cuda()
    outputs = {}
    for name in names:
        if engine.get_tensor_mode(name) == trt_module.TensorIOMode.OUTPUT:
            shape = tuple(context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            context.set_tensor_address(name, outputs[name].data_ptr())
    context.set_tensor_address("image", feed.data_ptr())
    assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert all(bool(torch.isfinite(value).all()) for value in outputs.values())
