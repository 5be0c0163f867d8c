"""The accuracy gate: a candidate's outputs versus the original's on the same held-out inputs. Pure numpy.

Definitions (docs/optimizer.md repeats them), per output, over the gate samples:
- cosine: per sample, the cosine similarity of the flattened output tensors; `cosine` is the mean over
  samples, `min_cosine` the worst sample. Where the original's output is all zeros (a detector on a blank
  image) the cosine is undefined; that sample scores 1 - |candidate| / (mean |original| over the samples
  where it is not all zeros), clipped to [0, 1]; when it is all zeros on every sample, only an all-zero
  candidate scores 1.
- relative error (scale-aware; cosine ignores a changed scale): per sample |candidate - original| /
  |original| (L2 norms; against the typical norm where the original is all zeros); `relative_error` is the
  root mean square over samples, `max_relative_error` the worst sample. A rotation by cosine 1 - d with an
  unchanged norm has a relative error of sqrt(2 d), so r counts as a drop of r^2 / 2.
- top-1 agreement (class-like outputs only): the share of argmax positions along the last axis
  (one per sample, or one per time step for [N, T, C]) where candidate and original agree.
- max abs error: the largest absolute difference seen (reported only).
- drop = max over outputs of max(1 - cosine, relative_error^2 / 2, 1 - top-1 agreement); worst-case drop
  = max over outputs of max(1 - min_cosine, max_relative_error^2 / 2). `--max-accuracy-drop D` keeps a
  candidate only when drop <= D and worst-case drop <= WORST_CASE_FACTOR * D, at batch 1 and, when the
  model batches, again with the gate samples sent as batches (`batch`). A non-finite output or a changed
  shape is a drop of 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FLOAT_TOLERANCE = 1e-9
# The worst gate sample may drop this many times the bound (0.01 → mean cosine ≥ 0.99, every sample ≥ 0.98).
WORST_CASE_FACTOR = 2.0


@dataclass(frozen=True)
class OutputAccuracy:
    name: str
    cosine: float
    min_cosine: float
    max_abs_error: float
    top1_agreement: float | None
    problem: str | None = None  # a non-finite value or shape change, when there is one
    relative_error: float = 0.0
    max_relative_error: float = 0.0

    @property
    def drop(self) -> float:
        if self.problem is not None:
            return 1.0
        drops = [1.0 - self.cosine, self.relative_error**2 / 2]
        if self.top1_agreement is not None:
            drops.append(1.0 - self.top1_agreement)
        return max(0.0, *drops)

    @property
    def worst_drop(self) -> float:
        if self.problem is not None:
            return 1.0
        return max(0.0, 1.0 - self.min_cosine, self.max_relative_error**2 / 2)

    def to_json(self) -> dict[str, object]:
        return {
            "cosine": round(self.cosine, 6),
            "min_cosine": round(self.min_cosine, 6),
            "relative_error": round(self.relative_error, 6),
            "max_relative_error": round(self.max_relative_error, 6),
            "max_abs_error": float(f"{self.max_abs_error:.6g}"),
            "top1_agreement": None if self.top1_agreement is None else round(self.top1_agreement, 6),
            "drop": round(self.drop, 6),
            "worst_drop": round(self.worst_drop, 6),
            **({"problem": self.problem} if self.problem else {}),
        }


@dataclass(frozen=True)
class AccuracyReport:
    outputs: tuple[OutputAccuracy, ...]
    samples: int
    # The same comparison with the gate samples sent N at a time (None: the model does not batch).
    batch: AccuracyReport | None = None
    batch_size: int = 1

    @property
    def drop(self) -> float:
        return max((output.drop for output in self.outputs), default=0.0)

    @property
    def worst_drop(self) -> float:
        return max((output.worst_drop for output in self.outputs), default=0.0)

    def passes(self, max_drop: float) -> bool:
        # Rounding in float64 cosines leaves ~1e-16 on identical outputs; that is not a drop.
        alone = self.drop <= max_drop + FLOAT_TOLERANCE and (
            self.worst_drop <= WORST_CASE_FACTOR * max_drop + FLOAT_TOLERANCE
        )
        return alone and (self.batch is None or self.batch.passes(max_drop))

    def failure(self, max_drop: float) -> str:
        """Which bound failed, with the figures (empty when it passes)."""
        if self.drop > max_drop + FLOAT_TOLERANCE:
            return f"accuracy drop {self.drop:.4g} exceeds {max_drop}"
        if self.worst_drop > WORST_CASE_FACTOR * max_drop + FLOAT_TOLERANCE:
            return f"worst-case drop {self.worst_drop:.4g} exceeds {WORST_CASE_FACTOR:g} x {max_drop}"
        if self.batch is not None and not self.batch.passes(max_drop):
            return f"at batch {self.batch_size}: {self.batch.failure(max_drop)}"
        return ""

    @property
    def worst_cosine(self) -> float:
        return min((output.cosine for output in self.outputs), default=1.0)

    @property
    def min_cosine(self) -> float:
        return min((output.min_cosine for output in self.outputs), default=1.0)

    @property
    def worst_top1(self) -> float | None:
        values = [output.top1_agreement for output in self.outputs if output.top1_agreement is not None]
        return min(values) if values else None

    def to_json(self) -> dict[str, object]:
        batch = self.batch
        return {
            "drop": round(self.drop, 6),
            "worst_drop": round(self.worst_drop, 6),
            "cosine": round(self.worst_cosine, 6),
            "min_cosine": round(self.min_cosine, 6),
            "relative_error": round(max((o.relative_error for o in self.outputs), default=0.0), 6),
            "top1_agreement": None if self.worst_top1 is None else round(self.worst_top1, 6),
            "samples": self.samples,
            "outputs": {output.name: output.to_json() for output in self.outputs},
            "batch": None
            if batch is None
            else {
                "batch_size": self.batch_size,
                "drop": round(batch.drop, 6),
                "worst_drop": round(batch.worst_drop, 6),
            },
        }


def cosine_similarity(reference: npt.NDArray[Any], candidate: npt.NDArray[Any]) -> float:
    a = reference.astype(np.float64).ravel()
    b = candidate.astype(np.float64).ravel()
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if norm_a == 0.0 and norm_b == 0.0:
        return 1.0
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (norm_a * norm_b), -1.0, 1.0))


def _similarity(
    reference: npt.NDArray[Any], candidate: npt.NDArray[Any], typical_norm: float
) -> tuple[float, float]:
    """(cosine-like similarity, relative error) of one sample."""
    difference = float(np.linalg.norm(candidate.astype(np.float64) - reference.astype(np.float64)))
    if np.any(reference):
        norm = float(np.linalg.norm(reference.astype(np.float64)))
        return cosine_similarity(reference, candidate), difference / norm
    # Cosine is undefined against zeros: judge the candidate's magnitude against the output's usual scale.
    if typical_norm == 0.0:
        return (1.0, 0.0) if difference == 0.0 else (0.0, 1.0)
    return max(0.0, 1.0 - difference / typical_norm), difference / typical_norm


def _compare_output(
    name: str,
    references: Sequence[npt.NDArray[Any]],
    candidates: Sequence[npt.NDArray[Any]],
    class_like: bool,
) -> OutputAccuracy:
    cosines: list[float] = []
    relative: list[float] = []
    max_error = 0.0
    agree = total = 0
    norms = [float(np.linalg.norm(r.astype(np.float64))) for r in references]
    typical_norm = float(np.mean([n for n in norms if n > 0])) if any(norms) else 0.0
    for reference, candidate in zip(references, candidates, strict=True):
        if reference.shape != candidate.shape:
            return OutputAccuracy(
                name, 0.0, 0.0, float("inf"), None, f"shape {candidate.shape} differs from {reference.shape}"
            )
        if not np.all(np.isfinite(candidate.astype(np.float64))):
            return OutputAccuracy(name, 0.0, 0.0, float("inf"), None, "non-finite values (nan/inf)")
        similarity, error = _similarity(reference, candidate, typical_norm)
        cosines.append(similarity)
        relative.append(error)
        if reference.size:
            difference = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
            max_error = max(max_error, float(difference.max()))
        if class_like and reference.ndim >= 1 and reference.shape[-1] > 1:
            same = np.argmax(reference, axis=-1) == np.argmax(candidate, axis=-1)
            agree += int(same.sum())
            total += int(same.size)
    top1 = agree / total if class_like and total else None
    return OutputAccuracy(
        name=name,
        cosine=float(np.mean(cosines)) if cosines else 1.0,
        min_cosine=float(np.min(cosines)) if cosines else 1.0,
        max_abs_error=max_error,
        top1_agreement=top1,
        relative_error=float(np.sqrt(np.mean(np.square(relative)))) if relative else 0.0,
        max_relative_error=float(np.max(relative)) if relative else 0.0,
    )


def compare(
    output_names: Sequence[str],
    reference: Sequence[Sequence[npt.NDArray[Any]]],
    candidate: Sequence[Sequence[npt.NDArray[Any]]],
    class_like: frozenset[str] = frozenset(),
) -> AccuracyReport:
    """`reference[i][k]` and `candidate[i][k]`: output k of sample i (same order as `output_names`)."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference samples but {len(candidate)} candidate samples")
    outputs = tuple(
        _compare_output(
            name,
            [sample[index] for sample in reference],
            [sample[index] for sample in candidate],
            name in class_like,
        )
        for index, name in enumerate(output_names)
    )
    return AccuracyReport(outputs=outputs, samples=len(reference))
