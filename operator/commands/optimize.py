"""`modeldeploy optimize`: the optimization Job's entry point (docs/optimizer.md, docs/architecture.md).

Exit codes: 0 success (also when nothing beat the original: it ships and the report says why),
2 bad input (the message names the field or file), 1 an unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

from modeldeploy.credentials import redact
from modeldeploy.optimizer.errors import OptimizerInputError
from modeldeploy.optimizer.options import (
    CompilePrecision,
    CompileTarget,
    OptimizeOptions,
    Quantization,
    check_options,
    options_from_spec,
    parse_input_shape,
)
from modeldeploy.optimizer.report import encode_summary, error_summary

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "optimize",
        help="optimize an ONNX model into a Triton model repository (accuracy-gated)",
        description=(
            "Build candidates (graph optimization, int8 dynamic/static, fp16, pruning, compile), keep those "
            "within --max-accuracy-drop of the original, ship the fastest (then smallest) as a Triton model "
            "repository with config.pbtxt and report.json."
        ),
    )
    parser.add_argument("--model", required=True, help="ONNX model: path, file://, https://, s3://, pvc://")
    parser.add_argument("--output", required=True, help="repository directory (or s3://BUCKET/PREFIX)")
    parser.add_argument("--name", help="Triton model name (default: the model file's name)")
    parser.add_argument("--spec", help="JSON of {optimization, serving} (camelCase): a file, or env:VARIABLE")
    parser.add_argument("--quantization", choices=get_args(Quantization), help="default auto")
    parser.add_argument("--pruning-sparsity", type=float, help="0..0.9, default 0 (no pruning)")
    parser.add_argument(
        "--compile", dest="compile_target", choices=get_args(CompileTarget), help="default none"
    )
    parser.add_argument(
        "--compile-precision", choices=get_args(CompilePrecision), help="TensorRT precision, default fp16"
    )
    parser.add_argument("--max-accuracy-drop", type=float, help="bound on the accuracy drop, default 0.01")
    parser.add_argument("--calibration", help="calibration data: a folder of .npy/.npz files (or a URI)")
    parser.add_argument("--calibration-samples", type=int, help="at most this many calibration samples (32)")
    parser.add_argument("--max-batch-size", type=int, help="Triton max_batch_size, default 8")
    parser.add_argument(
        "--dynamic-batching",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dynamic_batching in config.pbtxt (default on; a spec needs serving.dynamicBatching)",
    )
    parser.add_argument("--batch-size", dest="measure_batch_size", type=int, help="latency batch size (1)")
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D1,D2,...",
        help="concrete shape for an input with dynamic dims (repeatable)",
    )
    parser.add_argument("--measure-seconds", type=float, help="time budget for timing candidates (3)")
    parser.add_argument("--gate-samples", type=int, help="held-out inputs the accuracy gate uses (64)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads per session (0: all usable cores)")
    parser.add_argument(
        "--warmup", action="store_true", default=None, help="add model_warmup to config.pbtxt"
    )
    parser.add_argument("--report", type=Path, help="also write report.json here")
    parser.add_argument("--termination-message", type=Path, help="write the JSON summary here (the Job's)")
    parser.set_defaults(handler=_handle)


def _read_spec(value: str) -> Any:
    if value.startswith("env:"):
        variable = value.removeprefix("env:")
        if variable not in os.environ:
            raise OptimizerInputError(f"--spec: environment variable {variable!r} is not set")
        text, where = os.environ[variable], f"environment variable {variable}"
    else:
        try:
            text, where = Path(value).read_text(encoding="utf-8"), value
        except OSError as error:
            raise OptimizerInputError(f"--spec: cannot read {value}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise OptimizerInputError(f"--spec: {where} is not valid JSON: {error}") from None


def _options(args: argparse.Namespace) -> Any:

    options = options_from_spec(_read_spec(args.spec)) if args.spec else OptimizeOptions()
    overrides = {
        key: getattr(args, key)
        for key in (
            "quantization",
            "pruning_sparsity",
            "compile_target",
            "compile_precision",
            "max_accuracy_drop",
            "calibration_samples",
            "max_batch_size",
            "dynamic_batching",
            "measure_batch_size",
            "measure_seconds",
            "gate_samples",
            "threads",
            "warmup",
        )
        if getattr(args, key) is not None
    }
    if args.calibration:
        overrides["calibration_uri"] = args.calibration
    if args.input_shape:
        overrides["input_shapes"] = dict(parse_input_shape(text) for text in args.input_shape)
    return check_options(replace(options, **overrides))


def _write_message(path: Path | None, message: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.write_bytes(encode_summary(message))
    except OSError as error:
        print(f"modeldeploy optimize: cannot write {path}: {error.strerror}", file=sys.stderr)


def _print_table(report: dict[str, Any]) -> None:
    print(f"{'candidate':22} {'status':9} {'size MB':>9} {'p50 ms':>9}  reason")
    for candidate in report.get("candidates", []):
        size = candidate.get("size_bytes")
        latency = candidate.get("latency_ms_p50")
        size_mb = size / 1e6 if size else float("nan")
        latency_ms = latency if latency is not None else float("nan")
        name, status = candidate["name"], candidate["status"]
        print(f"{name:22} {status:9} {size_mb:9.3f} {latency_ms:9.3f}  {candidate['reason']}")
    print(f"chosen: {report.get('chosen')}")


def _handle(args: argparse.Namespace) -> int:
    # The pipeline pulls in ONNX Runtime and onnx: imported only when the command runs.
    from modeldeploy.optimizer import pipeline  # noqa: PLC0415

    try:
        options = _options(args)
        name = pipeline.check_model_name(args.name or pipeline.default_model_name(args.model))
        request = pipeline.OptimizeRequest(
            model_uri=args.model, output=args.output, name=name, options=options, report_path=args.report
        )
        result = pipeline.optimize(request)
    except OptimizerInputError as error:
        print(redact(f"modeldeploy optimize: error: {error}"), file=sys.stderr)
        _write_message(args.termination_message, error_summary(redact(str(error))))
        return EXIT_BAD_INPUT
    except Exception as error:
        failure = redact(f"{type(error).__name__}: {error}")
        print(f"modeldeploy optimize: failed: {failure}", file=sys.stderr)
        _write_message(args.termination_message, error_summary(failure))
        return EXIT_FAILURE
    message = result.summary()
    _write_message(args.termination_message, message)
    if result.cached:
        print(f"cached: {result.report_location} is complete; nothing to do")
    else:
        _print_table(result.report)
    print(json.dumps(message))
    return 0
