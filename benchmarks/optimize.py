"""Benchmark of `modeldeploy optimize`: per model, what ships and how it compares with the original.

Prints, per model: the chosen variant, size ratio (original / shipped), p50 latency ratio on CPU (both timed
side by side in one interleaved run, after the optimizer finished), and accuracy (cosine and top-1 agreement
on fresh inputs the optimizer never saw, plus the gate's own figures).

    .venv/bin/python benchmarks/optimize.py            # all models (a few minutes on 2 cores)
    .venv/bin/python benchmarks/optimize.py cnn det    # a subset

Models: a MatMul-heavy transformer block and a CNN (built by tests/onnx_graphs.py), and the PP-OCRv4
det/rec/cls models from PyPI rapidocr-onnxruntime, calibrated and checked on rendered text images.
(Running a script puts its own folder, not the current one, on sys.path, so `operator/` shadows nothing.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import onnx_graphs
from optimizer_checks import mean_cosine, session, text_line_samples

from modeldeploy.optimizer.measurement import session_runner, time_side_by_side
from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.pipeline import OptimizeRequest, optimize

Feeds = list[dict[str, np.ndarray[Any, Any]]]


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the model into a folder, returns its path
    input_name: str
    calibration: Callable[[int, int], Feeds]  # (count, seed) → feeds, batch 1
    options: OptimizeOptions
    class_like: bool  # scores over classes (per sample or per time step): top-1 agreement applies


def _normal(name: str, shape: tuple[int, ...]) -> Callable[[int, int], Feeds]:
    def make(count: int, seed: int) -> Feeds:
        rng = np.random.default_rng(seed)
        return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]

    return make


def _uniform_images(name: str, shape: tuple[int, ...]) -> Callable[[int, int], Feeds]:
    def make(count: int, seed: int) -> Feeds:
        rng = np.random.default_rng(seed)
        return [{name: rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(count)]

    return make


def _text(kind: str, height: int, width: int) -> Callable[[int, int], Feeds]:
    return lambda count, seed: [{"x": x} for x in text_line_samples(kind, count, height, width, seed)]


def _rapidocr(file: str) -> Callable[[Path], Path]:
    def locate(folder: Path) -> Path:
        spec = importlib.util.find_spec("rapidocr_onnxruntime")
        if spec is None or spec.origin is None:
            raise SystemExit("PyPI rapidocr-onnxruntime is not installed: pip install rapidocr-onnxruntime")
        return Path(spec.origin).parent / "models" / file

    return locate


BASE = OptimizeOptions(measure_seconds=3.0, calibration_samples=32, gate_samples=8)
CASES = [
    Case(
        "transformer",
        lambda folder: onnx_graphs.transformer_block(folder / "transformer.onnx", hidden=512, heads=8),
        "x",
        _normal("x", (1, 128, 512)),
        BASE,
        class_like=False,
    ),
    Case(
        "cnn",
        lambda folder: onnx_graphs.conv_net(folder / "cnn.onnx", width=32, size=96),
        "image",
        _uniform_images("image", (1, 3, 96, 96)),
        BASE,
        class_like=True,
    ),
    Case(
        "cls",
        _rapidocr("ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        "x",
        _text("cls", 48, 192),
        BASE,
        class_like=True,
    ),
    Case("rec", _rapidocr("ch_PP-OCRv4_rec_infer.onnx"), "x", _text("rec", 48, 320), BASE, class_like=True),
    Case("det", _rapidocr("ch_PP-OCRv4_det_infer.onnx"), "x", _text("det", 320, 320), BASE, class_like=False),
]


def _top1(reference: list[np.ndarray[Any, Any]], candidate: list[np.ndarray[Any, Any]]) -> float:
    same = [np.argmax(a, axis=-1) == np.argmax(b, axis=-1) for a, b in zip(reference, candidate, strict=True)]
    return float(np.mean(np.concatenate([s.ravel() for s in same])))


def run_case(case: Case, workdir: Path, measure_seconds: float) -> dict[str, Any]:
    model = case.build(workdir)
    calibration = workdir / f"{case.name}-calibration"
    calibration.mkdir()
    for index, feed in enumerate(case.calibration(case.options.calibration_samples + 8, 1)):
        np.save(calibration / f"{index:03d}.npy", feed[case.input_name])
    options = replace(case.options, calibration_uri=str(calibration))
    output = workdir / f"{case.name}-repository"
    result = optimize(OptimizeRequest(str(model), str(output), case.name, options), log=lambda line: None)
    report = result.report
    shipped_file = output / report["repository"]["model_file"]

    original, shipped = session(model), session(shipped_file)
    fresh = case.calibration(8, 2)
    expected = [original.run(None, feed)[0] for feed in fresh]
    actual = [shipped.run(None, feed)[0] for feed in fresh]
    timings = time_side_by_side(
        {"original": session_runner(original, fresh[0]), "shipped": session_runner(shipped, fresh[0])},
        1,
        measure_seconds,
    )
    gate = report["after"]["accuracy"] or {}
    return {
        "model": case.name,
        "chosen": report["chosen"],
        "size_ratio": model.stat().st_size / shipped_file.stat().st_size,
        "p50_ratio": timings["original"].latency_ms_p50 / timings["shipped"].latency_ms_p50,
        "p50_original_ms": timings["original"].latency_ms_p50,
        "p50_shipped_ms": timings["shipped"].latency_ms_p50,
        "cosine_fresh": mean_cosine(expected, actual),
        "top1_fresh": _top1(expected, actual) if case.class_like else None,
        "gate_drop": gate.get("drop"),
        "candidates": {c["name"]: c["status"] for c in report["candidates"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", choices=[[], *[case.name for case in CASES]], default=[])
    parser.add_argument("--measure-seconds", type=float, default=5.0, help="side-by-side timing per model")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model as well")
    args = parser.parse_args()
    unknown = set(args.models) - {case.name for case in CASES}
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")
    chosen = [case for case in CASES if not args.models or case.name in args.models]
    header = (
        f"{'model':12} {'chosen':22} {'size x':>7} {'p50 x':>6} {'p50 ms':>15} {'cosine':>8} {'top-1':>6}"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as scratch:
        for case in chosen:
            folder = Path(scratch) / case.name
            folder.mkdir()
            row = run_case(case, folder, args.measure_seconds)
            top1 = "-" if row["top1_fresh"] is None else f"{row['top1_fresh']:.4f}"
            latency = f"{row['p50_original_ms']:.2f}->{row['p50_shipped_ms']:.2f}"
            print(
                f"{row['model']:12} {row['chosen']:22} {row['size_ratio']:7.2f} {row['p50_ratio']:6.2f} "
                f"{latency:>15} {row['cosine_fresh']:8.4f} {top1:>6}",
                flush=True,
            )
            print(f"{'':12} candidates: {row['candidates']}", flush=True)
            if args.json:
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
