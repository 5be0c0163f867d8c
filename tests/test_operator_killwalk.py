"""`kill -9` of the operator between any two of its writes, walked over a whole canary and promotion
(issue 10). Each incarnation of the operator makes one more effective write than all before it and dies
right after it (`ApiServerEmulator.crash_operator_after`: nothing more of it reaches the store), then a
fresh one (empty memory, as after a restart) starts. At every such point the cluster must hold no
duplicate, no lost annotation, and no less serving capacity than the stable's replicas."""

from __future__ import annotations

import asyncio
import pathlib

from emulator_view import View, annotate, change_spec, cluster, create, operator
from kube_emulator import ApiServerEmulator, ClusterControllers
from operator_harness import ManualClock, ScriptedProbes, eventually, manifest, ready_with_stable

from modeldeploy.rollout import ANNOTATION_PROMOTE

__all__ = ["cluster"]  # the fixture, from emulator_view

REPLICAS = 4
MAX_INCARNATIONS = 120


def capacity(view: View) -> int:
    """Pods the Deployments of the instance ask for (the controller stand-in makes them available)."""
    return sum(int(d["spec"].get("replicas", 1)) for d in view.deployments().values())


def check_invariants(view: View, old: str, annotated: bool, where: str) -> None:
    for plural in ("deployments", "jobs"):
        created = view.creations(plural)
        assert len(created) == len(set(created)), f"{where}: {plural} created twice: {created}"
    assert capacity(view) >= REPLICAS, f"{where}: capacity {capacity(view)} < {REPLICAS}"
    status = view.status()
    revisions = {d["metadata"]["labels"]["modeldeploy.io/revision"] for d in view.deployments().values()}
    assert status.get("stableRevision") in revisions, f"{where}: the recorded stable does not exist"
    annotations = view.mdep()["metadata"].get("annotations") or {}
    if annotated and ANNOTATION_PROMOTE not in annotations:
        # Removed only once the promotion is recorded: the annotation is never lost.
        promoted = status.get("canaryRevision") is None and status.get("stableRevision") != old
        assert promoted, f"{where}: promote annotation removed, promotion not recorded: {status}"


async def test_kill_between_any_two_writes_never_duplicates_loses_or_shrinks(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    clock = ManualClock()
    body = manifest(rollout={"steps": [50], "interval": "10s", "progressDeadline": "2m"})
    async with operator(kubeconfig, clock, ScriptedProbes()):
        await create(emulator, body)
        old = await ready_with_stable(view)
        await eventually(lambda: capacity(view) == REPLICAS, "stable at full size")
    await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
    annotated = False
    points = 0
    for incarnation in range(MAX_INCARNATIONS):
        emulator.crash_operator_after(emulator.operator_writes + 1)
        async with operator(kubeconfig, clock, ScriptedProbes(), kill=True):
            done = asyncio.create_task(_promoted_and_settled(view, old))
            crashed = asyncio.create_task(emulator.crashed.wait())
            finished, pending = await asyncio.wait(
                {done, crashed}, timeout=10, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            assert finished, f"incarnation {incarnation} made no progress: {view.status()}"
            settled = done in finished and done.result()
        points += 1
        check_invariants(view, old, annotated, f"after write {emulator.operator_writes}")
        if not annotated and view.status().get("canaryStep") == 0:
            await annotate(emulator, ANNOTATION_PROMOTE, "true")  # the user promotes mid-walk
            annotated = True
        if settled:
            break
    else:
        raise AssertionError(f"not converged after {MAX_INCARNATIONS} incarnations: {view.status()}")
    assert annotated
    status = view.status()
    assert status["stableRevision"] != old and status.get("canaryRevision") is None
    assert set(view.deployments()) == {f"ocr-{status['stableRevision']}"}
    assert ANNOTATION_PROMOTE not in (view.mdep()["metadata"].get("annotations") or {})
    assert points >= 10  # the walk really crossed the canary's writes one by one


async def _promoted_and_settled(view: View, old: str) -> bool:
    def promoted() -> bool:
        status = view.status()
        return (
            status.get("stableRevision") not in (None, old)
            and set(view.deployments()) == {f"ocr-{status['stableRevision']}"}
            and ANNOTATION_PROMOTE not in (view.mdep()["metadata"].get("annotations") or {})
        )

    await eventually(promoted, "promoted", timeout=30)
    return True
