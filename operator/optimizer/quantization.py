"""Which quantization steps a run tries (the `--quantization` choice, the graph's ops, real or generated
inputs), and building each: fp16 directly, int8 through the accuracy-aware search (`int8_search.py`)."""

from __future__ import annotations

from pathlib import Path

from modeldeploy.optimizer import candidates, int8_search, quantizers
from modeldeploy.optimizer.judging import Run
from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.outcome import CandidateOutcome
from modeldeploy.optimizer.quantizers import Int8Plan
from modeldeploy.optimizer.samples import Sample
from modeldeploy.optimizer.signature import ModelSignature

# The ops int8-dynamic quantizes: it fits a graph only if the graph has some.
DYNAMIC_QUANT_OPS = frozenset(quantizers.DYNAMIC_OP_TYPES)
STATIC_QUANT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
# Calibration methods static int8 tries; the one with the smallest accuracy drop ships.
STATIC_METHODS = ("MinMax", "Percentile", "Entropy")
# Memory ONNX Runtime's static calibrator may use for intermediate tensors (all samples at once).
CALIBRATION_MEMORY_BYTES = 3 << 30
STATIC_ON_GENERATED = (
    "not tried: `auto` does not ship static int8 calibrated on generated inputs (its activation ranges would "
    "come from inputs the model never sees in service); give calibration data or ask for int8-static"
)


def steps_to_try(
    options: OptimizeOptions, signature: ModelSignature, generated: bool
) -> list[tuple[str, str | None]]:
    """(name, None) per quantization step to try, or (name, why it is skipped)."""
    if options.quantization == "none":
        return []
    if options.quantization != "auto":
        return [(options.quantization, None)]
    fitting: list[tuple[str, str | None]] = []
    if signature.op_types & DYNAMIC_QUANT_OPS:
        fitting.append(("int8-dynamic", None))
    if signature.op_types & STATIC_QUANT_OPS:
        fitting.append(("int8-static", STATIC_ON_GENERATED if generated else None))
    fitting.append(("fp16", None))
    return fitting


def _within_memory(run: Run, base: CandidateOutcome, calibration: list[Sample]) -> list[Sample]:
    """As many calibration samples as fit CALIBRATION_MEMORY_BYTES: ONNX Runtime's static calibrators hold
    every intermediate tensor of every sample at once (64 PP-OCRv4 rec samples: 23 GB, killed)."""
    if base.path is None or not calibration:
        return calibration
    try:
        per_sample = int8_search.intermediate_bytes(base.path, calibration[0])
    except Exception:
        return calibration
    fitting = max(CALIBRATION_MEMORY_BYTES // max(per_sample, 1), 2)
    if fitting >= len(calibration):
        return calibration
    run.notes.append(
        f"int8-static: calibrated on {fitting} of {len(calibration)} samples: each holds "
        f"{per_sample / 2**20:.0f} MiB of intermediate tensors in ONNX Runtime's calibrator "
        f"(budget {CALIBRATION_MEMORY_BYTES >> 30} GiB)"
    )
    step = len(calibration) / fitting
    return [calibration[int(index * step)] for index in range(fitting)]


def build(
    run: Run, name: str, base: CandidateOutcome, calibration: list[Sample], *, refine: bool = True
) -> CandidateOutcome:
    """`refine`: whether static int8 may keep nodes in float (each attempt recalibrates: the caller turns
    it off once an int8 candidate passed that is at least twice smaller than the base)."""
    if name == "fp16":
        return run.try_step(name, base, candidates.convert_fp16)
    if name == "int8-dynamic":
        return int8_search.search(
            run, name, base, quantizers.quantize_dynamic_int8, [Int8Plan()], dynamic=True
        )
    # TensorRT runs QDQ int8 with symmetric int8 activations; ONNX Runtime's CPU kernels prefer uint8.
    symmetric = run.options.compile_target == "tensorrt"
    plans = [Int8Plan(method=method, symmetric_activations=symmetric) for method in STATIC_METHODS]
    fallback = Int8Plan(per_channel=False, symmetric_activations=symmetric)

    samples = _within_memory(run, base, calibration)

    def static(source: Path, target: Path, plan: Int8Plan) -> str:
        return quantizers.quantize_static_int8(source, target, samples, plan)

    # Keeping nodes in float costs a calibration per attempt: worth it only while no int8 candidate passed.
    return int8_search.search(run, name, base, static, plans, dynamic=False, fallback=fallback, refine=refine)
