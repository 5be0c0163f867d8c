"""Accuracy-aware int8: pre-processing, per-channel weights, the calibration-method search, and keeping the
nodes that break accuracy in float (ranked by a per-node measurement), named in the report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphs
import pytest
from onnx import numpy_helper
from optimizer_checks import (  # triton_proof: this module's repositories must load in Triton
    assert_shipped_model_meets_bound,
    produced,
    triton_proof,  # noqa: F401
)

from modeldeploy.optimizer import quantization
from modeldeploy.optimizer.int8_search import rank_nodes
from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.pipeline import OptimizeRequest, optimize
from modeldeploy.optimizer.quantizers import Int8Plan, quantize_dynamic_int8, quantize_static_int8

QUICK = OptimizeOptions(measure_seconds=0.2, calibration_samples=8, gate_samples=16)


def _optimize(model: Path, output: Path, options: OptimizeOptions) -> dict[str, Any]:
    report = optimize(OptimizeRequest(str(model), str(output), "m", options), log=lambda line: None).report
    produced(output)
    return report


def _candidate(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["candidates"] if c["name"] == name)
    return found


def _feeds(count: int, seed: int) -> list[dict[str, np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(count)]


def test_the_node_that_breaks_int8_is_found_and_kept_in_float(tmp_path: Path) -> None:
    model = onnx_graphs.outlier_matmul(tmp_path / "outlier.onnx", leading_layer=True)
    report = _optimize(model, tmp_path / "out", replace(QUICK, quantization="int8-dynamic"))
    dynamic = _candidate(report, "int8-dynamic")
    search = dynamic["search"]
    assert search["tried"][0]["status"] == "rejected" and search["tried"][0]["drop"] > 0.1
    assert [entry["node"] for entry in search["kept_in_float"]] == ["outlier"]
    assert search["kept_in_float"][0]["relative_error_added"] > 0.5
    assert dynamic["status"] == "kept" and "kept in float: outlier" in dynamic["reason"]
    assert report["chosen"] == "int8-dynamic"
    shipped = onnx.load(str(tmp_path / "out" / "m" / "1" / "model.onnx"))
    float_matmuls = [node.name for node in shipped.graph.node if node.op_type == "MatMul"]
    assert float_matmuls == ["outlier"]  # `first` is int8 (MatMulInteger), `outlier` stayed float
    assert "MatMulInteger" in {node.op_type for node in shipped.graph.node}
    assert_shipped_model_meets_bound(model, tmp_path / "out", "m", _feeds(8, seed=4), 0.01)


def test_nodes_are_ranked_by_the_error_they_add(tmp_path: Path) -> None:
    model = onnx_graphs.outlier_matmul(tmp_path / "outlier.onnx", leading_layer=True)
    quantized = tmp_path / "int8.onnx"
    quantize_dynamic_int8(model, quantized, Int8Plan())
    ranking = rank_nodes(model, quantized, _feeds(4, seed=1), ["first", "outlier"])
    assert [name for name, _ in ranking] == ["outlier", "first"]
    assert ranking[0][1] > 0.5 and ranking[1][1] < 0.05


def test_a_single_node_model_that_int8_breaks_is_rejected_not_emptied(tmp_path: Path) -> None:
    model = onnx_graphs.outlier_matmul(tmp_path / "outlier.onnx")
    report = _optimize(model, tmp_path / "out", replace(QUICK, quantization="int8-dynamic"))
    dynamic = _candidate(report, "int8-dynamic")
    assert dynamic["status"] == "rejected" and dynamic["search"]["kept_in_float"] == []
    assert report["chosen"] in ("original", "graph-optimized")


def test_static_int8_tries_three_calibration_methods_and_ships_the_best(tmp_path: Path) -> None:
    model = onnx_graphs.conv_net(tmp_path / "cnn.onnx")
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for index, image in enumerate(onnx_graphs.confident_images(model, count=24, seed=2)):
        np.save(calibration / f"{index}.npy", image)
    options = replace(QUICK, quantization="int8-static", calibration_uri=str(calibration))
    report = _optimize(model, tmp_path / "out", options)
    static = _candidate(report, "int8-static")
    tried = static["search"]["tried"]
    assert [entry["plan"].split(",")[0] for entry in tried[:3]] == ["MinMax", "Percentile", "Entropy"]
    best = min(entry["drop"] for entry in tried if entry["status"] == "kept")
    assert static["accuracy"]["drop"] == best
    assert static["latency_ms_p50"] is not None  # the winning plan is timed under the candidate's name
    assert "pre-processed" in static["search"]["preprocessing"]


def test_symmetric_activations_for_tensorrt_have_zero_points_at_zero(tmp_path: Path) -> None:
    model = onnx_graphs.conv_net(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(3)
    samples = [{"image": rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    target = tmp_path / "qdq.onnx"
    quantize_static_int8(model, target, samples, Int8Plan(symmetric_activations=True))
    quantized = onnx.load(str(target))
    initializers = {init.name: numpy_helper.to_array(init) for init in quantized.graph.initializer}
    zero_points = [
        initializers[node.input[2]]
        for node in quantized.graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2
    ]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_static_calibration_is_capped_by_the_calibrators_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ONNX Runtime's calibrator holds every intermediate tensor of every sample (PP-OCRv4 rec: 23 GB).
    monkeypatch.setattr(quantization, "CALIBRATION_MEMORY_BYTES", 1)  # room for the minimum: 2 samples
    model = onnx_graphs.conv_net(tmp_path / "cnn.onnx")
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(5)
    for index in range(12):
        np.save(calibration / f"{index}.npy", rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32))
    options = replace(QUICK, quantization="int8-static", calibration_uri=str(calibration))
    report = _optimize(model, tmp_path / "out", options)
    assert any("int8-static: calibrated on 2 of" in note for note in report["notes"])
    assert "calibration on 2 samples" in _candidate(report, "int8-static")["reason"]
