"""An ONNX model's inputs and outputs (names, element types, dimensions) and the check that a file is ONNX."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from modeldeploy.optimizer.errors import OptimizerInputError

# ONNX element type → (numpy dtype name, Triton data type).
_ELEMENT_TYPES: dict[int, tuple[str, str]] = {
    onnx.TensorProto.FLOAT: ("float32", "TYPE_FP32"),
    onnx.TensorProto.FLOAT16: ("float16", "TYPE_FP16"),
    onnx.TensorProto.DOUBLE: ("float64", "TYPE_FP64"),
    onnx.TensorProto.INT8: ("int8", "TYPE_INT8"),
    onnx.TensorProto.INT16: ("int16", "TYPE_INT16"),
    onnx.TensorProto.INT32: ("int32", "TYPE_INT32"),
    onnx.TensorProto.INT64: ("int64", "TYPE_INT64"),
    onnx.TensorProto.UINT8: ("uint8", "TYPE_UINT8"),
    onnx.TensorProto.UINT16: ("uint16", "TYPE_UINT16"),
    onnx.TensorProto.UINT32: ("uint32", "TYPE_UINT32"),
    onnx.TensorProto.UINT64: ("uint64", "TYPE_UINT64"),
    onnx.TensorProto.BOOL: ("bool", "TYPE_BOOL"),
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    triton_type: str
    dims: tuple[int | None, ...]  # None: dynamic

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        return np.dtype(self.dtype)


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    op_types: frozenset[str]

    @property
    def has_batch_dimension(self) -> bool:
        """Dim 0 of every input and output is dynamic: the model batches, and Triton may batch for it."""
        tensors = self.inputs + self.outputs
        return all(tensor.dims and tensor.dims[0] is None for tensor in tensors)


def _tensor_spec(value: onnx.ValueInfoProto, path: Path) -> TensorSpec:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor_type.elem_type not in _ELEMENT_TYPES:
        kind = (
            onnx.TensorProto.DataType.Name(tensor_type.elem_type) if tensor_type.elem_type else "not a tensor"
        )
        raise OptimizerInputError(
            f"{path}: tensor {value.name!r} has a type this optimizer cannot feed ({kind})"
        )
    dtype, triton_type = _ELEMENT_TYPES[tensor_type.elem_type]
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
        for dim in tensor_type.shape.dim
    )
    return TensorSpec(name=value.name, dtype=dtype, triton_type=triton_type, dims=dims)


def onnx_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model is written against (0 when it declares none)."""
    return max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0)


def signature_of(model: onnx.ModelProto, path: Path) -> ModelSignature:
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_tensor_spec(value, path) for value in model.graph.input if value.name not in initializers)
    outputs = tuple(_tensor_spec(value, path) for value in model.graph.output)
    opset = onnx_opset(model)
    return ModelSignature(
        inputs=inputs,
        outputs=outputs,
        opset=opset,
        op_types=frozenset(node.op_type for node in model.graph.node),
    )


def load_onnx(path: Path) -> tuple[Path, onnx.ModelProto]:
    """The model file at `path` (a file, or a directory holding one .onnx) and its contents, refusing with a
    clear reason anything that is not a complete ONNX model."""
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            raise OptimizerInputError(
                f"{path}: a directory must hold exactly one .onnx file, found {len(found)}"
            )
        path = found[0]
    if not path.is_file():
        raise OptimizerInputError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as error:
        raise OptimizerInputError(
            f"{path}: not a readable ONNX model (truncated or another format): {error}"
        ) from None
    if not model.graph.node or not model.graph.output:
        raise OptimizerInputError(f"{path}: not an ONNX model (no graph nodes or outputs)")
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, DecodeError, ValueError) as error:
        raise OptimizerInputError(f"{path}: invalid ONNX model: {str(error).splitlines()[0]}") from None
    return path, model


# Words that name class scores in an output's name (logits, probs, probabilities, scores, class_scores).
_CLASS_SCORE_NAME = re.compile(r"logit|prob|score|class", re.IGNORECASE)
# Ops between a classifier's Softmax/Gemm and its output that keep the scores as they are.
_PASS_THROUGH = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Dropout"})


def class_like_outputs(model: onnx.ModelProto, signature: ModelSignature) -> frozenset[str]:
    """Outputs that are scores over classes: made by (Log)Softmax, or float [N, C] with C >= 2 made by a
    fully connected head (Gemm, what a classifier's last Linear exports to) or named as scores (`logits`,
    `probs`, `scores`, `class...`). Identity, Reshape, Flatten, Squeeze, Unsqueeze, Cast and Dropout after
    that op do not hide it.

    Their argmax is what users act on, so the gate also checks top-1 agreement on them. Any other [N, C]
    output (a MatMul's regression values, a pooled embedding) is not: the argmax over its features means
    nothing, and near-ties among them would flip under any rounding while cosine stays at 0.998.
    """
    made_by = {output: node for node in model.graph.node for output in node.output}
    names = set()
    for spec in signature.outputs:
        last = spec.dims[-1] if spec.dims else None
        node = made_by.get(spec.name)
        while node is not None and node.op_type in _PASS_THROUGH and node.input:
            node = made_by.get(node.input[0])  # PP-OCR cls: Softmax, then Identity
        producer = node.op_type if node is not None else None
        float_scores = spec.dtype.startswith("float") and len(spec.dims) == 2
        scores_shaped = float_scores and last is not None and last >= 2
        named = _CLASS_SCORE_NAME.search(spec.name) is not None
        if producer in ("Softmax", "LogSoftmax") or (scores_shaped and (producer == "Gemm" or named)):
            names.add(spec.name)
    return frozenset(names)
