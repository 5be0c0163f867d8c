"""Building candidate models, one function per step. Each writes `target` from `source` or raises.

The steps call ONNX Runtime's quantizer and graph optimizer, which break on real models in known ways
(docs/optimizer.md, "Pitfalls"); the workarounds live here, next to the call they protect.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from modeldeploy.optimizer.measurement import open_session
from modeldeploy.optimizer.samples import Sample
from modeldeploy.optimizer.signature import onnx_opset

# Per-channel DequantizeLinear (its `axis`) needs opset 13; PP-OCRv4 ships opset 11/12.
PER_CHANNEL_MIN_OPSET = 13
DYNAMIC_OP_TYPES = ["MatMul", "Gemm", "Attention", "LSTM", "GRU"]
PRUNABLE_OP_TYPES = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}  # op → index of its weight input


def _drop_quantizer_advice(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


@contextmanager
def _quantizer_advice_silenced() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice ("consider pre-processing", "axis out of range") through the
    root logger on every call; the report already says what was done. Only its own records are dropped."""
    root = logging.getLogger()
    root.addFilter(_drop_quantizer_advice)
    try:
        yield
    finally:
        root.removeFilter(_drop_quantizer_advice)


def _optimize_offline(source: Path, target: Path, level: ort.GraphOptimizationLevel) -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def graph_optimize(source: Path, target: Path) -> str:
    """ONNX Runtime's basic, provider-independent rewrites saved offline: constant folding (PP-OCRv4 keeps
    its weights in Constant nodes, which the quantizer cannot see), Conv+BatchNorm fusion, dead nodes."""
    _optimize_offline(source, target, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    return "constant folding and node fusions (ONNX Runtime basic level)"


def compile_onnxruntime(source: Path, target: Path) -> str:
    """The extended level adds fusions that use ONNX Runtime contrib ops (Triton's ONNX Runtime runs them)."""
    _optimize_offline(source, target, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    return "ONNX Runtime extended-level fusions, saved offline"


def quantize_int8_dynamic(source: Path, target: Path) -> str:
    """Dynamic int8 of MatMul/Gemm/attention/RNN weights only. Conv stays float: ONNX Runtime's default
    op list also quantizes Conv, which crashes on graphs whose weights are not initializers."""
    with _quantizer_advice_silenced():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=DYNAMIC_OP_TYPES,
            extra_options={"MatMulConstBOnly": True},
        )
    return "int8 weights for MatMul/Gemm/Attention/LSTM/GRU, activations quantized at run time"


class _SampleReader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, samples: Sequence[Sample]) -> None:
        self._samples: Iterator[Sample] = iter(samples)

    def get_next(self) -> Sample | None:
        return next(self._samples, None)


def _at_least_opset(source: Path, workdir: Path, opset: int) -> tuple[Path, str]:
    model = onnx.load(str(source))
    current = onnx_opset(model)
    if current >= opset:
        return source, ""
    converted = onnx.version_converter.convert_version(model, opset)
    path = workdir / f"opset{opset}.onnx"
    onnx.save(converted, str(path))
    return path, f"opset {current} converted to {opset} for per-channel scales; "


def quantize_int8_static(source: Path, target: Path, calibration: Sequence[Sample]) -> str:
    """Static QDQ int8 with MinMax calibration: per-channel weights (after raising the opset to 13 when
    needed); if that cannot be written or loaded, per-tensor weights on the original opset."""
    if not calibration:
        raise ValueError("static quantization needs calibration samples")
    with tempfile.TemporaryDirectory(prefix="int8-static-") as scratch:
        notes = ""
        try:
            upgraded, notes = _at_least_opset(source, Path(scratch), PER_CHANNEL_MIN_OPSET)
            _quantize_static(upgraded, target, calibration, per_channel=True)
            open_session(target, ["CPUExecutionProvider"])
            return notes + f"QDQ int8, per-channel weights, MinMax calibration on {len(calibration)} samples"
        except Exception as error:  # the quantizer and the converter raise many types on real graphs
            first_error = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
        _quantize_static(source, target, calibration, per_channel=False)
        return (
            f"QDQ int8, per-tensor weights, MinMax calibration on {len(calibration)} samples "
            f"(per-channel failed: {first_error})"
        )


def _quantize_static(source: Path, target: Path, calibration: Sequence[Sample], per_channel: bool) -> None:
    with _quantizer_advice_silenced():
        quantize_static(
            str(source),
            str(target),
            _SampleReader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


def convert_fp16(source: Path, target: Path) -> str:
    """float16 weights and compute; the model's inputs and outputs keep their float32 types."""
    # Imported here: it pulls in a lot and only this step needs it.
    from onnxconverter_common import float16  # noqa: PLC0415

    with warnings.catch_warnings():
        # One warning per tiny weight clipped to float16's range: thousands of lines, no information.
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    # With keep_io_types the converter can insert the same input Cast twice (an input read both by a node it
    # keeps in float32 and by one it converts): same name, same output, which ONNX Runtime refuses. Keep one.
    produced: set[str] = set()
    unique = []
    for node in model.graph.node:
        if node.op_type == "Cast" and set(node.output) <= produced:
            continue
        produced.update(node.output)
        unique.append(node)
    del model.graph.node[:]
    model.graph.node.extend(unique)
    onnx.save(model, str(target))
    return "float16 weights and compute, float32 inputs/outputs kept"


def prune_magnitude(source: Path, target: Path, sparsity: float) -> str:
    """Zero the smallest-magnitude `sparsity` share of each Conv/MatMul/Gemm weight tensor.

    Dense ONNX Runtime kernels do not get faster from zeros and the file stays the same size; what this buys
    is a model that compresses well and runs faster on sparse-capable runtimes. Its accuracy cost is gated.
    """
    model = onnx.load(str(source))
    weights = {
        node.input[index]
        for node in model.graph.node
        if (index := PRUNABLE_OP_TYPES.get(node.op_type)) is not None and len(node.input) > index
    }
    zeroed = total = 0
    for initializer in model.graph.initializer:
        if initializer.name not in weights or len(initializer.dims) < 2:
            continue
        values = numpy_helper.to_array(initializer)
        if values.dtype.kind != "f":
            continue
        count = int(values.size * sparsity)
        if count:
            threshold = np.partition(np.abs(values).ravel(), count - 1)[count - 1]
            values = np.where(np.abs(values) <= threshold, np.zeros_like(values), values)
        zeroed += int(values.size - np.count_nonzero(values))
        total += values.size
        initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
    if not total:
        raise ValueError("no Conv/MatMul/Gemm weight initializers to prune")
    onnx.save(model, str(target))
    return f"magnitude pruning: {zeroed / total:.1%} of {total} weights are zero (target {sparsity:.0%})"


def external_data_files(path: Path) -> list[str]:
    """The external-data files a model refers to, relative to its folder."""
    model = onnx.load(str(path), load_external_data=False)
    tensors = list(model.graph.initializer) + [
        attribute.t for node in model.graph.node for attribute in node.attribute if attribute.HasField("t")
    ]
    return sorted(
        {
            entry.value
            for tensor in tensors
            if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )


def file_size(path: Path) -> int:
    """Bytes of the model file plus any external-data files next to it."""
    extra = sum((path.parent / name).stat().st_size for name in external_data_files(path))
    return path.stat().st_size + extra
