"""A small CNN classifier built in code, shipped in the optimizer image as a model to try the operator with.

`examples/cpu-kind.yaml` and the end-to-end run point at it (`file:///opt/modeldeploy/samples/cnn.onnx`),
so a first deployment needs no model download and no bucket. Deterministic (fixed seed): rebuilding it
gives the same file, so the revision and the cache stay stable across image builds.

    python -c 'from modeldeploy.optimizer.sample_model import main; main()' /opt/modeldeploy/samples/cnn.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13  # every ONNX Runtime that Triton 23.x/24.x ships runs it
CLASSES = 10
SIZE = 32


def _weight(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def build(path: Path, width: int = 16, seed: int = 0) -> Path:
    """Input `image` [batch, 3, 32, 32] → `probabilities` [batch, 10]: four Conv+Relu, pool, Gemm, Softmax."""
    rng = np.random.default_rng(seed)
    channels = [3, width, 2 * width, 4 * width, 4 * width]
    inits, nodes, current = [], [], "image"
    for index in range(4):
        shape = (channels[index + 1], channels[index], 3, 3)
        inits.append(_weight(rng, f"conv{index}_w", shape, float(np.sqrt(2 / (channels[index] * 9)))))
        inits.append(_weight(rng, f"conv{index}_b", (channels[index + 1],), 0.01))
        stride = 1 if index == 0 else 2
        conv = [current, f"conv{index}_w", f"conv{index}_b"]
        nodes.append(helper.make_node("Conv", conv, [f"conv{index}"], pads=[1] * 4, strides=[stride] * 2))
        nodes.append(helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"]))
        current = f"relu{index}"
    # A large classifier scale gives clear margins between classes, as a trained model has on its data.
    inits.append(_weight(rng, "fc_w", (channels[-1], CLASSES), float(20 * np.sqrt(2 / channels[-1]))))
    inits.append(_weight(rng, "fc_b", (CLASSES,), 0.01))
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "sample_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="modeldeploy-sample"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def main() -> None:
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "cnn.onnx"))
