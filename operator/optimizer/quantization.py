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


def build(run: Run, name: str, base: CandidateOutcome, calibration: list[Sample]) -> CandidateOutcome:
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

    def static(source: Path, target: Path, plan: Int8Plan) -> str:
        return quantizers.quantize_static_int8(source, target, calibration, plan)

    # Keeping nodes in float costs a calibration per attempt: worth it only while no int8 candidate passed.
    refine = "int8-dynamic" not in run.sessions
    return int8_search.search(run, name, base, static, plans, dynamic=False, fallback=fallback, refine=refine)
