"""kopf handlers: the operator's table of contents. Each one gathers, calls a pure function, acts.

- startup: settings (progress and diff-base in `modeldeploy.io/` annotations, watch timeouts, quiet
  handler-success Events) and the shared `Runtime` (Kubernetes client, probes, metrics).
- indexes over the Deployments and Jobs the operator owns: the reconcile reads children from memory.
- events of the ModelDeployment and of its children wake that object's reconcile loop at once.
- one daemon per ModelDeployment runs the reconcile loop (`modeldeploy.reconciler`): level-based,
  woken by events, by its own clock (next analysis, deadline) and by a periodic resync.
- no create/update handlers: the reconcile loop validates the spec itself (InvalidSpec conditions and
  Event), so kopf keeps no progress or diff-base annotations (no copy of the spec, no extra writes).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import kopf

from modeldeploy.defaults import BUILTIN
from modeldeploy.kube import Kube, KubeError
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.probes import TritonPrometheusProbes
from modeldeploy.reconciler import (
    Runtime,
    observed_deployment,
    observed_job,
    owner_key,
    reconcile,
)
from modeldeploy.rendering import GROUP, MANAGED_BY, MANAGED_BY_LABEL, PLURAL, VERSION

OWNED = {MANAGED_BY_LABEL: MANAGED_BY}
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# Watches are re-opened at least this often; a stalled stream (no error, no events) is cut client-side.
WATCH_SERVER_TIMEOUT_S = 270
WATCH_CLIENT_TIMEOUT_S = 300
CONFLICT = 409
FORBIDDEN = 403
CONFLICT_WAIT_S = 1.0  # after a conflict, wait at most this long for kopf to deliver the newer object
# Longer than the reconcile's own longest wait (Runtime.consistency_timeout_s, 5 s).
CANCELLATION_BACKOFF_S = 6.0
FINALIZER = "modeldeploy.io/finalizer"
# kopf adds its finalizer in the same cycle that starts the daemon; a status written before that patch
# lands conflicts with it (409) and the first round is decided twice. It lands within milliseconds on a
# quiet API server, within seconds on a busy one (waiting is cheaper than the conflict there).
FINALIZER_WAIT_S = 10.0


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings every `modeldeploy run` uses (also applied by tests that run the operator)."""
    # Were a create/update handler ever added: progress in annotations, as a structural CRD schema prunes
    # unknown status fields (kopf #321). None exists now, so kopf writes neither.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modeldeploy.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="modeldeploy.io", key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # Silent watch stalls are kopf's most reported reliability problem (kopf #698, #787, #1276).
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_S
    settings.watching.connect_timeout = 30
    # The operator records its own Events on phase transitions; kopf's per-handler ones are noise.
    settings.posting.level = logging.WARNING
    # Ask the API server for our own children only (a server-side label selector on list and watch),
    # instead of receiving every Deployment and Job in scope and filtering them here.
    for group, plural in (("apps", "deployments"), ("batch", "jobs")):
        settings.watching.label_selectors[group, plural] = OWNED_SELECTOR


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    if getattr(memo, "runtime", None) is None:
        kube = await Kube.connect()
        metrics = OperatorMetrics()
        metrics_port = getattr(memo, "metrics_port", None)
        if metrics_port:
            metrics.serve(int(metrics_port))
        defaults = getattr(memo, "defaults", None) or BUILTIN
        memo.runtime = Runtime(
            kube=kube, probes=TritonPrometheusProbes(kube), metrics=metrics, defaults=defaults
        )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None and getattr(memo, "owns_runtime", True):
        await runtime.kube.close()


@kopf.index("apps", "v1", "deployments", labels=OWNED)
async def revision_deployments(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    key, deployment = owner_key(body), observed_deployment(body)
    return {key: deployment} if key and deployment else {}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
async def optimization_jobs(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    key, job = owner_key(body), observed_job(body)
    return {key: job} if key and job else {}


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def child_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    key = owner_key(body)
    if key is not None:
        memo.runtime.poke(key)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def modeldeployment_changed(
    *, namespace: str | None, name: str, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    key = (namespace or "", name)
    # Our own status write coming back is no news; anything else (spec, annotations) is.
    if not memo.runtime.saw(key, meta.get("resourceVersion")):
        memo.runtime.poke(key)


# On shutdown or deletion, a reconcile in flight may finish (it checks `stopped` between rounds) before kopf
# cancels it: without a backoff kopf cancels at once, mid-write, and logs a warning for every object.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=CANCELLATION_BACKOFF_S, cancellation_timeout=10.0)
async def reconcile_loop(
    *,
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **indexes: Any,  # kopf passes every index by its function's name
) -> None:
    runtime: Runtime = memo.runtime
    deployments: kopf.Index[Any, Any] = indexes["revision_deployments"]
    jobs: kopf.Index[Any, Any] = indexes["optimization_jobs"]
    key = (namespace or "", name)
    waker = runtime.waker(key)
    failures, last_error = 0, ""
    await _until(
        lambda: FINALIZER in body.get("metadata", {}).get("finalizers", ()), stopped, FINALIZER_WAIT_S
    )
    try:
        while not stopped:
            waker.clear()
            decided_from = body.get("metadata", {}).get("resourceVersion")
            try:
                delay = await reconcile(
                    runtime,
                    body,
                    list(deployments.get(key, [])),
                    list(jobs.get(key, [])),
                    logger,
                )
                failures, last_error = 0, ""
            except Exception as error:  # any failure: back off, say so in the status; the loop never dies
                if isinstance(error, KubeError) and error.status == CONFLICT:
                    # The object moved on since the body we decided from (kopf's own annotations, a
                    # user's edit): expected with optimistic concurrency; decide again from the new one
                    # once kopf has it (deciding from the same stale body would only conflict again).
                    logger.debug("status write conflicted; deciding again: %s", error)
                    await _until(_moved_past(body, decided_from), stopped, CONFLICT_WAIT_S)
                    continue
                failures += 1
                delay = failure_delay(runtime, failures)
                # A warning (which kopf also posts as an Event) only when the failure is new or changes.
                changed = str(error) != last_error
                log = logger.warning if changed else logger.debug
                last_error = str(error)
                # API trouble is expected now and then; anything else is a bug worth a traceback.
                log(
                    "reconcile failed (%d in a row), retrying in %.1fs: %s",
                    failures,
                    delay,
                    error,
                    exc_info=not isinstance(error, KubeError),
                )
                runtime.metrics.reconciles.labels("error").inc()
                runtime.failures[key] = f"{type(error).__name__}: {error}"[:512]
                if changed and isinstance(error, KubeError) and error.status == FORBIDDEN:
                    # RBAC refused a request: say so where `kubectl describe` shows it, once per refusal.
                    await runtime.kube.record_event(body, "Warning", "Forbidden", str(error))
            await _sleep(waker, stopped, max(delay, 0.05))
    finally:
        reason = stopped.reason
        if reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in reason:
            runtime.forget(key)


def failure_delay(runtime: Runtime, failures: int) -> float:
    """Capped exponential backoff with jitter (half fixed, half random) after `failures` in a row."""
    ceiling = min(runtime.retry_max_s, runtime.retry_s * 2 ** min(failures - 1, 30))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def _moved_past(body: kopf.Body, version: str | None) -> Callable[[], bool]:
    return lambda: body.get("metadata", {}).get("resourceVersion") != version


async def _until(condition: Callable[[], bool], stopped: kopf.DaemonStopped, timeout: float) -> None:
    """Until `condition` holds on kopf's live body (the watch updates it in place), or `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition() and not stopped and loop.time() < deadline:
        await asyncio.sleep(0.02)


async def _sleep(waker: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float) -> None:
    """Until a wake-up, the daemon being stopped (deletion, shutdown), or `timeout`."""
    waiters = {asyncio.ensure_future(waker.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
