"""Small ONNX graphs built in code for the optimizer's tests and benchmark (no downloads, deterministic).

- `transformer_block`: one pre-norm encoder block (attention + MLP): MatMul-heavy, like BERT/ViT layers.
- `conv_net`: a small CNN classifier (Conv/Relu/pool/Gemm/Softmax), like the image models static int8 is for.
  `confident_images`: noise images it answers clearly (no near-tie that any int8 would flip).
- `outlier_matmul`: a MatMul whose input holds one huge feature: per-tensor int8 activations map every other
  feature to zero, so quantizing it destroys the output (the gate must reject it, or keep it in float).
- `weightless`: only element-wise ops, so there is nothing to prune (the pruning step raises).
- `masked_encoder`: token ids and an attention mask (integer inputs with roles), like a sentence encoder.
- `batch_mixing`: a dynamic first dimension that is not a batch (items change each other's outputs).
- `recurrent_state`: a state with its batch second and a scalar input (no Triton batching; `.npz` data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path, opset: int = OPSET) -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="modeldeploy-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _weight(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def transformer_block(path: Path, hidden: int = 64, heads: int = 4, seed: int = 0) -> Path:
    """Input `x` [batch, seq, hidden] → output `y` [batch, seq, hidden] (dynamic batch and sequence)."""
    rng = np.random.default_rng(seed)
    head = hidden // heads
    scale = 1.0 / np.sqrt(hidden)
    inits = [
        numpy_helper.from_array(np.ones(hidden, np.float32), "ln_scale"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "ln_bias"),
        _weight(rng, "wq", (hidden, hidden), scale),
        _weight(rng, "wk", (hidden, hidden), scale),
        _weight(rng, "wv", (hidden, hidden), scale),
        _weight(rng, "wo", (hidden, hidden), scale),
        _weight(rng, "w1", (hidden, 4 * hidden), scale),
        _weight(rng, "w2", (4 * hidden, hidden), 1.0 / np.sqrt(4 * hidden)),
        numpy_helper.from_array(np.array([0, 0, heads, head], np.int64), "split_heads"),
        numpy_helper.from_array(np.array([0, 0, hidden], np.int64), "merge_heads"),
        numpy_helper.from_array(np.array(1.0 / np.sqrt(head), np.float32), "attention_scale"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_scale", "ln_bias"], ["h"], axis=-1),
        *[helper.make_node("MatMul", ["h", f"w{p}"], [f"{p}_flat"]) for p in "qkv"],
        *[helper.make_node("Reshape", [f"{p}_flat", "split_heads"], [f"{p}_heads"]) for p in "qkv"],
        helper.make_node("Transpose", ["q_heads"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k_heads"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v_heads"], ["v"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["q", "kt"], ["scores_raw"]),
        helper.make_node("Mul", ["scores_raw", "attention_scale"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["weights"], axis=-1),
        helper.make_node("MatMul", ["weights", "v"], ["context_heads"]),
        helper.make_node("Transpose", ["context_heads"], ["context_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["context_t", "merge_heads"], ["context"]),
        helper.make_node("MatMul", ["context", "wo"], ["attended"]),
        helper.make_node("Add", ["x", "attended"], ["residual"]),
        helper.make_node("LayerNormalization", ["residual", "ln_scale", "ln_bias"], ["h2"], axis=-1),
        helper.make_node("MatMul", ["h2", "w1"], ["up"]),
        helper.make_node("Relu", ["up"], ["activated"]),
        helper.make_node("MatMul", ["activated", "w2"], ["down"]),
        helper.make_node("Add", ["residual", "down"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "transformer_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", hidden])],
        inits,
    )
    return _save(graph, path)


def conv_net(path: Path, width: int = 16, classes: int = 10, size: int = 32, seed: int = 0) -> Path:
    """Input `image` [batch, 3, size, size] → `probabilities` [batch, classes]."""
    rng = np.random.default_rng(seed)
    channels = [3, width, 2 * width, 4 * width, 4 * width]
    inits = []
    nodes = []
    current = "image"
    for index in range(4):
        fan_in = channels[index] * 9
        inits.append(
            _weight(rng, f"conv{index}_w", (channels[index + 1], channels[index], 3, 3), np.sqrt(2 / fan_in))
        )
        inits.append(_weight(rng, f"conv{index}_b", (channels[index + 1],), 0.01))
        stride = 1 if index == 0 else 2
        nodes.append(
            helper.make_node(
                "Conv",
                [current, f"conv{index}_w", f"conv{index}_b"],
                [f"conv{index}"],
                pads=[1, 1, 1, 1],
                strides=[stride, stride],
            )
        )
        nodes.append(helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"]))
        current = f"relu{index}"
    # A large classifier scale gives clear margins between classes, as a trained model has on its data;
    # with random small weights every input would be a near-tie and any rounding could flip the argmax.
    inits.append(_weight(rng, "fc_w", (channels[-1], classes), 20 * np.sqrt(2 / channels[-1])))
    inits.append(_weight(rng, "fc_b", (classes,), 0.01))
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    return _save(graph, path, opset=13)


def outlier_matmul(path: Path, features: int = 64, leading_layer: bool = False, seed: int = 0) -> Path:
    """Input `x` [batch, features] → `y` [batch, features]: feature 0 is scaled by 1e4 before a MatMul that
    barely reads it. Per-tensor int8 activations (ONNX Runtime's dynamic quantization) then map every other
    feature to zero, so quantizing that MatMul destroys the output, whatever the weights' scales.
    `leading_layer` puts an ordinary MatMul (`first`) in front, which quantizes well: keeping only the
    outlier MatMul (`outlier`) in float is enough."""
    rng = np.random.default_rng(seed)
    scale = np.ones(features, np.float32)
    scale[0] = 1e4
    second = (rng.standard_normal((features, features)) / np.sqrt(features)).astype(np.float32)
    second[0, :] *= 1e-5
    inits = [
        _weight(rng, "w_first", (features, features), 1.0 / np.sqrt(features)),
        numpy_helper.from_array(scale, "scale"),
        numpy_helper.from_array(second, "w_outlier"),
    ]
    nodes = [
        *([helper.make_node("MatMul", ["x", "w_first"], ["h"], name="first")] if leading_layer else []),
        helper.make_node("Mul", ["h" if leading_layer else "x", "scale"], ["scaled"], name="scale"),
        helper.make_node("MatMul", ["scaled", "w_outlier"], ["y"], name="outlier"),
    ]
    graph = helper.make_graph(
        nodes,
        "outlier_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        inits if leading_layer else inits[1:],
    )
    return _save(graph, path)


def weightless(path: Path) -> Path:
    """Input `x` [batch, 8] → `y` = relu(x) + x: no weights at all."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "weightless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
    )
    return _save(graph, path)


def embedding_bag(path: Path, vocabulary: int = 50, width: int = 16, seed: int = 0) -> Path:
    """Input `tokens` [batch, seq] int64 → `pooled` [batch, width]: a Gather into an embedding table, then a
    mean and a MatMul (token ids must stay below `vocabulary`)."""
    rng = np.random.default_rng(seed)
    inits = [
        _weight(rng, "table", (vocabulary, width), 1.0),
        _weight(rng, "projection", (width, width), 1.0 / np.sqrt(width)),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "tokens"], ["embedded"]),
        helper.make_node("ReduceMean", ["embedded"], ["mean"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["mean", "projection"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "embedding_bag",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    return _save(graph, path)


def masked_encoder(path: Path, vocabulary: int = 300, width: int = 16, seed: int = 0) -> Path:
    """Inputs `input_ids` and `attention_mask` [batch, seq] int64 → `embedding` [batch, width]: token
    embeddings averaged over the unmasked positions, then projected (a sentence encoder's shape and roles)."""
    rng = np.random.default_rng(seed)
    inits = [
        _weight(rng, "table", (vocabulary, width), 1.0),
        _weight(rng, "projection", (width, width), 1.0 / np.sqrt(width)),
        numpy_helper.from_array(np.array([1], np.int64), "seq_axis"),
        numpy_helper.from_array(np.array([2], np.int64), "feature_axis"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "feature_axis"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "seq_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "seq_axis"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("MatMul", ["mean", "projection"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "masked_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    return _save(graph, path)


def batch_mixing(path: Path) -> Path:
    """Input `x` [batch, 8] → `y` = x - mean over the batch: its first dimension is dynamic but not a batch
    (items change each other's outputs), so Triton must not batch it."""
    inits = [numpy_helper.from_array(np.array([0], np.int64), "batch_axis")]
    nodes = [
        helper.make_node("ReduceMean", ["x", "batch_axis"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "batch_mixing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        inits,
    )
    return _save(graph, path, opset=18)


def recurrent_state(path: Path, width: int = 4) -> Path:
    """Inputs `state` [2, batch, width] (a recurrent state: batch second) and `scale` (a scalar) → `next`
    [2, batch, width] = tanh(state · W) · scale: no first batch dimension, so Triton must not batch it."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["state", "w"], ["mixed"]),
            helper.make_node("Tanh", ["mixed"], ["squashed"]),
            helper.make_node("Mul", ["squashed", "scale"], ["next"]),
        ],
        "recurrent_state",
        [
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", width]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("next", TensorProto.FLOAT, [2, "batch", width])],
        [_weight(rng, "w", (width, width), 0.5)],
    )
    return _save(graph, path)


def confident_images(
    model: Path, count: int, seed: int, size: int = 32, margin: float = 1.0
) -> list[np.ndarray[Any, Any]]:
    """`count` uniform-noise images [1, 3, size, size] on which `conv_net`'s float answer is clear: its top
    two classes' log-probabilities differ by at least `margin` (a trained classifier on its own data mostly
    is; random weights on noise put some images within rounding of a tie, and those flip under any int8).
    A classifier's gate counts every flipped answer, so tests that expect int8 to pass use these."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    images: list[np.ndarray[Any, Any]] = []
    while len(images) < count:
        image = rng.uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
        [probabilities] = session.run(None, {"image": image})
        top = np.sort(np.log(np.maximum(probabilities[0].astype(np.float64), 1e-30)))
        if top[-1] - top[-2] >= margin:
            images.append(image)
    return images
