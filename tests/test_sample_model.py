"""The sample model the optimizer image ships (examples/cpu-kind.yaml, the e2e): deterministic, valid
for the ONNX Runtime versions Triton serves, and optimized by the real `modeldeploy optimize` from a
file:// URI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from modeldeploy.optimizer.sample_model import CLASSES, OPSET, SIZE, build


def test_sample_model_is_deterministic_and_classifies(tmp_path: Path) -> None:
    first, second = build(tmp_path / "a.onnx"), build(tmp_path / "b.onnx")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    model = onnx.load(str(first))
    assert model.ir_version <= 8 and model.opset_import[0].version == OPSET
    session = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(1).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    (probabilities,) = session.run(None, {"image": batch})
    assert probabilities.shape == (4, CLASSES)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_optimize_ships_it_from_a_file_uri_as_the_example_asks(tmp_path: Path) -> None:
    model = build(tmp_path / "samples" / "cnn.onnx")
    spec = {
        "optimization": {"quantization": "int8-dynamic", "maxAccuracyDrop": 0.05},
        "serving": {"maxBatchSize": 8, "instanceGroup": {"kind": "cpu"}},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("modeldeploy")), "optimize", "--model", model.as_uri(),
         "--output", str(tmp_path / "repo"), "--name", "cnn", "--spec", str(tmp_path / "spec.json")],
        capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "repo" / "cnn" / "config.pbtxt").is_file()
    assert "KIND_CPU" in (tmp_path / "repo" / "cnn" / "config.pbtxt").read_text()
