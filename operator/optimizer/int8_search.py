"""Accuracy-aware int8: try a few quantization plans, and when none passes the gate, keep the nodes that
hurt the output most in float until one does (docs/optimizer.md, "int8").

Sensitivity is measured per node: the float model and the best int8 attempt both expose every node's
output, run on a few held-out samples; a node's contribution is the relative error of its output minus
the largest relative error among its inputs (what it adds, not what it inherits). Nodes are excluded
(`nodes_to_exclude`) in that order, 1, 2, 4, ... at a time, and the report names them and their figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from modeldeploy.optimizer.judging import Run, short_error
from modeldeploy.optimizer.outcome import CandidateOutcome
from modeldeploy.optimizer.quantizers import Int8Plan, preprocess, quantizable_nodes
from modeldeploy.optimizer.samples import Sample

Build = Callable[[Path, Path, Int8Plan], str]
SENSITIVITY_SAMPLES = 4
EXCLUSION_STEPS = (1, 2, 4, 8, 16, 32)
MAX_EXCLUDED_SHARE = 0.5  # never keep more than half of the quantizable nodes in float


def _with_every_output(path: Path, names: Sequence[str]) -> bytes:
    model = onnx.load(str(path))
    present = {output.name for output in model.graph.output}
    produced = {output for node in model.graph.node for output in node.output}
    for name in names:
        if name not in present and name in produced:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    return bytes(model.SerializeToString())


def _intermediates(model: bytes, samples: Sequence[Sample]) -> list[dict[str, npt.NDArray[Any]]]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return [dict(zip(names, session.run(None, dict(sample)), strict=True)) for sample in samples]


def intermediate_bytes(path: Path, sample: Sample) -> int:
    """Bytes of every node output for one sample: what a static calibrator holds per calibration sample."""
    model = onnx.load(str(path), load_external_data=False)
    tensors = [output for node in model.graph.node for output in node.output]
    [outputs] = _intermediates(_with_every_output(path, tensors), [sample])
    return sum(int(array.nbytes) for array in outputs.values())


def _relative_errors(
    reference: list[dict[str, npt.NDArray[Any]]], candidate: list[dict[str, npt.NDArray[Any]]]
) -> dict[str, float]:
    errors: dict[str, float] = {}
    for name in reference[0]:
        values = []
        for ref, cand in zip(reference, candidate, strict=True):
            a, b = ref.get(name), cand.get(name)
            if a is None or b is None or a.dtype.kind != "f" or a.shape != b.shape:
                break
            norm = float(np.linalg.norm(a.astype(np.float64)))
            difference = float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))
            values.append(difference / norm if norm else (0.0 if difference == 0 else 1.0))
        else:
            errors[name] = float(np.mean(values)) if values else 0.0
    return errors


def rank_nodes(
    float_path: Path, quantized_path: Path, samples: Sequence[Sample], candidates: Sequence[str]
) -> list[tuple[str, float]]:
    """(node name, contribution to the error) for `candidates`, the largest first."""
    model = onnx.load(str(float_path), load_external_data=False)
    nodes = {node.name: node for node in model.graph.node}
    tensors = [output for node in model.graph.node for output in node.output]
    reference = _intermediates(_with_every_output(float_path, tensors), samples)
    quantized = _intermediates(_with_every_output(quantized_path, tensors), samples)
    errors = _relative_errors(reference, quantized)
    ranked = []
    for name in candidates:
        node = nodes.get(name)
        if node is None or not node.output or node.output[0] not in errors:
            continue
        inherited = max((errors.get(tensor, 0.0) for tensor in node.input), default=0.0)
        ranked.append((name, max(errors[node.output[0]] - inherited, 0.0)))
    return sorted(ranked, key=lambda item: -item[1])


def _attempt(run: Run, label: str, base: CandidateOutcome, build: Build, plan: Int8Plan) -> CandidateOutcome:
    return run.try_step(label, base, lambda source, target: build(source, target, plan))


def _drop(outcome: CandidateOutcome) -> float:
    return outcome.accuracy.drop if outcome.accuracy is not None else float("inf")


def _best(outcomes: Sequence[CandidateOutcome]) -> CandidateOutcome | None:
    kept = [o for o in outcomes if o.status == "kept"]
    built = [o for o in outcomes if o.accuracy is not None]
    if kept:
        return min(kept, key=_drop)
    return min(built, key=_drop) if built else None


def search(
    run: Run,
    name: str,
    base: CandidateOutcome,
    build: Build,
    plans: Sequence[Int8Plan],
    *,
    dynamic: bool,
    fallback: Int8Plan | None = None,
    refine: bool = True,
) -> CandidateOutcome:
    """The best int8 candidate `name` from `plans` (then with nodes kept in float), gated."""
    assert base.path is not None
    prepared_path = run.work / f"{name}-prepared.onnx"
    try:
        prepared_note = preprocess(base.path, prepared_path)
    except Exception as error:
        return CandidateOutcome(name, "failed", f"pre-processing: {short_error(error)}", base=base.name)
    prepared = replace(base, path=prepared_path)
    plans = list(plans)
    attempts = [_attempt(run, f"{name}~{i}", prepared, build, plan) for i, plan in enumerate(plans)]
    if fallback is not None and all(attempt.accuracy is None for attempt in attempts):
        plans.append(fallback)  # e.g. per-tensor when per-channel cannot be written or loaded
        attempts.append(_attempt(run, f"{name}~{len(attempts)}", prepared, build, fallback))
    tried: list[dict[str, Any]] = [_tried(plan, o) for plan, o in zip(plans, attempts, strict=True)]
    best = _best(attempts)
    excluded: list[tuple[str, float]] = []
    if best is not None and best.status != "kept" and best.path is not None and not refine:
        run.notes.append(f"{name}: no plan passed; nodes were not kept in float (an int8 candidate passed)")
    elif best is not None and best.status != "kept" and best.path is not None:
        plan = plans[attempts.index(best)]
        best, excluded, more = _exclude_until_passing(run, name, prepared, build, plan, best, dynamic)
        tried.extend(more)
    details: Mapping[str, Any] = {
        "preprocessing": prepared_note,
        "tried": tried,
        "kept_in_float": [
            {"node": node, "relative_error_added": round(value, 5)} for node, value in excluded
        ],
    }
    session = run.sessions.pop(best.name, None) if best is not None else None
    for attempt in attempts:
        run.sessions.pop(attempt.name, None)
    if best is None:
        reasons = "; ".join(f"{o.name}: {o.reason}" for o in attempts)
        return CandidateOutcome(name, "failed", reasons, base=base.name, details=details)
    if session is not None and best.status == "kept":
        run.sessions[name] = session  # timed under its final name
    note = f"{best.reason}; {prepared_note}" + (
        f"; kept in float: {', '.join(node for node, _ in excluded)}" if excluded else ""
    )
    return replace(best, name=name, base=base.name, reason=note, details=details)


def _tried(plan: Int8Plan, outcome: CandidateOutcome) -> dict[str, Any]:
    accuracy = outcome.accuracy
    return {
        "plan": plan.label(),
        "status": outcome.status,
        "drop": None if accuracy is None else round(accuracy.drop, 6),
        "worst_drop": None if accuracy is None else round(accuracy.worst_drop, 6),
        "size_bytes": outcome.size_bytes,
    }


def _exclude_until_passing(  # noqa: PLR0917 (one call site, names match)
    run: Run,
    name: str,
    prepared: CandidateOutcome,
    build: Build,
    plan: Int8Plan,
    best: CandidateOutcome,
    dynamic: bool,
) -> tuple[CandidateOutcome, list[tuple[str, float]], list[dict[str, Any]]]:
    """Keep the most sensitive nodes in float, more each time, until the gate passes (or the limit)."""
    assert prepared.path is not None and best.path is not None
    candidates = quantizable_nodes(prepared.path, dynamic)
    try:
        ranking = rank_nodes(prepared.path, best.path, run.held_out[:SENSITIVITY_SAMPLES], candidates)
    except Exception as error:
        run.notes.append(f"{name}: node sensitivity could not be measured: {short_error(error)}")
        return best, [], []
    limit = int(len(candidates) * MAX_EXCLUDED_SHARE)  # one node only: nothing to keep in float
    tried = []
    best_excluded: list[tuple[str, float]] = []
    for count in EXCLUSION_STEPS:
        if count > min(limit, len(ranking)):
            break
        excluded = ranking[:count]
        wider = replace(plan, exclude=tuple(node for node, _ in excluded))
        outcome = _attempt(run, f"{name}~float{count}", prepared, build, wider)
        tried.append(_tried(wider, outcome))
        if outcome.status == "kept":
            run.sessions.pop(best.name, None)
            return outcome, excluded, tried
        if outcome.accuracy is not None and _drop(outcome) < _drop(best):
            best, best_excluded = outcome, excluded
    names = ", ".join(f"{node} (+{value:.3g})" for node, value in ranking[:5])
    run.notes.append(f"{name}: still over the bound with nodes kept in float; most sensitive: {names}")
    return best, best_excluded, tried
