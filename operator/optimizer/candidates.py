"""Building candidate models, one function per step. Each writes `target` from `source` or raises.

The steps call ONNX Runtime's graph optimizer and fp16 converter, which break on real models in known ways
(docs/optimizer.md, "Pitfalls"); the workarounds live here, next to the call they protect. The int8
quantizers are in `quantizers.py`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

PRUNABLE_OP_TYPES = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}  # op → index of its weight input


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


def _scalar(value: onnx.ValueInfoProto) -> bool:
    tensor = value.type.tensor_type
    return value.type.HasField("tensor_type") and tensor.HasField("shape") and not tensor.shape.dim


def scalars_as_one_element(source: Path, target: Path) -> list[str]:
    """Rewrite scalar graph inputs and outputs as shape [1] (a Reshape at each edge), since Triton serves no
    scalar in a model that does not batch. Exact: values are unchanged. Returns the names rewritten."""
    model = onnx.load(str(source))
    graph = model.graph
    renamed: list[str] = []
    one, empty = "modeldeploy_shape_1", "modeldeploy_shape_scalar"
    added = []
    for value in graph.input:
        if _scalar(value):
            inner = f"{value.name}__scalar"
            for node in graph.node:
                node.input[:] = [inner if name == value.name else name for name in node.input]
            added.append(onnx.helper.make_node("Reshape", [value.name, empty], [inner]))
            value.type.tensor_type.shape.dim.add().dim_value = 1
            renamed.append(value.name)
    for value in graph.output:
        if _scalar(value):
            inner = f"{value.name}__scalar"
            for node in graph.node:
                node.output[:] = [inner if name == value.name else name for name in node.output]
            graph.node.append(onnx.helper.make_node("Reshape", [inner, one], [value.name]))
            value.type.tensor_type.shape.dim.add().dim_value = 1
            renamed.append(value.name)
    if renamed:
        for node in reversed(added):
            graph.node.insert(0, node)
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([1], np.int64), one),
                numpy_helper.from_array(np.zeros(0, np.int64), empty),
            ]
        )
    onnx.save(model, str(target))
    return renamed
