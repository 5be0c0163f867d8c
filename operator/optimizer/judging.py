"""Building a candidate, loading it, and gating it against the original (docs/optimizer.md, "The gate").

`Run` holds what one optimization run shares between its steps: the held-out inputs, the original's
outputs on them (one at a time), the batches the batch check sends, and the loaded candidates.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from modeldeploy.optimizer import candidates as steps
from modeldeploy.optimizer.accuracy import AccuracyReport, compare
from modeldeploy.optimizer.measurement import open_session, run_all
from modeldeploy.optimizer.options import OptimizeOptions
from modeldeploy.optimizer.outcome import CandidateOutcome, Status
from modeldeploy.optimizer.samples import Sample, batch_groups, stacked
from modeldeploy.optimizer.signature import ModelSignature

Log = Callable[[str], None]
Outputs = list[list[npt.NDArray[Any]]]


def log_to_stderr(line: str) -> None:
    print(f"[optimize] {line}", file=sys.stderr, flush=True)


def short_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:300]}"


def run_batched(session: ort.InferenceSession, held_out: list[Sample], groups: list[list[int]]) -> Outputs:
    """Each group of held-out samples sent as one batch, the outputs split back per sample (group order)."""
    results: Outputs = []
    for group in groups:
        outputs = session.run(None, stacked([held_out[index] for index in group]))
        results.extend([output[item : item + 1] for output in outputs] for item in range(len(group)))
    return results


def batch_check(
    session: ort.InferenceSession, held_out: list[Sample], size: int, output_names: list[str]
) -> tuple[list[list[int]], AccuracyReport | None]:
    """The groups the batch check sends, and the original's own batch-vs-single comparison (None when no
    two held-out samples share shapes)."""
    groups = batch_groups(held_out, size) if size > 1 else []
    if not groups:
        return [], None
    singles = run_all(session, [held_out[index] for group in groups for index in group])
    return groups, compare(output_names, singles, run_batched(session, held_out, groups))


@dataclass
class Run:
    options: OptimizeOptions
    work: Path
    signature: ModelSignature
    held_out: list[Sample]
    reference: Outputs
    class_like: frozenset[str]
    log: Log
    feed: Sample  # what candidates are timed on (held-out sample 0 at the measured batch size)
    shapes: dict[str, tuple[int, ...]]  # batch-1 input shapes used throughout
    max_batch: int  # Triton's max_batch_size (0: no batching)
    notes: list[str]
    sessions: dict[str, ort.InferenceSession] = field(default_factory=dict)
    groups: list[list[int]] = field(default_factory=list)  # held-out indices sent together (batch check)

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.signature.outputs]

    def gate(self, session: ort.InferenceSession) -> AccuracyReport:
        singles = run_all(session, self.held_out)
        accuracy = compare(self.output_names, self.reference, singles, self.class_like)
        if not self.groups:
            return accuracy
        order = [index for group in self.groups for index in group]
        batch = compare(
            self.output_names,
            [self.reference[index] for index in order],
            run_batched(session, self.held_out, self.groups),
            self.class_like,
        )
        size = max(len(group) for group in self.groups)
        return AccuracyReport(accuracy.outputs, accuracy.samples, batch=batch, batch_size=size)

    def judge(
        self, name: str, base: str | None, path: Path, note: str, session: ort.InferenceSession
    ) -> CandidateOutcome:
        """Gate a loaded candidate: kept (and its session remembered for timing) or rejected."""
        try:
            accuracy = self.gate(session)
        except Exception as error:
            self.log(f"{name}: failed: running it: {short_error(error)}")
            return CandidateOutcome(name, "failed", f"running it failed: {short_error(error)}", base=base)
        bound = self.options.max_accuracy_drop
        figures = (
            f"cosine {accuracy.worst_cosine:.4f}, worst sample {accuracy.min_cosine:.4f}"
            + (f", top-1 agreement {accuracy.worst_top1:.4f}" if accuracy.worst_top1 is not None else "")
            + (f", batch {accuracy.batch_size} drop {accuracy.batch.drop:.4g}" if accuracy.batch else "")
        )
        status: Status
        if accuracy.passes(bound):
            status, reason = "kept", f"{note}; accuracy drop {accuracy.drop:.4g} <= {bound} ({figures})"
            self.sessions[name] = session
        else:
            status, reason = "rejected", f"{note}; {accuracy.failure(bound)} ({figures})"
        size = path.stat().st_size if path.suffix == ".plan" else steps.file_size(path)
        outcome = CandidateOutcome(name, status, reason, path, size, accuracy, base=base)
        self.log(f"{name}: {status}: {reason}")
        return outcome

    def try_step(
        self, name: str, base: CandidateOutcome, build: Callable[[Path, Path], str]
    ) -> CandidateOutcome:
        if base.path is None:
            raise ValueError(f"{base.name} has no model file")
        target = self.work / f"{name}.onnx"
        self.log(f"{name}: building from {base.name}")
        try:
            note = build(base.path, target)
        except Exception as error:  # real graphs break quantizers in many ways: record and go on
            self.log(f"{name}: failed: {short_error(error)}")
            return CandidateOutcome(name, "failed", short_error(error), base=base.name)
        try:
            session = open_session(target, threads=self.options.threads)
        except Exception as error:
            reason = f"ONNX Runtime cannot load the result: {short_error(error)}"
            self.log(f"{name}: failed: {reason}")
            return CandidateOutcome(name, "failed", reason, base=base.name)
        return self.judge(name, base.name, target, note, session)


def all_zero_notes(signature: ModelSignature, reference: Outputs) -> list[str]:
    return [
        f"output {spec.name!r} is all zeros on every gate input: the gate cannot tell candidates apart on it "
        "(only exact zeros pass); give real calibration data"
        for index, spec in enumerate(signature.outputs)
        if not any(np.any(sample[index]) for sample in reference)
    ]
