"""The optimization run: fetch → inspect → prepare inputs → build and gate candidates → time them side by
side → choose → compile → write the Triton repository and report.json.

Every step that can break on a real model is caught and recorded as a `failed` candidate with its reason;
only bad input (OptimizerInputError) or an unwritable output stops the run.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnxruntime as ort

from modeldeploy.optimizer import candidates as steps
from modeldeploy.optimizer import gate_inputs, quantization, sources, tensorrt_engine
from modeldeploy.optimizer.errors import OptimizerInputError
from modeldeploy.optimizer.generated import index_bounds
from modeldeploy.optimizer.judging import (
    Log,
    Run,
    all_zero_notes,
    batch_check,
    log_to_stderr,
    short_error,
)
from modeldeploy.optimizer.measurement import (
    execution_providers,
    open_session,
    run_all,
    session_runner,
    throughput_by_batch_size,
    time_side_by_side,
)
from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.outcome import CandidateOutcome
from modeldeploy.optimizer.report import (
    REPORT_NAME,
    build_report,
    complete_report,
    read_local_report,
    summary,
)
from modeldeploy.optimizer.samples import Sample, batched
from modeldeploy.optimizer.selection import batch_sizes_to_measure, choose, preferred_batch_sizes
from modeldeploy.optimizer.signature import ModelSignature, class_like_outputs, load_onnx, signature_of
from modeldeploy.optimizer.triton_config import PLATFORMS, ServingConfig, build_config, render_config

MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class OptimizeRequest:
    model_uri: str
    output: str
    name: str
    options: OptimizeOptions
    report_path: Path | None = None  # an extra copy of report.json; OUTPUT/report.json is always written


@dataclass(frozen=True)
class OptimizeResult:
    report: dict[str, Any]
    cached: bool
    report_location: str

    def summary(self) -> dict[str, Any]:
        return summary(self.report, cached=self.cached, location=self.report_location)


def default_model_name(model_uri: str) -> str:
    stem = Path(model_uri.rstrip("/")).stem or "model"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def check_model_name(name: str) -> str:
    if not MODEL_NAME.match(name) or name in (".", ".."):
        raise OptimizerInputError(
            f"--name: {name!r} is not a valid Triton model name (letters, digits, _ . -)"
        )
    return name


def _measure(run: Run, outcomes: list[CandidateOutcome], budget_s: float) -> list[CandidateOutcome]:
    """Time every kept candidate side by side (they share the rounds, so ratios are fair)."""
    names = [o.name for o in outcomes if o.status == "kept" and o.name in run.sessions]
    items = next(iter(run.feed.values())).shape[0] if run.feed else 1
    runners = {name: session_runner(run.sessions[name], run.feed) for name in names}
    timings = time_side_by_side(runners, items, budget_s)
    return [replace(o, timing=timings[o.name]) if o.name in timings else o for o in outcomes]


def _compile(run: Run, chosen: CandidateOutcome) -> CandidateOutcome:
    options = run.options
    if options.compile_target == "onnxruntime":
        return run.try_step("compiled-onnxruntime", chosen, steps.compile_onnxruntime)
    reason = tensorrt_engine.unavailable_reason()
    name = f"tensorrt-{options.compile_precision}"
    if reason is not None:
        return CandidateOutcome(name, "skipped", reason, base=chosen.name)
    assert chosen.path is not None
    precision = options.compile_precision
    if precision == "int8" and not chosen.name.startswith("int8-static"):
        return CandidateOutcome(
            name,
            "skipped",
            "TensorRT int8 needs the QDQ model (int8-static) to be the chosen base",
            base=chosen.name,
        )
    try:
        session = ort.InferenceSession(
            str(chosen.path), providers=tensorrt_engine.provider_options(precision)
        )
        plan = run.work / "model.plan"
        profiles = tensorrt_engine.optimization_profiles(
            run.shapes, options.measure_batch_size, run.max_batch
        )
        note = tensorrt_engine.build_engine(chosen.path, plan, profiles, precision)
    except Exception as error:
        return CandidateOutcome(name, "failed", short_error(error), base=chosen.name)
    return run.judge(name, chosen.name, plan, note, session)


def _cached(request: OptimizeRequest, output_dir: Path | None) -> dict[str, Any] | None:
    """The finished report already at the output, when its repository is complete (the Job's cache)."""
    if output_dir is not None:
        return read_local_report(output_dir, output_dir / REPORT_NAME)
    return complete_report(
        sources.read_remote_text(request.output, REPORT_NAME),
        lambda relative: sources.remote_exists(request.output, relative),
    )


def _build_candidates(
    run: Run, original: CandidateOutcome, calibration: list[Sample], generated: bool
) -> tuple[list[CandidateOutcome], int]:
    """Every candidate, gated. Returns them and the index of the first one allowed to ship."""
    options = run.options
    outcomes = [original]
    graph_optimized = run.try_step("graph-optimized", original, steps.graph_optimize)
    outcomes.append(graph_optimized)
    base = graph_optimized if graph_optimized.status == "kept" else original
    eligible_from = 0
    if options.pruning_sparsity > 0:
        sparsity = options.pruning_sparsity
        pruned = run.try_step("pruned", base, lambda s, t: steps.prune_magnitude(s, t, sparsity))
        outcomes.append(pruned)
        if pruned.status == "kept":
            # Pruning was asked for and passed: only pruned candidates may ship.
            base, eligible_from = pruned, len(outcomes) - 1
        else:
            run.notes.append(f"pruning to {sparsity:.0%} did not pass the gate; the model ships unpruned")
    for step_name, skipped in quantization.steps_to_try(options, run.signature, generated):
        if skipped is not None:
            outcomes.append(CandidateOutcome(step_name, "skipped", skipped, base=base.name))
        else:
            # Keeping nodes in float is worth its recalibrations while no int8 candidate passed and halved.
            refine = not any(
                o.name.startswith("int8")
                and o.status == "kept"
                and 2 * (o.size_bytes or 0) <= (base.size_bytes or 0)
                for o in outcomes
            )
            outcomes.append(quantization.build(run, step_name, base, calibration, refine=refine))
    return outcomes, eligible_from


def _choose_and_compile(
    run: Run, outcomes: list[CandidateOutcome], eligible_from: int
) -> tuple[list[CandidateOutcome], CandidateOutcome, str]:
    """Time the kept candidates, choose, compile when asked. Returns (outcomes, chosen, explanation)."""
    options = run.options
    outcomes = _measure(run, outcomes, options.measure_seconds)
    requested = options.quantization if options.quantization not in ("auto", "none") else None
    choice = choose(outcomes[eligible_from:], requested, baseline=outcomes[0])
    chosen, explanation = choice.winner, choice.explanation
    if options.compile_target != "none":
        compiled = _compile(run, chosen)
        outcomes.append(compiled)
        if compiled.status == "kept":
            # Timed again all together, so the compiled model's figures compare fairly with the rest.
            untimed = [replace(o, timing=None) for o in outcomes]
            outcomes = _measure(run, untimed, options.measure_seconds)
            chosen = outcomes[-1]
            explanation = f"{explanation}; then compiled for {options.compile_target} ({compiled.name})"
        else:
            run.notes.append(f"compile {options.compile_target}: {compiled.status}: {compiled.reason}")
    outcomes = [
        o.with_reason(f"chosen: {explanation}. {o.reason}") if o.name == chosen.name else o for o in outcomes
    ]
    return outcomes, next(o for o in outcomes if o.name == chosen.name), explanation


def _preferred_batch_sizes(
    run: Run, chosen: CandidateOutcome, sample: Sample, batching: bool
) -> tuple[list[int], dict[int, float]]:
    """The spec's preferred batch sizes, or ones chosen from the shipped model's measured throughput."""
    options = run.options
    if not batching or not options.dynamic_batching:
        return [], {}
    if options.preferred_batch_sizes:
        return list(options.preferred_batch_sizes), {}
    if chosen.name not in run.sessions:
        return [], {}
    sizes = batch_sizes_to_measure(options.max_batch_size)
    budget = max(options.measure_seconds / 2, 0.2)
    throughput = throughput_by_batch_size(run.sessions[chosen.name], sample, sizes, budget)
    return preferred_batch_sizes(throughput), throughput


def _start_run(
    request: OptimizeRequest, work: Path, log: Log
) -> tuple[Run, Path, ort.InferenceSession, gate_inputs.GateInputs]:
    """Load the model, prepare the gate's inputs, run the original on them, decide whether it batches."""
    options = request.options
    model_path, model = load_onnx(sources.fetch(request.model_uri, work / "source"))
    signature = signature_of(model, model_path)
    try:
        session = open_session(model_path, threads=options.threads)
    except Exception as error:
        raise OptimizerInputError(
            f"{request.model_uri}: ONNX Runtime cannot load the model: {short_error(error)}"
        ) from None
    inputs = gate_inputs.prepare(options, signature, index_bounds(model), session, work)
    notes = inputs.notes
    shapes = {key: tuple(value) for key, value in inputs.info["shapes"].items()}
    batching = signature.has_batch_dimension and options.max_batch_size > 0
    if options.max_batch_size > 0 and not signature.has_batch_dimension:
        notes.append(
            "not every input and output has a dynamic first (batch) dimension: Triton batching is off "
            "(max_batch_size 0)"
        )
    names = [spec.name for spec in signature.outputs]
    groups, original_batch = batch_check(
        session, inputs.held_out, options.max_batch_size if batching else 0, names
    )
    if original_batch is not None and not original_batch.passes(0.0001):
        notes.append(
            f"the original model gives different outputs for a batch of {max(map(len, groups))} than for "
            f"the same inputs one at a time (drop {original_batch.drop:.3g}): its first dimension is not a "
            "batch; Triton batching is off (max_batch_size 0)"
        )
        batching, groups = False, []
    batch_size = options.measure_batch_size if batching else 1
    log(f"{request.model_uri}: {len(signature.inputs)} inputs, opset {signature.opset}, shapes {shapes}")
    reference = run_all(session, inputs.held_out)
    notes.extend(all_zero_notes(signature, reference))
    run = Run(
        options=options,
        work=work,
        signature=signature,
        held_out=inputs.held_out,
        reference=reference,
        class_like=class_like_outputs(model, signature),
        log=log,
        feed=batched(inputs.held_out[0], batch_size) if batching else inputs.held_out[0],
        shapes=shapes,
        max_batch=options.max_batch_size if batching else 0,
        notes=notes,
        groups=groups,
    )
    return run, model_path, session, inputs


def optimize(request: OptimizeRequest, log: Log = log_to_stderr) -> OptimizeResult:
    options = request.options
    name = check_model_name(request.name)
    output_dir = sources.local_path(request.output)
    # Where report.json is, as the user named the output (a URI stays a URI; a path becomes absolute).
    location = (
        str(output_dir.absolute() / REPORT_NAME)
        if output_dir is not None and "://" not in request.output
        else f"{request.output.rstrip('/')}/{REPORT_NAME}"
    )
    cached = _cached(request, output_dir)
    if cached is not None:
        log(f"{location} exists and its repository is complete: not optimizing again")
        if request.report_path:
            request.report_path.write_text(json.dumps(cached, indent=2) + "\n", encoding="utf-8")
        return OptimizeResult(cached, True, location)

    with tempfile.TemporaryDirectory(prefix="modeldeploy-optimize-") as scratch:
        work = Path(scratch)
        run, model_path, original_session, inputs = _start_run(request, work, log)
        calibration, held_out, notes = inputs.calibration, inputs.held_out, run.notes
        batching, shapes = run.max_batch > 0, run.shapes
        batch_size = options.measure_batch_size if batching else 1
        inputs_info = inputs.info
        original = run.judge("original", None, model_path, "the input model, unchanged", original_session)
        outcomes, eligible_from = _build_candidates(run, original, calibration, inputs.generated)
        outcomes, chosen, explanation = _choose_and_compile(run, outcomes, eligible_from)
        preferred, throughput = _preferred_batch_sizes(run, chosen, held_out[0], batching)
        model_format = "plan" if chosen.path is not None and chosen.path.suffix == ".plan" else "onnx"
        serving = ServingConfig(
            max_batch_size=run.max_batch,
            dynamic_batching=options.dynamic_batching,
            preferred_batch_sizes=preferred,
            max_queue_delay_microseconds=options.max_queue_delay_microseconds,
            instance_kind=options.instance_kind,
            instance_count=options.instance_count,
            warmup_shapes=shapes if options.warmup else None,
        )
        config_text = render_config(build_config(name, model_format, run.signature, serving))

        staging = output_dir if output_dir is not None else work / "repository"
        repository = {"config": f"{name}/config.pbtxt", "model_file": f"{name}/1/model.{model_format}"}
        write_repository(staging, name, chosen, config_text, repository, signature=run.signature)
        report = build_report(
            model=name,
            source=request.model_uri,
            chosen=chosen,
            explanation=explanation,
            baseline=outcomes[0],
            candidates=outcomes,
            max_accuracy_drop=options.max_accuracy_drop,
            inputs={
                **inputs_info,
                "measured_batch_size": batch_size,
                "execution_providers": execution_providers(),
            },
            triton={
                "platform": PLATFORMS[model_format],
                "max_batch_size": serving.max_batch_size,
                "dynamic_batching": serving.dynamic_batching and serving.max_batch_size > 0,
                "preferred_batch_sizes": preferred,
                "throughput_by_batch_size": {str(k): round(v, 2) for k, v in throughput.items()},
                "instance_group": {"kind": serving.instance_kind, "count": serving.instance_count},
                "warmup": options.warmup,
            },
            repository=repository,
            notes=notes,
        )
        text = json.dumps(report, indent=2) + "\n"
        # report.json last: its presence marks the revision complete (the cache short-circuit relies on it).
        (staging / REPORT_NAME).write_text(text, encoding="utf-8")
        if output_dir is None:
            sources.publish(staging, request.output)
        if request.report_path:
            request.report_path.parent.mkdir(parents=True, exist_ok=True)
            request.report_path.write_text(text, encoding="utf-8")
        log(f"chose {chosen.name}: {explanation}")
        return OptimizeResult(report, False, location)


def write_repository(
    staging: Path,
    name: str,
    chosen: CandidateOutcome,
    config_text: str,
    repository: dict[str, str],
    *,
    signature: ModelSignature | None = None,
) -> None:
    if chosen.path is None:
        raise ValueError(f"the chosen candidate {chosen.name} has no model file")
    (staging / REPORT_NAME).unlink(missing_ok=True)
    model_dir = staging / name
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a half-written earlier attempt
    model_file = staging / repository["model_file"]
    model_file.parent.mkdir(parents=True)
    shutil.copyfile(chosen.path, model_file)
    if (
        signature is not None
        and chosen.path.suffix == ".onnx"
        and any(not spec.dims for spec in signature.inputs + signature.outputs)
    ):
        steps.scalars_as_one_element(chosen.path, model_file)
    if chosen.path.suffix == ".onnx":
        # External data files travel with the model, at the same relative place (Triton's ONNX Runtime
        # backend reads them next to model.onnx).
        for relative in steps.external_data_files(chosen.path):
            target = model_file.parent / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(chosen.path.parent / relative, target)
    (staging / repository["config"]).write_text(config_text, encoding="utf-8")
