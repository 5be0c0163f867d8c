"""The real kopf operator, with the project's handlers, running in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import kopf

from modeldeploy import handlers
from modeldeploy.reconciler import Runtime

T = TypeVar("T")


@contextlib.asynccontextmanager
async def operator_in_this_loop(runtime: Runtime, *, kill: bool = False) -> AsyncIterator[None]:
    """Run the operator on `runtime` until the block ends; `kill` ends it by cancellation (no graceful
    stop, as when the process is killed). The runtime's Kubernetes client is closed afterwards."""
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    settings.scanning.disabled = True
    # kopf keeps an idle per-object worker alive this long, and waits for it when stopping.
    settings.batching.idle_timeout = 0.5
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            clusterwide=True,  # kmock answers 500 to namespace listing
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
