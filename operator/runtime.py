"""What every reconcile of the operator shares (`Runtime`): the clients, probes, metrics and clock, and
per object the wake-up signal, the read-your-writes bookkeeping, what was applied or pruned lately and
why the last reconcile failed. `modeldeploy.reconciler` re-exports it (the seam tests and handlers use)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modeldeploy.conditions import Phase
from modeldeploy.defaults import BUILTIN, SpecDefaults
from modeldeploy.kube import Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.observe import Key
from modeldeploy.probes import Probes

PHASES = [str(phase) for phase in Phase]


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class Runtime:
    """What every reconcile shares: clients, probes, metrics, and per-object wake-up signals."""

    kube: Kube
    probes: Probes
    metrics: OperatorMetrics
    resync_s: float = 300.0  # level-based safety net: reconcile at least this often
    reapply_s: float = 600.0  # re-apply unchanged children this often (repairs manual drift)
    retry_s: float = 5.0  # after a failed reconcile
    consistency_timeout_s: float = 5.0  # wait this long for our own write to come back on the watch
    clock: Callable[[], datetime] = utc_now
    defaults: SpecDefaults = BUILTIN  # operator-wide defaults (`modeldeploy run` flags, from the chart)
    wakers: dict[Key, asyncio.Event] = field(default_factory=dict)
    # After a write: the resourceVersion the object had before it (a body still at it is stale) ...
    stale_versions: dict[Key, str] = field(default_factory=dict)
    # ... and the versions our own writes produced (their watch events are no news).
    own_versions: dict[Key, list[str]] = field(default_factory=dict)
    settled: dict[Key, asyncio.Event] = field(default_factory=dict)
    applied: dict[tuple[str, str, str | None, str], tuple[str, float]] = field(default_factory=dict)
    # The last apply action carried out on each target (namespace, name, "job/REV" | "deployment/REV" |
    # "traffic"): the action, the digest of its inputs, when, and the Deployments/Jobs it wrote. A reconcile
    # that plans the same again renders nothing; any delete of the object's children drops its entries.
    acted: dict[tuple[str, str, str], tuple[object, str, float, tuple[str, ...]]] = field(
        default_factory=dict
    )
    pruned: dict[Key, frozenset[tuple[str, str, str]]] = field(default_factory=dict)
    retry_max_s: float = 300.0  # failed reconciles back off exponentially up to this
    # Why the last reconcile of an object failed: the next one records it (`Reconciled` condition) in the
    # status it writes before acting, so a failure that repeats is visible without Event spam.
    failures: dict[Key, str] = field(default_factory=dict)

    def waker(self, key: Key) -> asyncio.Event:
        return self.wakers.setdefault(key, asyncio.Event())

    def poke(self, key: Key) -> None:
        """Something this ModelDeployment depends on changed: reconcile it now."""
        waker = self.wakers.get(key)
        if waker is not None:
            waker.set()

    def saw(self, key: Key, resource_version: str | None) -> bool:
        """A watch event of the ModelDeployment arrived; True when it is the echo of our own write.

        kopf may batch quick successive events, so the echo of one particular write can be skipped:
        any version other than the stale one means the live body has moved past our writes' origin.
        """
        if (
            resource_version is not None
            and self.stale_versions.get(key, resource_version) != resource_version
        ):
            del self.stale_versions[key]
            self.settled.setdefault(key, asyncio.Event()).set()
        return resource_version is not None and resource_version in self.own_versions.get(key, ())

    async def settle(self, key: Key, resource_version: str | None) -> None:
        """Before deciding again, let the watch deliver our last write (else the status would be stale)."""
        if self.stale_versions.get(key) != resource_version:
            self.stale_versions.pop(key, None)
            return
        event = self.settled.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), self.consistency_timeout_s)
        except TimeoutError:
            self.stale_versions.pop(key, None)

    def wrote(self, key: Key, before: str | None, after: str | None) -> None:
        # A write that changed nothing keeps the resourceVersion and sends no watch event (as the API
        # server does): waiting for its echo would stall the loop for consistency_timeout_s.
        changed = after is None or after != before
        if before and changed and key not in self.stale_versions:
            self.stale_versions[key] = before
            self.settled.setdefault(key, asyncio.Event()).clear()
        if after:
            self.own_versions[key] = [*self.own_versions.get(key, [])[-7:], after]

    def forget_acted(self, key: Key) -> None:
        for acted_key in [k for k in self.acted if k[:2] == key]:
            del self.acted[acted_key]

    def forget(self, key: Key) -> None:
        self.wakers.pop(key, None)
        self.stale_versions.pop(key, None)
        self.own_versions.pop(key, None)
        self.settled.pop(key, None)
        self.pruned.pop(key, None)
        self.failures.pop(key, None)
        namespace, name = key
        for applied_key in [k for k in self.applied if k[2] == namespace and _belongs(k[3], name)]:
            del self.applied[applied_key]
        self.forget_acted(key)
        self.metrics.forget(namespace, name, PHASES)


def _belongs(child_name: str, owner_name: str) -> bool:
    return child_name == owner_name or child_name.startswith(f"{owner_name}-")
