"""Running models in ONNX Runtime and timing them side by side.

Candidates are timed in interleaved rounds (each round runs every candidate once, in a rotating order),
so a noisy neighbour on a shared machine slows all of them alike and the ratios stay fair.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from modeldeploy.optimizer.outcome import Timing
from modeldeploy.optimizer.samples import Sample, batched

WARMUP_RUNS = 2
MIN_ROUNDS = 5
MAX_ROUNDS = 500


def execution_providers() -> list[str]:
    """The accelerator's provider first when this ONNX Runtime has one, then the CPU."""
    available = ort.get_available_providers()
    preferred = [name for name in ("CUDAExecutionProvider",) if name in available]
    return [*preferred, "CPUExecutionProvider"]


def default_threads() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def session_options(threads: int = 0) -> ort.SessionOptions:
    """Fixed thread counts and no spinning: candidates take turns on the same cores, and a session whose
    threads keep spinning after its run would steal time from the next one and bias the comparison."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ONNX Runtime's warnings about unused initializers are noise here
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(
    path: Path, providers: Sequence[str] | None = None, threads: int = 0
) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(path), session_options(threads), providers=list(providers or execution_providers())
    )


def run_all(session: ort.InferenceSession, samples: Sequence[Sample]) -> list[list[npt.NDArray[Any]]]:
    return [list(session.run(None, dict(sample))) for sample in samples]


def time_side_by_side(
    runners: Mapping[str, Callable[[], object]], items_per_run: int, budget_s: float
) -> dict[str, Timing]:
    """Time each runner in interleaved rounds until `budget_s` is spent (at least MIN_ROUNDS rounds)."""
    names = list(runners)
    for name in names:
        for _ in range(WARMUP_RUNS):
            runners[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    rounds = 0
    while rounds < MAX_ROUNDS and (rounds < MIN_ROUNDS or time.perf_counter() - started < budget_s):
        offset = rounds % len(names)
        for name in names[offset:] + names[:offset]:
            begin = time.perf_counter()
            runners[name]()
            samples[name].append(time.perf_counter() - begin)
        rounds += 1
    timings: dict[str, Timing] = {}
    for name, seconds in samples.items():
        values = np.array(seconds)
        timings[name] = Timing(
            latency_ms_p50=float(np.percentile(values, 50) * 1000),
            latency_ms_p99=float(np.percentile(values, 99) * 1000),
            throughput_per_s=float(items_per_run * len(values) / values.sum()),
            batch_size=items_per_run,
            runs=len(values),
            rounds=tuple(float(value) * 1000 for value in values),
        )
    return timings


def session_runner(session: ort.InferenceSession, feed: Sample) -> Callable[[], object]:
    frozen = dict(feed)
    return lambda: session.run(None, frozen)


def throughput_by_batch_size(
    session: ort.InferenceSession, sample: Sample, batch_sizes: Sequence[int], budget_s: float
) -> dict[int, float]:
    """Items per second at each batch size (one request at a time), timed side by side."""
    runners: dict[str, Callable[[], object]] = {}
    for size in batch_sizes:
        runners[str(size)] = session_runner(session, batched(sample, size))
    per_call = time_side_by_side(runners, 1, budget_s)
    return {int(name): int(name) * timing.throughput_per_s for name, timing in per_call.items()}
