"""Checks the optimizer tests share: the shipped repository loads, meets the bound, and matches its config.

Verified independently of the optimizer's own gate: fresh inputs, plain ONNX Runtime, plain numpy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ONNX_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64", "tensor(float16)": "TYPE_FP16"}


def read_report(output: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((output / "report.json").read_text())
    return report


def read_config(output: Path, name: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((output / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def mean_cosine(reference: list[np.ndarray[Any, Any]], candidate: list[np.ndarray[Any, Any]]) -> float:
    values = []
    for a, b in zip(reference, candidate, strict=True):
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        values.append(float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64))))
    return float(np.mean(values))


def assert_shipped_model_meets_bound(
    original: Path, output: Path, name: str, feeds: Sequence[Mapping[str, np.ndarray[Any, Any]]], bound: float
) -> float:
    """The shipped model loads in ONNX Runtime and, on `feeds`, stays within `bound` of the original (cosine
    per output). Returns the worst output's drop."""
    shipped = session(output / name / "1" / "model.onnx")
    reference = session(original)
    worst = 0.0
    for index in range(len(reference.get_outputs())):
        expected = [reference.run(None, dict(feed))[index] for feed in feeds]
        actual = [shipped.run(None, dict(feed))[index] for feed in feeds]
        worst = max(worst, 1.0 - mean_cosine(expected, actual))
    assert worst <= bound, f"shipped model's cosine drop {worst} exceeds the bound {bound}"
    return worst


def assert_config_matches_model(output: Path, name: str) -> model_config_pb2.ModelConfig:
    """config.pbtxt parses as Triton's ModelConfig and lists the shipped model's inputs and outputs."""
    config = read_config(output, name)
    model = session(output / name / "1" / "model.onnx")
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    batching = config.max_batch_size > 0
    for declared, actual in [(config.input, model.get_inputs()), (config.output, model.get_outputs())]:
        assert [t.name for t in declared] == [t.name for t in actual]
        for tensor, node in zip(declared, actual, strict=True):
            assert model_config_pb2.DataType.Name(tensor.data_type) == ONNX_TO_TRITON[node.type]
            shape = node.shape[1:] if batching else node.shape
            assert list(tensor.dims) == [dim if isinstance(dim, int) else -1 for dim in shape]
    return config


WORDS = ("modeldeploy", "Triton 2.51", "canary 25%", "ONNX int8", "GPU node", "rollback", "0.99")


def _text_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray[Any, Any]:
    """A light page with a few dark text lines in varied sizes, uint8 HWC (cv2 ships with rapidocr)."""
    import cv2  # noqa: PLC0415 (opencv comes with rapidocr-onnxruntime; only the real-model tests need it)

    image = np.full((height, width, 3), int(rng.integers(200, 256)), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        word = str(rng.choice(WORDS))  # Hershey fonts draw ASCII only
        scale = float(rng.uniform(0.4, 1.0)) * height / 48
        origin = (int(rng.integers(0, max(width // 3, 1))), int(rng.integers(height // 3, height)))
        color = tuple(int(c) for c in rng.integers(0, 80, 3))
        cv2.putText(image, word, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, max(1, int(scale * 2)))
    return image


def _det_input(image: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    normalized: np.ndarray[Any, Any] = (image / 255.0 - mean) / std
    return normalized.transpose(2, 0, 1)[np.newaxis].astype(np.float32)


def _rec_input(image: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return ((image / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[np.newaxis].astype(np.float32)


def text_line_samples(
    kind: str, count: int, height: int, width: int, seed: int
) -> list[np.ndarray[Any, Any]]:
    """Rendered text images preprocessed like RapidOCR does for PP-OCR `det` (ImageNet mean/std) or
    `rec`/`cls` (scaled to [-1, 1]), each [1, 3, height, width] float32."""
    rng = np.random.default_rng(seed)
    prepare = _det_input if kind == "det" else _rec_input
    return [prepare(_text_image(rng, height, width)) for _ in range(count)]


# --- Triton proof: every repository the optimizer tests produce loads in a real tritonserver -------------

PRODUCED: list[Path] = []  # optimizer output folders written by the tests of the running module


def produced(output: Path) -> Path:
    """Register an optimizer output folder for the Triton proof at the end of the test module."""
    if (output / "report.json").is_file():
        PRODUCED.append(output)
    return output


def _proof_feeds(model_dir: Path, shapes: Mapping[str, Sequence[int]], count: int) -> list[dict[str, Any]]:
    from modeldeploy.optimizer.generated import generate, index_bounds  # noqa: PLC0415
    from modeldeploy.optimizer.signature import signature_of  # noqa: PLC0415

    path = model_dir / "1" / "model.onnx"
    model = onnx.load(str(path))
    concrete = {name: tuple(shape) for name, shape in shapes.items()}
    return generate(signature_of(model, path), concrete, count, seed=101, bounds=index_bounds(model))


def _answer(
    client: Any, name: str, feed: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str]
) -> list[Any]:
    from tritonclient import http  # noqa: PLC0415
    from tritonclient.utils import np_to_triton_dtype  # noqa: PLC0415

    inputs = []
    for key, array in feed.items():
        tensor = http.InferInput(key, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(name, inputs, outputs=[http.InferRequestedOutput(o) for o in outputs])
    return [result.as_numpy(o) for o in outputs]


def _check_served(client: Any, served: str, output: Path) -> None:
    """Load `served` (adapted from `output`), then compare Triton's answers with ONNX Runtime's on the
    shipped model file at batch 1 and at max batch; unload it."""
    report = read_report(output)
    name = Path(report["repository"]["config"]).parent.name
    config = read_config(output, name)
    shipped = session(output / name / "1" / "model.onnx")
    outputs = [o.name for o in config.output]
    client.load_model(served)
    try:
        sizes = [1, config.max_batch_size] if config.max_batch_size > 0 else [0]
        for size in sizes:
            feeds = _proof_feeds(output / name, report["inputs"]["shapes"], max(size, 1))
            feed = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]} if size else feeds[0]
            # A scalar input ships as [1] (Triton serves no scalar without batching).
            ranks = {tensor.name: len(tensor.shape) for tensor in shipped.get_inputs()}
            feed = {k: v.reshape(1) if v.ndim == 0 and ranks[k] == 1 else v for k, v in feed.items()}
            expected = shipped.run(outputs, feed)
            actual = _answer(client, served, feed, outputs)
            for label, want, got in zip(outputs, expected, actual, strict=True):
                assert got.shape == want.shape, (
                    f"{output}: {label} at batch {size}: {got.shape} != {want.shape}"
                )
                assert np.allclose(got, want, rtol=1e-3, atol=1e-4), (
                    f"{output}: {label} differs at batch {size}"
                )
    finally:
        client.unload_model(served)


def prove_in_triton(outputs: Sequence[Path], workdir: Path) -> None:
    """Serve every output repository through the python-backend adapter in one real tritonserver (explicit
    model control: each is loaded, asked at batch 1 and max batch, and unloaded in turn)."""
    from realparts import missing  # noqa: PLC0415
    from realservers import PartMissingError, start_triton  # noqa: PLC0415
    from tritonclient import http  # noqa: PLC0415

    from modeldeploy.sandbox.triton_onnx_adapter import adapt_repository  # noqa: PLC0415

    adapted = workdir / "adapted"
    adapted.mkdir(parents=True)
    served = [
        (name, output)
        for index, output in enumerate(outputs)
        for name in adapt_repository(output, adapted, prefix=f"r{index}-")
    ]
    (workdir / "server" / "models").mkdir(parents=True)
    try:
        server = start_triton(
            "optimizer-proof",
            {},
            workdir / "server",
            ["--model-control-mode=explicit", f"--model-repository={adapted}"],
        )
    except PartMissingError as error:
        missing("tritonserver", str(error))
    try:
        server.wait_ready()
        client = http.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)
        for name, output in served:
            _check_served(client, name, output)
    except Exception as error:
        raise AssertionError(f"{error}\n--- tritonserver log ---\n{server.server.log_tail()}") from error
    finally:
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def triton_proof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Imported by each optimizer test module: at the module's end, its repositories must load in Triton."""
    start = len(PRODUCED)
    yield
    outputs = list(PRODUCED[start:])
    del PRODUCED[start:]
    if outputs:
        prove_in_triton(outputs, tmp_path_factory.mktemp("triton-proof"))
