"""ONNX Runtime's int8 quantizers, called the way real models need (docs/optimizer.md, "int8").

- `preprocess`: ONNX Runtime's `quant_pre_process` (shape inference so the quantizer sees every tensor's
  type), falling back to ONNX-only shape inference when its symbolic shape inference fails (PP-OCRv4 rec),
  then to no pre-processing; unnamed nodes get names (the sensitivity fallback excludes nodes by name).
- `quantize_dynamic_int8`: int8 weights for MatMul/Gemm/Attention/RNN and int8 embedding tables (Gather),
  per-channel by default, activations quantized at run time.
- `quantize_static_int8`: QDQ int8 with a calibration method (MinMax, Percentile, Entropy), per-channel
  weights (opset raised to 13 first when lower), symmetric int8 activations when TensorRT will run it.

Every function writes `target` or raises; the search over plans lives in `int8_search.py`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

from modeldeploy.optimizer.samples import Sample
from modeldeploy.optimizer.signature import onnx_opset

# Per-channel DequantizeLinear (its `axis`) needs opset 13; PP-OCRv4 ships opset 11/12.
PER_CHANNEL_MIN_OPSET = 13
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Attention", "LSTM", "GRU", "Gather")
# Static QDQ quantizes ONNX Runtime's default op list; these are the nodes ranked for staying in float.
STATIC_RANKED_OP_TYPES = (
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "Add", "Mul", "Concat", "Resize", "Sigmoid",
    "HardSigmoid", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Softmax",
)  # fmt: skip
CALIBRATION_METHODS = {
    "MinMax": CalibrationMethod.MinMax,
    "Percentile": CalibrationMethod.Percentile,
    "Entropy": CalibrationMethod.Entropy,
}


@dataclass(frozen=True)
class Int8Plan:
    """One way to quantize: what the search varies."""

    per_channel: bool = True
    method: str = "MinMax"  # static only
    exclude: tuple[str, ...] = ()  # node names kept in float
    symmetric_activations: bool = False  # static only: int8 activations centred on 0 (TensorRT)

    def label(self) -> str:
        parts = [self.method, "per-channel" if self.per_channel else "per-tensor"]
        if self.symmetric_activations:
            parts.append("symmetric activations")
        if self.exclude:
            parts.append(f"{len(self.exclude)} nodes in float")
        return ", ".join(parts)


def _drop_quantizer_advice(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


@contextmanager
def quantizer_advice_silenced() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice ("consider pre-processing", "axis out of range") through the
    root logger on every call; the report already says what was done. Only its own records are dropped."""
    root = logging.getLogger()
    root.addFilter(_drop_quantizer_advice)
    try:
        yield
    finally:
        root.removeFilter(_drop_quantizer_advice)


def _name_nodes(path: Path) -> None:
    model = onnx.load(str(path))
    taken = {node.name for node in model.graph.node if node.name}
    changed = False
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name, changed = name, True
            taken.add(name)
    if changed:
        onnx.save(model, str(path))


@contextmanager
def _in_scratch_folder() -> Iterator[None]:
    """ONNX Runtime's symbolic shape inference saves `sym_shape_infer_temp.onnx` into the current folder
    when it fails: the Job's may be read-only, and a developer's is a checkout. Run it in a scratch one."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="quant-pre-process-") as scratch:
        os.chdir(scratch)
        try:
            yield
        finally:
            os.chdir(previous)


def preprocess(source: Path, target: Path) -> str:
    """`quant_pre_process` with fallbacks; returns what was done. The graph is already optimized (the
    `graph-optimized` base), so only shape inference runs here."""
    note = "pre-processed (symbolic shape inference)"
    source, target = source.resolve(), target.resolve()
    try:
        with quantizer_advice_silenced(), _in_scratch_folder():
            quant_pre_process(str(source), str(target), skip_optimization=True)
    except Exception as error:  # sympy's inference fails on some real graphs (PP-OCRv4 rec)
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
        try:
            with quantizer_advice_silenced(), _in_scratch_folder():
                quant_pre_process(str(source), str(target), skip_optimization=True, skip_symbolic_shape=True)
            note = f"pre-processed (ONNX shape inference; symbolic inference failed: {reason})"
        except Exception:
            onnx.save(onnx.load(str(source)), str(target))
            note = f"not pre-processed (shape inference failed: {reason})"
    _name_nodes(target)
    return note


def quantizable_nodes(path: Path, dynamic: bool) -> list[str]:
    """Names of the nodes a quantizer may touch (candidates for staying in float)."""
    model = onnx.load(str(path))
    constants = {init.name for init in model.graph.initializer}
    kinds = DYNAMIC_OP_TYPES if dynamic else STATIC_RANKED_OP_TYPES
    return [
        node.name
        for node in model.graph.node
        if node.op_type in kinds and (node.op_type != "Gather" or node.input[0] in constants)
    ]


def quantize_dynamic_int8(source: Path, target: Path, plan: Int8Plan) -> str:
    with quantizer_advice_silenced():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=plan.per_channel,
            op_types_to_quantize=list(DYNAMIC_OP_TYPES),
            nodes_to_exclude=list(plan.exclude),
            extra_options={"MatMulConstBOnly": True},
        )
    return f"int8 weights (MatMul/Gemm/Attention/RNN, Gather tables), {plan.label()}, dynamic activations"


class _SampleReader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, samples: Sequence[Sample]) -> None:
        self._samples: Iterator[Sample] = iter(samples)

    def get_next(self) -> Sample | None:
        return next(self._samples, None)


def at_least_opset(source: Path, workdir: Path, opset: int) -> tuple[Path, str]:
    model = onnx.load(str(source))
    current = onnx_opset(model)
    if current >= opset:
        return source, ""
    converted = onnx.version_converter.convert_version(model, opset)
    path = workdir / f"opset{opset}.onnx"
    onnx.save(converted, str(path))
    return path, f"opset {current} converted to {opset} for per-channel scales; "


def quantize_static_int8(source: Path, target: Path, calibration: Sequence[Sample], plan: Int8Plan) -> str:
    """QDQ int8 by `plan`. Per-channel needs opset 13: the model is converted first when lower."""
    if not calibration:
        raise ValueError("static quantization needs calibration samples")
    with tempfile.TemporaryDirectory(prefix="int8-static-") as scratch:
        model, note = (
            at_least_opset(source, Path(scratch), PER_CHANNEL_MIN_OPSET) if plan.per_channel else (source, "")
        )
        symmetric = plan.symmetric_activations
        with quantizer_advice_silenced():
            quantize_static(
                str(model),
                str(target),
                _SampleReader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=plan.per_channel,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CALIBRATION_METHODS[plan.method],
                nodes_to_exclude=list(plan.exclude),
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
            )
    return f"{note}QDQ int8, {plan.label()} calibration on {len(calibration)} samples"
