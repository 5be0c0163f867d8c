"""The real kopf operator, with the project's handlers, running in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import kopf

from modeldeploy import handlers
from modeldeploy.kube import Backoff, Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.probes import AnalysisRequest, Track
from modeldeploy.reconciler import Runtime
from modeldeploy.rollout import AnalysisOutcome, SmokeOutcome

T = TypeVar("T")


@contextlib.asynccontextmanager
async def operator_in_this_loop(
    runtime: Runtime, *, kill: bool = False, namespace: str | None = None
) -> AsyncIterator[None]:
    """Run the operator on `runtime` until the block ends, watching `namespace` (or every namespace); `kill`
    ends it by cancellation (no graceful stop, as when the process is killed). The runtime's Kubernetes
    client is closed afterwards."""
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    settings.scanning.disabled = True
    # kopf keeps an idle per-object worker alive this long, and waits for it when stopping.
    settings.batching.idle_timeout = 0.5
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            clusterwide=namespace is None,  # kmock answers 500 to namespace listing
            namespaces=[namespace] if namespace else [],
            standalone=True,
            settings=settings,
            memo=kopf.Memo(runtime=runtime, owns_runtime=False),
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=15)
        yield
    finally:
        if kill:
            task.cancel()
        else:
            stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=20)
        await runtime.kube.close()


async def eventually(
    check: Callable[[], T | None],
    what: str,
    *,
    timeout: float = 15.0,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll `check` until it returns something truthy, against a deadline. The failure names `what` and
    adds `context()` (server logs, the last status) when given."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            detail = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        await asyncio.sleep(0.02)


# --- scenarios with a scripted stand-in for Triton and Prometheus, and a clock the test moves

INTERVAL = timedelta(seconds=10)


class Watched(Protocol):
    """What a scenario reads of one ModelDeployment (real cluster or emulator)."""

    def phase(self, name: str = "ocr") -> str | None: ...

    def status(self, name: str = "ocr") -> dict[str, Any]: ...


@dataclass
class ManualClock:
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class ScriptedProbes:
    """Stand-in for Triton and Prometheus: the canary is READY unless told otherwise; verdicts are queued."""

    ready: bool = True
    verdicts: list[str] = field(default_factory=list)
    default: str = "wait"
    analyses: list[AnalysisRequest] = field(default_factory=list)

    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome:
        return SmokeOutcome(ok=self.ready, reason="READY" if self.ready else f"model {model} is UNAVAILABLE")

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        self.analyses.append(request)
        verdict = self.verdicts.pop(0) if self.verdicts else self.default
        return AnalysisOutcome(
            verdict=verdict,  # type: ignore[arg-type]
            reason=f"scripted {verdict}",
            failed_checks=("errorRate",) if verdict == "fail" else (),
            stable={"requests": 500.0, "errorRate": 0.0},
            canary={"requests": 100.0, "errorRate": 0.3 if verdict == "fail" else 0.0},
        )


@dataclass
class Operator:
    runtime: Runtime
    clock: ManualClock
    probes: ScriptedProbes
    namespace: str

    def poke(self, name: str = "ocr") -> None:
        self.runtime.poke((self.namespace, name))

    def tick(self, delta: timedelta = INTERVAL, name: str = "ocr") -> None:
        """Let time pass and wake the object (its own timer would, after `delta` of real time)."""
        self.clock.advance(delta)
        self.poke(name)

    def reconciles(self) -> float:
        value = self.runtime.metrics.registry.get_sample_value(
            "modeldeploy_reconciles_total", {"result": "ok"}
        )
        return value or 0.0


@contextlib.asynccontextmanager
async def scripted_operator(
    config: str,
    namespace: str,
    clock: ManualClock,
    probes: ScriptedProbes,
    kill: bool = False,
    *,
    clusterwide: bool = False,
) -> AsyncIterator[Operator]:
    """Run the real operator in this event loop with scripted probes and a manual clock, watching
    `namespace` (every namespace when `clusterwide`: the emulator cannot serve namespaced watches of
    kopf's kind); `kill` ends it by cancellation (no graceful stop)."""
    kube = await Kube.connect(config, backoff=Backoff(attempts=8, first_delay_s=0.01, max_delay_s=0.1))
    runtime = Runtime(kube=kube, probes=probes, metrics=OperatorMetrics(), clock=clock, retry_s=0.2)
    async with operator_in_this_loop(runtime, kill=kill, namespace=None if clusterwide else namespace):
        yield Operator(runtime, clock, probes, namespace)


def manifest(uri: str = "s3://models/ocr-v1.onnx", **sections: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "ocr", "uri": uri},
        "storage": {"uri": "s3://artifacts/modeldeploy"},
        "serving": {"replicas": 4},
        "rollout": {"steps": [20, 50], "interval": "10s", "progressDeadline": "2m"},
    }
    spec.update(sections)
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "ocr"},
        "spec": spec,
    }


async def ready_with_stable(view: Watched) -> str:
    await eventually(lambda: view.phase() == "Ready", "phase Ready")
    stable = view.status()["stableRevision"]
    assert isinstance(stable, str)
    return stable


async def canary_at_step(view: Watched, step: int) -> str:
    await eventually(lambda: view.status().get("canaryStep") == step, f"canary at step {step}")
    canary = view.status()["canaryRevision"]
    assert isinstance(canary, str)
    return canary
