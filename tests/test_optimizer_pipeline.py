"""The optimizer end to end on small generated graphs: what ships, what is rejected, what the report says."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphs
import pytest
from onnx import numpy_helper
from optimizer_checks import (  # triton_proof: this module's repositories must load in Triton
    assert_config_matches_model,
    assert_shipped_model_meets_bound,
    produced,
    read_config,
    triton_proof,  # noqa: F401
)
from tritonclient.grpc import model_config_pb2

from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.pipeline import OptimizeRequest, optimize
from modeldeploy.optimizer.tensorrt_engine import unavailable_reason

# Small budgets: these tests check behaviour, not speed (benchmarks/optimize.py measures speed).
QUICK = OptimizeOptions(measure_seconds=0.2, calibration_samples=8, gate_samples=4)


def _optimize(model: Path | str, output: Path, name: str = "m", options: OptimizeOptions = QUICK) -> Any:
    request = OptimizeRequest(str(model), str(output), name, options)
    report = optimize(request, log=lambda line: None).report
    produced(output)
    return report


def _candidates(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["candidates"]}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("graphs")
    return {
        "transformer": onnx_graphs.transformer_block(folder / "transformer.onnx", hidden=128),
        "cnn": onnx_graphs.conv_net(folder / "cnn.onnx"),
        "outlier": onnx_graphs.outlier_matmul(folder / "outlier.onnx"),
        "weightless": onnx_graphs.weightless(folder / "weightless.onnx"),
    }


def _feeds(
    name: str, shape: tuple[int, ...], count: int = 4, seed: int = 99
) -> list[dict[str, np.ndarray[Any, Any]]]:
    """Inputs the shipped models are checked on: images uniform in [-1, 1], other floats N(0, 1) (the ranges
    the optimizer generates or is calibrated with: the gate promises nothing outside them)."""
    rng = np.random.default_rng(seed)
    if len(shape) == 4:
        return [{name: rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(count)]
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


def test_transformer_ships_a_smaller_model_within_the_bound(graphs: dict[str, Path], tmp_path: Path) -> None:
    report = _optimize(graphs["transformer"], tmp_path, "encoder")
    candidates = _candidates(report)
    assert set(candidates) >= {"original", "graph-optimized", "int8-dynamic", "int8-static", "fp16"}
    chosen = candidates[report["chosen"]]
    assert chosen["status"] == "kept"
    assert str(chosen["reason"]).startswith("chosen:")
    # int8 weights: the MatMul-heavy block shrinks ~4x; it passed the gate.
    assert candidates["int8-dynamic"]["status"] == "kept"
    assert candidates["int8-dynamic"]["latency_ms_p50"] is not None  # timed, so the choice can pick it
    # The fp16 converter duplicates an input Cast on this graph (LayerNormalization stays float32); the
    # optimizer repairs that, so fp16 loads and passes instead of failing.
    assert candidates["fp16"]["status"] == "kept", candidates["fp16"]["reason"]
    assert candidates["int8-dynamic"]["size_bytes"] * 3 < candidates["original"]["size_bytes"]
    assert_shipped_model_meets_bound(
        graphs["transformer"], tmp_path, "encoder", _feeds("x", (1, 16, 128)), 0.01
    )
    config = assert_config_matches_model(tmp_path, "encoder")
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size)
    assert set(report["triton"]["throughput_by_batch_size"]) == {"1", "2", "4", "8"}
    for name in ("model", "chosen", "baseline", "candidates", "tools", "inputs"):
        assert name in report
    assert report["tools"]["onnxruntime"]
    for candidate in candidates.values():
        assert set(candidate) >= {
            "name",
            "status",
            "reason",
            "size_bytes",
            "latency_ms_p50",
            "latency_ms_p99",
            "throughput_per_s",
            "accuracy",
        }


def test_cnn_gets_static_int8(graphs: dict[str, Path], tmp_path: Path) -> None:
    # Calibrated on the kind of input it will serve (uniform noise images the network answers clearly, as a
    # trained classifier does on its data: the gate counts every flipped answer), checked on held-out ones.
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for index, image in enumerate(onnx_graphs.confident_images(graphs["cnn"], count=16, seed=1)):
        np.save(calibration / f"{index}.npy", image)
    options = replace(
        QUICK, quantization="int8-static", calibration_uri=str(calibration), calibration_samples=16
    )
    report = _optimize(graphs["cnn"], tmp_path, "cnn", options)
    assert report["chosen"] == "int8-static"
    shipped = onnx.load(str(tmp_path / "cnn" / "1" / "model.onnx"))
    assert "QuantizeLinear" in {node.op_type for node in shipped.graph.node}
    accuracy = _candidates(report)["int8-static"]["accuracy"]
    assert accuracy["top1_agreement"] is not None
    assert_shipped_model_meets_bound(graphs["cnn"], tmp_path, "cnn", _feeds("image", (1, 3, 32, 32)), 0.01)
    assert_config_matches_model(tmp_path, "cnn")


def test_a_candidate_that_breaks_accuracy_is_rejected(graphs: dict[str, Path], tmp_path: Path) -> None:
    report = _optimize(graphs["outlier"], tmp_path)
    candidates = _candidates(report)
    assert candidates["int8-dynamic"]["status"] == "rejected", candidates["int8-dynamic"]
    assert "exceeds 0.01" in str(candidates["int8-dynamic"]["reason"])
    assert candidates["int8-dynamic"]["accuracy"]["drop"] > 0.5
    # No calibration data: `auto` does not even try static int8 calibrated on generated inputs.
    assert candidates["int8-static"]["status"] == "skipped"
    assert "calibrated on generated inputs" in str(candidates["int8-static"]["reason"])
    assert report["inputs"]["generated"] is True
    assert report["chosen"] not in ("int8-dynamic", "int8-static")
    assert_shipped_model_meets_bound(graphs["outlier"], tmp_path, "m", _feeds("x", (1, 64)), 0.01)


def test_asking_for_a_candidate_that_fails_the_gate_ships_a_passing_one(
    graphs: dict[str, Path], tmp_path: Path
) -> None:
    report = _optimize(graphs["outlier"], tmp_path, options=replace(QUICK, quantization="int8-dynamic"))
    assert set(_candidates(report)) == {"original", "graph-optimized", "int8-dynamic"}
    assert report["chosen"] in ("original", "graph-optimized")
    assert "did not pass" in str(report["explanation"])


def test_a_tighter_bound_rejects_what_the_default_keeps(graphs: dict[str, Path], tmp_path: Path) -> None:
    # int8-dynamic of the transformer drops ~1e-4 (kept at the default 0.01): a 1e-6 bound refuses it.
    options = replace(QUICK, quantization="int8-dynamic", max_accuracy_drop=1e-6)
    report = _optimize(graphs["transformer"], tmp_path, options=options)
    assert _candidates(report)["int8-dynamic"]["status"] == "rejected"
    assert report["chosen"] in ("original", "graph-optimized")


def test_a_step_that_throws_is_reported_and_the_run_goes_on(graphs: dict[str, Path], tmp_path: Path) -> None:
    report = _optimize(graphs["weightless"], tmp_path, options=replace(QUICK, pruning_sparsity=0.5))
    pruned = _candidates(report)["pruned"]
    assert pruned["status"] == "failed"
    assert "no Conv/MatMul/Gemm weight" in str(pruned["reason"])
    assert any("pruning" in note for note in report["notes"])
    assert (tmp_path / "m" / "1" / "model.onnx").is_file()


def test_pruning_reaches_the_sparsity_and_reports_its_cost(graphs: dict[str, Path], tmp_path: Path) -> None:
    options = replace(QUICK, pruning_sparsity=0.3, quantization="none", max_accuracy_drop=0.2)
    report = _optimize(graphs["transformer"], tmp_path, options=options)
    pruned = _candidates(report)["pruned"]
    assert pruned["status"] == "kept"
    assert report["chosen"] == "pruned"
    assert 0 < pruned["accuracy"]["drop"] <= 0.2
    shipped = onnx.load(str(tmp_path / "m" / "1" / "model.onnx"))
    weights = [numpy_helper.to_array(init) for init in shipped.graph.initializer if init.name in ("w1", "w2")]
    assert weights and all(np.mean(w == 0) >= 0.299 for w in weights)


def test_compile_for_onnxruntime(graphs: dict[str, Path], tmp_path: Path) -> None:
    report = _optimize(
        graphs["cnn"], tmp_path, options=replace(QUICK, quantization="none", compile_target="onnxruntime")
    )
    assert report["chosen"] == "compiled-onnxruntime"
    assert _candidates(report)["compiled-onnxruntime"]["latency_ms_p50"] is not None
    assert_shipped_model_meets_bound(graphs["cnn"], tmp_path, "m", _feeds("image", (1, 3, 32, 32)), 0.01)


def test_tensorrt_without_a_gpu_is_skipped_with_the_reason(graphs: dict[str, Path], tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT is usable here: this test covers machines without it")
    options = replace(QUICK, quantization="none", compile_target="tensorrt")
    report = _optimize(graphs["cnn"], tmp_path, options=options)
    trt = _candidates(report)["tensorrt-fp16"]
    assert trt["status"] == "skipped"
    assert trt["reason"] == reason
    assert (tmp_path / "m" / "1" / "model.onnx").is_file()
    assert any("compile tensorrt: skipped" in note for note in report["notes"])


def test_second_run_uses_the_cache_until_the_repository_is_incomplete(
    graphs: dict[str, Path], tmp_path: Path
) -> None:
    options = replace(QUICK, quantization="none")
    first = optimize(OptimizeRequest(str(graphs["cnn"]), str(tmp_path), "m", options), log=lambda line: None)
    assert not first.cached
    model_file = tmp_path / "m" / "1" / "model.onnx"
    written = model_file.stat().st_mtime_ns
    second = optimize(OptimizeRequest(str(graphs["cnn"]), str(tmp_path), "m", options), log=lambda line: None)
    assert second.cached and second.summary()["cached"] is True
    assert second.report == first.report
    assert model_file.stat().st_mtime_ns == written
    model_file.unlink()
    third = optimize(OptimizeRequest(str(graphs["cnn"]), str(tmp_path), "m", options), log=lambda line: None)
    assert not third.cached and model_file.is_file()
    produced(tmp_path)


def test_real_calibration_data_is_used_and_augmented(graphs: dict[str, Path], tmp_path: Path) -> None:
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(5)
    for index in range(6):
        np.save(calibration / f"{index}.npy", rng.uniform(0, 1, (3, 32, 32)).astype(np.float32))
    options = replace(QUICK, quantization="int8-static", calibration_uri=calibration.as_uri(), gate_samples=2)
    report = _optimize(graphs["cnn"], tmp_path / "out", options=options)
    inputs = report["inputs"]
    assert inputs["source"] == calibration.as_uri()
    assert inputs["real_samples"] == 4 and inputs["held_out_samples"] == 2
    assert inputs["augmented_samples"] == 4
    assert "on 8 samples" in str(_candidates(report)["int8-static"]["reason"])


@pytest.fixture
def http_folder(graphs: dict[str, Path]) -> Iterator[str]:
    folder = graphs["cnn"].parent

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_models_are_fetched_over_http_and_file_uris(
    graphs: dict[str, Path], http_folder: str, tmp_path: Path
) -> None:
    options = replace(QUICK, quantization="none")
    _optimize(graphs["cnn"].as_uri(), tmp_path / "file", options=options)
    report = _optimize(f"{http_folder}/cnn.onnx", tmp_path / "http", options=options)
    assert report["source"] == f"{http_folder}/cnn.onnx"
    assert read_config(tmp_path / "http", "m").input[0].name == "image"
    assert (tmp_path / "file" / "m" / "1" / "model.onnx").is_file()


def test_a_token_model_gets_valid_ids_and_an_int64_config(tmp_path: Path) -> None:
    model = onnx_graphs.embedding_bag(tmp_path / "bag.onnx", vocabulary=50)
    report = _optimize(model, tmp_path / "out", "bag")
    assert report["inputs"]["shapes"] == {"tokens": [1, 64]}
    assert _candidates(report)["int8-dynamic"]["status"] in ("kept", "rejected")
    config = assert_config_matches_model(tmp_path / "out", "bag")
    assert config.input[0].data_type == model_config_pb2.TYPE_INT64
    rng = np.random.default_rng(3)
    feeds = [{"tokens": rng.integers(0, 50, (1, 64), dtype=np.int64)} for _ in range(4)]
    assert_shipped_model_meets_bound(model, tmp_path / "out", "bag", feeds, 0.01)
