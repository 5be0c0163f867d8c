"""Pure parts of the optimizer: accuracy gate, choice, options, samples, Triton config, summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphs
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from modeldeploy.optimizer.accuracy import compare, cosine_similarity
from modeldeploy.optimizer.errors import OptimizerInputError
from modeldeploy.optimizer.generated import concrete_shape, generate, index_bounds
from modeldeploy.optimizer.options import OptimizeOptions, options_from_spec, parse_input_shape
from modeldeploy.optimizer.outcome import CandidateOutcome, Timing
from modeldeploy.optimizer.report import complete_report, encode_summary, error_summary, summary
from modeldeploy.optimizer.samples import augment, batched, load_calibration, split_held_out
from modeldeploy.optimizer.selection import (
    batch_sizes_to_measure,
    choose,
    choose_by_objective,
    paired_ratio,
    preferred_batch_sizes,
)
from modeldeploy.optimizer.signature import (
    ModelSignature,
    TensorSpec,
    class_like_outputs,
    load_onnx,
    signature_of,
)
from modeldeploy.optimizer.sources import fetch, local_path
from modeldeploy.optimizer.tensorrt_engine import optimization_profiles, provider_options, version_problem
from modeldeploy.optimizer.triton_config import ServingConfig, build_config, render_config

IMAGE = TensorSpec("image", "float32", "TYPE_FP32", (None, 3, None, None))
SCORES = TensorSpec("scores", "float32", "TYPE_FP32", (None, 10))
SIGNATURE = ModelSignature(inputs=(IMAGE,), outputs=(SCORES,), opset=13, op_types=frozenset({"Conv"}))


# --- accuracy gate ---------------------------------------------------------------------------------------


def test_identical_outputs_have_no_drop() -> None:
    outputs = [[np.arange(10, dtype=np.float32).reshape(1, 10)] for _ in range(3)]
    report = compare(["scores"], outputs, outputs, frozenset({"scores"}))
    assert report.drop == pytest.approx(0.0, abs=1e-12)
    assert report.worst_top1 == 1.0
    assert report.passes(0.0)


def test_a_flipped_argmax_counts_against_top1_even_when_cosine_is_high() -> None:
    reference = [[np.array([[1.0, 0.99, 0.0]])] for _ in range(4)]
    candidate = [[np.array([[1.0, 0.99, 0.0]])] for _ in range(3)] + [[np.array([[0.99, 1.0, 0.0]])]]
    report = compare(["p"], reference, candidate, frozenset({"p"}))
    assert report.outputs[0].cosine > 0.999
    assert report.worst_top1 == pytest.approx(0.75)
    assert report.drop == pytest.approx(0.25)
    assert not report.passes(0.1)
    # Not class-like: only the cosine counts.
    assert compare(["p"], reference, candidate).passes(0.01)


def test_top1_is_counted_per_time_step_for_sequence_outputs() -> None:
    reference = np.zeros((1, 4, 3))
    reference[0, :, 0] = 1.0
    candidate = reference.copy()
    candidate[0, 3] = [0.0, 1.0, 0.0]
    report = compare(["seq"], [[reference]], [[candidate]], frozenset({"seq"}))
    assert report.worst_top1 == pytest.approx(0.75)


def _head(op_type: str, output: str) -> onnx.ModelProto:
    """x [batch, 8] → `output` [batch, 4] made by one `op_type` node (MatMul/Gemm: with a weight)."""
    helper, weight = onnx.helper, onnx.numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    inputs = ["x", "w"] if op_type in ("MatMul", "Gemm") else ["x"]
    shape = 4 if op_type in ("MatMul", "Gemm") else 8
    graph = helper.make_graph(
        [helper.make_node(op_type, inputs, [output])],
        "head",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["batch", shape])],
        [weight] if op_type in ("MatMul", "Gemm") else [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("op_type", "output", "class_like"),
    [
        ("Softmax", "y", True),  # probabilities
        ("LogSoftmax", "y", True),
        ("Gemm", "y", True),  # a fully connected head: logits
        ("MatMul", "logits", True),  # named as class scores
        ("MatMul", "class_scores", True),
        ("MatMul", "y", False),  # regression values or an embedding: argmax over features means nothing
        ("Relu", "embedding", False),
    ],
)
def test_only_class_scores_get_top1_agreement(
    op_type: str, output: str, class_like: bool, tmp_path: Path
) -> None:
    model = _head(op_type, output)
    assert (output in class_like_outputs(model, signature_of(model, tmp_path))) is class_like


def test_class_scores_are_found_behind_an_identity(tmp_path: Path) -> None:
    # PP-OCR cls ends in Softmax, then Identity to `save_infer_model/scale_0.tmp_1`.
    model = _head("Softmax", "p")
    model.graph.node.append(onnx.helper.make_node("Identity", ["p"], ["save_infer_model/scale_0.tmp_1"]))
    model.graph.output[0].name = "save_infer_model/scale_0.tmp_1"
    assert class_like_outputs(model, signature_of(model, tmp_path)) == {"save_infer_model/scale_0.tmp_1"}


def test_the_outlier_graphs_regression_output_is_not_class_scores(tmp_path: Path) -> None:
    # Its 64 values have near-ties that int8 flips at cosine 0.998: top-1 there would reject a good model.
    model = onnx.load(str(onnx_graphs.outlier_matmul(tmp_path / "outlier.onnx", leading_layer=True)))
    assert class_like_outputs(model, signature_of(model, tmp_path)) == frozenset()
    cnn = onnx.load(str(onnx_graphs.conv_net(tmp_path / "cnn.onnx")))
    assert class_like_outputs(cnn, signature_of(cnn, tmp_path)) == {"probabilities"}


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        (np.array([[np.nan, 1.0]]), "non-finite"),
        (np.array([[1.0, 2.0, 3.0]]), "shape"),
    ],
)
def test_broken_outputs_are_a_full_drop(candidate: np.ndarray[Any, Any], problem: str) -> None:
    report = compare(["y"], [[np.array([[1.0, 2.0]])]], [[candidate]])
    assert report.drop == 1.0
    assert problem in (report.outputs[0].problem or "")


def test_an_all_zero_original_output_is_judged_by_the_candidates_magnitude() -> None:
    # A detector: two images with text (norm 5) and a blank one (all zeros).
    reference = [[np.array([3.0, 4.0])], [np.array([0.0, 5.0])], [np.array([0.0, 0.0])]]
    faint = [[np.array([3.0, 4.0])], [np.array([0.0, 5.0])], [np.array([0.05, 0.0])]]
    assert compare(["map"], reference, faint).outputs[0].min_cosine == pytest.approx(0.99)
    loud = [[np.array([3.0, 4.0])], [np.array([0.0, 5.0])], [np.array([5.0, 0.0])]]
    assert compare(["map"], reference, loud).outputs[0].min_cosine == 0.0
    blank = [[np.zeros(2)]]
    assert compare(["map"], blank, blank).drop == 0.0
    assert compare(["map"], blank, [[np.ones(2)]]).drop == 1.0


def test_cosine_of_opposite_and_zero_vectors() -> None:
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([-1.0, -2.0])) == pytest.approx(-1.0)
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0


def test_max_abs_error_is_reported() -> None:
    report = compare(["y"], [[np.array([1.0, 2.0])]], [[np.array([1.5, 2.0])]])
    assert report.outputs[0].max_abs_error == pytest.approx(0.5)


# --- choosing what ships ------------------------------------------------------------------------------


def _candidate(name: str, p50: float, size: int, status: str = "kept") -> CandidateOutcome:
    timing = Timing(p50, p50 * 1.5, 1000 / p50, 1, 10)
    return CandidateOutcome(name, status, "", size_bytes=size, timing=timing)  # type: ignore[arg-type]


def test_the_fastest_candidate_wins() -> None:
    candidates = [_candidate("original", 10.0, 100), _candidate("int8-static", 4.0, 30)]
    assert choose_by_objective(candidates).winner.name == "int8-static"


def test_within_the_noise_band_the_smaller_wins() -> None:
    candidates = [_candidate("original", 10.0, 100), _candidate("fp16", 10.3, 50), _candidate("x", 11.0, 10)]
    choice = choose_by_objective(candidates)
    assert choice.winner.name == "fp16"
    assert "smallest" in choice.explanation


def test_nothing_measured_slower_than_the_original_wins_on_size() -> None:
    original = _candidate("original", 10.0, 100)
    candidates = [original, _candidate("fp16", 10.3, 50), _candidate("int8", 9.9, 80)]
    choice = choose_by_objective(candidates, baseline=original)
    assert choice.winner.name == "int8"
    # The report says why the smaller fp16 lost: the original's latency narrowed the noise band.
    assert "no slower than the original (10.000 ms)" in choice.explanation
    assert "no slower" not in choose_by_objective(candidates).explanation
    # When only slower candidates may ship (pruning asked for), the fastest of them still wins.
    pruned = [_candidate("pruned", 12.0, 100), _candidate("pruned-int8", 12.4, 30)]
    assert choose_by_objective(pruned, baseline=original).winner.name == "pruned"


def test_rejected_candidates_never_win_and_ties_keep_the_original() -> None:
    candidates = [_candidate("original", 10.0, 100), _candidate("broken", 1.0, 1, status="rejected")]
    assert choose_by_objective(candidates).winner.name == "original"
    twins = [_candidate("original", 10.0, 100), _candidate("graph-optimized", 10.0, 100)]
    assert choose_by_objective(twins).winner.name == "original"


def test_an_explicit_request_wins_when_it_passed_and_falls_back_when_not() -> None:
    candidates = [_candidate("original", 5.0, 100), _candidate("int8-static", 6.0, 30)]
    assert choose(candidates, "int8-static").winner.name == "int8-static"
    rejected = [_candidate("original", 5.0, 100), _candidate("int8-static", 1.0, 30, status="rejected")]
    choice = choose(rejected, "int8-static")
    assert choice.winner.name == "original"
    assert "did not pass" in choice.explanation


def test_preferred_batch_sizes_follow_measured_throughput() -> None:
    # Throughput saturates at 4: waiting for 8 buys < 10%.
    assert preferred_batch_sizes({1: 100.0, 2: 180.0, 4: 300.0, 8: 310.0}) == [4, 8]
    assert preferred_batch_sizes({1: 100.0, 2: 101.0, 4: 99.0}) == [1, 2]
    assert preferred_batch_sizes({1: 100.0, 2: 200.0, 4: 400.0}) == [4]
    assert preferred_batch_sizes({}) == []


def test_batch_sizes_to_measure() -> None:
    assert batch_sizes_to_measure(8) == [1, 2, 4, 8]
    assert batch_sizes_to_measure(6) == [1, 2, 4, 6]
    assert batch_sizes_to_measure(1) == [1]
    assert batch_sizes_to_measure(1000) == [1, 2, 4, 8, 16, 32, 64]


# --- options -------------------------------------------------------------------------------------------


def test_spec_sections_map_to_options() -> None:
    options = options_from_spec(
        {
            "optimization": {
                "quantization": "int8-static",
                "pruning": {"sparsity": 0.5, "method": "magnitude"},
                "compile": {"target": "onnxruntime", "precision": "fp16"},
                "maxAccuracyDrop": "0.02",
                "calibration": {"uri": "s3://b/cal", "samples": 16},
                "image": "ignored:latest",
                "resources": {"limits": {"nvidia.com/gpu": 1}},
            },
            "serving": {
                "maxBatchSize": 16,
                "dynamicBatching": {"preferredBatchSizes": [4, 8], "maxQueueDelayMicroseconds": 500},
                "instanceGroup": {"kind": "gpu", "count": 2},
                "warmup": True,
                "replicas": 3,
            },
        }
    )
    assert options.quantization == "int8-static"
    assert options.pruning_sparsity == 0.5
    assert options.compile_target == "onnxruntime"
    assert options.max_accuracy_drop == 0.02
    assert options.calibration_uri == "s3://b/cal"
    assert options.calibration_samples == 16
    assert options.max_batch_size == 16
    assert options.preferred_batch_sizes == (4, 8)
    assert options.max_queue_delay_microseconds == 500
    assert options.instance_kind == "KIND_GPU"
    assert options.instance_count == 2
    assert options.warmup is True
    assert options.dynamic_batching is True
    assert options_from_spec({}) == OptimizeOptions()
    # As in the CRD: an unset serving.dynamicBatching turns the batcher off.
    assert options_from_spec({"serving": {"maxBatchSize": 4}}).dynamic_batching is False


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"optimization": {"quantization": "int4"}}, "optimization.quantization"),
        ({"optimization": {"maxAccuracyDrop": 1.5}}, "optimization.maxAccuracyDrop"),
        ({"optimization": {"maxAccuracyDrop": "lots"}}, "optimization.maxAccuracyDrop"),
        ({"optimization": {"pruning": {"sparsity": 0.95}}}, "optimization.pruning.sparsity"),
        ({"optimization": {"pruning": {"method": "random"}}}, "optimization.pruning.method"),
        ({"optimization": {"compile": {"target": "tvm"}}}, "optimization.compile.target"),
        ({"optimization": {"calibration": {"samples": 0}}}, "optimization.calibration.samples"),
        ({"optimization": "fast"}, "optimization"),
        ({"serving": {"maxBatchSize": -1}}, "serving.maxBatchSize"),
        ({"serving": {"maxBatchSize": True}}, "serving.maxBatchSize"),
        ({"serving": {"instanceGroup": {"kind": "tpu"}}}, "serving.instanceGroup.kind"),
        ({"serving": {"warmup": "yes"}}, "serving.warmup"),
        (
            {"serving": {"maxBatchSize": 4, "dynamicBatching": {"preferredBatchSizes": [2, 8]}}},
            "serving.dynamicBatching.preferredBatchSizes",
        ),
        ({"serving": {"dynamicBatching": {"preferredBatchSizes": ["x"]}}}, "preferredBatchSizes[0]"),
    ],
)
def test_bad_spec_values_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(OptimizerInputError, match=field.replace("[", r"\[").replace("]", r"\]")):
        options_from_spec(raw)


def test_input_shape_flag() -> None:
    assert parse_input_shape("x=1,3,48,320") == ("x", (1, 3, 48, 320))
    assert parse_input_shape("a=b=2,3") == ("a=b", (2, 3))
    for bad in ("x", "x=", "x=1,a", "=1,2", "x=0,3"):
        with pytest.raises(OptimizerInputError, match="--input-shape"):
            parse_input_shape(bad)


# --- samples -------------------------------------------------------------------------------------------


def test_concrete_shapes_fill_dynamic_dims_and_respect_fixed_ones() -> None:
    assert concrete_shape(IMAGE, 64, {}) == (1, 3, 64, 64)
    assert concrete_shape(IMAGE, 64, {"image": (1, 3, 48, 320)}) == (1, 3, 48, 320)
    with pytest.raises(OptimizerInputError, match="dim 1 is fixed to 3"):
        concrete_shape(IMAGE, 64, {"image": (1, 4, 48, 320)})
    with pytest.raises(OptimizerInputError, match="rank 4"):
        concrete_shape(IMAGE, 64, {"image": (3, 48, 320)})


def test_augmentation_keeps_shape_and_type_and_changes_the_image() -> None:
    rng = np.random.default_rng(0)
    samples = [{"image": rng.uniform(-1, 1, (1, 3, 32, 48)).astype(np.float32)} for _ in range(2)]
    extra = augment(samples, SIGNATURE, count=6, seed=1)
    assert len(extra) == 6
    for variant in extra:
        assert variant["image"].shape == (1, 3, 32, 48)
        assert variant["image"].dtype == np.float32
    assert all(not np.array_equal(v["image"], samples[i % 2]["image"]) for i, v in enumerate(extra))
    assert np.array_equal(extra[0]["image"], samples[0]["image"][..., ::-1])  # the first kind is a flip


def test_non_image_inputs_get_no_augmentation() -> None:
    tokens = TensorSpec("x", "float32", "TYPE_FP32", (None, 16))
    signature = ModelSignature((tokens,), (tokens,), 17, frozenset())
    assert augment([{"x": np.zeros((1, 16), np.float32)}], signature, count=4, seed=0) == []


def test_calibration_files_become_batch_one_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.random((3, 32, 32), dtype=np.float32))  # one item, no batch dim
    np.save(tmp_path / "b.npy", rng.random((2, 3, 32, 32), dtype=np.float32))  # a batch of two
    samples = load_calibration(tmp_path, SIGNATURE, limit=10)
    assert [s["image"].shape for s in samples] == [(1, 3, 32, 32)] * 3
    assert len(load_calibration(tmp_path, SIGNATURE, limit=2)) == 2
    calibration, held_out = split_held_out(samples, 1, seed=0)
    assert len(calibration) == 2 and len(held_out) == 1
    assert batched(samples[0], 4)["image"].shape == (4, 3, 32, 32)


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (np.zeros((1, 4, 32, 32), np.float32), "dim 1 must be 3"),
        (np.zeros((32, 32), np.float32), "needs rank 4"),
        (np.full((3, 32, 32), "a"), "needs float32"),
    ],
)
def test_bad_calibration_files_are_refused_by_name(tmp_path: Path, contents: Any, message: str) -> None:
    np.save(tmp_path / "bad.npy", contents)
    with pytest.raises(OptimizerInputError, match=message) as error:
        load_calibration(tmp_path, SIGNATURE, limit=10)
    assert "bad.npy" in str(error.value)


def test_a_calibration_folder_without_arrays_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(OptimizerInputError, match=r"\.npy or \.npz"):
        load_calibration(tmp_path, SIGNATURE, limit=10)


# --- Triton config -------------------------------------------------------------------------------------


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_config_with_batching_and_warmup_parses_as_model_config() -> None:
    serving = ServingConfig(8, True, [4, 8], 100, "KIND_GPU", 2, {"image": (1, 3, 32, 32)})
    config = _parse(render_config(build_config("resnet", "onnx", SIGNATURE, serving)))
    assert config.name == "resnet"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert list(config.input[0].dims) == [3, -1, -1]  # batch dim left out, dynamic dims -1
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(config.output[0].dims) == [10]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].count == 2
    warmup = config.model_warmup[0]
    assert list(warmup.inputs["image"].dims) == [3, 32, 32]
    assert warmup.inputs["image"].random_data


def test_dynamic_batching_can_be_off_while_the_model_batches() -> None:
    serving = ServingConfig(8, False, [4], 100, "KIND_GPU", 1, None)
    config = _parse(render_config(build_config("m", "onnx", SIGNATURE, serving)))
    assert config.max_batch_size == 8
    assert not config.HasField("dynamic_batching")


def test_config_without_batching_keeps_full_dims_and_no_batcher() -> None:
    serving = ServingConfig(0, True, [], 100, "KIND_CPU", 1, None)
    config = _parse(render_config(build_config("m", "plan", SIGNATURE, serving)))
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [-1, 3, -1, -1]
    assert not config.HasField("dynamic_batching")
    assert not config.model_warmup


# --- summary and cache ---------------------------------------------------------------------------------


def _report() -> dict[str, Any]:
    return {
        "chosen": "int8-static",
        "max_accuracy_drop": 0.01,
        "baseline": {"size_bytes": 1000, "latency_ms_p50": 2.0, "throughput_per_s": 500.0},
        "after": {
            "size_bytes": 250,
            "latency_ms_p50": 1.0,
            "throughput_per_s": 1000.0,
            "accuracy": {"drop": 0.004, "cosine": 0.996, "min_cosine": 0.99, "top1_agreement": 1.0},
        },
        "inputs": {"generated": True},
        "repository": {"config": "m/config.pbtxt", "model_file": "m/1/model.onnx"},
    }


def test_summary_follows_the_job_contract() -> None:
    message = summary(_report(), cached=False, location="/storage/ns/name/rev/report.json")
    assert message == {
        "v": 1,
        "cached": False,
        "chosen": "int8-static",
        "before": {"sizeBytes": 1000, "latencyMs": 2.0, "throughput": 500.0},
        "after": {"sizeBytes": 250, "latencyMs": 1.0, "throughput": 1000.0},
        "accuracy": {
            "drop": 0.004,
            "cosine": 0.996,
            "top1Agreement": 1.0,
            "minCosine": 0.99,
            "maxAccuracyDrop": 0.01,
        },
        "gateInputs": "generated",
        "report": "/storage/ns/name/rev/report.json",
    }
    assert len(encode_summary(summary(_report(), cached=True, location="x" * 10_000))) < 4096
    assert len(encode_summary(error_summary("e" * 10_000))) < 4096


def test_cache_needs_a_finished_report_and_its_files() -> None:
    text = json.dumps(_report())
    assert complete_report(text, lambda relative: True) is not None
    assert complete_report(text, lambda relative: relative != "m/1/model.onnx") is None
    assert complete_report("{truncated", lambda relative: True) is None
    assert complete_report(json.dumps({"chosen": None}), lambda relative: True) is None
    assert complete_report(None, lambda relative: True) is None


# --- TensorRT profiles, sources, token inputs -------------------------------------------------------------


def test_tensorrt_profiles_span_batch_one_to_the_max() -> None:
    profiles = optimization_profiles({"x": (1, 3, 48, 320)}, optimal_batch=4, max_batch=8)
    assert profiles == {"x": ((1, 3, 48, 320), (4, 3, 48, 320), (8, 3, 48, 320))}
    assert optimization_profiles({"x": (2, 5)}, optimal_batch=1, max_batch=0) == {
        "x": ((2, 5), (2, 5), (2, 5))
    }


def test_tensorrt_precision_flags() -> None:
    [(_, fp16), _] = provider_options("fp16")
    assert fp16 == {"trt_fp16_enable": True}
    [(_, int8), _] = provider_options("int8")
    assert int8 == {"trt_fp16_enable": True, "trt_int8_enable": True}
    [(_, fp32), _] = provider_options("fp32")
    assert fp32 == {"trt_fp16_enable": False}


def test_uris_map_to_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_PVC_ROOT", str(tmp_path))
    assert local_path("pvc://models/team/resnet.onnx") == tmp_path / "models" / "team" / "resnet.onnx"
    assert local_path("file:///data/my%20model.onnx") == Path("/data/my model.onnx")
    assert local_path("relative/model.onnx") == Path("relative/model.onnx")
    assert local_path("https://example.com/model.onnx") is None
    with pytest.raises(OptimizerInputError, match="pvc://CLAIM/PATH"):
        local_path("pvc:///no-claim")
    with pytest.raises(OptimizerInputError, match="unsupported scheme 'gs'"):
        fetch("gs://bucket/model.onnx", tmp_path)


def test_token_ids_stay_inside_the_embedding_table(tmp_path: Path) -> None:
    model_path = onnx_graphs.embedding_bag(tmp_path / "embedding.onnx", vocabulary=50)
    model = onnx.load(str(model_path))
    _, loaded = load_onnx(model_path)
    signature = signature_of(loaded, model_path)
    bounds = index_bounds(model)
    assert bounds == {"tokens": 50}
    samples = generate(signature, {"tokens": (1, 400)}, count=3, seed=0, bounds=bounds)
    for sample in samples:
        assert sample["tokens"].dtype == np.int64
        assert sample["tokens"].min() >= 0 and sample["tokens"].max() < 50
        assert sample["tokens"].max() > 25  # the whole table is used, not just 0/1


def test_multi_input_calibration_comes_as_npz(tmp_path: Path) -> None:
    ids = TensorSpec("ids", "int64", "TYPE_INT64", (None, None))
    mask = TensorSpec("mask", "float32", "TYPE_FP32", (None, None))
    signature = ModelSignature((ids, mask), (SCORES,), 17, frozenset())
    np.savez(
        tmp_path / "a.npz", ids=np.arange(8, dtype=np.int32).reshape(1, 8), mask=np.ones((1, 8), np.float32)
    )
    [sample] = load_calibration(tmp_path, signature, limit=5)
    assert sample["ids"].dtype == np.int64 and sample["mask"].shape == (1, 8)
    np.save(tmp_path / "b.npy", np.zeros((1, 8), np.float32))
    with pytest.raises(OptimizerInputError, match=r"b\.npy: the model has 2 inputs"):
        load_calibration(tmp_path, signature, limit=5)


def _rounds(name: str, values: list[float], size: int) -> CandidateOutcome:
    ordered = sorted(values)
    timing = Timing(ordered[len(values) // 2], ordered[-1], 1000 / ordered[0], 1, len(values), tuple(values))
    return CandidateOutcome(name, "kept", "", size_bytes=size, timing=timing)


def test_paired_rounds_tell_a_consistent_slowdown_from_noise() -> None:
    rng = np.random.default_rng(0)
    load = rng.uniform(1.0, 3.0, 200)  # a noisy neighbour: every round's speed varies threefold
    fast = [10.0 * factor for factor in load]
    slower = [10.0 * factor * 1.12 for factor in load]  # 12% slower in every round
    twin = [10.0 * factor * rng.uniform(0.98, 1.02) for factor in load]
    # Unpaired, the spreads overlap completely; paired, the 12% is certain and the twin is a tie.
    ratio = paired_ratio(_rounds("s", slower, 1).timing, _rounds("f", fast, 1).timing)  # type: ignore[arg-type]
    assert 1.11 < ratio.low <= ratio.median <= ratio.high < 1.13
    tie = paired_ratio(_rounds("t", twin, 1).timing, _rounds("f", fast, 1).timing)  # type: ignore[arg-type]
    assert tie.low < 1.0 < tie.high  # the interval reflects the per-round noise, not one p50 ratio
    candidates = [_rounds("original", fast, 100), _rounds("fp16", slower, 50), _rounds("int8", twin, 25)]
    choice = choose_by_objective(candidates, baseline=candidates[0])
    assert choice.winner.name == "int8"
    assert "fp16" not in choice.explanation  # measurably slower: not among the equally fast


def test_a_plan_must_match_the_serving_images_tensorrt() -> None:
    assert version_problem("10.3.0.26") is None
    assert version_problem("10.3") is None
    problem = version_problem("10.13.2")
    assert problem is not None and "serving image runs TensorRT 10.3" in problem
    assert version_problem("8.6.1", serving="8.6") is None
